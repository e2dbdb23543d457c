//! `ferry plan slices` and `ferry plan warm` end to end, on the simulated full-scale layouts.

use std::process::{Command, Output};

use ferry_sharder::slices::Slice;
use ferry_sharder::warm_plan::WarmPlan;

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("run ferry")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn slices_of_deepseek_are_balanced_json_and_table() {
    for n in ["4", "8", "16", "32"] {
        let out = ferry(&[
            "plan",
            "slices",
            "--simulate",
            "deepseek-r1",
            "--count",
            n,
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let s: Vec<Slice> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(s.len().to_string(), n);
        let total: u64 = s.iter().map(|s| s.bytes).sum();
        let max = s.iter().map(|s| s.bytes).max().unwrap();
        assert!(max as f64 <= 1.1 * total as f64 / s.len() as f64);
    }
    let out = ferry(&[
        "plan",
        "slices",
        "--simulate",
        "deepseek-r1",
        "--count",
        "8",
    ]);
    assert!(
        text(&out.stdout).contains("largest slice / mean = 1.0000"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn slices_from_a_file_list_and_a_directory() {
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("files.json");
    std::fs::write(
        &list,
        r#"[{"path":"a.safetensors","size":1000},{"path":"b.safetensors","size":1000},{"path":"config.json","size":10}]"#,
    )
    .unwrap();
    let out = ferry(&[
        "plan",
        "slices",
        "--count",
        "2",
        "--files",
        list.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: Vec<Slice> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s[0].pieces[0].path, "a.safetensors");
    assert_eq!(s.iter().map(|s| s.bytes).sum::<u64>(), 2010);

    let out = ferry(&[
        "plan",
        "slices",
        "--count",
        "2",
        "--dir",
        d.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: Vec<Slice> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        s.iter().flat_map(|s| &s.pieces).count(),
        1,
        "the directory holds files.json only"
    );
}

#[test]
fn warm_plan_for_pipeline_parallel_is_readable_by_warm() {
    let d = tempfile::tempdir().unwrap();
    let out_file = d.path().join("plan.json");
    let out = ferry(&[
        "plan",
        "warm",
        "--simulate",
        "deepseek-r1",
        "--nnodes",
        "4",
        "--gpus-per-node",
        "8",
        "--pp",
        "4",
        "--engine",
        "vllm",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("46-60") && table.contains("tp 8 pp 4"),
        "{table}"
    );
    let plan = WarmPlan::read(&out_file).unwrap();
    assert_eq!(plan.nodes.len(), 4);
    assert_eq!(plan.node(0).unwrap().layers, Some([0, 14]));
    assert_eq!(plan.node(3).unwrap().layers, Some([46, 60]));
    assert!(plan.nodes.iter().all(|n| n.bytes < plan.model_bytes / 3));
    // The last stage reads lm_head; the first reads the embedding.
    let last = plan.node(3).unwrap();
    assert!(
        last.ranges
            .iter()
            .any(|r| r.path == "model-00160-of-000163.safetensors"
                || r.path.ends_with(".safetensors"))
    );
}

#[test]
fn impossible_parallelism_is_refused() {
    let out = ferry(&[
        "plan",
        "warm",
        "--simulate",
        "llama-70b",
        "--nnodes",
        "2",
        "--gpus-per-node",
        "8",
        "--tp",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("tp 4 × pp 1 = 4"),
        "{}",
        text(&out.stderr)
    );
    let out = ferry(&[
        "plan",
        "warm",
        "--simulate",
        "nope",
        "--nnodes",
        "1",
        "--gpus-per-node",
        "8",
    ]);
    assert!(
        text(&out.stderr).contains("deepseek-r1"),
        "{}",
        text(&out.stderr)
    );
}
