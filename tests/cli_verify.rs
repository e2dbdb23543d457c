//! `ferry verify` end to end: exit codes, messages naming the file, --json, --full.

use std::path::Path;
use std::process::{Command, Output};

use ferry_sharder::header::{self, TensorSpec};
use ferry_sharder::{Hasher, Manifest, ManifestFile};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("run ferry")
}

fn tensor(name: &str, rows: u64) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype: "BF16".into(),
        shape: vec![rows, 8],
        len: rows * 16,
    }
}

fn write_shard(dir: &Path, rel: &str, tensors: &[TensorSpec]) {
    let (mut bytes, entries) = header::encode(tensors);
    let end = entries.last().unwrap().end as usize;
    let mut i = 0u8;
    while bytes.len() < end {
        bytes.push(i);
        i = i.wrapping_add(17);
    }
    std::fs::write(dir.join(rel), bytes).unwrap();
}

/// A valid two-shard model with a committed manifest.
fn model(dir: &Path) {
    let a = [
        tensor("model.embed_tokens.weight", 32),
        tensor("model.layers.0.mlp.up_proj.weight", 16),
    ];
    let b = [
        tensor("model.layers.1.mlp.up_proj.weight", 16),
        tensor("lm_head.weight", 32),
    ];
    write_shard(dir, "model-00001-of-00002.safetensors", &a);
    write_shard(dir, "model-00002-of-00002.safetensors", &b);
    let mut map = serde_json::Map::new();
    for t in &a {
        map.insert(t.name.clone(), "model-00001-of-00002.safetensors".into());
    }
    for t in &b {
        map.insert(t.name.clone(), "model-00002-of-00002.safetensors".into());
    }
    let total: u64 = a.iter().chain(&b).map(|t| t.len).sum();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {"total_size": total}, "weight_map": map}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("config.json"), r#"{"num_hidden_layers": 2}"#).unwrap();
    let mut files = Vec::new();
    for rel in ferry_sharder::verify::scan(dir).unwrap() {
        let bytes = std::fs::read(dir.join(&rel)).unwrap();
        let mut h = Hasher::sha256();
        h.update(&bytes);
        files.push(ManifestFile {
            path: rel,
            size: bytes.len() as u64,
            hash: h.finish(),
        });
    }
    Manifest {
        selection: None,
        format: ferry_sharder::manifest::FORMAT,
        repo: "test/tiny".into(),
        source: "hf".into(),
        revision: "main".into(),
        commit: "a".repeat(40),
        ferry_version: "test".into(),
        completed_at: "2026-01-01T00:00:00Z".into(),
        files,
    }
    .write_atomic(dir)
    .unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn clean_model_passes_with_and_without_full() {
    let d = tempfile::tempdir().unwrap();
    model(d.path());
    let dir = d.path().to_str().unwrap();
    let out = ferry(&["verify", dir]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ok: complete and valid"),
        "{}",
        text(&out.stdout)
    );
    let out = ferry(&["verify", dir, "--full", "--json", "--jobs", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["hashed"]["files"], 4);
    assert!(v["hashed"]["gb_per_s"].as_f64().is_some());
}

#[test]
fn corrupted_byte_fails_full_with_exit_5_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    model(d.path());
    let victim = d.path().join("model-00002-of-00002.safetensors");
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let dir = d.path().to_str().unwrap();
    assert!(
        ferry(&["verify", dir]).status.success(),
        "sizes and headers are intact"
    );
    let out = ferry(&["verify", dir, "--full"]);
    assert_eq!(out.status.code(), Some(5));
    let err = text(&out.stderr);
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("does not match"),
        "{err}"
    );

    let out = ferry(&["verify", dir, "--full", "--json"]);
    assert_eq!(out.status.code(), Some(5));
    // The report, then the error as a JSON line of its own.
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let v: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["findings"][0]["file"], "model-00002-of-00002.safetensors");
    let e: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        (&e["event"], &e["kind"], &e["exit_code"]),
        (&"error".into(), &"verify".into(), &5.into())
    );
    assert!(
        e["message"].as_str().unwrap().contains("model-00002"),
        "{e}"
    );
    assert!(!e["hint"].as_str().unwrap().is_empty());
    assert_eq!(e["schema"], 1);
    assert!(e["ts"].is_string());
}

#[test]
fn stray_partial_and_missing_manifest_exit_5() {
    let d = tempfile::tempdir().unwrap();
    model(d.path());
    std::fs::write(
        d.path().join("model-00001-of-00002.safetensors.incomplete"),
        b"x",
    )
    .unwrap();
    let out = ferry(&["verify", d.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        text(&out.stderr).contains("model-00001-of-00002.safetensors.incomplete"),
        "{}",
        text(&out.stderr)
    );

    let empty = tempfile::tempdir().unwrap();
    let out = ferry(&["verify", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        text(&out.stderr).contains("no completion manifest"),
        "{}",
        text(&out.stderr)
    );
}
