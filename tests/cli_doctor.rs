//! `ferry doctor` as a user runs it: on this machine (no NVIDIA driver) it says so plainly and
//! still runs the model-side checks; `--assume-gpu` checks against recorded GPU facts.

use std::path::Path;
use std::process::{Command, Output};

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// A model directory with the real config.json of `name` and one sparse weight file of `size`.
fn model(root: &Path, name: &str, size: u64) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sidecar/tests/fixtures/configs")
        .join(format!("{name}.json"));
    std::fs::copy(config, dir.join("config.json")).unwrap();
    let f = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    f.set_len(size).unwrap();
    dir
}

fn doctor(dir: &Path, args: &[&str]) -> Output {
    ferry()
        .arg("doctor")
        .arg("--model-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn without_a_driver_it_says_so_and_checks_the_model() {
    let t = tempfile::tempdir().unwrap();
    let dir = model(t.path(), "DeepSeek-R1", 689_000_000_000);
    let o = doctor(&dir, &["--tp", "24", "--nnodes", "3"]);
    let out = stdout(&o);
    let has_driver = out.contains("gpu 0:");
    if !has_driver {
        assert!(out.contains("no NVIDIA driver found"), "{out}");
        assert!(out.contains("the model checks below still ran"), "{out}");
    }
    assert!(
        out.contains("DeepseekV3ForCausalLM bfloat16, fp8 weights"),
        "{out}"
    );
    assert!(
        out.contains("error    tp.heads           tp 24 does not divide the model's 128"),
        "{out}"
    );
    assert!(out.contains("fix: use a tp that divides 128"), "{out}");
    assert!(out.contains("verdict: will not run"), "{out}");
    assert_eq!(o.status.code(), Some(1));

    let o = doctor(&dir, &["--tp", "16", "--nnodes", "2", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["facts"]["model"]["config"]["num_attention_heads"], 128);
    assert_eq!(v["facts"]["model"]["config"]["quant_method"], "fp8");
    assert_eq!(v["facts"]["model"]["weight_bytes"], 689_000_000_000u64);
    let rule = |name: &str| {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    };
    assert_eq!(rule("tp.heads")["severity"], "pass");
    if !has_driver {
        assert_eq!(rule("gpu.driver")["severity"], "warning");
        assert!(v["facts"]["node"]["nvml_error"]
            .as_str()
            .unwrap()
            .contains("no NVIDIA driver found"));
        assert_eq!(o.status.code(), Some(0), "{v}");
    }
}

#[test]
fn assumed_gpus_reproduce_the_seed_failures() {
    let t = tempfile::tempdir().unwrap();
    let q7 = model(t.path(), "DeepSeek-R1-Distill-Qwen-7B", 15_230_000_000);
    let o = doctor(&q7, &["--assume-gpu", "H200"]);
    let out = stdout(&o);
    assert!(out.contains("gpu 0: NVIDIA H200, sm90"), "{out}");
    assert!(out.contains("verdict: should run"), "{out}");
    assert_eq!(o.status.code(), Some(0), "{out}");

    let o = doctor(&q7, &["--assume-gpu", "T4", "--engine", "vllm"]);
    let out = stdout(&o);
    assert!(out.contains("Bfloat16 is only supported"), "{out}");
    assert!(
        out.contains("fix: start the engine with `--dtype half`"),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(1));

    let r1 = model(t.path(), "DeepSeek-R1", 689_000_000_000);
    let o = doctor(
        &r1,
        &[
            "--assume-gpu",
            "A800",
            "--tp",
            "16",
            "--nnodes",
            "2",
            "--engine-image",
            "lmsysorg/sglang:v0.4.6.post1-cu124",
        ],
    );
    let out = stdout(&o);
    assert!(out.contains("error    capability.fp8"), "{out}");
    assert!(
        out.contains("image lmsysorg/sglang:v0.4.6.post1-cu124 (CUDA 12.4)"),
        "{out}"
    );
}

/// `--repo` of a repo the hub does not have: the same exit code and message as `ferry fetch`
/// (not found, 4; the hub answers 401 for a private and a missing repo alike, so the hint says
/// both), before any check runs.
#[test]
fn repo_that_does_not_exist_fails_like_fetch() {
    let hub = support::Hub::r1(16 << 20);
    let o = hub
        .ferry()
        .args(["doctor", "--repo", "deepseek-ai/No-Such-Model"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("not found"), "{err}");
    assert!(err.contains("private"), "{err}");
    assert!(err.contains("No-Such-Model"), "{err}");
}

mod support;

/// `--repo`: the weights' sizes come from the hub's listing and config.json is fetched alone;
/// no weight byte is downloaded and nothing is left behind.
#[test]
fn repo_reads_the_listing_and_config_json_only() {
    let hub = support::Hub::r1(64 << 20);
    let src = hub.repo_dir(support::REPO);
    let listed: u64 = support::walk(&src)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let o = hub
        .ferry()
        .args(["doctor", "--repo", support::REPO, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", support::text(&o)));
    let model = &v["facts"]["model"];
    assert_eq!(model["weight_source"], "hub listing", "{v}");
    assert_eq!(model["weight_bytes"].as_u64(), Some(listed), "{v}");
    assert_eq!(model["complete"], false, "{v}");
    assert_eq!(
        model["config"]["architecture"], "DeepseekV3ForCausalLM",
        "{model}"
    );
    let sent = hub.stats().bytes_sent;
    assert!(
        sent < listed / 10,
        "doctor downloaded {sent} bytes of {listed}"
    );
}
