//! ferry on a shared volume seen by several nodes: real FUSE (bindfs) mounts of one backing
//! directory stand in for the nodes' clients. flock there is node-local (measured below), so only
//! the lease keeps two fetchers of one slice apart; kill -9, a paused holder, flock that fails,
//! and a gate whose node sees the manifest before the files must all end in one correct model.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubsim::generate::Layout;
use serde_json::json;
use support::fuse::{flock_is_shared, volume_or_skip};
use support::*;

const MIB: u64 = 1 << 20;

fn hub() -> Hub {
    Hub::with_config(
        |root| {
            generate(root, REPO, 4, 48 * MIB, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    )
}

fn fetch(hub: &Hub, dir: &Path, slice: Option<(u32, u32)>) -> Command {
    let mut c = hub.ferry();
    c.args(["fetch", REPO, "--quiet", "--chunk-size", "1MiB"])
        .args(["--connections", "3", "--sync-every", "1MiB"]);
    if let Some((i, n)) = slice {
        c.args(["--slice", &format!("{i}/{n}")]);
    }
    c.arg("--to")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn finish(c: Child) -> (Option<i32>, String) {
    let out = c.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kill9(c: &mut Child) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
}

/// Watches the model's final names while fetchers run: every file that appears there must hold
/// exactly the source's bytes (partial data never sits under a final name).
struct Watcher {
    stop: Arc<AtomicBool>,
    bad: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Watcher {
    fn start(src: PathBuf, dir: PathBuf) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let (s, b) = (Arc::clone(&stop), Arc::clone(&bad));
        let thread = std::thread::spawn(move || {
            use std::os::unix::fs::MetadataExt;
            let mut seen: HashMap<(PathBuf, u64), ()> = HashMap::new();
            while !s.load(Ordering::Relaxed) {
                for rel in model_rel_files(&dir) {
                    let Ok(md) = std::fs::metadata(dir.join(&rel)) else {
                        continue;
                    };
                    if seen.insert((rel.clone(), md.ino()), ()).is_some() {
                        continue;
                    }
                    let want = std::fs::read(src.join(&rel)).unwrap_or_default();
                    let got = std::fs::read(dir.join(&rel)).unwrap_or_default();
                    if got != want {
                        b.lock().unwrap().push(format!(
                            "{}: {} bytes, not the source's",
                            rel.display(),
                            got.len()
                        ));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen.len()
        });
        Watcher {
            stop,
            bad,
            thread: Some(thread),
        }
    }

    /// Stops watching; panics on any wrong byte seen. Returns how many file versions it checked.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let n = self.thread.take().unwrap().join().unwrap();
        let bad = self.bad.lock().unwrap();
        assert!(bad.is_empty(), "wrong bytes under final names: {bad:?}");
        n
    }
}

fn model_rel_files(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    model_files(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
        .collect()
}

/// One correct model, one manifest naming every file, no partial file left.
fn assert_one_correct_model(src: &Path, dir: &Path) {
    assert_same_files(src, dir);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(".ferry/manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["files"].as_array().unwrap().len(),
        model_files(src).len()
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.join(".ferry"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("manifest.json."))
        .collect();
    assert!(leftovers.is_empty(), "manifest temp files: {leftovers:?}");
    assert_eq!(
        std::fs::read_dir(dir.join(".ferry/partial"))
            .unwrap()
            .count(),
        0,
        "partial files left behind"
    );
}

fn manifest_stamp(dir: &Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir.join(".ferry/manifest.json")).unwrap();
    (m.ino(), m.modified().unwrap())
}

fn locked(code: Option<i32>, err: &str) -> bool {
    code == Some(7) && err.contains("locked by another ferry")
}

/// (a) Two nodes run the same slice; the one holding the lease is killed with -9 at random
/// moments and the pair restarted on swapped nodes. Only the lease keeps them apart (flock is
/// node-local on these mounts), and the run ends in one correct model and one manifest.
#[test]
fn one_slice_on_two_nodes_with_kill9_ends_in_one_correct_model() {
    let Some(vol) = volume_or_skip("one_slice_on_two_nodes_with_kill9", 2) else {
        return;
    };
    assert!(
        !flock_is_shared(&vol.node(0).join("probe"), &vol.node(1).join("probe")),
        "bindfs forwarded flock between mounts: these mounts do not model node-local locks"
    );
    let hub = hub();
    hub.faults_json(json!({"bandwidth_total_bps": 24 * MIB}));
    let src = hub.repo_dir(REPO);
    let on = |node: usize| vol.node(node).join("model");
    let watcher = Watcher::start(src.clone(), vol.backing.join("model"));
    let other = fetch(&hub, &on(1), Some((1, 2))).spawn().unwrap();
    let mut kills = 0;
    let mut node = 0;
    let mut rounds = Vec::new();
    loop {
        let mut a = fetch(&hub, &on(node), Some((0, 2))).spawn().unwrap();
        let mut b = fetch(&hub, &on(1 - node), Some((0, 2))).spawn().unwrap();
        if kills < 3 {
            std::thread::sleep(Duration::from_millis(rand::random_range(300..1500)));
            // The lease holder is still running (the other was refused at once): kill -9 it.
            for c in [&mut a, &mut b] {
                if c.try_wait().unwrap().is_none() {
                    kill9(c);
                }
            }
            let (ca, ea) = finish(a);
            let (cb, eb) = finish(b);
            for (c, e) in [(ca, &ea), (cb, &eb)] {
                assert!(
                    c.is_none() || c == Some(0) || locked(c, e),
                    "neither killed, done nor refused: {c:?} {e}"
                );
            }
            rounds.push((ca, cb));
            kills += 1;
            node = 1 - node;
            continue;
        }
        let (ca, ea) = finish(a);
        let (cb, eb) = finish(b);
        rounds.push((ca, cb));
        // Started together: one fetched, the other saw its lease and backed off (or found
        // the model already complete).
        let codes = [ca, cb];
        assert!(codes.contains(&Some(0)), "no success: {ea}\n{eb}");
        assert!(
            codes.iter().all(|c| *c == Some(0)) || locked(ca, &ea) || locked(cb, &eb),
            "a: {ca:?} {ea}\nb: {cb:?} {eb}"
        );
        break;
    }
    let (co, eo) = finish(other);
    assert_eq!(co, Some(0), "slice 1: {eo}");
    // Slice 1 may have finished first; then the last slice 0 finalized. Either way, one
    // manifest; if slice 0's winner did not finalize (slice 1 was still running), a retried
    // index does now.
    if !vol.backing.join("model/.ferry/manifest.json").exists() {
        let (c, e) = finish(fetch(&hub, &on(0), Some((0, 2))).spawn().unwrap());
        assert_eq!(c, Some(0), "{e}");
    }
    let checked = watcher.finish();
    eprintln!("rounds (exit codes, None = killed): {rounds:?}; {checked} file versions checked");
    assert_one_correct_model(&src, &vol.backing.join("model"));
    // Every node sees the same lease holders and heartbeat ages.
    for n in 0..2 {
        let out = run(ferry().args(["status", "--json"]).arg(on(n)));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let leases: Vec<_> = s["lock"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["file"].as_str().unwrap().starts_with(".ferry/lease/"))
            .collect();
        assert!(
            leases.iter().any(|l| l["file"]
                .as_str()
                .unwrap()
                .starts_with(".ferry/lease/slice-0-of-2.")),
            "{s}"
        );
        assert!(
            leases
                .iter()
                .all(|l| l["heartbeat_seconds_ago"].is_u64() && l["state"] != "held"),
            "{s}"
        );
    }
}

/// (a) A holder paused (SIGSTOP) past the lease timeout is taken over from the other node; when
/// it resumes it finds its lease gone and stops before publishing, and the manifest the new
/// holder committed is not rewritten.
#[test]
fn a_paused_holder_is_taken_over_and_stops_when_it_resumes() {
    let Some(vol) = volume_or_skip("a_paused_holder_is_taken_over", 2) else {
        return;
    };
    let hub = hub();
    hub.faults_json(json!({"bandwidth_total_bps": 16 * MIB}));
    let src = hub.repo_dir(REPO);
    let watcher = Watcher::start(src.clone(), vol.backing.join("model"));
    let mut paused = fetch(&hub, &vol.node(0).join("model"), None)
        .env("FERRY_LEASE_TIMEOUT", "2s")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // SAFETY: signals to our own child.
    unsafe { libc::kill(paused.id() as i32, libc::SIGSTOP) };
    let refused = fetch(&hub, &vol.node(1).join("model"), None)
        .env("FERRY_LEASE_TIMEOUT", "2s")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(locked(refused.status.code(), &err), "{err}");
    assert!(err.contains("heartbeat"), "{err}");
    std::thread::sleep(Duration::from_millis(2500));
    hub.faults_json(json!({}));
    let taker = fetch(&hub, &vol.node(1).join("model"), None)
        .env("FERRY_LEASE_TIMEOUT", "2s")
        .output()
        .unwrap();
    assert!(taker.status.success(), "{}", text(&taker));
    let stamp = manifest_stamp(&vol.backing.join("model"));
    // SAFETY: as above.
    unsafe { libc::kill(paused.id() as i32, libc::SIGCONT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while paused.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the resumed holder never stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, err) = finish(paused);
    assert!(
        code == Some(7) && err.contains("lost the lease"),
        "resumed holder: {code:?} {err}"
    );
    watcher.finish();
    assert_eq!(
        manifest_stamp(&vol.backing.join("model")),
        stamp,
        "manifest rewritten"
    );
    assert_one_correct_model(&src, &vol.backing.join("model"));
}

/// A preload library whose flock(2) fails with ENOSYS, as a Lustre-like client mounted without
/// `-o flock` answers (bindfs and the kernel's FUSE layer never fail flock themselves).
fn no_flock_library(dir: &Path) -> Option<PathBuf> {
    let c = dir.join("noflock.c");
    std::fs::write(
        &c,
        "#include <errno.h>\nint flock(int fd, int op) { (void)fd; (void)op; errno = ENOSYS; return -1; }\n",
    )
    .unwrap();
    let so = dir.join("libnoflock.so");
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&c)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(so)
}

/// (b) flock fails on every node: fetch, slices, status and the gate still work, and the lease
/// alone still refuses a second fetch of the same directory.
#[test]
fn without_flock_fetch_slices_and_gate_still_work() {
    let Some(vol) = volume_or_skip("without_flock_fetch_slices_and_gate", 2) else {
        return;
    };
    let lib = no_flock_library(vol.root.path()).expect("cc builds the flock-failing library");
    let hub = hub();
    let src = hub.repo_dir(REPO);
    let whole = vol.node(0).join("whole");
    hub.faults_json(json!({"bandwidth_total_bps": 32 * MIB}));
    let first = fetch(&hub, &whole, None)
        .env("LD_PRELOAD", &lib)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let second = fetch(&hub, &vol.node(1).join("whole"), None)
        .env("LD_PRELOAD", &lib)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(locked(second.status.code(), &err), "{err}");
    assert!(err.contains("flock not available"), "{err}");
    let (code, err) = finish(first);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("flock not available"), "{err}");
    assert_one_correct_model(&src, &vol.backing.join("whole"));

    hub.faults_json(json!({}));
    let sliced = |n: usize| vol.node(n).join("sliced");
    let pods: Vec<Child> = (0..3u32)
        .map(|i| {
            fetch(&hub, &sliced(i as usize % 2), Some((i, 3)))
                .env("LD_PRELOAD", &lib)
                .spawn()
                .unwrap()
        })
        .collect();
    for p in pods {
        let (code, err) = finish(p);
        assert_eq!(code, Some(0), "{err}");
    }
    assert_one_correct_model(&src, &vol.backing.join("sliced"));

    let out = ferry()
        .env("LD_PRELOAD", &lib)
        .args(["sidecar", "--mode", "init", "--poll-max", "200ms"])
        .args(["--timeout", "30s", "--model-dir"])
        .arg(sliced(1))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = run(ferry()
        .env("LD_PRELOAD", &lib)
        .args(["status"])
        .arg(sliced(0)));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(".ferry/lease/"),
        "{}",
        text(&out)
    );
    // The volume probe on this mount: the required primitives work, flock is reported absent
    // (not fatal), and the mount is named for what it is.
    let out = run(ferry()
        .env("LD_PRELOAD", &lib)
        .args(["status", "--check-volume", "--json"])
        .arg(sliced(0)));
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["fs_type"], "fuse", "{r}");
    for c in r["checks"].as_array().unwrap() {
        let expect_ok = c["name"] != "flock";
        assert_eq!(c["ok"], expect_ok, "{c}");
    }
    assert!(r["advice"].to_string().contains("FUSE"), "{r}");
}

/// (c) A node that sees the manifest before a shard (one missing, one short, as an NFS client
/// with a stale cache does) keeps its gate shut, and opens it as soon as both are visible and
/// the right size there. `ferry verify` waits the same way.
#[test]
fn the_gate_opens_only_once_every_file_is_visible_and_whole() {
    let Some(vol) = volume_or_skip("the_gate_opens_only_once_every_file_is_visible", 2) else {
        return;
    };
    let hub = hub();
    let src = hub.repo_dir(REPO);
    let (code, err) = finish(
        fetch(&hub, &vol.node(0).join("model"), None)
            .spawn()
            .unwrap(),
    );
    assert_eq!(code, Some(0), "{err}");
    let shards: Vec<PathBuf> = model_rel_files(&src)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    let (gone, short) = (&shards[0], &shards[1]);
    let writer = vol.node(0).join("model");
    let hidden = writer.join(".ferry/partial/hidden.tmp");
    std::fs::rename(writer.join(gone), &hidden).unwrap();
    let full = std::fs::read(writer.join(short)).unwrap();
    std::fs::write(writer.join(short), &full[..full.len() / 2]).unwrap();

    let reader = vol.node(1).join("model");
    let started = Instant::now();
    let mut gate = ferry()
        .env("FERRY_VISIBILITY_WAIT", "60s")
        .args(["sidecar", "--mode", "init", "--poll-max", "200ms"])
        .args(["--timeout", "90s", "--model-dir"])
        .arg(&reader)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let verify = ferry()
        .env("FERRY_VISIBILITY_WAIT", "60s")
        .arg("verify")
        .arg(&reader)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        gate.try_wait().unwrap().is_none(),
        "the gate decided before the files were visible"
    );
    // The writer's node publishes the shards whole, by rename, as a fetch does.
    let tmp = writer.join(".ferry/partial/short.tmp");
    std::fs::write(&tmp, &full).unwrap();
    std::fs::rename(&tmp, writer.join(short)).unwrap();
    std::fs::rename(&hidden, writer.join(gone)).unwrap();
    let visible_at = started.elapsed();
    let out = gate.wait_with_output().unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not visible here yet"),
        "{}",
        text(&out)
    );
    assert!(
        took >= visible_at,
        "opened at {took:?}, files visible at {visible_at:?}"
    );
    assert!(
        took < visible_at + Duration::from_secs(20),
        "opened {took:?} after start, files visible at {visible_at:?}"
    );
    let out = verify.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_one_correct_model(&src, &reader);
}

#[test]
fn warm_picks_its_reader_count_from_the_storage() {
    let Some(vol) = volume_or_skip("warm_picks_its_reader_count_from_the_storage", 1) else {
        return;
    };
    std::fs::write(vol.backing.join("a.safetensors"), vec![7u8; MIB as usize]).unwrap();
    let warm = |dir: &Path, extra: &[&str]| -> serde_json::Value {
        let out = ferry()
            .args(["warm", dir.to_str().unwrap(), "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Through the FUSE mount: network storage, so more readers than on a local disk.
    let r = warm(vol.node(0), &[]);
    assert!(r["jobs"].as_u64().unwrap() >= 16, "{r}");
    assert!(r["jobs_reason"].as_str().unwrap().contains("fuse"), "{r}");
    // The backing directory itself is local (a temp dir).
    let r = warm(&vol.backing, &[]);
    assert!(r["jobs"].as_u64().unwrap() <= 8, "{r}");
    assert!(
        !r["jobs_reason"].as_str().unwrap().contains("network"),
        "{r}"
    );
    // A count given on the command line wins.
    let r = warm(vol.node(0), &["--jobs", "3"]);
    assert_eq!(r["jobs"], 3, "{r}");
    assert_eq!(r["jobs_reason"], "--jobs", "{r}");
}
