//! `ferry fetch` against hubsim behaving like the real hubs (`Quirks`, hub-protocols.md §2.8):
//! ModelScope without commit ids, per-file revisions, names-only revisions, the listing 403, the
//! 3000-entry cap, field variants and small files that ignore Range; Hugging Face's RateLimit
//! headers, API 429s, relative 307s, the CDN redirect (no token to the other origin) and gzip.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use hubsim::generate::Layout;
use hubsim::serve::{Quirks, RequestRecord};
use serde_json::json;
use support::*;

const MIB: u64 = 1 << 20;

/// A small R1-layout repo (a few shards) on a hub with `quirks`.
fn hub_with(quirks: Quirks) -> Hub {
    Hub::with_config(
        |root| {
            generate(root, REPO, 3, 3 * MIB, Layout::R1);
        },
        |cfg| cfg.faults.quirks = quirks,
    )
}

fn fetch(hub: &Hub, dir: &Path, extra: &[&str]) -> Output {
    run(hub
        .ferry()
        .args(["fetch", REPO, "--json", "--to"])
        .arg(dir)
        .args(extra))
}

fn is_hex40(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `Revision=` of every ModelScope request in the log.
fn revisions_sent(log: &[RequestRecord]) -> Vec<String> {
    log.iter()
        .filter(|r| r.path.starts_with("/api/v1/"))
        .filter_map(|r| {
            r.path
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("Revision="))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn modelscope_without_commit_ids_pins_by_listing_and_survives_the_listing_403() {
    let hub = hub_with(Quirks::realistic());
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(&hub, dir.path(), &["--source", "modelscope"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    let m = manifest(dir.path());
    let pin = m["commit"].as_str().unwrap();
    // Pinned by the listing's content, said so in the manifest, never a guessed commit id.
    assert!(pin.starts_with("listing:") && pin.len() == 8 + 64, "{pin}");
    assert_eq!(summary(&out)["commit"], m["commit"]);
    assert_eq!(m["revision"], "master");
    let log = hub.handle.requests();
    let sent = revisions_sent(&log);
    assert!(!sent.is_empty());
    assert!(
        sent.iter().all(|r| r == "master"),
        "only the branch name may be sent: {sent:?}"
    );
    assert!(log.iter().all(|r| r.status != 404), "{log:?}");

    // The hub now answers the next listing with a 403 (the realistic skip 1, count 1): the
    // re-run retries it, finds the same listing, so the same pin, and downloads nothing.
    hub.handle.reset_stats();
    let out = fetch(&hub, dir.path(), &["--source", "modelscope"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(summary(&out)["bytes_downloaded"], 0);
    assert_eq!(summary(&out)["commit"], pin);
    let listings: Vec<u16> = hub
        .handle
        .requests()
        .iter()
        .filter(|r| r.path.contains("/repo/files"))
        .map(|r| r.status)
        .collect();
    assert_eq!(listings, vec![403, 200], "the 403 was retried, once");
}

#[test]
fn a_commit_id_where_modelscope_takes_names_only_is_a_clear_not_found() {
    let hub = hub_with(Quirks::realistic());
    let dir = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let out = fetch(
        &hub,
        dir.path(),
        &["--source", "modelscope", "--revision", commit],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains(commit), "{}", text(&out));
    assert!(is_hex40(commit));
}

#[test]
fn a_moved_branch_is_refused_against_the_pin_of_a_slice() {
    let hub = hub_with(Quirks::realistic());
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(
        &hub,
        dir.path(),
        &["--source", "modelscope", "--slice", "0/2"],
    );
    assert!(out.status.success(), "{}", text(&out));
    // The branch moves: one file changes; the second slice must not mix the two states.
    std::fs::write(hub.repo_dir(REPO).join("README.md"), "moved\n").unwrap();
    let out = fetch(
        &hub,
        dir.path(),
        &["--source", "modelscope", "--slice", "1/2"],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        text(&out).contains("changed since it was pinned"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_small_file_answered_200_to_a_resume_is_rewritten_from_byte_zero() {
    let mut quirks = Quirks::realistic();
    quirks.ms_listing_403 = None;
    let hub = hub_with(quirks);
    // The first body of tokenizer.json breaks after 1000 bytes; the resume asks for bytes
    // 1000-, and the service answers 200 with the whole file.
    hub.faults_json(json!({
        "quirks": hub.handle.faults().quirks,
        "rules": [{"kind": "reset", "after_bytes": 1000, "count": 1, "path_contains": "tokenizer.json"}],
    }));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = fetch(
        &hub,
        dir.path(),
        &["--source", "modelscope", "--retry-timeout", "20s"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    let log = hub.handle.requests();
    let tok: Vec<&RequestRecord> = log
        .iter()
        .filter(|r| r.path.contains("FilePath=tokenizer.json"))
        .collect();
    assert!(tok.len() >= 2, "{tok:?}");
    assert!(
        tok.iter().any(|r| r
            .range
            .as_deref()
            .is_some_and(|x| !x.starts_with("bytes=0-"))
            && r.status == 200),
        "a resume was answered 200: {tok:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Writes `n` one-line files under `root/REPO/dir/`.
fn many_files(root: &Path, dir: &str, n: usize) {
    let d = root.join(REPO).join(dir);
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..n {
        std::fs::write(d.join(format!("{i:04}.txt")), format!("{i}\n")).unwrap();
    }
}

#[test]
fn the_3000_entry_cap_is_walked_per_directory_so_nothing_is_dropped() {
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 2, 2 * MIB, Layout::R1);
            many_files(root, "extra/a", 1600);
            many_files(root, "extra/b", 1500);
        },
        |cfg| cfg.faults.quirks.ms_listing_cap = Some(3000),
    );
    let dir = tempfile::tempdir().unwrap();
    // The last files in path order are the ones a truncated listing drops.
    let out = fetch(
        &hub,
        dir.path(),
        &["--source", "modelscope", "--include", "extra/b/14*"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(summary(&out)["files"].as_array().unwrap().len(), 100);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("extra/b/1499.txt")).unwrap(),
        "1499\n"
    );
    let roots: Vec<String> = hub
        .handle
        .requests()
        .iter()
        .filter(|r| r.path.contains("/repo/files"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        roots.iter().any(|p| p.contains("Root=extra%2Fb")),
        "{roots:?}"
    );
}

#[test]
fn a_listing_that_cannot_be_proven_complete_is_an_error_not_a_short_manifest() {
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 2, 2 * MIB, Layout::R1);
            many_files(root, "many", 3000);
        },
        |cfg| cfg.faults.quirks.ms_listing_cap = Some(3000),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(&hub, dir.path(), &["--source", "modelscope"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        text(&out).contains("cannot be proven complete"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join(".ferry/manifest.json").exists());
    assert_eq!(hub.stats().bytes_sent, 0, "nothing was downloaded");
}

#[test]
fn every_listing_shape_the_modelscope_client_accepts_is_accepted() {
    for variants in [
        json!(["lowercase_keys"]),
        json!(["name_only"]),
        json!(["bare_list"]),
        json!(["empty_sha256"]),
        json!(["lowercase_keys", "name_only", "bare_list", "empty_sha256"]),
    ] {
        let quirks: Quirks =
            serde_json::from_value(json!({ "ms_listing_variants": variants })).unwrap();
        let hub = hub_with(quirks);
        let dir = tempfile::tempdir().unwrap();
        let out = fetch(&hub, dir.path(), &["--source", "modelscope"]);
        assert!(out.status.success(), "{variants}: {}", text(&out));
        assert_same_files(&hub.repo_dir(REPO), dir.path());
        let m = manifest(dir.path());
        for f in m["files"].as_array().unwrap() {
            let sha = f["hash"]["sha256"].as_str().unwrap_or_default();
            assert_eq!(sha.len(), 64, "{variants}: {f}");
        }
    }
}

#[test]
fn informational_ratelimit_headers_never_stretch_a_retry() {
    let quirks: Quirks = serde_json::from_value(json!({"hf_ratelimit_headers": true})).unwrap();
    let hub = hub_with(quirks);
    hub.faults_json(json!({
        "quirks": {"hf_ratelimit_headers": true},
        "rules": [{"kind": "status", "status": 502, "count": 2, "path_contains": "safetensors"}],
    }));
    let dir = tempfile::tempdir().unwrap();
    // Every answer says `RateLimit: "resolvers";r=2999;t=172`: not a limit, so the two 502s
    // are retried at once, not after 172 s.
    let (out, took) = run_within(
        hub.ferry()
            .args(["fetch", REPO, "--json", "--to"])
            .arg(dir.path()),
        Duration::from_secs(90),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_same_files(&hub.repo_dir(REPO), dir.path());
}

#[test]
fn an_api_429_is_waited_out_as_the_hub_asks() {
    let quirks: Quirks = serde_json::from_value(json!({
        "hf_ratelimit_headers": true,
        "hf_api_429": {"count": 2, "secs": 2, "calls": "all"},
    }))
    .unwrap();
    let hub = hub_with(quirks);
    let dir = tempfile::tempdir().unwrap();
    let out = fetch(&hub, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let api: Vec<RequestRecord> = hub
        .handle
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/models/"))
        .collect();
    let limited: Vec<usize> = (0..api.len()).filter(|&i| api[i].status == 429).collect();
    assert_eq!(limited.len(), 2, "{api:?}");
    for i in limited {
        let gap = api[i + 1].at_ms - api[i].at_ms;
        // `RateLimit: "api";r=0;t=2` means 2 s (huggingface_hub sleeps t + 1).
        assert!(
            gap >= 2000,
            "retried {gap} ms after a 429 that asked for 2 s"
        );
    }
}

#[test]
fn an_api_429_longer_than_the_retry_budget_fails_fast_and_says_why() {
    let quirks: Quirks = serde_json::from_value(json!({
        "hf_api_429": {"secs": 120, "calls": "all"},
    }))
    .unwrap();
    let hub = hub_with(quirks);
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run_within(
        hub.ferry()
            .args(["fetch", REPO, "--retry-timeout", "10s", "--to"])
            .arg(dir.path()),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let t = text(&out);
    assert!(t.contains("rate-limited"), "{t}");
    assert!(t.contains("--retry-timeout"), "{t}");
}

#[test]
fn relative_307s_to_resolve_cache_canonical_and_renamed_repos_are_followed() {
    let mut quirks = Quirks::realistic();
    quirks.hf_api_429 = None;
    quirks
        .hf_renamed
        .insert("old-org/old-name".into(), REPO.into());
    let hub = hub_with(quirks);
    for asked in ["old-org/old-name", "DEEPSEEK-AI/deepseek-r1"] {
        let dir = tempfile::tempdir().unwrap();
        hub.handle.reset_stats();
        let out = run(hub
            .ferry()
            .args(["fetch", asked, "--json", "--to"])
            .arg(dir.path()));
        assert!(out.status.success(), "{asked}: {}", text(&out));
        assert_same_files(&hub.repo_dir(REPO), dir.path());
        let log = hub.handle.requests();
        assert!(log.iter().any(|r| r.status == 307), "{asked}: {log:?}");
        assert!(
            log.iter()
                .any(|r| r.path.starts_with("/api/resolve-cache/") && r.status == 206),
            "{asked}: small files came through resolve-cache"
        );
    }
}

#[test]
fn the_cdn_redirect_is_followed_without_the_token_and_nothing_is_gzipped() {
    let mut quirks = Quirks::realistic();
    quirks.hf_api_429 = None;
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 3, 3 * MIB, Layout::R1);
        },
        |cfg| {
            cfg.faults.quirks = quirks;
            cfg.tokens = vec!["hf_secret_token".into()];
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub
        .ferry()
        .env("HF_TOKEN", "hf_secret_token")
        .args(["fetch", REPO, "--json", "--to"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    assert!(!text(&out).contains("hf_secret_token"));
    let log = hub.handle.requests();
    let hub_host = hub.url().trim_start_matches("http://").to_string();
    let (on_hub, off_hub): (Vec<&RequestRecord>, Vec<&RequestRecord>) =
        log.iter().partition(|r| r.host == hub_host);
    assert!(!off_hub.is_empty(), "LFS files came from the other origin");
    assert!(
        off_hub.iter().all(|r| !r.authorization),
        "the token crossed origins: {off_hub:?}"
    );
    assert!(on_hub.iter().all(|r| r.authorization));
    // gzip is on: ferry asks for identity on every request, so no body is compressed.
    assert!(
        log.iter()
            .all(|r| r.accept_encoding.as_deref() == Some("identity")),
        "{log:?}"
    );
    assert!(log.iter().all(|r| r.content_encoding.is_none()));
}
