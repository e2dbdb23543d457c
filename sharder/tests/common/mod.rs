//! A small real model directory for tests: two safetensors shards written byte by byte, the
//! index, config.json and a manifest with real sha256 hashes.

#![allow(dead_code)]

use std::path::Path;

use ferry_sharder::header::{self, TensorSpec};
use ferry_sharder::{FileHash, Hasher, Manifest, ManifestFile};

pub fn spec(name: &str, dtype: &str, shape: &[u64]) -> TensorSpec {
    let bits = header::dtype_bits(dtype).unwrap();
    TensorSpec {
        name: name.into(),
        dtype: dtype.into(),
        shape: shape.to_vec(),
        len: shape.iter().product::<u64>() * bits / 8,
    }
}

/// Writes a shard holding `tensors`, data bytes counting up from `seed`.
pub fn write_shard(dir: &Path, rel: &str, tensors: &[TensorSpec], seed: u8) {
    let (mut bytes, entries) = header::encode(tensors);
    let end = entries.last().map(|e| e.end).unwrap_or(bytes.len() as u64);
    let mut b = seed;
    while (bytes.len() as u64) < end {
        bytes.push(b);
        b = b.wrapping_add(1);
    }
    std::fs::write(dir.join(rel), bytes).unwrap();
}

/// Writes a raw header (any JSON, valid or not) followed by `data_len` bytes.
pub fn write_raw_shard(dir: &Path, rel: &str, header_json: &str, data_len: usize) {
    let mut h = header_json.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend(std::iter::repeat_n(7u8, data_len));
    std::fs::write(dir.join(rel), bytes).unwrap();
}

pub const SHARD1: &str = "model-00001-of-00002.safetensors";
pub const SHARD2: &str = "model-00002-of-00002.safetensors";

pub fn shard1() -> Vec<TensorSpec> {
    vec![
        spec("model.embed_tokens.weight", "BF16", &[64, 16]),
        spec("model.layers.0.self_attn.q_proj.weight", "BF16", &[16, 16]),
        spec("model.layers.0.mlp.down_proj.weight", "F8_E4M3", &[16, 32]),
        spec(
            "model.layers.0.mlp.down_proj.weight_scale_inv",
            "F32",
            &[1, 1],
        ),
    ]
}

pub fn shard2() -> Vec<TensorSpec> {
    vec![
        spec("model.layers.1.self_attn.q_proj.weight", "BF16", &[16, 16]),
        spec("model.norm.weight", "F32", &[16]),
        spec("lm_head.weight", "BF16", &[64, 16]),
    ]
}

pub fn write_index(dir: &Path, entries: &[(&str, &str)], total: u64) {
    let map: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(t, s)| (t.to_string(), serde_json::Value::String(s.to_string())))
        .collect();
    let v = serde_json::json!({"metadata": {"total_size": total}, "weight_map": map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec_pretty(&v).unwrap(),
    )
    .unwrap();
}

/// The index that matches `shard1()` + `shard2()`.
pub fn good_index(dir: &Path) {
    let mut e: Vec<(String, &str)> = Vec::new();
    for t in shard1() {
        e.push((t.name, SHARD1));
    }
    for t in shard2() {
        e.push((t.name, SHARD2));
    }
    let total: u64 = shard1().iter().chain(shard2().iter()).map(|t| t.len).sum();
    let refs: Vec<(&str, &str)> = e.iter().map(|(t, s)| (t.as_str(), *s)).collect();
    write_index(dir, &refs, total);
}

/// A clean two-shard model in `dir`, with its manifest committed.
pub fn clean_model(dir: &Path) -> Manifest {
    write_shard(dir, SHARD1, &shard1(), 1);
    write_shard(dir, SHARD2, &shard2(), 100);
    good_index(dir);
    std::fs::write(
        dir.join("config.json"),
        br#"{"model_type": "llama", "num_hidden_layers": 2}"#,
    )
    .unwrap();
    let m = manifest_of(dir);
    m.write_atomic(dir).unwrap();
    m
}

/// A manifest of every model file now in `dir`, with real hashes (sha256 for shards, git sha1
/// for the rest, as Hugging Face publishes them).
pub fn manifest_of(dir: &Path) -> Manifest {
    let mut files = Vec::new();
    for rel in ferry_sharder::verify::scan(dir).unwrap() {
        let bytes = std::fs::read(dir.join(&rel)).unwrap();
        let mut h = if rel.ends_with(".safetensors") {
            Hasher::sha256()
        } else {
            Hasher::git_sha1(bytes.len() as u64)
        };
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
        commit: "c".repeat(40),
        ferry_version: "test".into(),
        completed_at: "2026-01-01T00:00:00Z".into(),
        files,
    }
}

pub fn sha256_placeholder() -> FileHash {
    FileHash::Sha256("0".repeat(64))
}
