//! The `hubsim` binary streams a multi-GB file with flat memory: RSS of the server process is
//! sampled while a client downloads a 4 GiB file in full.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZE: u64 = 4 << 30;
const RSS_LIMIT_KB: u64 = 100 * 1024;

/// Kills the server even when an assertion fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_a_4_gib_file_keeps_rss_flat() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("org/huge");
    std::fs::create_dir_all(&repo).unwrap();
    // Sparse: holes read as zeros and cost no disk.
    let file = std::fs::File::create(repo.join("model.safetensors")).unwrap();
    file.set_len(SIZE).unwrap();
    drop(file);

    let mut child = Command::new(env!("CARGO_BIN_EXE_hubsim"))
        .args(["serve", "--root"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let pid = server.0.id();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("hubsim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some(kb) = rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let started = Instant::now();
    // The first request hashes the file (sha256, once); the GET below only streams.
    let head = client
        .head(format!("{url}/org/huge/resolve/main/model.safetensors"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let hashed = started.elapsed();
    let mut resp = client
        .get(format!("{url}/org/huge/resolve/main/model.safetensors"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(SIZE));
    let mut got = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got += chunk.len() as u64;
    }
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let peak_kb = peak.load(Ordering::SeqCst);
    eprintln!(
        "hashed in {:.1}s, served {} GiB in {:.1}s, peak RSS {} MiB",
        hashed.as_secs_f64(),
        got >> 30,
        (started.elapsed() - hashed).as_secs_f64(),
        peak_kb / 1024
    );
    assert_eq!(got, SIZE);
    assert!(peak_kb > 0, "RSS was sampled");
    assert!(
        peak_kb < RSS_LIMIT_KB,
        "peak RSS {peak_kb} kB while serving {SIZE} bytes"
    );
}
