//! Memory whatever the shard size: `ferry fetch` of one 4 GiB shard (hubsim's virtual repo: the
//! bytes are generated as they are served, so the hub needs no disk) keeps the fetch's peak RSS
//! bounded. The peak is the kernel's own figure for the child (`wait4`'s `ru_maxrss`), so it
//! includes every transient buffer, not a sample.

mod support;

use std::process::Stdio;

use hubsim::generate::{write_virtual, ModelSpec};
use support::{Hub, REPO};

const SHARD: u64 = 4 << 30;
/// A fetch that held the shard (4 GiB), or one 64 MiB range per connection at the 32-connection
/// ceiling (2 GiB), in memory would be far above this. Issue 20's goal is 256 MB whatever the
/// shard size; the device run there saw 256-347 MiB for four 4 GiB shards at once, so the
/// figure is printed and the bound stays above that until the goal is reached.
const PEAK_RSS_LIMIT: u64 = 512 << 20;

/// Runs the command to its end, asserts it succeeded, and returns its peak RSS in bytes, from
/// wait4(2) (which reaps the child: std's `wait` would not give the rusage).
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut std::process::Command) -> u64 {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let pid = child.id() as libc::pid_t;
    // Read stderr on a thread so a chatty child never blocks on a full pipe.
    let mut stderr = child.stderr.expect("stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let mut status = 0;
    // SAFETY: rusage is plain old data, and wait4 writes it for the child we spawned (std's Child
    // is dropped without waiting, so nothing else reaps it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    let log = log.join().unwrap_or_default();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    assert_eq!(code, 0, "ferry fetch failed:\n{log}");
    // Linux reports ru_maxrss in KiB.
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn a_4gib_shard_is_streamed_with_bounded_memory() {
    let hub = Hub::with(|root| {
        write_virtual(&ModelSpec::new(REPO, 1, SHARD), &root.join(REPO)).expect("virtual repo");
    });
    let dst = tempfile::tempdir().unwrap();
    let peak = run_measured(hub.ferry().args(["fetch", REPO, "--to"]).arg(dst.path()));
    let shard = support::model_files(dst.path())
        .into_iter()
        .filter_map(|p| std::fs::metadata(&p).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    assert!(shard >= SHARD * 9 / 10, "largest file is {shard} bytes");
    eprintln!(
        "peak RSS of ferry fetch for a {} MiB shard: {} MiB",
        shard >> 20,
        peak >> 20
    );
    assert!(
        peak < PEAK_RSS_LIMIT,
        "ferry fetch peaked at {} MiB RSS for a {} MiB shard (limit {} MiB)",
        peak >> 20,
        shard >> 20,
        PEAK_RSS_LIMIT >> 20
    );
}
