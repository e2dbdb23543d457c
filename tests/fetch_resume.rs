//! kill -9 at random moments: every resume continues from the journal, the bytes hubsim re-sends
//! stay within the ranges that were in flight, and no wrong byte ever sits under a final name.

mod support;

use std::time::{Duration, Instant};

use hubsim::generate::Layout;
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::*;

const MIB: u64 = 1 << 20;

/// kill -9 a fetch 8 times at random moments, resume, and check what hubsim re-sent against what
/// a crash may lose: the ranges in flight (`connections` x 1 MiB) and, per file in progress,
/// the finished ranges not yet synced (less than `sync_every`).
fn kill_9_at_random_moments_then_resume(sync_every: u64, jobs: u64) {
    let total = 24 * MIB;
    let connections = 4u64;
    let chunk = MIB;
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 6, total, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    );
    let src = hub.repo_dir(REPO);
    let total_bytes: u64 = model_files(&src)
        .iter()
        .filter(|p| !p.ends_with(".hubsim.json"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    // About 3 s for the whole model, so kills land at every stage.
    hub.faults_json(json!({"bandwidth_total_bps": 8 * MIB}));
    let seed: u64 = std::env::var("FERRY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed {seed} (set FERRY_TEST_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let args = |c: &mut std::process::Command| {
        c.args(["fetch", REPO, "--quiet", "--chunk-size", "1MiB"])
            .args(["--sync-every", &format!("{}B", sync_every)])
            .args(["--jobs", &jobs.to_string()])
            .args(["--connections", &connections.to_string(), "--to"])
            .arg(dir.path());
    };

    let started = Instant::now();
    let mut kills = 0u64;
    while kills < 8 && started.elapsed() < Duration::from_secs(60) {
        let mut cmd = hub.ferry();
        args(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(50..900)));
        // SIGKILL: no chance to clean up.
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            break;
        }
        kills += 1;
        // Whatever sits under a final name is complete and correct; no manifest yet.
        for f in model_files(dir.path()) {
            let rel = f.strip_prefix(dir.path()).unwrap();
            assert_eq!(
                std::fs::read(&f).unwrap(),
                std::fs::read(src.join(rel)).unwrap(),
                "{} is published but wrong after kill {kills}",
                rel.display()
            );
        }
        assert!(!dir.path().join(".ferry/manifest.json").exists());
    }
    assert!(kills >= 3, "too few kills landed mid-fetch ({kills})");

    let mut cmd = hub.ferry();
    args(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&src, dir.path());
    let sent = hub.stats().bytes_sent;
    // Unsynced ranges: below `sync_every` per file in progress, and never more than one chunk
    // when ranges are synced as they finish.
    let unsynced = sync_every.saturating_sub(chunk);
    let bound = total_bytes + kills * (connections * chunk + jobs * unsynced);
    eprintln!(
        "sync every {sync_every}: {kills} kills, hubsim sent {sent} bytes for a \
         {total_bytes}-byte model (bound {bound})"
    );
    assert!(sent <= bound, "re-sent too much: {sent} > {bound}");
}

#[test]
fn kill_9_with_every_range_synced_loses_only_ranges_in_flight() {
    kill_9_at_random_moments_then_resume(MIB, 8);
}

#[test]
fn kill_9_with_batched_syncs_loses_at_most_the_unsynced_ranges() {
    kill_9_at_random_moments_then_resume(3 * MIB, 2);
}

/// Peak RSS of a 163-shard fetch, read from the kernel's high-water mark while it runs.
#[test]
fn memory_stays_bounded_on_a_163_shard_fetch() {
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 163, 512 * MIB, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = hub
        .ferry()
        .args(["fetch", REPO, "--quiet", "--connections", "32", "--to"])
        .arg(dir.path())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(v) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(v);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    eprintln!(
        "peak RSS of ferry fetch (163 shards, 512 MiB): {} MiB",
        peak_kb / 1024
    );
    assert!(peak_kb > 0, "never sampled");
    assert!(peak_kb < 256 * 1024, "peak RSS {peak_kb} kB");
}
