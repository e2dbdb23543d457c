//! `ferry fetch` as people used to `hf download` / `modelscope download` type it: aliases,
//! positional file names, `ORG/NAME@REV`, `--source`, `--dry-run`, numeric flags checked by clap,
//! `--json` lines (errors included), output to a closed pipe, and the words it prints.

mod support;

use std::path::Path;

use hubsim::generate::Layout;
use serde_json::json;
use support::*;

const MIB: u64 = 1 << 20;

/// A small DeepSeek-R1-layout repo: 4 shards, its index, config and tokenizer files.
fn small_hub() -> Hub {
    Hub::with_config(
        |root| {
            generate(root, REPO, 4, 4 * MIB, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    )
}

/// `ferry fetch ARGS --to TO` against `hub`, which must succeed.
#[track_caller]
fn fetch_ok(hub: &Hub, args: &[&str], to: impl AsRef<std::ffi::OsStr>) -> std::process::Output {
    let out = run(hub.ferry().arg("fetch").args(args).arg("--to").arg(to));
    assert!(out.status.success(), "{}", text(&out));
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = model_files(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every stdout line of a `--json` run, parsed; fails on a line that is not JSON.
fn json_lines(o: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

#[test]
fn local_dir_and_max_workers_are_aliases_of_to_and_jobs() {
    let hub = small_hub();
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub
        .ferry()
        .args(["fetch", REPO, "--max-workers", "2", "--local-dir"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    let help = stdout(&run(ferry().args(["fetch", "--help"])));
    assert!(
        help.contains("local-dir") && help.contains("max-workers"),
        "{help}"
    );
}

#[test]
fn file_names_after_the_repo_fetch_only_those_and_add_to_include() {
    let hub = small_hub();
    let dir = tempfile::tempdir().unwrap();
    fetch_ok(&hub, &[REPO, "config.json", "tokenizer.json"], dir.path());
    assert_eq!(names(dir.path()), ["config.json", "tokenizer.json"]);
    // One file: "1 file", never "1 files".
    let dir1 = tempfile::tempdir().unwrap();
    let out = fetch_ok(&hub, &[REPO, "config.json"], dir1.path());
    let err = stderr(&out);
    assert!(
        err.contains("fetched 1 file (") && !err.contains("1 files"),
        "{err}"
    );

    // Names and --include together: the union.
    let dir = tempfile::tempdir().unwrap();
    fetch_ok(
        &hub,
        &[REPO, "config.json", "--include", "model-00001-*"],
        dir.path(),
    );
    let got = names(dir.path());
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0] == "config.json" && got[1].starts_with("model-00001-"));
}

#[test]
fn org_name_at_rev_is_accepted_and_a_second_revision_is_a_usage_error() {
    let hub = small_hub();
    let dir = tempfile::tempdir().unwrap();
    let out = fetch_ok(&hub, &[&format!("{REPO}@main"), "--json"], dir.path());
    assert_eq!(summary(&out)["revision"], "main");

    let out = run(hub
        .ferry()
        .args([
            "fetch",
            &format!("{REPO}@main"),
            "--revision",
            "dev",
            "--to",
        ])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("give one of them"), "{}", text(&out));
}

#[test]
fn source_is_the_flag_everywhere_and_hub_a_hidden_alias() {
    for cmd in [
        &["fetch"][..],
        &["verify"],
        &["plan", "slices"],
        &["doctor"],
    ] {
        let out = run(ferry().args(cmd).arg("--help"));
        let help = stdout(&out);
        assert!(help.contains("--source"), "{cmd:?}: {help}");
        assert!(!help.contains("--hub"), "{cmd:?} shows --hub: {help}");
    }
    // The old name still parses (here into a dry run against the ModelScope protocol).
    let hub = small_hub();
    let dir = tempfile::tempdir().unwrap();
    let out = fetch_ok(
        &hub,
        &[REPO, "--hub", "modelscope", "--dry-run", "--json"],
        dir.path().join("m"),
    );
    assert_eq!(json_lines(&out)[0]["source"], "modelscope");
}

#[test]
fn dry_run_tells_what_would_move_and_the_space_and_writes_nothing() {
    let hub = small_hub();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let out = fetch_ok(&hub, &[REPO, "--dry-run"], &dir);
    assert!(!dir.exists(), "--dry-run created {}", dir.display());
    let t = stdout(&out);
    assert!(
        t.contains("fetch: 10 files") && t.contains("needed") && t.contains("free"),
        "{t}"
    );
    assert_eq!(hub.stats().bytes_sent, 0, "a dry run downloads no file");

    // After a fetch: everything is reused, nothing needed.
    fetch_ok(&hub, &[REPO], &dir);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let out = fetch_ok(&hub, &[REPO, "--dry-run", "--json"], &dir);
    let v = &json_lines(&out)[0];
    assert_eq!(v["event"], "dry_run");
    let files = v["files"].as_array().unwrap();
    let fetch: Vec<_> = files.iter().filter(|f| f["action"] == "fetch").collect();
    assert_eq!(fetch.len(), 1, "{v:#}");
    assert_eq!(fetch[0]["path"], "config.json");
    assert!(files
        .iter()
        .filter(|f| f["path"] != "config.json")
        .all(|f| f["action"] == "reuse"));
    assert_eq!(v["disk_needed"], fetch[0]["size"]);
    assert!(v["disk_free"].as_u64().unwrap() > 0);
    assert!(
        !dir.join("config.json").exists(),
        "the dry run wrote a file"
    );
}

#[test]
fn numeric_flags_out_of_range_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for args in [
        &["fetch", REPO, "--to", d, "--jobs", "0"][..],
        &["fetch", REPO, "--to", d, "--max-workers", "0"],
        &["fetch", REPO, "--to", d, "--connections", "0"],
        &["fetch", REPO, "--to", d, "--chunk-size", "1KiB"],
        &["fetch", REPO, "--to", d, "--stall-timeout", "0s"],
        &["fetch", REPO, "--to", d, "--slices", "0"],
        &["warm", d, "--jobs", "0"],
        &[
            "plan",
            "slices",
            "--count",
            "0",
            "--simulate",
            "deepseek-r1",
        ],
        &[
            "deploy", "render", "--engine", "sglang", "--model", "a/b", "--slices", "0",
        ],
    ] {
        let out = run(ferry().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(stderr(&out).contains("error:"), "{args:?}: {}", text(&out));
    }
}

#[test]
fn every_help_ends_with_examples() {
    for cmd in [
        &["fetch"][..],
        &["verify"],
        &["status"],
        &["plan", "slices"],
        &["plan", "warm"],
        &["warm"],
        &["sidecar"],
        &["doctor"],
        &["lint"],
        &["deploy", "render"],
    ] {
        for flag in ["--help", "-h"] {
            let out = run(ferry().args(cmd).arg(flag));
            assert!(out.status.success(), "{cmd:?}");
            let help = stdout(&out);
            let tail = &help[help
                .rfind("Examples:")
                .unwrap_or_else(|| panic!("{cmd:?}: {help}"))..];
            let examples: Vec<&str> = tail
                .lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .collect();
            assert!(!examples.is_empty(), "{cmd:?}: {tail}");
            for e in examples {
                assert!(
                    e.trim_start().starts_with("ferry ") || e.contains("| ferry "),
                    "{cmd:?}: {e}"
                );
                assert!(e.contains(cmd[0]), "{cmd:?}: {e}");
            }
        }
    }
}

#[test]
fn json_lines_carry_schema_time_and_eta_and_errors_are_lines_too() {
    let hub = small_hub();
    // Slow enough for a few progress lines (one a second).
    hub.faults_json(json!({"bandwidth_total_bps": MIB}));
    let dir = tempfile::tempdir().unwrap();
    let out = fetch_ok(&hub, &[REPO, "--json"], dir.path());
    let lines = json_lines(&out);
    for l in &lines {
        assert_eq!(l["schema"], 1, "{l}");
        humantime::parse_rfc3339(l["ts"].as_str().unwrap()).unwrap();
    }
    let progress: Vec<_> = lines.iter().filter(|l| l["event"] == "progress").collect();
    assert!(progress.len() >= 2, "{}", stdout(&out));
    assert!(progress.iter().all(|p| p.get("eta_seconds").is_some()));
    assert!(
        progress.iter().any(|p| p["eta_seconds"].as_u64().is_some()),
        "no ETA while bytes moved: {progress:?}"
    );
    assert_eq!(lines.last().unwrap()["event"], "summary");

    // A repo that is not there (without a token the hub says 401, as Hugging Face does, and
    // ferry reads it as not found): exit 4, and the error as the last JSON line.
    let out = run(hub
        .ferry()
        .args(["fetch", "nobody/nothing", "--json", "--to"])
        .arg(dir.path().join("x")));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let e = json_lines(&out).pop().unwrap();
    assert_eq!(e["event"], "error");
    assert_eq!(e["kind"], "not_found");
    assert_eq!(e["exit_code"], 4);
    assert!(
        e["message"].as_str().unwrap().contains("nobody/nothing"),
        "{e}"
    );
    assert!(!e["hint"].as_str().unwrap().is_empty());
    assert_eq!(e["schema"], 1);

    // A usage error is one too.
    let out = run(ferry().args(["fetch", REPO, "--json", "--to", "/tmp/x", "--jobs", "0"]));
    assert_eq!(out.status.code(), Some(2));
    let e = json_lines(&out).pop().unwrap();
    assert_eq!(
        (e["kind"].as_str(), e["exit_code"].as_u64()),
        (Some("usage"), Some(2))
    );
}

/// Runs `cmd` with stdout on a pipe whose reading end is already closed: every write fails
/// with EPIPE, as when `head -1` has gone.
fn with_closed_pipe(cmd: &mut std::process::Command) -> std::process::Output {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let write_end = unsafe { std::process::Stdio::from_raw_fd(fds[1]) };
    cmd.stdout(write_end)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run ferry")
}

#[test]
fn a_closed_pipe_ends_quietly_without_a_panic() {
    let hub = small_hub();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // fetch --json writes as it goes: the fetch still completes.
    let out = with_closed_pipe(hub.ferry().args(["fetch", REPO, "--json", "--to", d]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(dir.path().join(".ferry/manifest.json").exists());
    for args in [
        &["verify", "--json", d][..],
        &["verify", d],
        &["status", d],
        &["status", "--json", d],
        &[
            "plan",
            "slices",
            "--count",
            "8",
            "--simulate",
            "deepseek-r1",
        ],
    ] {
        let out = with_closed_pipe(ferry().args(args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }
    // And through a real shell pipeline, as people type it.
    for cmd in [
        format!(
            "'{}' verify --json '{d}' | head -1",
            env!("CARGO_BIN_EXE_ferry")
        ),
        format!("'{}' status '{d}' | head -1", env!("CARGO_BIN_EXE_ferry")),
    ] {
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("{cmd}; exit ${{PIPESTATUS[0]}}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{cmd}: {}", text(&out));
        assert_eq!(stdout(&out).lines().count(), 1, "{cmd}");
        assert!(!stderr(&out).contains("panicked"), "{cmd}: {}", text(&out));
    }
}

#[test]
fn a_clean_finish_leaves_no_stale_lock_and_sizes_are_decimal() {
    let hub = small_hub();
    let dir = tempfile::tempdir().unwrap();
    fetch_ok(&hub, &[REPO], dir.path());
    let out = run(ferry().arg("status").arg(dir.path()));
    let t = stdout(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains("stale"), "{t}");
    let out = run(ferry().args(["status", "--json"]).arg(dir.path()));
    let v = &json_lines(&out)[0];
    for l in v["lock"].as_array().unwrap() {
        assert!(
            ["free", "released"].contains(&l["state"].as_str().unwrap()),
            "{l}"
        );
    }
    // Decimal units (kB, MB, GB) in what fetch and verify print; never KiB/MiB.
    let out = run(ferry().arg("verify").arg(dir.path()));
    let t = stdout(&out);
    assert!(t.contains(" MB") && !t.contains("iB"), "{t}");
}

#[test]
fn a_partial_include_gives_one_summary_line_not_a_warning_per_shard() {
    let hub = Hub::with_config(
        |root| {
            generate(root, REPO, 24, 4 * MIB, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub
        .ferry()
        .args([
            "fetch",
            REPO,
            "--include",
            "model-0000[1-2]-*",
            "--include",
            "*.json",
            "--to",
        ])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("checkpoint:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("selected part of the checkpoint"),
        "{err}"
    );
}

#[test]
fn a_sliced_directory_shows_names_and_totals() {
    let hub = small_hub();
    let dir = tempfile::tempdir().unwrap();
    fetch_ok(&hub, &[REPO, "--slice", "0/2"], dir.path());
    let out = run(ferry().arg("status").arg(dir.path()));
    let t = stdout(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(REPO), "{t}");
    let files = t.lines().find(|l| l.contains("  files ")).unwrap();
    let bytes = t.lines().find(|l| l.contains("  bytes ")).unwrap();
    assert!(!files.contains('?') && files.ends_with("/ 10 done"), "{t}");
    assert!(!bytes.contains('?') && bytes.contains("MB"), "{t}");
    // A commit is shown short, as git does, not as a 40-digit hash.
    let repo_line = t.lines().find(|l| l.contains(REPO)).unwrap();
    assert!(
        !repo_line
            .split_whitespace()
            .any(|w| w.len() == 40 && w.chars().all(|c| c.is_ascii_hexdigit())),
        "{repo_line}"
    );
    assert!(t.contains("slice      0/2"), "{t}");
}
