//! An Indexed Job simulated on one machine: N `ferry fetch --slice I/N` processes share one
//! directory, some are killed mid-way and restarted, and exactly one verified manifest results.

mod support;

use std::process::Child;
use std::time::Duration;

use hubsim::generate::Layout;
use serde_json::json;
use support::*;

const MIB: u64 = 1 << 20;

/// Slice `i` of `n`, named on the command line (`--slice I/N`) or, as Kubernetes does for an
/// Indexed Job, through `JOB_COMPLETION_INDEX` with `--slices N`.
fn spawn_slice(hub: &Hub, dir: &std::path::Path, i: u32, n: u32, from_env: bool) -> Child {
    let mut c = hub.ferry();
    c.args([
        "fetch",
        REPO,
        "--quiet",
        "--chunk-size",
        "1MiB",
        "--connections",
        "3",
        // Every finished range durable at once, so a kill loses only the ranges in flight.
        "--sync-every",
        "1MiB",
    ]);
    if from_env {
        c.env("JOB_COMPLETION_INDEX", i.to_string())
            .args(["--slices", &n.to_string()]);
    } else {
        c.env_remove("JOB_COMPLETION_INDEX")
            .args(["--slice", &format!("{i}/{n}")]);
    }
    c.arg("--to")
        .arg(dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Identity and modification time: a rewritten manifest changes at least one.
fn manifest_stamp(dir: &std::path::Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir.join(".ferry/manifest.json")).unwrap();
    (m.ino(), m.modified().unwrap())
}

#[test]
fn indexed_job_slices_with_kills_end_in_one_manifest() {
    // Four 80 MiB shards: big enough that slices split them by byte range.
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 4, 320 * MIB, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    );
    let src = hub.repo_dir(REPO);
    for n in [1u32, 4, 8] {
        hub.faults_json(json!({"bandwidth_total_bps": 128 * MIB}));
        hub.handle.reset_stats();
        let dir = tempfile::tempdir().unwrap();
        let mut children: Vec<(u32, Child)> = (0..n)
            .map(|i| (i, spawn_slice(&hub, dir.path(), i, n, false)))
            .collect();
        // Kill the first and the last pod mid-way, as a node failure would: once each has
        // written its first heartbeat (a fixed delay is too short on a loaded machine), and a
        // moment after, so that some are mid-transfer.
        let beat = |i: u32| {
            ferry_sharder::layout::slices_dir(dir.path()).join(format!("progress-{i}-of-{n}.json"))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while ![0, n - 1].iter().all(|&i| beat(i).exists()) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut killed = Vec::new();
        for (i, c) in children.iter_mut() {
            if *i == 0 || *i == n - 1 {
                let _ = c.kill();
                killed.push(*i);
            }
        }
        let mut restarted = Vec::new();
        for (i, c) in children {
            let out = c.wait_with_output().unwrap();
            if killed.contains(&i) && !out.status.success() {
                restarted.push(i);
            } else {
                assert!(out.status.success(), "slice {i}/{n}: {}", text(&out));
            }
        }
        assert!(
            !dir.path().join(".ferry/manifest.json").exists() || restarted.is_empty(),
            "manifest committed while slices {restarted:?} were unfinished"
        );
        // What an operator sees meanwhile: every slice's heartbeat, and which slices are pending.
        let status = run(ferry().args(["status", "--json"]).arg(dir.path()));
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        let beats = status["slice_progress"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(beats.len(), n as usize, "{status}");
        assert!(beats
            .iter()
            .all(|b| b["count"] == n && b["bytes_total"].as_u64() > Some(0)));
        if !restarted.is_empty() {
            let pending: Vec<u64> = status["slices"][0]["pending"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
                .unwrap_or_else(|| (0..u64::from(n)).collect());
            for i in &restarted {
                assert!(
                    pending.contains(&u64::from(*i)),
                    "slice {i} not pending: {status}"
                );
            }
        }
        hub.faults_json(json!({}));
        let again: Vec<Child> = restarted
            .iter()
            .map(|i| spawn_slice(&hub, dir.path(), *i, n, true))
            .collect();
        for c in again {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "restarted slice: {}", text(&out));
        }
        assert_same_files(&src, dir.path());
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(".ferry/manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest["files"].as_array().unwrap().len(),
            model_files(&src).len()
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join(".ferry/partial"))
                .unwrap()
                .count(),
            0,
            "partial files left behind"
        );
        let sent = hub.stats().bytes_sent;
        let total: u64 = model_files(&src)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        eprintln!(
            "N={n}: killed {killed:?}, restarted {restarted:?}, hubsim sent {sent} of {total}"
        );
        // Kills lose at most the ranges in flight (3 connections x 1 MiB per killed pod).
        assert!(
            sent <= total + killed.len() as u64 * 3 * MIB,
            "N={n}: sent {sent}"
        );
        // `ferry plan slices --repo` shows an operator the very plan the pods worked from.
        let out = run(hub.ferry().args([
            "plan",
            "slices",
            "--repo",
            REPO,
            "--count",
            &n.to_string(),
            "--json",
        ]));
        assert!(out.status.success(), "{}", text(&out));
        let planned: Vec<ferry_sharder::slices::Slice> =
            serde_json::from_slice(&out.stdout).unwrap();
        let mut done = ferry_sharder::slices::SliceDone::read_all(dir.path()).unwrap();
        done.sort_by_key(|d| d.index);
        assert_eq!(done.len(), n as usize);
        for (p, d) in planned.iter().zip(&done) {
            assert_eq!((p.index, &p.pieces), (d.index, &d.pieces), "N={n}");
        }
        // A pod the Job runs again after completion (a retried index) finds the manifest and
        // neither transfers nor rewrites anything: the manifest is committed exactly once.
        let stamp = manifest_stamp(dir.path());
        hub.handle.reset_stats();
        let out = spawn_slice(&hub, dir.path(), n - 1, n, true)
            .wait_with_output()
            .unwrap();
        assert!(out.status.success(), "late slice: {}", text(&out));
        assert_eq!(manifest_stamp(dir.path()), stamp, "manifest rewritten");
        assert_eq!(hub.stats().bytes_sent, 0);
    }
}
