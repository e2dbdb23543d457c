//! `hubsim generate`: the files are valid safetensors that the `safetensors` crate parses, the
//! index covers every tensor exactly once, output is deterministic, sizes land on target, and the
//! full-scale plan is instant.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hubsim::generate::{
    plan, run, write_repo, DeepseekDims, GenerateArgs, GenerateError, Layout, ModelSpec,
};
use safetensors::SafeTensors;
use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

fn args(out: &Path, layout: Layout, shards: u32, total_size: u64, seed: u64) -> GenerateArgs {
    GenerateArgs {
        out: out.to_path_buf(),
        repo: "deepseek-ai/DeepSeek-R1".to_owned(),
        shards,
        total_size,
        layout,
        seed,
        sparse: false,
    }
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn safetensors_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list output")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    names.sort();
    names
}

/// What one shard holds, as the `safetensors` crate reads it.
struct Parsed {
    /// Tensor name to data bytes.
    tensors: BTreeMap<String, u64>,
    file_size: u64,
}

/// Parses a shard from an mmap with the `safetensors` crate and checks every tensor's length
/// against its dtype and shape.
fn parse_shard(path: &Path) -> Parsed {
    let file = File::open(path).expect("open shard");
    // SAFETY: the file is not modified while mapped (this test wrote it and is done writing).
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("mmap shard");
    let n = u64::from_le_bytes(map[..8].try_into().expect("8 bytes")) as usize;
    assert!(
        n.is_multiple_of(8),
        "{}: header not padded to 8 bytes",
        path.display()
    );
    let (_, metadata) =
        SafeTensors::read_metadata(&map).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let format = metadata.metadata().as_ref().and_then(|m| m.get("format"));
    assert_eq!(format.map(String::as_str), Some("pt"), "{}", path.display());
    let st = SafeTensors::deserialize(&map).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let elements: usize = view.shape().iter().product();
        let expected = elements * view.dtype().bitsize() / 8;
        assert_eq!(view.data().len(), expected, "{name} in {}", path.display());
        assert!(!view.shape().is_empty(), "{name}");
        tensors.insert(name, expected as u64);
    }
    assert!(!tensors.is_empty(), "{} holds no tensor", path.display());
    Parsed {
        tensors,
        file_size: map.len() as u64,
    }
}

/// Checks that the index maps every tensor of every shard to its shard, exactly once, and that
/// `total_size` is the sum of tensor bytes. Returns the number of tensors.
fn check_index(dir: &Path, shards: &[String]) -> usize {
    let index = read_json(&dir.join("model.safetensors.index.json"));
    let weight_map = index["weight_map"].as_object().expect("weight_map object");
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for shard in shards {
        for (name, bytes) in parse_shard(&dir.join(shard)).tensors {
            assert!(seen.insert(name.clone()), "{name} is in two shards");
            assert_eq!(
                weight_map.get(&name).and_then(Value::as_str),
                Some(shard.as_str()),
                "index entry of {name}"
            );
            total += bytes;
        }
    }
    let indexed: BTreeSet<String> = weight_map.keys().cloned().collect();
    assert_eq!(indexed, seen, "index and shards list different tensors");
    assert_eq!(index["metadata"]["total_size"].as_u64(), Some(total));
    seen.len()
}

fn hashes(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .expect("list output")
        .map(|e| {
            let path = e.expect("entry").path();
            let bytes = fs::read(&path).expect("read file");
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, hex::encode(Sha256::digest(&bytes)))
        })
        .collect()
}

#[test]
fn r1_163_shards_parse_and_the_index_covers_every_tensor_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("repo");
    let target = 64 * MIB;
    let summary = run(&args(&dir, Layout::R1, 163, target, 0)).expect("generate");
    assert_eq!(summary.shards, 163);

    let shards = safetensors_files(&dir);
    let expected: Vec<String> = (1..=163)
        .map(|i| format!("model-{i:05}-of-000163.safetensors"))
        .collect();
    assert_eq!(shards, expected);
    for small in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    ] {
        assert!(dir.join(small).is_file(), "{small} missing");
    }
    read_json(&dir.join("tokenizer.json"));
    read_json(&dir.join("tokenizer_config.json"));
    read_json(&dir.join("generation_config.json"));

    let tensors = check_index(&dir, &shards);

    let shard_bytes: u64 = shards
        .iter()
        .map(|s| fs::metadata(dir.join(s)).expect("stat").len())
        .sum();
    assert!(shard_bytes <= target, "{shard_bytes} > {target}");
    assert!(
        shard_bytes as f64 >= 0.97 * target as f64,
        "{shard_bytes} far below {target}"
    );

    // The config describes the tensors that are there.
    let config = read_json(&dir.join("config.json"));
    assert_eq!(config["model_type"], "deepseek_v3");
    assert_eq!(config["architectures"][0], "DeepseekV3ForCausalLM");
    assert_eq!(config["num_hidden_layers"], 61);
    assert_eq!(config["first_k_dense_replace"], 3);
    let experts = config["n_routed_experts"]
        .as_u64()
        .expect("n_routed_experts");
    let index = read_json(&dir.join("model.safetensors.index.json"));
    let names: Vec<&String> = index["weight_map"]
        .as_object()
        .expect("map")
        .keys()
        .collect();
    let expert_tensors = names
        .iter()
        .filter(|n| n.starts_with("model.layers.3.mlp.experts.") && n.ends_with("_proj.weight"))
        .count() as u64;
    assert_eq!(expert_tensors, 3 * experts);
    for name in [
        "model.embed_tokens.weight",
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.2.self_attn.kv_a_proj_with_mqa.weight_scale_inv",
        "model.layers.60.mlp.gate.e_score_correction_bias",
        "model.layers.60.mlp.shared_experts.down_proj.weight",
        "model.layers.61.eh_proj.weight",
        "model.norm.weight",
        "lm_head.weight",
    ] {
        assert!(names.iter().any(|n| n.as_str() == name), "{name} missing");
    }
    assert!(!names
        .iter()
        .any(|n| n.starts_with("model.layers.3.mlp.gate_proj")));
    assert!(tensors > 163);

    let embed = parse_embed_shape(&dir, &index);
    assert_eq!(
        embed,
        vec![
            config["vocab_size"].as_u64().expect("vocab"),
            config["hidden_size"].as_u64().expect("hidden")
        ]
    );
}

fn parse_embed_shape(dir: &Path, index: &Value) -> Vec<u64> {
    let shard = index["weight_map"]["model.embed_tokens.weight"]
        .as_str()
        .expect("embed in index");
    let bytes = fs::read(dir.join(shard)).expect("read shard");
    let st = SafeTensors::deserialize(&bytes).expect("parse");
    let view = st.tensor("model.embed_tokens.weight").expect("embed");
    assert_eq!(view.dtype(), safetensors::Dtype::BF16);
    view.shape().iter().map(|&d| d as u64).collect()
}

#[test]
fn same_flags_give_the_same_bytes_and_another_seed_other_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    run(&args(&a, Layout::R1, 8, 16 * MIB, 7)).expect("first run");
    run(&args(&b, Layout::R1, 8, 16 * MIB, 7)).expect("second run");
    run(&args(&c, Layout::R1, 8, 16 * MIB, 8)).expect("other seed");
    let (ha, hb, hc) = (hashes(&a), hashes(&b), hashes(&c));
    assert_eq!(ha.len(), 8 + 6);
    assert_eq!(ha, hb);
    assert_eq!(ha["config.json"], hc["config.json"]);
    assert_ne!(
        ha["model-00001-of-000008.safetensors"],
        hc["model-00001-of-000008.safetensors"]
    );
    // No two shards share their data.
    let shard_hashes: BTreeSet<&String> = ha
        .iter()
        .filter(|(n, _)| n.ends_with(".safetensors"))
        .map(|(_, h)| h)
        .collect();
    assert_eq!(shard_hashes.len(), 8);
}

#[test]
fn distill_with_one_shard_is_a_single_model_safetensors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("distill");
    run(&args(&dir, Layout::Distill, 1, 8 * MIB, 0)).expect("generate");
    assert_eq!(safetensors_files(&dir), vec!["model.safetensors"]);
    assert!(!dir.join("model.safetensors.index.json").exists());
    let parsed = parse_shard(&dir.join("model.safetensors"));
    assert!(parsed.file_size <= 8 * MIB && parsed.file_size as f64 > 0.97 * (8 * MIB) as f64);
    let config = read_json(&dir.join("config.json"));
    assert_eq!(config["model_type"], "qwen2");
    assert_eq!(config["num_hidden_layers"], 28);
    assert!(parsed
        .tensors
        .contains_key("model.layers.27.mlp.down_proj.weight"));
    assert!(parsed
        .tensors
        .contains_key("model.layers.0.self_attn.q_proj.bias"));
    assert_eq!(parsed.tensors.len(), 28 * 12 + 3);
}

#[test]
fn distill_with_shards_has_five_digit_names_and_an_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("distill");
    run(&args(&dir, Layout::Distill, 3, 12 * MIB, 0)).expect("generate");
    let shards = safetensors_files(&dir);
    assert_eq!(
        shards,
        vec![
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors"
        ]
    );
    assert_eq!(check_index(&dir, &shards), 28 * 12 + 3);
}

#[test]
fn full_scale_plan_is_instant_and_sums_right() {
    let start = Instant::now();
    let plan = plan(&ModelSpec::new(
        "deepseek-ai/DeepSeek-R1",
        163,
        642_000_000_000,
    ))
    .expect("plan");
    let elapsed = start.elapsed();
    // Well under a second optimized; the bound leaves room for an unoptimized build on a
    // loaded machine.
    assert!(
        elapsed < Duration::from_secs(10),
        "planning took {elapsed:?}"
    );

    assert_eq!(plan.shards().count(), 163);
    let shard_bytes: u64 = plan.shards().map(|f| f.size).sum();
    assert!(shard_bytes <= 642_000_000_000);
    assert!(shard_bytes > 641_000_000_000, "{shard_bytes}");
    assert_eq!(plan.weight_map.len(), 91_991);
    let header_bytes: u64 = plan
        .shards()
        .map(|f| match &f.content {
            hubsim::generate::PlannedContent::Safetensors {
                header, data_len, ..
            } => {
                assert_eq!(header.len() as u64 + data_len, f.size);
                header.len() as u64
            }
            hubsim::generate::PlannedContent::Bytes(_) => unreachable!("shards() yields shards"),
        })
        .sum();
    assert_eq!(shard_bytes - header_bytes, plan.tensor_bytes);
    // Shards are balanced like the real ones (about 4 GB each), the last one aside.
    let sizes: Vec<u64> = plan.shards().map(|f| f.size).collect();
    let mean = shard_bytes / 163;
    for (i, size) in sizes[..162].iter().enumerate() {
        assert!(
            *size > mean / 2 && *size < mean * 2,
            "shard {} is {size} bytes, mean {mean}",
            i + 1
        );
    }
}

#[test]
fn the_real_size_gives_the_real_model() {
    // deepseek-ai/DeepSeek-R1's safetensors files add up to 688,586,727,753 bytes.
    let plan = plan(&ModelSpec::new(
        "deepseek-ai/DeepSeek-R1",
        163,
        688_586_727_753,
    ))
    .expect("plan");
    match &plan.architecture {
        hubsim::generate::Architecture::R1(dims) => {
            // Headers differ from the real ones by a few bytes (other shard boundaries), which
            // the vocabulary absorbs: a row is 57 KB.
            let real = DeepseekDims::real();
            assert!(dims.vocab.abs_diff(real.vocab) <= 2, "{dims:?}");
            assert_eq!(
                &DeepseekDims {
                    vocab: real.vocab,
                    ..dims.clone()
                },
                &real
            );
        }
        other => panic!("not r1: {other:?}"),
    }
    let shard_bytes: u64 = plan.shards().map(|f| f.size).sum();
    assert!(688_586_727_753 - shard_bytes < 1_000_000, "{shard_bytes}");
}

#[test]
fn sparse_shards_have_real_headers_and_almost_no_blocks() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("sparse");
    let mut a = args(&dir, Layout::R1, 16, 4 << 30, 0);
    a.sparse = true;
    let summary = run(&a).expect("generate sparse");
    assert!(summary.bytes > 4 << 29);
    let shards = safetensors_files(&dir);
    check_index(&dir, &shards);
    let (mut apparent, mut allocated) = (0, 0);
    for shard in &shards {
        let meta = fs::metadata(dir.join(shard)).expect("stat");
        apparent += meta.len();
        allocated += meta.blocks() * 512;
    }
    assert!(apparent > 4 << 29, "{apparent}");
    assert!(
        allocated < apparent / 100,
        "{allocated} of {apparent} bytes allocated"
    );
}

#[test]
fn read_at_gives_the_bytes_on_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("repo");
    let spec = ModelSpec::new("org/name", 4, 6 * MIB);
    let plan = plan(&spec).expect("plan");
    write_repo(&plan, &dir, false).expect("write");
    for file in &plan.files {
        let disk = fs::read(dir.join(&file.path)).expect("read");
        assert_eq!(file.read_at(file.size + 3, &mut [0; 8]), 0, "past the end");
        assert_eq!(disk.len() as u64, file.size, "{}", file.path);
        let mut whole = vec![0; disk.len() + 10];
        assert_eq!(file.read_at(0, &mut whole), disk.len());
        assert_eq!(&whole[..disk.len()], &disk[..], "{}", file.path);
        // Ranges inside the header, across the header/data boundary, and at the end.
        for (offset, len) in [
            (3, 2),
            (3, 100),
            (disk.len() as u64 / 2, 4097),
            (disk.len() as u64 - 5, 64),
        ] {
            let mut buf = vec![0; len];
            let n = file.read_at(offset, &mut buf);
            let end = (offset as usize + len).min(disk.len());
            assert_eq!(
                &buf[..n],
                &disk[offset as usize..end],
                "{} @{offset}",
                file.path
            );
        }
    }
}

#[test]
fn rerun_overwrites_but_stale_shards_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("repo");
    run(&args(&dir, Layout::R1, 4, 4 * MIB, 0)).expect("first");
    let before = hashes(&dir);
    run(&args(&dir, Layout::R1, 4, 4 * MIB, 0)).expect("same flags again");
    assert_eq!(hashes(&dir), before);
    match run(&args(&dir, Layout::R1, 2, 4 * MIB, 0)) {
        Err(GenerateError::StaleFiles { files, .. }) => {
            assert!(
                files.contains(&"model-00003-of-000004.safetensors".to_owned()),
                "{files:?}"
            )
        }
        other => panic!("expected StaleFiles, got {other:?}"),
    }
}

#[test]
fn cli_generates_and_explains_bad_flags() {
    let bin = env!("CARGO_BIN_EXE_hubsim");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cli");
    let ok = Command::new(bin)
        .args(["generate", "--out"])
        .arg(&dir)
        .args([
            "--repo",
            "org/name",
            "--shards",
            "5",
            "--total-size",
            "3MiB",
        ])
        .args(["--layout", "distill", "--seed", "9"])
        .output()
        .expect("run hubsim");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("5 shards"));
    assert_eq!(safetensors_files(&dir).len(), 5);

    for (flags, expect) in [
        (
            vec!["--repo", "noslash", "--shards", "2", "--total-size", "2MiB"],
            "ORG/NAME",
        ),
        (
            vec!["--repo", "a/b", "--shards", "2", "--total-size", "1KiB"],
            "ask for at least",
        ),
        (
            vec!["--repo", "a/b", "--shards", "2", "--total-size", "lots"],
            "400MiB",
        ),
        (
            vec![
                "--repo",
                "a/b",
                "--shards",
                "100000",
                "--total-size",
                "1GiB",
            ],
            "fewer shards",
        ),
    ] {
        let out = Command::new(bin)
            .args(["generate", "--out"])
            .arg(tmp.path().join("bad"))
            .args(&flags)
            .output()
            .expect("run hubsim");
        assert!(!out.status.success(), "{flags:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{flags:?}: {stderr}");
    }
}

#[test]
fn every_size_lands_just_below_its_target() {
    for layout in [Layout::R1, Layout::Distill] {
        for target in [3 * MIB, 16 * MIB, 400 * MIB, 2 << 30, 50_000_000_000] {
            for shards in [1, 8, 163] {
                let mut spec = ModelSpec::new("org/name", shards, target);
                spec.layout = layout;
                let plan =
                    plan(&spec).unwrap_or_else(|e| panic!("{layout} {target} {shards}: {e}"));
                let bytes: u64 = plan.shards().map(|f| f.size).sum();
                // Measured: at most 0.21% below (3 MiB, 163 shards), 0.001% from 400 MiB up.
                assert!(bytes <= target, "{layout} {target} {shards}: {bytes}");
                assert!(
                    bytes as f64 >= 0.995 * target as f64,
                    "{layout} {target} {shards}: {bytes}"
                );
            }
        }
    }
}
