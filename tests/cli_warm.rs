//! `ferry warm` end to end, against the real kernel: evicted files go from ~0 to ~100 % resident
//! (read back with mincore, independently of ferry's own report), and a warm plan limits the
//! warm to this node's ranges.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_sharder::warm_plan::{FileRange, NodePlan, WarmPlan, FORMAT};
use ferry_sharder::InferenceEngine;
use ferry_sidecar::residency;

const MIB: u64 = 1 << 20;

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// Under Cargo's target tmp dir, on the build's disk: eviction does nothing on a tmpfs.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-cli-warm-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn cold_file(dir: &Path, name: &str, len: u64) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ len;
    let chunk: Vec<u8> = (0..MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    residency::evict(&p).unwrap();
    let r = residency::measure(&p, 0, u64::MAX).unwrap();
    assert!(r.ratio() < 0.05, "eviction did not take: {r:?}");
    p
}

fn resident(p: &Path, offset: u64, len: u64) -> f64 {
    residency::measure(p, offset, len).unwrap().ratio()
}

fn warm_json(args: &[&str]) -> serde_json::Value {
    let out = ferry()
        .arg("warm")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ferry warm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ratio_of(v: &serde_json::Value) -> f64 {
    v["resident_bytes"].as_f64().unwrap() / v["total_bytes"].as_f64().unwrap()
}

#[test]
fn warm_makes_an_evicted_model_resident() {
    let d = scratch();
    let files = [
        cold_file(d.path(), "model-00001-of-00002.safetensors", 20 * MIB),
        cold_file(d.path(), "model-00002-of-00002.safetensors", 12 * MIB + 5),
    ];
    let dir = d.path().to_str().unwrap();
    let report = warm_json(&[dir, "--jobs", "4"]);
    assert_eq!(report["bytes"], 32 * MIB + 5);
    assert_eq!(report["files"], 2);
    assert!(ratio_of(&report["before"]) < 0.05, "{report}");
    assert!(ratio_of(&report["after"]) > 0.95, "{report}");
    assert!(report["bytes_per_second"].as_f64().unwrap() > 0.0);
    for f in &files {
        assert!(resident(f, 0, u64::MAX) > 0.95, "{}", f.display());
    }

    // The human form names the numbers too.
    for f in &files {
        residency::evict(f).unwrap();
    }
    let out = ferry().args(["warm", dir]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Decimal units, scaled to the size: MB/s or GB/s.
    assert!(text.contains("B/s") && text.contains("% after"), "{text}");
}

/// Node 0 reads all of a.safetensors, node 1 the middle third of b.safetensors (48 MiB each).
fn two_node_plan() -> WarmPlan {
    WarmPlan {
        format: FORMAT,
        engine: InferenceEngine::Vllm,
        nnodes: 2,
        gpus_per_node: 8,
        tp: 8,
        pp: 2,
        model_bytes: 96 * MIB,
        loader: "test".into(),
        nodes: vec![
            NodePlan {
                node_rank: 0,
                bytes: 48 * MIB,
                layers: Some([0, 1]),
                ranges: vec![FileRange::new("a.safetensors", 0, 48 * MIB)],
            },
            NodePlan {
                node_rank: 1,
                bytes: 16 * MIB,
                layers: Some([2, 3]),
                ranges: vec![FileRange::new("b.safetensors", 16 * MIB, 16 * MIB)],
            },
        ],
    }
}

#[test]
fn a_plan_limits_warming_to_this_nodes_ranges() {
    let d = scratch();
    let a = cold_file(d.path(), "a.safetensors", 48 * MIB);
    let b = cold_file(d.path(), "b.safetensors", 48 * MIB);
    let plan = two_node_plan();
    let plan_path = d.path().join("warm-plan.json");
    plan.write(&plan_path).unwrap();

    // The rank comes from LWS's variable when no flag names it.
    let out = ferry()
        .args(["warm", d.path().to_str().unwrap(), "--json", "--plan"])
        .arg(&plan_path)
        .env_remove("NODE_RANK")
        .env("LWS_WORKER_INDEX", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bytes"], 16 * MIB);
    assert!(resident(&b, 16 * MIB, 16 * MIB) > 0.95);
    let rest = [
        resident(&a, 0, u64::MAX),
        resident(&b, 0, 16 * MIB),
        resident(&b, 32 * MIB, 16 * MIB),
    ];
    assert!(rest.iter().all(|&r| r < 0.10), "outside the plan: {rest:?}");

    // A rank the plan lacks is an error that names it, not an empty warm.
    let out = ferry()
        .args([
            "warm",
            d.path().to_str().unwrap(),
            "--node-rank",
            "5",
            "--plan",
        ])
        .arg(&plan_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("no node 5") && err.contains("2 nodes"),
        "{err}"
    );
}

#[test]
fn a_plan_without_a_rank_says_how_to_give_one() {
    let d = scratch();
    let out = ferry()
        .args(["warm", d.path().to_str().unwrap(), "--plan", "plan.json"])
        .env_remove("NODE_RANK")
        .env_remove("LWS_WORKER_INDEX")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("NODE_RANK") && err.contains("--node-rank"),
        "{err}"
    );
}

/// A valid one-tensor safetensors shard of about `len` bytes, written and evicted.
fn cold_shard(dir: &Path, name: &str, len: u64) -> (PathBuf, ferry_sharder::ManifestFile) {
    use sha2::Digest as _;
    // A header padded to 72 bytes keeps the data 8-byte aligned, as the format asks.
    let data_len = len - 8 - 72;
    let header =
        format!(r#"{{"w":{{"dtype":"U8","shape":[{data_len}],"data_offsets":[0,{data_len}]}}}}"#);
    let header = format!("{header:<72}");
    assert_eq!(header.len(), 72);
    let p = cold_file(dir, name, len);
    let mut bytes = std::fs::read(&p).unwrap();
    let mut shard = (header.len() as u64).to_le_bytes().to_vec();
    shard.extend_from_slice(header.as_bytes());
    bytes.splice(..shard.len(), shard);
    std::fs::write(&p, &bytes).unwrap();
    std::fs::File::open(&p).unwrap().sync_all().unwrap();
    residency::evict(&p).unwrap();
    let entry = ferry_sharder::ManifestFile {
        path: name.into(),
        size: len,
        hash: ferry_sharder::FileHash::Sha256(hex::encode(sha2::Sha256::digest(&bytes))),
    };
    (p, entry)
}

#[test]
fn the_sidecar_warms_only_its_nodes_plan() {
    let d = scratch();
    let (a, fa) = cold_shard(d.path(), "a.safetensors", 48 * MIB);
    let (b, fb) = cold_shard(d.path(), "b.safetensors", 48 * MIB);
    ferry_sharder::Manifest {
        selection: None,
        format: ferry_sharder::manifest::FORMAT,
        repo: "test-org/two".into(),
        source: "hf".into(),
        revision: "main".into(),
        commit: "ab".repeat(20),
        ferry_version: "test".into(),
        completed_at: "2026-01-01T00:00:00Z".into(),
        files: vec![fa, fb],
    }
    .write_atomic(d.path())
    .unwrap();
    assert!(resident(&b, 0, u64::MAX) < 0.05);
    let plan = two_node_plan();
    let plan_path = d.path().join("warm-plan.json");
    plan.write(&plan_path).unwrap();
    let out = ferry()
        .args([
            "sidecar",
            "--mode",
            "init",
            "--poll-max",
            "200ms",
            "--model-dir",
        ])
        .arg(d.path())
        .arg("--plan")
        .arg(&plan_path)
        .args(["--node-rank", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(resident(&b, 16 * MIB, 16 * MIB) > 0.95);
    // Validation read the headers at the start of each file; nothing else outside the plan.
    let rest = [
        resident(&a, MIB, 47 * MIB),
        resident(&b, MIB, 15 * MIB),
        resident(&b, 32 * MIB, 16 * MIB),
    ];
    assert!(rest.iter().all(|&r| r < 0.10), "outside the plan: {rest:?}");
}

#[test]
fn lws_group_size_alone_warms_the_whole_model() {
    // Every LWS pod has LWS_GROUP_SIZE; without --tp it must not stop the warm.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.bin"), vec![7u8; 4096]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["warm", "--json"])
        .arg(d.path())
        .env("LWS_GROUP_SIZE", "2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bytes"], 4096);
    assert!(String::from_utf8_lossy(&out.stderr).contains("warming the whole model"));
}
