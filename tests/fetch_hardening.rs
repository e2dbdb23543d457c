//! `ferry fetch` against a hostile or broken hub (issue 15): storms that end, answers that cannot
//! heal, corruption, hostile listings, links planted in the target, partial selections, a second
//! model into the same directory, and command-line values that cannot work. Each test asserts
//! the exit code, the message and, where it matters, a time bound.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use hubsim::generate::Layout;
use serde_json::json;
use support::*;

const MIB: u64 = 1 << 20;

fn hub(shards: u32, total: u64) -> Hub {
    Hub::shards(shards, total)
}

fn fetch(hub: &Hub, dir: &Path, extra: &[&str]) -> std::process::Output {
    run(hub
        .ferry()
        .args(["fetch", REPO, "--json", "--chunk-size", "1MiB", "--to"])
        .arg(dir)
        .args(extra))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shard_size(hub: &Hub, name: &str) -> u64 {
    std::fs::metadata(hub.repo_dir(REPO).join(name))
        .unwrap()
        .len()
}

#[test]
fn after_a_503_storm_ends_the_fetch_is_back_at_speed_within_seconds() {
    let hub = hub(4, 24 * MIB);
    // Each body is held to 2 MiB/s, so the connection count decides the speed: 24 MiB take
    // about 1.5 s over 8 connections and 12 s over one.
    let storm = 6;
    hub.faults_json(json!({"bandwidth_per_body_bps": 2 * MIB, "rules": [
        {"kind": "status", "status": 503, "probability": 0.7, "for_secs": storm}]}));
    let installed = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(&hub, dir.path(), &["--stall-timeout", "5s"]);
    let took = installed.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    assert!(hub.stats().statuses.get("503").copied().unwrap_or(0) > 5);
    let after = took.saturating_sub(Duration::from_secs(storm));
    eprintln!(
        "storm {storm} s, fetch done {:.1} s after it ended",
        after.as_secs_f64()
    );
    // Sleeping ranges holding their connections, jitter doubling a 30 s cap, or a controller
    // left at one connection each cost far more than this.
    assert!(
        after < Duration::from_secs(8),
        "{:.1} s after the storm ended",
        after.as_secs_f64()
    );
}

#[test]
fn a_size_that_disagrees_with_the_listing_stops_at_once_with_exit_5() {
    let hub = hub(4, 8 * MIB);
    let name = "model-00002-of-000004.safetensors";
    hub.faults_json(
        json!({"rules": [{"kind": "wrong_total", "delta": 1000, "path_contains": "model-00002"}]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // The default --retry-timeout is 10 min: only classifying it ends this fast.
    let out = fetch(&hub, dir.path(), &[]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = stderr(&out);
    let size = shard_size(&hub, name);
    assert!(
        err.contains(&format!("{name:?}"))
            && err.contains(&format!("{size} bytes"))
            && err.contains(&format!("{} bytes", size + 1000)),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(!dir.path().join(name).exists());
    assert!(!dir.path().join(".ferry/manifest.json").exists());
}

#[test]
fn shorter_206_answers_are_continued_not_retried() {
    let hub = hub(4, 8 * MIB);
    hub.faults_json(json!({"rules": [{"kind": "short_partial", "missing_bytes": 1000}]}));
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    assert!(
        hub.stats()
            .faults_fired
            .get("short_partial")
            .copied()
            .unwrap_or(0)
            > 4
    );
    // The rest of each range is asked for at once: no failure, no backoff.
    assert_eq!(summary(&out)["retries"], 0, "{}", text(&out));
}

#[test]
fn an_endpoint_with_a_scheme_ferry_does_not_speak_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(ferry()
        .args(["fetch", REPO, "--endpoint", "ftp://127.0.0.1:9/", "--to"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("scheme \"ftp\""), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn corruption_is_retried_and_the_message_says_which_side_is_at_fault() {
    let hub = hub(4, 8 * MIB);
    let name = "model-00002-of-000004.safetensors";
    // The same byte flipped on every download: the source's copy is wrong.
    hub.faults_json(
        json!({"rules": [{"kind": "corrupt", "offset": 5000, "path_contains": "model-00002"}]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(&hub, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{name:?}"))
            && err.contains("3 download(s)")
            && err.contains("the source itself serves these bytes")
            && err.contains("nothing was published"),
        "{err}"
    );
    assert!(!dir.path().join(name).exists());

    // Another byte flipped on the first download only: the downloads disagree, so the damage
    // happened on the way.
    hub.faults_json(json!({"rules": [
        {"kind": "corrupt", "offset": 5000, "path_contains": "model-00002"},
        {"kind": "corrupt", "offset": 1_500_000, "count": 1, "path_contains": "model-00002"}]}));
    let out = fetch(&hub, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        stderr(&out).contains("damaged on the way"),
        "{}",
        text(&out)
    );

    // Damage once, then clean: fixed by the second download, the model is whole.
    hub.faults_json(json!({"rules": [
        {"kind": "corrupt", "offset": 5000, "count": 1, "path_contains": "model-00002"}]}));
    let out = fetch(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
}

#[test]
fn hostile_listings_are_refused_up_front_and_never_echoed_raw() {
    let hub = hub(2, 2 * MIB);
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("model");
    let long = format!("{}.json", "n".repeat(252));
    for (extra, says) in [
        ("evil\u{1b}]0;pwned\u{7}.json", "control character"),
        ("line\nbreak.json", "control character"),
        ("\u{1b}[2Jclear.json", "control character"),
        ("bidi\u{202E}nosj.txt", "control character"),
        ("config.json", "listed more than once"),
        (
            "config.json/inner",
            "listed as a file and also as the directory",
        ),
        (long.as_str(), "longer than 255 bytes"),
    ] {
        hub.faults_json(json!({"extra_listing_paths": [extra]}));
        let out = run(hub.ferry().args(["fetch", REPO, "--to"]).arg(&dir));
        assert_eq!(out.status.code(), Some(5), "{extra:?}: {}", text(&out));
        let err = stderr(&out);
        assert!(err.contains(says), "{extra:?}: {err}");
        // Quoted and escaped: no raw escape, bell or bidi override reaches the terminal.
        assert!(
            !err.contains(['\u{1b}', '\u{7}', '\u{202E}']),
            "{extra:?}: raw control characters in {err:?}"
        );
        assert!(!dir.join(".ferry/manifest.json").exists());
        assert!(
            model_files(&dir).is_empty(),
            "{extra:?}: wrote {:?}",
            model_files(&dir)
        );
    }
}

#[test]
fn a_legal_255_byte_name_is_fetched() {
    let name = format!("{}.json", "a".repeat(250));
    assert_eq!(name.len(), 255);
    let n = name.clone();
    let hub = Hub::with(move |root| {
        let repo = generate(root, REPO, 2, 2 * MIB, Layout::R1);
        std::fs::write(repo.join(&n), b"{}").unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub.ferry().args(["fetch", REPO, "--to"]).arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    assert!(dir.path().join(&name).exists());
}

#[test]
fn a_link_planted_in_the_directory_is_never_written_or_verified_through() {
    let hub = Hub::with(|root| {
        let repo = generate(root, REPO, 2, 2 * MIB, Layout::R1);
        std::fs::create_dir_all(repo.join("extra")).unwrap();
        std::fs::write(repo.join("extra/adapter.json"), b"{\"r\": 8}").unwrap();
    });
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("model");
    let elsewhere = outer.path().join("elsewhere");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("extra")).unwrap();
    let out = run(hub.ferry().args(["fetch", REPO, "--to"]).arg(&dir));
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("\"extra/adapter.json\"") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(!elsewhere.join("adapter.json").exists());
    assert!(!dir.join(".ferry/manifest.json").exists());

    // Without the link the fetch completes; a link planted afterwards, leading out of the
    // directory to a copy of the same bytes, fails verification.
    std::fs::remove_file(dir.join("extra")).unwrap();
    let out = run(hub.ferry().args(["fetch", REPO, "--to"]).arg(&dir));
    assert!(out.status.success(), "{}", text(&out));
    let verified = run(ferry().arg("verify").arg(&dir));
    assert!(verified.status.success(), "{}", text(&verified));
    std::fs::rename(
        dir.join("extra/adapter.json"),
        elsewhere.join("adapter.json"),
    )
    .unwrap();
    std::fs::remove_dir(dir.join("extra")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("extra")).unwrap();
    let verified = run(ferry().arg("verify").arg(&dir));
    assert_eq!(verified.status.code(), Some(5), "{}", text(&verified));
    assert!(
        stderr(&verified).contains("outside the model directory"),
        "{}",
        text(&verified)
    );
}

fn gate(dir: &Path, extra: &[&str]) -> std::process::Output {
    run(ferry()
        .args([
            "sidecar",
            "--mode",
            "init",
            "--timeout",
            "20s",
            "--model-dir",
        ])
        .arg(dir)
        .args(extra))
}

#[test]
fn a_partial_selection_is_recorded_and_keeps_the_gate_shut() {
    let hub = hub(3, 3 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(&hub, dir.path(), &["--include", "*.json"]);
    assert!(out.status.success(), "{}", text(&out));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(".ferry/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["selection"]["include"], json!(["*.json"]));
    let left: Vec<&str> = m["selection"]["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        left.contains(&"model-00001-of-000003.safetensors"),
        "{left:?}"
    );

    let out = gate(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("partial selection") && err.contains("model-00001-of-000003.safetensors"),
        "{err}"
    );
    let status = run(ferry().arg("status").arg(dir.path()));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("partial selection"),
        "{}",
        text(&status)
    );
    let verified = run(ferry().arg("verify").arg(dir.path()));
    assert!(
        stderr(&verified).contains("partial selection")
            || String::from_utf8_lossy(&verified.stdout).contains("partial selection"),
        "{}",
        text(&verified)
    );
    // Intended: the flag opens it.
    let out = gate(dir.path(), &["--allow-partial"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A selection that leaves out only what engines do not read opens the gate.
    let whole = tempfile::tempdir().unwrap();
    let out = fetch(&hub, whole.path(), &["--exclude", "README.md"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = gate(whole.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_second_model_into_the_same_directory_is_refused_or_replaces_the_first_cleanly() {
    let other = "acme/Other-3B";
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 3, 3 * MIB, Layout::R1);
            generate(root, other, 2, 2 * MIB, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    );
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let b = |extra: &[&str]| {
        run(hub
            .ferry()
            .args(["fetch", other, "--to"])
            .arg(dir.path())
            .args(extra))
    };
    let out = b(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(REPO) && err.contains(other) && err.contains("--replace"),
        "{err}"
    );
    // Refused before anything changed: A is still whole and verified.
    assert!(dir.path().join(".ferry/manifest.json").exists());
    assert_same_files(&hub.repo_dir(REPO), dir.path());

    let out = b(&["--replace"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(other), dir.path());
    assert!(!dir
        .path()
        .join("model-00001-of-000003.safetensors")
        .exists());
    let verified = run(ferry().arg("verify").arg(dir.path()));
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        !stderr(&verified).contains("extra file")
            && !String::from_utf8_lossy(&verified.stdout).contains("extra file"),
        "{}",
        text(&verified)
    );
}

#[test]
fn a_new_manifest_is_never_written_over_a_shard_corrupted_in_place() {
    let hub = hub(3, 6 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    // A resumed run must write the manifest anew; meanwhile one byte of a shard rotted, with
    // its size and mtime unchanged.
    std::fs::remove_file(dir.path().join(".ferry/manifest.json")).unwrap();
    let name = "model-00002-of-000003.safetensors";
    let path = dir.path().join(name);
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    hub.handle.reset_stats();
    let out = fetch(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    let sent = hub.stats().bytes_sent;
    assert!(
        sent >= shard_size(&hub, name) && sent < 6 * MIB,
        "sent {sent}"
    );
}

#[test]
fn values_that_cannot_work_are_usage_errors_with_the_allowed_range() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--jobs", "0", "from 1 to 256"),
        ("--connections", "0", "from 1 to 1024"),
        ("--jobs", "many", "from 1 to 256"),
        ("--chunk-size", "512KiB", "under 1MiB"),
        ("--stall-timeout", "0s", "is zero"),
        ("--retry-timeout", "0s", "is zero"),
    ] {
        let out = run(ferry()
            .args(["fetch", REPO, flag, value, "--to"])
            .arg(dir.path()));
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", text(&out));
        assert!(
            stderr(&out).contains(says),
            "{flag} {value}: {}",
            text(&out)
        );
    }
    // Mistakes found after parsing are usage errors too (exit 2, not 1).
    let hub = hub(2, 2 * MIB);
    let bad_glob = fetch(&hub, dir.path(), &["--include", "[oops"]);
    assert_eq!(bad_glob.status.code(), Some(2), "{}", text(&bad_glob));
    let outside_a_job = run(hub
        .ferry()
        .env_remove("JOB_COMPLETION_INDEX")
        .args(["fetch", REPO, "--slices", "2", "--to"])
        .arg(dir.path()));
    assert_eq!(
        outside_a_job.status.code(),
        Some(2),
        "{}",
        text(&outside_a_job)
    );
    let bad_index = run(hub
        .ferry()
        .env("JOB_COMPLETION_INDEX", "x")
        .args(["fetch", REPO, "--slices", "2", "--to"])
        .arg(dir.path()));
    assert_eq!(bad_index.status.code(), Some(2), "{}", text(&bad_index));
}
