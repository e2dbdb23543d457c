//! `ferry fetch ollama://…` against hubsim's Ollama registry: byte-exact library and
//! user-namespace tags, the models directory read back the way the Ollama server reads it,
//! resume after kill -9, a corrupt blob refused, the gate on the result, and the errors.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const MIB: usize = 1 << 20;

fn fetch(hub: &Hub, name: &str, dir: &Path, extra: &[&str]) -> Output {
    run(hub
        .ferry()
        .args(["fetch", name, "--json", "--to"])
        .arg(dir)
        .args(extra))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The manifest as the registry serves it, and the Accept header ferry's own request carried.
fn registry_manifest(hub: &Hub, ns: &str, model: &str, tag: &str) -> Vec<u8> {
    let url = format!("{}/v2/{ns}/{model}/manifests/{tag}", hub.url());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().bytes().await.unwrap() })
        .to_vec()
}

/// A name part as `isValidPart` in ollama's types/model/name.go (v0.33.0-rc2) accepts it.
fn valid_part(kind: usize, s: &str) -> bool {
    let max = if kind == 0 { 350 } else { 80 };
    !s.is_empty()
        && s.len() <= max
        && s.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric()
                || c == '_'
                || (i > 0 && (c == '-' || (c == '.' && kind != 1) || (c == ':' && kind == 0)))
        })
}

/// What the Ollama server finds in `models` (OLLAMA_MODELS), read the way ollama v0.33.0-rc2
/// reads it: `manifest.Manifests` globs `manifests/*/*/*/*` and keeps the files whose four parts
/// make a valid name (`ParseNameFromFilepath`); `ParseNamedManifest` decodes each; every layer
/// and the config resolve through `BlobsPath` (`^sha256[:-][0-9a-fA-F]{64}$`, `:` → `-`) to a
/// file of the layer's size whose sha256 is its digest. `PruneLayers` would delete any file in
/// `blobs/` whose name is not a digest, so there must be none. Returns name → layer media types.
fn ollama_server_view(models: &Path) -> BTreeMap<String, Vec<String>> {
    let mut found = BTreeMap::new();
    let manifests = models.join("manifests");
    let listed = |d: &Path| if d.is_dir() { walk(d) } else { Vec::new() };
    for path in listed(&manifests) {
        let rel: Vec<String> = path
            .strip_prefix(&manifests)
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        assert_eq!(rel.len(), 4, "{} is not HOST/NS/MODEL/TAG", path.display());
        assert!(
            rel.iter().enumerate().all(|(i, p)| valid_part(i, p)),
            "{rel:?}: the server skips this name"
        );
        let m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        let mut layers: Vec<&Value> = m["layers"].as_array().unwrap().iter().collect();
        layers.push(&m["config"]);
        for l in &layers {
            let digest = l["digest"].as_str().unwrap();
            let hex = digest.strip_prefix("sha256:").unwrap();
            assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
            let blob = models.join("blobs").join(digest.replace(':', "-"));
            let bytes = std::fs::read(&blob)
                .unwrap_or_else(|e| panic!("{rel:?} names {digest}, missing: {e}"));
            assert_eq!(bytes.len() as u64, l["size"].as_u64().unwrap(), "{digest}");
            assert_eq!(sha256_hex(&bytes), hex, "{digest}");
        }
        let types = layers
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap().to_string())
            .collect();
        found.insert(rel.join("/"), types);
    }
    for blob in listed(&models.join("blobs")) {
        let name = blob.file_name().unwrap().to_string_lossy().into_owned();
        let hex = name.strip_prefix("sha256-").unwrap_or("");
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: the server's PruneLayers deletes a blob not named by its digest"
        );
    }
    found
}

fn gate(dir: &Path, timeout: &str) -> Output {
    run(ferry()
        .args([
            "sidecar",
            "--mode",
            "init",
            "--poll-max",
            "200ms",
            "--timeout",
            timeout,
        ])
        .arg("--model-dir")
        .arg(dir))
}

#[test]
fn a_library_tag_lands_byte_exact_where_the_ollama_server_reads_it() {
    let hub = Hub::with(|root| {
        hubsim::serve::ollama::write_model(root, "deepseek-r1:7b", 3 * MIB, 1).unwrap();
    });
    let src = hub.root.path().join(".ollama/library/deepseek-r1/7b");
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("ollama");
    // The gate stays shut on an empty directory.
    assert_eq!(gate(&models, "1s").status.code(), Some(8));

    let out = fetch(
        &hub,
        "ollama://deepseek-r1:7b",
        &models,
        &["--connections", "4", "--chunk-size", "1MiB"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = summary(&out);
    assert_eq!(s["source"], "ollama");
    assert_eq!(s["repo"], "registry.ollama.ai/library/deepseek-r1");
    assert_eq!(s["revision"], "7b");

    // The manifest, byte for byte as the registry sent it, at the path the server reads.
    let manifest = registry_manifest(&hub, "library", "deepseek-r1", "7b");
    let written = models.join("manifests/registry.ollama.ai/library/deepseek-r1/7b");
    assert_eq!(std::fs::read(&written).unwrap(), manifest);
    assert_eq!(s["commit"], sha256_hex(&manifest));
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    // Every layer's blob holds the source file's bytes.
    for (i, file) in ["model", "template", "params", "license"]
        .iter()
        .enumerate()
    {
        let digest = m["layers"][i]["digest"].as_str().unwrap();
        let blob = models.join("blobs").join(digest.replace(':', "-"));
        assert!(
            std::fs::read(&blob).unwrap() == std::fs::read(src.join(file)).unwrap(),
            "{file} differs"
        );
    }
    let view = ollama_server_view(&models);
    assert_eq!(
        view.keys().collect::<Vec<_>>(),
        ["registry.ollama.ai/library/deepseek-r1/7b"]
    );
    assert_eq!(
        view.values().next().unwrap()[0],
        "application/vnd.ollama.image.model"
    );

    // As the server pulls: the manifest with its Accept type, blobs through the registry's
    // redirect to the other origin, and no credentials anywhere.
    let log = hub.handle.requests();
    let get = log
        .iter()
        .find(|r| r.path == "/v2/library/deepseek-r1/manifests/7b")
        .expect("manifest request");
    assert_eq!(
        get.accept.as_deref(),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    assert!(log
        .iter()
        .any(|r| r.path.starts_with("/v2/library/deepseek-r1/blobs/sha256:") && r.status == 307));
    assert!(log
        .iter()
        .any(|r| r.path.starts_with("/_ollama_cdn/") && r.status == 206));
    assert!(
        log.iter().all(|r| !r.authorization),
        "a request carried credentials"
    );

    // ferry's own checks and the gate work on the models directory.
    let v = run(ferry().args(["verify", "--full"]).arg(&models));
    assert!(v.status.success(), "{}", text(&v));
    let g = gate(&models, "20s");
    assert_eq!(g.status.code(), Some(0), "{}", text(&g));

    // A second run finds it complete and moves nothing.
    let sent = hub.stats().bytes_sent;
    let again = fetch(&hub, "ollama://deepseek-r1:7b", &models, &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(summary(&again)["bytes_downloaded"], 0);
    assert_eq!(hub.stats().bytes_sent, sent);

    // A flipped byte in a blob is found by the full verify (and the gate's quick check still
    // sees every file whole: the full check is what catches bit rot).
    let digest = m["layers"][0]["digest"].as_str().unwrap();
    let blob = models.join("blobs").join(digest.replace(':', "-"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100_000] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let v = run(ferry().args(["verify", "--full"]).arg(&models));
    assert_eq!(v.status.code(), Some(5), "{}", text(&v));
}

#[test]
fn user_namespace_tags_share_one_models_directory() {
    let hub = Hub::with(|root| {
        hubsim::serve::ollama::write_model(
            root,
            "huihui_ai/deepseek-r1-abliterated:8b",
            2 * MIB,
            2,
        )
        .unwrap();
        hubsim::serve::ollama::write_model(root, "deepseek-r1:1.5b", MIB, 3).unwrap();
    });
    let models = tempfile::tempdir().unwrap();
    let out = fetch(
        &hub,
        "ollama://huihui_ai/deepseek-r1-abliterated:8b",
        models.path(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        summary(&out)["repo"],
        "registry.ollama.ai/huihui_ai/deepseek-r1-abliterated"
    );
    let manifest = registry_manifest(&hub, "huihui_ai", "deepseek-r1-abliterated", "8b");
    let path = models
        .path()
        .join("manifests/registry.ollama.ai/huihui_ai/deepseek-r1-abliterated/8b");
    assert_eq!(std::fs::read(path).unwrap(), manifest);
    let src = hub
        .root
        .path()
        .join(".ollama/huihui_ai/deepseek-r1-abliterated/8b/model");
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let blob = models
        .path()
        .join("blobs")
        .join(m["layers"][0]["digest"].as_str().unwrap().replace(':', "-"));
    assert!(std::fs::read(blob).unwrap() == std::fs::read(src).unwrap());

    // A second model into the same directory: blobs both tags share are reused, both tags
    // stay readable, and the ferry manifest (what the gate and verify check) is the last one's.
    let out = fetch(&hub, "ollama://deepseek-r1:1.5b", models.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let s = summary(&out);
    assert!(s["bytes_reused"].as_u64().unwrap() > 0, "{s}");
    let view = ollama_server_view(models.path());
    assert_eq!(
        view.keys().collect::<Vec<_>>(),
        [
            "registry.ollama.ai/huihui_ai/deepseek-r1-abliterated/8b",
            "registry.ollama.ai/library/deepseek-r1/1.5b"
        ]
    );
    let v = run(ferry().arg("verify").arg(models.path()));
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn kill_9_mid_transfer_resumes_without_re_sending_the_blob() {
    let size = 24 * MIB;
    let hub = Hub::with(|root| {
        hubsim::serve::ollama::write_model(root, "deepseek-r1:7b", size, 4).unwrap();
    });
    // About 3 s for the model blob, so the kill lands mid-transfer.
    hub.faults_json(json!({"bandwidth_total_bps": 8 * MIB}));
    let models = tempfile::tempdir().unwrap();
    let (connections, chunk) = (4u64, MIB as u64);
    let args = [
        "--quiet",
        "--connections",
        "4",
        "--chunk-size",
        "1MiB",
        "--sync-every",
        "1MiB",
    ];
    let mut child = hub
        .ferry()
        .args(["fetch", "ollama://deepseek-r1:7b", "--to"])
        .arg(models.path())
        .args(args)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while hub.stats().bytes_sent < (size / 3) as u64 {
        assert!(started.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    assert!(!child.wait().unwrap().success());
    let before = hub.stats().bytes_sent;
    // Nothing the server would read: no manifest, and any blob in place is whole and right.
    assert!(
        !models.path().join("manifests").exists()
            || walk(&models.path().join("manifests")).is_empty()
    );
    assert!(!models.path().join(".ferry/manifest.json").exists());
    assert!(ollama_server_view(models.path()).is_empty());
    assert_eq!(gate(models.path(), "1s").status.code(), Some(8));

    hub.faults_json(json!({}));
    let out = run(hub
        .ferry()
        .args(["fetch", "ollama://deepseek-r1:7b", "--json", "--to"])
        .arg(models.path())
        .args(&args[1..]));
    assert!(out.status.success(), "{}", text(&out));
    let total = summary(&out)["bytes_total"].as_u64().unwrap();
    let sent = hub.stats().bytes_sent;
    let resent = sent - total.min(sent);
    eprintln!(
        "killed after {before} of {total} bytes; both runs sent {sent}: {resent} re-sent \
         (bound: {connections} ranges in flight x {chunk})"
    );
    assert!(before < total, "the kill landed after the transfer");
    assert!(
        sent <= total + connections * chunk,
        "re-sent too much: {sent} for {total}"
    );
    assert!(sent - before < total, "the resume started over");
    assert_eq!(ollama_server_view(models.path()).len(), 1);
    let v = run(ferry().args(["verify", "--full"]).arg(models.path()));
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_published() {
    let hub = Hub::with(|root| {
        hubsim::serve::ollama::write_model(root, "deepseek-r1:7b", 2 * MIB, 5).unwrap();
    });
    let manifest = registry_manifest(&hub, "library", "deepseek-r1", "7b");
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let digest = m["layers"][0]["digest"].as_str().unwrap();
    // Every answer for the model blob has a flipped byte, the re-download too.
    hub.faults_json(
        json!({"rules": [{"kind": "corrupt", "offset": 5000, "path_contains": digest}]}),
    );
    let models = tempfile::tempdir().unwrap();
    let out = fetch(&hub, "ollama://deepseek-r1:7b", models.path(), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&digest.replace(':', "-")), "{err}");
    assert!(!models
        .path()
        .join("blobs")
        .join(digest.replace(':', "-"))
        .exists());
    assert!(
        !models.path().join("manifests").exists()
            || walk(&models.path().join("manifests")).is_empty()
    );
    assert!(!models.path().join(".ferry/manifest.json").exists());
    assert!(ollama_server_view(models.path()).is_empty());
}

#[test]
fn bad_names_and_missing_tags_fail_fast_with_their_exit_codes() {
    let hub = Hub::with(|root| {
        hubsim::serve::ollama::write_model(root, "deepseek-r1:7b", MIB, 6).unwrap();
    });
    let models = tempfile::tempdir().unwrap();
    for (name, code, says) in [
        ("ollama://deepseek-r1:", 2, "tag"),
        ("ollama://deep seek", 2, "hint:"),
        ("ollama://a/b/c/d:1", 2, "host"),
        ("ollama://deepseek-r1:671b-nope", 4, "deepseek-r1:671b-nope"),
        (
            "ollama://nobody/nothing",
            4,
            "ollama.com/nobody/nothing/tags",
        ),
    ] {
        let started = Instant::now();
        let out = fetch(&hub, name, models.path(), &[]);
        assert_eq!(out.status.code(), Some(code), "{name}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} was slow"
        );
    }
    assert!(!models.path().join("manifests").exists());
    let out = fetch(
        &hub,
        "ollama://deepseek-r1:7b",
        models.path(),
        &["--revision", "main"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
