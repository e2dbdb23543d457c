//! `ferry fetch --cache-dir`: the hub caches' layouts on disk (the real clients reading them are
//! in tests/python/test_hub_cache.py), kill -9 and resume into a cache, and shared contents.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hubsim::generate::Layout;
use serde_json::json;
use support::*;

const MIB: u64 = 1 << 20;

fn fetch_into_cache(hub: &Hub, cache: &Path, extra: &[&str]) -> serde_json::Value {
    let out = run(hub
        .ferry()
        .args(["fetch", REPO, "--json", "--cache-dir"])
        .arg(cache)
        .args(extra));
    assert!(out.status.success(), "{}", text(&out));
    summary(&out)
}

fn small_hub() -> Hub {
    Hub::with_config(
        |root| {
            generate(root, REPO, 4, 4 * MIB, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    )
}

#[test]
fn hf_layout_is_blobs_relative_symlinks_and_a_ref() {
    let hub = small_hub();
    let cache = tempfile::tempdir().unwrap();
    let s = fetch_into_cache(&hub, cache.path(), &[]);
    let repo = cache.path().join("models--deepseek-ai--DeepSeek-R1");
    let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    assert_eq!(
        commit,
        s["commit"].as_str().unwrap(),
        "refs/main holds the commit, no newline"
    );
    let snap = repo.join("snapshots").join(commit);
    assert_eq!(PathBuf::from(s["dir"].as_str().unwrap()), snap);
    assert_same_files(&hub.repo_dir(REPO), &snap);

    let src = hub.repo_dir(REPO);
    for f in model_files(&src) {
        let rel = f.strip_prefix(&src).unwrap();
        if rel.starts_with(".hubsim.json") {
            continue;
        }
        let link = snap.join(rel);
        let target = std::fs::read_link(&link).unwrap();
        let blob = target.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            target.is_relative(),
            "{}: {}",
            rel.display(),
            target.display()
        );
        let climbs = target
            .components()
            .take_while(|c| c.as_os_str() == "..")
            .count();
        assert_eq!(climbs, rel.components().count() + 1, "{}", target.display());
        // The blob is named as huggingface_hub names it: sha256 for LFS, git sha1 otherwise.
        let want = if std::fs::metadata(&f).unwrap().len() >= 64 * 1024 {
            hex_sha256(&std::fs::read(&f).unwrap())
        } else {
            git_sha1(&std::fs::read(&f).unwrap())
        };
        assert_eq!(blob, want, "{}", rel.display());
        assert!(repo.join("blobs").join(blob).is_file());
    }
    // No partial data anywhere the client looks; ferry's manifest in the snapshot.
    assert!(snap.join(".ferry/manifest.json").is_file());
    assert!(std::fs::read_dir(repo.join(".ferry/partial"))
        .unwrap()
        .next()
        .is_none());

    // A second run finds it complete and moves nothing.
    let again = fetch_into_cache(&hub, cache.path(), &[]);
    assert_eq!(again["bytes_downloaded"], 0);
}

#[test]
fn ms_layout_is_plain_files_named_by_revision_sharing_a_store() {
    let hub = small_hub();
    let cache = tempfile::tempdir().unwrap();
    let s = fetch_into_cache(&hub, cache.path(), &["--source", "modelscope"]);
    let repo = cache.path().join("models/deepseek-ai--DeepSeek-R1");
    let snap = repo.join("snapshots/master");
    assert_eq!(PathBuf::from(s["dir"].as_str().unwrap()), snap);
    assert_same_files(&hub.repo_dir(REPO), &snap);
    for f in model_files(&snap) {
        let md = std::fs::symlink_metadata(&f).unwrap();
        assert!(md.is_file(), "{}", f.display());
        // One link in the snapshot, one in ferry's store: no space taken twice.
        assert_eq!(md.nlink(), 2, "{}", f.display());
    }
    assert!(snap.join(".ferry/manifest.json").is_file());
}

#[test]
fn s3_sources_and_slices_are_refused_with_a_hint() {
    let cache = tempfile::tempdir().unwrap();
    let out = run(ferry()
        .args(["fetch", "s3://bucket/prefix", "--cache-dir"])
        .arg(cache.path()));
    assert!(!out.status.success());
    assert!(text(&out).contains("--to DIR"), "{}", text(&out));
    let out = run(ferry()
        .args(["fetch", REPO, "--slice", "0/2", "--cache-dir"])
        .arg(cache.path()));
    assert!(!out.status.success());
    assert!(text(&out).contains("--slice"), "{}", text(&out));
    let out = run(ferry()
        .args(["fetch", REPO, "--to", "x", "--cache-dir"])
        .arg(cache.path()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// kill -9 while shards stream: never a snapshot folder or ref before the end, never a wrong
/// blob; the next run resumes and sends little more than the model.
#[test]
fn kill_9_mid_fetch_then_resume_into_the_cache() {
    let total = 16 * MIB;
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 4, total, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    );
    let src = hub.repo_dir(REPO);
    let size: u64 = model_files(&src)
        .iter()
        .filter(|p| !p.ends_with(".hubsim.json"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    hub.faults_json(json!({"bandwidth_total_bps": 8 * MIB}));
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--deepseek-ai--DeepSeek-R1");
    let args = |c: &mut std::process::Command| {
        c.args([
            "fetch",
            REPO,
            "--quiet",
            "--chunk-size",
            "1MiB",
            "--sync-every",
            "1MiB",
            "--connections",
            "2",
        ])
        .args(["--cache-dir"])
        .arg(cache.path());
    };
    let mut cmd = hub.ferry();
    args(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while hub.stats().bytes_sent < 6 * MIB && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    assert!(
        !child.wait().unwrap().success(),
        "the fetch ended before the kill"
    );
    assert!(!repo.join("snapshots").exists() && !repo.join("refs").exists());
    for blob in std::fs::read_dir(repo.join("blobs")).unwrap() {
        let blob = blob.unwrap().path();
        let name = blob.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&blob).unwrap();
        assert!(
            name == hex_sha256(&bytes) || name == git_sha1(&bytes),
            "{name} is wrong"
        );
    }

    hub.faults_json(json!({}));
    let before = hub.stats().bytes_sent;
    let mut cmd = hub.ferry();
    args(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", text(&out));
    let resent = hub.stats().bytes_sent - before;
    // At most the 2 ranges in flight were lost.
    assert!(
        before + resent <= size + 2 * MIB,
        "sent {before} + {resent} for {size}"
    );
    let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    assert_same_files(&src, &repo.join("snapshots").join(commit));
}

fn hex_sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn git_sha1(b: &[u8]) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    hex::encode(h.finalize())
}
