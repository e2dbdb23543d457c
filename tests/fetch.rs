//! `ferry fetch` end to end against hubsim: both protocols, selection, revisions, resume,
//! locking, hostile names, token handling and every fault knob.

mod support;

use std::path::Path;

use hubsim::generate::Layout;
use serde_json::json;
use support::*;

const MIB: u64 = 1 << 20;

/// 163 shards, shards served as LFS (sha256) and small files as git blobs (sha1).
fn r1_hub(total: u64) -> Hub {
    Hub::with_config(
        |root| {
            generate(root, REPO, 163, total, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    )
}

/// A few large shards, so files split into many ranges.
fn big_shard_hub(shards: u32, total: u64) -> Hub {
    Hub::with_config(
        |root| {
            generate(root, REPO, shards, total, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    )
}

fn fetch_json(hub: &Hub, dir: &Path, extra: &[&str]) -> std::process::Output {
    run(hub
        .ferry()
        .args(["fetch", REPO, "--json", "--to"])
        .arg(dir)
        .args(extra))
}

#[test]
fn both_protocols_fetch_the_163_shard_model_byte_exact() {
    let hub = r1_hub(24 * MIB);
    let src = hub.repo_dir(REPO);
    for source in ["hf", "modelscope"] {
        let dir = tempfile::tempdir().unwrap();
        let out = fetch_json(&hub, dir.path(), &["--source", source]);
        assert!(out.status.success(), "{}", text(&out));
        assert_same_files(&src, dir.path());
        let s = summary(&out);
        assert_eq!(s["files"].as_array().unwrap().len(), 169);
        let m = manifest(dir.path());
        assert_eq!(m["files"].as_array().unwrap().len(), 169);
        assert_eq!(m["source"], source);
        assert_eq!(m["commit"], s["commit"]);
        let shards = model_files(dir.path())
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".safetensors"))
            .count();
        assert_eq!(shards, 163);
        // Nothing partial is left beside the model.
        assert_eq!(
            std::fs::read_dir(dir.path().join(".ferry/partial"))
                .unwrap()
                .count(),
            0
        );
    }
}

#[test]
fn rerun_on_a_complete_directory_transfers_nothing() {
    let hub = r1_hub(8 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let out = fetch_json(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    hub.handle.reset_stats();
    let out = fetch_json(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let s = summary(&out);
    assert_eq!(s["bytes_downloaded"], 0);
    assert_eq!(hub.stats().bytes_sent, 0);
    // Without the manifest, files are found intact through their publish records.
    std::fs::remove_file(dir.path().join(".ferry/manifest.json")).unwrap();
    let out = fetch_json(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(hub.stats().bytes_sent, 0);
    assert!(dir.path().join(".ferry/manifest.json").exists());
}

#[test]
fn files_left_by_another_downloader_are_verified_not_refetched() {
    let hub = r1_hub(8 * MIB);
    let dir = tempfile::tempdir().unwrap();
    // As if huggingface_hub had put the files there: same bytes, no ferry state.
    for f in model_files(&hub.repo_dir(REPO)) {
        let rel = f.strip_prefix(hub.repo_dir(REPO)).unwrap();
        if rel.starts_with(".hubsim.json") {
            continue;
        }
        std::fs::create_dir_all(dir.path().join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&f, dir.path().join(rel)).unwrap();
    }
    // ...except one shard, which is corrupt.
    let victim = dir.path().join("model-00007-of-000163.safetensors");
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    let out = fetch_json(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    let s = summary(&out);
    let downloaded: Vec<&str> = s["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["result"] == "downloaded")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(downloaded, vec!["model-00007-of-000163.safetensors"]);
}

#[test]
fn include_exclude_and_revisions() {
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 4, 2 * MIB, Layout::R1);
            // A `dev` branch whose config differs.
            let dev = root.join("trees/dev");
            std::fs::create_dir_all(&dev).unwrap();
            for f in ["config.json", "README.md"] {
                std::fs::copy(root.join(REPO).join(f), dev.join(f)).unwrap();
            }
            std::fs::write(dev.join("config.json"), br#"{"dev": true}"#).unwrap();
            std::fs::write(
                root.join(REPO).join(".hubsim.json"),
                json!({"refs": {"dev": "trees/dev"}}).to_string(),
            )
            .unwrap();
        },
        |_| {},
    );
    let dir = tempfile::tempdir().unwrap();
    let out = fetch_json(
        &hub,
        dir.path(),
        &["--include", "*.json", "--exclude", "tokenizer*"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut names: Vec<String> = model_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "config.json",
            "generation_config.json",
            "model.safetensors.index.json"
        ]
    );
    let main_commit = summary(&out)["commit"].as_str().unwrap().to_string();

    for source in ["hf", "modelscope"] {
        let dev_dir = tempfile::tempdir().unwrap();
        let out = fetch_json(
            &hub,
            dev_dir.path(),
            &["--revision", "dev", "--source", source],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            std::fs::read(dev_dir.path().join("config.json")).unwrap(),
            br#"{"dev": true}"#
        );
        assert_ne!(summary(&out)["commit"].as_str().unwrap(), main_commit);
        assert!(!dev_dir.path().join("model.safetensors.index.json").exists());

        let by_commit = tempfile::tempdir().unwrap();
        let out = fetch_json(
            &hub,
            by_commit.path(),
            &["--revision", &main_commit, "--source", source],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert_same_files(&hub.repo_dir(REPO), by_commit.path());
    }
}

#[test]
fn missing_repo_revision_and_nothing_selected_have_clear_errors() {
    let hub = r1_hub(2 * MIB);
    let dir = tempfile::tempdir().unwrap();
    for (source, args, code, needle) in [
        (
            "hf",
            vec!["--revision", "nope"],
            4,
            "revision \"nope\" not found",
        ),
        (
            "modelscope",
            vec!["--revision", "nope"],
            4,
            "revision \"nope\" not found",
        ),
        ("hf", vec!["--include", "*.gguf"], 4, "no file of"),
    ] {
        let out = run(hub
            .ferry()
            .args(["fetch", REPO, "--source", source, "--to"])
            .arg(dir.path())
            .args(&args));
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{}",
            text(&out)
        );
    }
    for source in ["hf", "modelscope"] {
        let out = run(hub
            .ferry()
            .args(["fetch", "nobody/nothing", "--source", source, "--to"])
            .arg(dir.path()));
        assert!(
            matches!(out.status.code(), Some(3) | Some(4)),
            "{}",
            text(&out)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("nobody/nothing"));
    }
    assert!(!dir.path().join(".ferry/manifest.json").exists());
}

#[test]
fn private_and_gated_repos_need_the_right_token_and_it_never_leaks() {
    const GOOD: &str = "hf_good_token_0123456789";
    const OTHER: &str = "hf_other_token_9876543210";
    let hub = Hub::with_config(
        |root| {
            for (repo, cfg) in [
                (
                    "org/private",
                    json!({"private": true, "authorized_tokens": [GOOD]}),
                ),
                (
                    "org/gated",
                    json!({"gated": true, "authorized_tokens": [GOOD]}),
                ),
            ] {
                generate(root, repo, 2, 2 * MIB, Layout::Distill);
                std::fs::write(root.join(repo).join(".hubsim.json"), cfg.to_string()).unwrap();
            }
        },
        |cfg| {
            cfg.tokens = vec![GOOD.into(), OTHER.into()];
            cfg.lfs_threshold = 64 * 1024;
        },
    );
    // Every LFS file goes through a redirect to another origin, like the hub's CDN.
    hub.faults_json(json!({"rules": [{"kind": "redirect"}]}));
    for source in ["hf", "modelscope"] {
        let token_env = if source == "hf" {
            "HF_TOKEN"
        } else {
            "MODELSCOPE_API_TOKEN"
        };
        for repo in ["org/private", "org/gated"] {
            let dir = tempfile::tempdir().unwrap();
            // No token.
            let out = run(hub
                .ferry()
                .args(["fetch", repo, "--source", source, "--to"])
                .arg(dir.path()));
            // Without a token a gated repo asks for one (3); so does a private ModelScope
            // repo, while Hugging Face answers 401 alike for a private and a missing repo, which
            // huggingface_hub (and ferry) take as not found (4), with a hint about tokens.
            let no_token = if source == "hf" && repo == "org/private" {
                4
            } else {
                3
            };
            assert_eq!(
                out.status.code(),
                Some(no_token),
                "{repo} {source} without token: {}",
                text(&out)
            );
            // A valid token without access.
            let out = run(hub
                .ferry()
                .env(token_env, OTHER)
                .args(["fetch", repo, "--source", source, "--to"])
                .arg(dir.path()));
            // With a token that has no access, a gated repo says so (3) and a private one
            // looks missing, as on the real hubs (4).
            let expected = if repo == "org/gated" { 3 } else { 4 };
            assert_eq!(
                out.status.code(),
                Some(expected),
                "{repo} {source} other token: {}",
                text(&out)
            );
            assert!(!text(&out).contains(OTHER));
            // The right token, with the most verbose logs.
            let out = run(hub
                .ferry()
                .env(token_env, GOOD)
                .args(["-vv", "fetch", repo, "--json", "--source", source, "--to"])
                .arg(dir.path()));
            assert!(out.status.success(), "{repo} {source}: {}", text(&out));
            assert!(!text(&out).contains(GOOD), "token printed");
            assert_same_files(&hub.repo_dir(repo), dir.path());
        }
    }
    // The file `hf auth login` writes is used when no variable is set, and --token beats the
    // environment.
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("token"), format!("{GOOD}\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub
        .ferry()
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env("HF_HOME", home.path())
        .args(["fetch", "org/gated", "--to"])
        .arg(dir.path()));
    assert!(out.status.success(), "token file: {}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub
        .ferry()
        .env("HF_TOKEN", OTHER)
        .args(["fetch", "org/gated", "--token", GOOD, "--to"])
        .arg(dir.path()));
    assert!(
        out.status.success(),
        "--token over HF_TOKEN: {}",
        text(&out)
    );
    let stats = hub.stats();
    assert!(
        stats.paths.keys().any(|p| p.starts_with("/_cdn")),
        "no redirect happened: {:?}",
        stats.paths.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        stats.cdn_requests_with_auth, 0,
        "token sent to the CDN origin"
    );
}

#[test]
fn a_wrong_token_is_an_auth_error() {
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 2, MIB, Layout::Distill);
        },
        |cfg| cfg.tokens = vec!["hf_valid".into()],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub
        .ferry()
        .args(["fetch", REPO, "--token", "hf_wrong_secret", "--to"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!text(&out).contains("hf_wrong_secret"));
}

#[test]
fn a_second_fetcher_on_the_same_directory_is_refused() {
    let hub = big_shard_hub(4, 8 * MIB);
    // Slow enough that the first fetch is still running when the second starts.
    hub.faults_json(json!({"bandwidth_total_bps": 4 * MIB}));
    let dir = tempfile::tempdir().unwrap();
    let mut first = hub
        .ferry()
        .args(["fetch", REPO, "--quiet", "--to"])
        .arg(dir.path())
        .spawn()
        .unwrap();
    let lock = dir.path().join(".ferry/lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "first fetch never locked"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = run(hub.ferry().args(["fetch", REPO, "--to"]).arg(dir.path()));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("\"pid\":{}", first.id())),
        "{}",
        text(&out)
    );
    assert!(first.wait().unwrap().success());
    assert_same_files(&hub.repo_dir(REPO), dir.path());
}

/// Runs a fetch with the given fault set and expects a correct model with some retries.
fn survives(faults: serde_json::Value, extra: &[&str]) -> serde_json::Value {
    let hub = big_shard_hub(4, 12 * MIB);
    hub.faults_json(faults.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--chunk-size", "1MiB", "--stall-timeout", "2s"];
    args.extend_from_slice(extra);
    let out = fetch_json(&hub, dir.path(), &args);
    assert!(out.status.success(), "{faults}: {}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    let s = summary(&out);
    let fired: u64 = hub.stats().faults_fired.values().sum();
    assert!(fired > 0, "{faults}: fault never fired");
    s
}

#[test]
fn resets_truncations_and_server_errors_are_retried() {
    for rule in [
        json!({"kind": "reset", "after_bytes": 300_000, "count": 3}),
        json!({"kind": "truncate", "after_bytes": 100_000, "count": 3}),
        json!({"kind": "status", "status": 500, "count": 3}),
        json!({"kind": "status", "status": 503, "count": 2}),
        json!({"kind": "rate_limit", "retry_after_secs": 1, "count": 2}),
        json!({"kind": "status", "status": 429, "count": 2, "api": true}),
    ] {
        let s = survives(json!({"rules": [rule.clone()]}), &[]);
        // API calls retry before the transfer starts; their retries are not in the summary.
        if rule.get("api").is_none() {
            assert!(s["retries"].as_u64().unwrap() > 0, "{rule}: no retries");
        }
    }
}

#[test]
fn latency_and_an_over_limit_throttle_still_end_in_a_correct_model() {
    survives(
        json!({"rules": [{"kind": "latency", "ms": 300, "count": 20}]}),
        &[],
    );
    survives(
        // The total cap keeps bodies streaming long enough for more than two to overlap.
        json!({"bandwidth_total_bps": 8 * MIB,
               "body_limit": {"max_bodies": 2, "mode": "throttle", "throttle_bps": 2 * MIB}}),
        &["--connections", "6"],
    );
}

#[test]
fn a_stalled_connection_is_dropped_and_resumed() {
    let s = survives(
        json!({"rules": [{"kind": "stall", "after_bytes": 200_000, "secs": 60, "count": 2}]}),
        &[],
    );
    assert!(s["retries"].as_u64().unwrap() >= 2);
}

#[test]
fn a_corrupt_byte_is_caught_and_the_file_downloaded_again() {
    // Offset inside the first shard's data; the second download is clean.
    let s = survives(
        json!({"rules": [{"kind": "corrupt", "offset": 5000, "count": 1,
                          "path_contains": "model-00001"}]}),
        &[],
    );
    assert!(s["bytes_downloaded"].as_u64().unwrap() > 12 * MIB);
}

#[test]
fn a_source_that_always_corrupts_fails_without_publishing() {
    let hub = big_shard_hub(4, 8 * MIB);
    hub.faults_json(json!({"rules": [{"kind": "corrupt", "offset": 5000,
                                      "path_contains": "model-00002"}]}));
    let dir = tempfile::tempdir().unwrap();
    let out = fetch_json(&hub, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("model-00002-of-000004.safetensors"));
    assert!(!dir
        .path()
        .join("model-00002-of-000004.safetensors")
        .exists());
    assert!(!dir.path().join(".ferry/manifest.json").exists());
}

#[test]
fn expired_signed_urls_are_re_resolved() {
    // Redirects to signed URLs that live 1 s, and a link slow enough that ranges outlive them.
    let s = survives(
        json!({"cdn_expiry_secs": 1, "bandwidth_total_bps": 6 * MIB,
               "rules": [{"kind": "redirect"}]}),
        &["--connections", "4"],
    );
    assert!(s["retries"].as_u64().unwrap() > 0, "no expiry seen: {s}");
}

#[test]
fn a_full_disk_is_a_clear_error_and_resumes_once_space_is_freed() {
    let hub = big_shard_hub(4, 12 * MIB);
    let mnt = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mounting a small tmpfs needs root (CI runs as root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(mnt.path());
    let dir = mnt.path().join("model");

    // Too little space up front: refused before any transfer.
    let filler = mnt.path().join("filler");
    std::fs::write(&filler, vec![1u8; 10 << 20]).unwrap();
    let out = run(hub.ferry().args(["fetch", REPO, "--to"]).arg(&dir));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not enough space"));

    // Space runs out mid-way: the check passes, then the filler grows while bytes arrive.
    std::fs::remove_file(&filler).unwrap();
    hub.faults_json(json!({"bandwidth_total_bps": 8 * MIB}));
    let child = hub
        .ferry()
        .args(["fetch", REPO, "--quiet", "--chunk-size", "1MiB", "--to"])
        .arg(&dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = std::fs::write(&filler, vec![1u8; 15 << 20]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("disk full"),
        "{}",
        text(&out)
    );
    assert!(!dir.join(".ferry/manifest.json").exists());

    std::fs::remove_file(&filler).unwrap();
    hub.faults_json(json!({}));
    hub.handle.reset_stats();
    let out = fetch_json(&hub, &dir, &["--chunk-size", "1MiB"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), &dir);
    assert!(
        hub.stats().bytes_sent < 12 * MIB,
        "resume re-sent everything: {}",
        hub.stats().bytes_sent
    );
}

#[test]
fn adaptive_connections_back_off_from_a_server_that_rejects_many() {
    let hub = big_shard_hub(8, 32 * MIB);
    // More than two bodies at once are answered 429, like a CDN throttling one client; a
    // bandwidth cap keeps bodies streaming long enough to overlap.
    hub.faults_json(json!({"bandwidth_total_bps": 8 * MIB,
        "body_limit": {"max_bodies": 2, "mode": "reject", "retry_after_secs": 1}}));
    let rejected = |extra: &[&str]| -> u64 {
        hub.handle.reset_stats();
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--chunk-size", "1MiB"];
        args.extend_from_slice(extra);
        let out = fetch_json(&hub, dir.path(), &args);
        assert!(out.status.success(), "{extra:?}: {}", text(&out));
        assert_same_files(&hub.repo_dir(REPO), dir.path());
        let stats = hub.stats();
        eprintln!(
            "{extra:?}: {:?} in {} s, max bodies {}",
            stats.statuses,
            summary(&out)["seconds"],
            stats.max_concurrent_bodies
        );
        stats.statuses.get("429").copied().unwrap_or(0)
    };
    // Two fetches each: one fetch's count varies by half (fixed 16: 112-207 rejections).
    let fixed = rejected(&["--connections", "16"]) + rejected(&["--connections", "16"]);
    let adaptive = rejected(&[]) + rejected(&[]);
    eprintln!("429 answers: fixed 16 connections {fixed}, adaptive {adaptive}");
    // The controller returns to its pre-throttle level after a clean window and once (so a
    // 503 storm that ends costs no speed): against this server that return costs rejections,
    // so it is asked for a fifth fewer than a fixed 16, not half (measured here: 0.25-0.73 of
    // fixed per fetch).
    assert!(
        adaptive * 5 < fixed * 4,
        "adaptive ({adaptive} rejections) did not back off compared with 16 fixed ({fixed})"
    );
}

#[test]
fn a_hub_listing_hostile_names_is_refused_and_nothing_escapes() {
    let hub = r1_hub(2 * MIB);
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("model");
    for (source, hostile) in [
        ("hf", "../escaped.json"),
        ("modelscope", "../escaped.json"),
        ("hf", "/tmp/ferry-absolute.json"),
        ("hf", "sub/../../escaped.json"),
    ] {
        hub.faults_json(json!({"extra_listing_paths": [hostile]}));
        let out = run(hub
            .ferry()
            .args(["fetch", REPO, "--source", source, "--to"])
            .arg(&dir));
        assert_eq!(out.status.code(), Some(5), "{hostile}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refusing file name") && err.contains(hostile),
            "{err}"
        );
        assert!(!outer.path().join("escaped.json").exists());
        assert!(!Path::new("/tmp/ferry-absolute.json").exists());
        assert!(!dir.join(".ferry/manifest.json").exists());
    }
    // Excluding the hostile entry is the way out, and then the model is fetched whole.
    hub.faults_json(json!({"extra_listing_paths": ["../escaped.json"]}));
    let out = run(hub
        .ferry()
        .args(["fetch", REPO, "--exclude", "../*", "--to"])
        .arg(&dir));
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), &dir);
}

#[test]
fn a_checkpoint_whose_index_disagrees_with_its_shards_is_not_committed() {
    let hub = Hub::with_config(
        |root| {
            let repo = generate(root, REPO, 2, 2 * MIB, Layout::R1);
            let path = repo.join("model.safetensors.index.json");
            let mut index: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            index["weight_map"]["model.layers.99.mlp.bogus.weight"] =
                json!("model-00001-of-000002.safetensors");
            std::fs::write(&path, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    );
    let dir = tempfile::tempdir().unwrap();
    let out = fetch_json(&hub, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not loadable") && err.contains("model.layers.99.mlp.bogus.weight"),
        "{err}"
    );
    assert!(!dir.path().join(".ferry/manifest.json").exists());
    // The bytes are as published and kept: a second run transfers nothing and says the same.
    let sent = hub.stats().bytes_sent;
    let again = fetch_json(&hub, dir.path(), &[]);
    assert_eq!(again.status.code(), Some(5), "{}", text(&again));
    assert!(hub.stats().bytes_sent - sent < 64 * 1024);
    // A deliberate partial selection is not a checkpoint: the same findings are only warnings.
    let part = tempfile::tempdir().unwrap();
    let out = fetch_json(&hub, part.path(), &["--include", "*.json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(part.path().join(".ferry/manifest.json").exists());
}

#[test]
fn a_server_that_keeps_failing_is_given_up_on_after_the_retry_timeout() {
    let hub = big_shard_hub(2, 4 * MIB);
    hub.faults_json(json!({"rules": [{"kind": "status", "status": 503,
                                      "path_contains": "model-00002"}]}));
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = fetch_json(&hub, dir.path(), &["--retry-timeout", "3s"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gave up") && err.contains("model-00002") && err.contains("resumes"),
        "{err}"
    );
    assert!(
        took < std::time::Duration::from_secs(60),
        "not bounded: {took:?}"
    );
    assert!(!dir.path().join(".ferry/manifest.json").exists());
    assert!(!dir
        .path()
        .join("model-00002-of-000002.safetensors")
        .exists());
    // The other shard was published and is reused once the server recovers.
    hub.faults_json(json!({}));
    hub.handle.reset_stats();
    let out = fetch_json(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    let second = std::fs::metadata(hub.repo_dir(REPO).join("model-00002-of-000002.safetensors"))
        .unwrap()
        .len();
    let sent = hub.stats().bytes_sent;
    assert!(
        sent <= second + 64 * 1024,
        "re-sent the first shard: {sent}"
    );
}
