//! `ferry lint` and `ferry deploy render` as a user runs them: files, directories, stdin, exit
//! codes, human and JSON output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

fn fixture(rule: &str, which: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/tests/fixtures")
        .join(rule)
        .join(format!("{which}.yaml"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("ferry runs")
}

fn run_stdin(args: &[&str], input: &str) -> Output {
    let mut child = ferry()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("ferry exits")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_bad_file_fails_with_rule_object_field_and_fix() {
    let out = run(ferry()
        .arg("lint")
        .arg(fixture("service-env-collision", "bad")));
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("error[service-env-collision] Service/vllm"),
        "{stdout}"
    );
    assert!(stdout.contains("field: metadata.name"), "{stdout}");
    assert!(stdout.contains("fix: rename the Service"), "{stdout}");
    assert!(stdout.contains("1 errors, 0 warnings"), "{stdout}");
    assert!(
        text(&out.stderr).contains("1 errors"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_fixed_file_passes() {
    let out = run(ferry()
        .arg("lint")
        .arg(fixture("service-env-collision", "good")));
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("0 errors, 0 warnings"));
}

#[test]
fn stdin_and_json() {
    let bad = std::fs::read_to_string(fixture("no-gate", "bad")).expect("fixture");
    let out = run_stdin(&["lint", "--json", "-"], &bad);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["errors"], 1);
    assert_eq!(report["objects"], 1);
    let f = &report["findings"][0];
    assert_eq!(f["rule"], "no-gate");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["object"], "Deployment/r1");
    assert_eq!(f["source"], "-");
    assert_eq!(f["field"], "spec.template.spec.initContainers");
    assert!(f["fix"]
        .as_str()
        .is_some_and(|s| s.contains("ferry sidecar")));
}

#[test]
fn warnings_pass_unless_denied() {
    let path = fixture("image-tag-floating", "bad");
    let out = run(ferry().arg("lint").arg(&path));
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("warning[image-tag-floating]"));
    let out = run(ferry().args(["lint", "--deny-warnings"]).arg(&path));
    assert!(!out.status.success());
}

#[test]
fn several_inputs_are_linted_together() {
    // A PVC in one file, the LWS that shares it in another: only together is RWO wrong.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = std::fs::read_to_string(fixture("shared-pvc-not-rwx", "bad")).expect("fixture");
    let (lws, pvc) = bad.split_once("\n---\n").expect("two documents");
    std::fs::write(dir.path().join("lws.yaml"), lws).expect("write");
    std::fs::write(dir.path().join("pvc.yaml"), pvc).expect("write");
    let out = run(ferry().arg("lint").arg(dir.path().join("pvc.yaml")));
    assert!(
        out.status.success(),
        "a PVC alone is fine: {}",
        text(&out.stdout)
    );
    let out = run(ferry().arg("lint").arg(dir.path()));
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("error[shared-pvc-not-rwx] PersistentVolumeClaim/models"));
}

#[test]
fn unreadable_and_malformed_inputs_fail_with_their_name() {
    let out = run(ferry().args(["lint", "/nonexistent/ferry.yaml"]));
    // Not found: exit 4, as the README's exit codes say.
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("/nonexistent/ferry.yaml"),
        "{}",
        text(&out.stderr)
    );
    let out = run_stdin(&["lint", "-"], "kind: Pod\n  metadata: [\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("-: document 0"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn rules_are_listed() {
    let out = run(ferry().args(["lint", "--list-rules", "--json"]));
    assert!(out.status.success());
    let rules: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let ids: Vec<&str> = rules
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    for id in [
        "service-env-collision",
        "liveness-without-startup",
        "no-gate",
        "shared-pvc-not-rwx",
    ] {
        assert!(ids.contains(&id), "{ids:?}");
    }
}

#[test]
fn a_render_passes_lint_and_a_directory_render_is_a_kustomization() {
    let out = run(ferry().args([
        "deploy",
        "render",
        "--engine",
        "sglang",
        "--model",
        "deepseek-ai/DeepSeek-R1",
        "--nodes",
        "2",
        "--gpus-per-node",
        "8",
        "--namespace",
        "llm",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    assert!(yaml.contains("kind: LeaderWorkerSet") && yaml.contains("name: deepseek-r1-api"));
    let lint = run_stdin(&["lint", "-"], &yaml);
    assert!(lint.status.success(), "{}", text(&lint.stdout));

    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(ferry()
        .args([
            "deploy",
            "render",
            "--engine",
            "vllm",
            "--model",
            "deepseek-ai/DeepSeek-R1",
            "--out",
        ])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("kustomization.yaml").is_file());
    assert!(dir.path().join("03-deployment-deepseek-r1.yaml").is_file());
}

#[test]
fn render_refuses_a_service_named_after_the_engine() {
    let out = run(ferry().args([
        "deploy", "render", "--engine", "vllm", "--model", "x/y", "--name", "vllm",
    ]));
    // Parameters that cannot work are a usage error.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("VLLM_PORT"),
        "{}",
        text(&out.stderr)
    );
}

/// A directory holding a kustomization is built with kubectl (when it is installed).
#[test]
fn a_kustomization_directory_is_built_and_linted() {
    let has_kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_kubectl {
        eprintln!("kubectl not installed: skipped");
        return;
    }
    let overlay = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/overlays/sglang-4x4");
    let out = run(ferry().args(["lint", "--json"]).arg(&overlay));
    assert!(out.status.success(), "{}", text(&out.stdout));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        report["objects"].as_u64().is_some_and(|n| n >= 9),
        "{report}"
    );
}
