//! `ferry sidecar` end to end: the real binary, real HTTP on loopback, a model directory that
//! fills up while the sidecar watches.
//!
//! The model is written here with sharder's manifest API, the way `ferry fetch` commits one:
//! files first, manifest last.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_sharder::{FileHash, Manifest, ManifestFile};
use sha2::Digest as _;

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// A small but valid checkpoint: config.json and one safetensors shard with one tensor.
/// Returns the files as (path, bytes).
fn model_files() -> Vec<(&'static str, Vec<u8>)> {
    let header = br#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    let mut shard = (header.len() as u64).to_le_bytes().to_vec();
    shard.extend_from_slice(header);
    shard.extend_from_slice(&[0u8; 16]);
    vec![
        ("config.json", br#"{"num_hidden_layers": 1}"#.to_vec()),
        ("model.safetensors", shard),
    ]
}

fn write_files(dir: &Path, files: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (p, b) in files {
        std::fs::write(dir.join(p), b).unwrap();
    }
}

fn commit_manifest(dir: &Path, files: &[(&str, Vec<u8>)]) {
    let m = Manifest {
        selection: None,
        format: ferry_sharder::manifest::FORMAT,
        repo: "test-org/tiny".into(),
        source: "hf".into(),
        revision: "main".into(),
        commit: "c0ffee".repeat(6) + "c0ff",
        ferry_version: "test".into(),
        completed_at: "2026-01-01T00:00:00Z".into(),
        files: files
            .iter()
            .map(|(p, b)| ManifestFile {
                path: p.to_string(),
                size: b.len() as u64,
                hash: FileHash::Sha256(hex::encode(sha2::Sha256::digest(b))),
            })
            .collect(),
    };
    m.write_atomic(dir).unwrap();
}

/// A running sidecar whose stderr is collected line by line; killed if a test fails midway.
struct Sidecar {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    addr: SocketAddr,
}

impl Sidecar {
    fn start(args: &[&str]) -> Sidecar {
        let mut child = ferry()
            .arg("sidecar")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--poll-max", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Sidecar {
            child,
            lines,
            log: Vec::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = s.wait_for_log("serving /healthz");
        let url = line.rsplit("http://").next().unwrap().trim();
        s.addr = url.parse().unwrap();
        s
    }

    fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no log line with {needle:?}; got:\n{}", self.log.join("\n"));
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// Polls `path` until it answers `code`, returning the body.
    fn wait_for_status(&self, path: &str, code: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (c, body) = self.get(path);
            if c == code {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} stayed {c}, never {code}: {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status within a bounded time.
    fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET over a fresh connection: (status code, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"));
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, body.to_string())
}

/// A metric's value from the text exposition, by exact series name (with labels, if any).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn serve_opens_only_once_the_model_is_complete_and_verified() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("model");
    let sc = Sidecar::start(&["--model-dir", dir.to_str().unwrap(), "--mode", "serve"]);

    // Nothing there yet: alive, not ready, and says what it waits for.
    assert_eq!(sc.get("/healthz").0, 200);
    let (code, body) = sc.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("manifest.json"), "{body}");
    let m = sc.get("/metrics").1;
    assert_eq!(metric(&m, "ferry_gate_open"), Some(0.0), "{m}");
    assert_eq!(
        metric(&m, r#"ferry_state{state="waiting"}"#),
        Some(1.0),
        "{m}"
    );

    // Files without a manifest: a fetch still running. Still shut.
    let files = model_files();
    write_files(&dir, &files);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(sc.get("/readyz").0, 503);

    // A manifest that the files do not match (the shard is short): shut, and it says why.
    std::fs::write(dir.join("model.safetensors"), &files[1].1[..20]).unwrap();
    commit_manifest(&dir, &files);
    let body = loop {
        let (code, body) = sc.get("/readyz");
        assert_eq!(code, 503, "opened on a damaged model: {body}");
        if body.starts_with("failed") {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("model.safetensors"), "{body}");

    // Repaired: opens.
    std::fs::write(dir.join("model.safetensors"), &files[1].1).unwrap();
    let body = sc.wait_for_status("/readyz", 200);
    assert!(body.starts_with("open: test-org/tiny at "), "{body}");
    assert!(!body.contains("open: open:"), "{body}");
    assert_eq!(sc.get("/healthz").0, 200);

    let m = sc.get("/metrics").1;
    let total: usize = files.iter().map(|f| f.1.len()).sum();
    assert_eq!(metric(&m, "ferry_gate_open"), Some(1.0), "{m}");
    assert_eq!(metric(&m, r#"ferry_state{state="open"}"#), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, r#"ferry_state{state="waiting"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(metric(&m, "ferry_model_bytes"), Some(total as f64), "{m}");
    assert_eq!(metric(&m, "ferry_model_files"), Some(2.0), "{m}");
    assert!(metric(&m, "ferry_wait_seconds").unwrap() > 0.5, "{m}");
    assert!(m.trim_end().ends_with("# EOF"), "{m}");

    assert!(sc.terminate().success());
}

#[test]
fn serve_with_warm_reports_the_warm_in_metrics() {
    let d = tempfile::tempdir().unwrap();
    let files = model_files();
    write_files(d.path(), &files);
    commit_manifest(d.path(), &files);
    let mut sc = Sidecar::start(&["--model-dir", d.path().to_str().unwrap(), "--warm"]);
    sc.wait_for_status("/readyz", 200);
    sc.wait_for_log("warmed");
    let m = sc.get("/metrics").1;
    let total: usize = files.iter().map(|f| f.1.len()).sum();
    assert_eq!(metric(&m, "ferry_warm_bytes"), Some(total as f64), "{m}");
    assert_eq!(
        metric(&m, "ferry_warm_target_bytes"),
        Some(total as f64),
        "{m}"
    );
    assert!(metric(&m, "ferry_residency_ratio").unwrap() > 0.95, "{m}");
    assert!(
        metric(&m, "ferry_warm_bytes_per_second").unwrap() > 0.0,
        "{m}"
    );
    assert!(sc.terminate().success());
}

fn init(dir: &Path, extra: &[&str]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = ferry()
        .args(["sidecar", "--mode", "init", "--model-dir"])
        .arg(dir)
        .args(["--poll-max", "200ms"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn init_exits_zero_once_the_model_is_there() {
    let d = tempfile::tempdir().unwrap();
    let files = model_files();
    write_files(d.path(), &files);
    commit_manifest(d.path(), &files);
    let (code, err, _) = init(d.path(), &["--timeout", "20s", "--warm"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("gate open"), "{err}");

    // And when the model arrives during the wait.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        let files = model_files();
        write_files(&dir, &files);
        commit_manifest(&dir, &files);
    });
    let (code, err, took) = init(d.path(), &["--timeout", "20s"]);
    writer.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        took >= Duration::from_millis(700),
        "opened before the model was there"
    );
}

#[test]
fn init_times_out_saying_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    let files = model_files();
    write_files(d.path(), &files[..1]);
    let (code, err, took) = init(d.path(), &["--timeout", "1s"]);
    assert_eq!(code, Some(8), "timeout exit code; stderr: {err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(err.contains("gave up after"), "{err}");
    assert!(err.contains("no completion manifest"), "{err}");
    assert!(err.contains("1 model files"), "{err}");
}

#[test]
fn init_fails_on_a_corrupt_model_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let files = model_files();
    write_files(d.path(), &files);
    let mut wrong = files.clone();
    wrong[1].1.push(0); // the manifest promises one byte more than the shard has
    commit_manifest(d.path(), &wrong);
    let (code, err, _) = init(d.path(), &["--timeout", "20s"]);
    assert_eq!(code, Some(5), "verify exit code; stderr: {err}");
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("failed validation"), "{err}");
}

#[test]
fn serve_gives_up_on_a_model_that_stays_bad() {
    let d = tempfile::tempdir().unwrap();
    let files = model_files();
    write_files(d.path(), &files[..1]);
    commit_manifest(d.path(), &files); // lists a shard that never arrives
    let out = ferry()
        .args(["sidecar", "--mode", "serve", "--listen", "127.0.0.1:0"])
        .args(["--poll-max", "200ms", "--timeout", "1s", "--model-dir"])
        .arg(d.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.contains("still fails validation"), "{err}");
    assert!(err.contains("model.safetensors: missing"), "{err}");
}

#[test]
fn full_verification_catches_what_the_quick_check_cannot() {
    let d = tempfile::tempdir().unwrap();
    let files = model_files();
    write_files(d.path(), &files);
    commit_manifest(d.path(), &files);
    // Same size, different bytes: only a re-hash sees it.
    std::fs::write(d.path().join("config.json"), br#"{"num_hidden_layers": 2}"#).unwrap();
    let (code, err, _) = init(d.path(), &["--timeout", "20s"]);
    assert_eq!(code, Some(0), "quick check: {err}");
    let (code, err, _) = init(d.path(), &["--timeout", "20s", "--full"]);
    assert_eq!(code, Some(5), "--full: {err}");
    assert!(err.contains("config.json"), "{err}");
}

mod support;

/// The whole path: the sidecar waits on an empty directory while a real `ferry fetch` from
/// hubsim fills it, and the gate opens only once the manifest is committed.
#[test]
fn serve_gates_on_a_real_fetch_from_hubsim() {
    use hubsim::generate::Layout;
    const MIB: u64 = 1 << 20;
    let hub = support::Hub::with_config(
        |root| {
            support::generate(root, support::REPO, 8, 48 * MIB, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    );
    // Slow enough that the sidecar sees the directory half-written for a while.
    hub.faults_json(serde_json::json!({"bandwidth_total_bps": 24 * MIB}));
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("model");
    let sc = Sidecar::start(&["--model-dir", dir.to_str().unwrap(), "--mode", "serve"]);
    assert_eq!(sc.get("/healthz").0, 200);
    assert_eq!(sc.get("/readyz").0, 503);

    let mut fetch = hub
        .ferry()
        .args([
            "fetch",
            support::REPO,
            "--quiet",
            "--chunk-size",
            "1MiB",
            "--to",
        ])
        .arg(&dir)
        .spawn()
        .unwrap();
    let manifest = dir.join(".ferry/manifest.json");
    let mut polls_while_fetching = 0;
    let status = loop {
        let ready = sc.get("/readyz").0 == 200;
        // Read the manifest's presence after the answer: ready implies it already existed.
        assert!(
            !ready || manifest.exists(),
            "/readyz was 200 before the manifest existed"
        );
        if let Some(status) = fetch.try_wait().unwrap() {
            break status;
        }
        if !ready {
            polls_while_fetching += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert!(
        polls_while_fetching > 5,
        "the fetch was too quick to observe the gate shut"
    );
    sc.wait_for_status("/readyz", 200);
    let (_, metrics) = sc.get("/metrics");
    assert_eq!(metric(&metrics, "ferry_gate_open"), Some(1.0), "{metrics}");
    let total: u64 = support::model_files(&hub.repo_dir(support::REPO))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(
        metric(&metrics, "ferry_model_bytes"),
        Some(total as f64),
        "{metrics}"
    );
    assert!(sc.terminate().success());
}

/// A model with 128 attention heads and two layers of one tensor each, complete.
fn preflight_model(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let header = br#"{"model.layers.0.mlp.w":{"dtype":"F32","shape":[64],"data_offsets":[0,256]},"model.layers.1.mlp.w":{"dtype":"F32","shape":[64],"data_offsets":[256,512]}}"#;
    let mut shard = (header.len() as u64).to_le_bytes().to_vec();
    shard.extend_from_slice(header);
    shard.extend_from_slice(&[0u8; 512]);
    let files = vec![
        (
            "config.json",
            br#"{"num_hidden_layers": 2, "num_attention_heads": 128, "num_key_value_heads": 128, "hidden_size": 7168, "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}"#.to_vec(),
        ),
        ("model.safetensors", shard),
    ];
    write_files(dir, &files);
    commit_manifest(dir, &files);
    files
}

#[test]
fn preflight_keeps_the_gate_shut_with_the_finding_and_fix() {
    let d = tempfile::tempdir().unwrap();
    preflight_model(d.path());
    let dir = d.path().to_str().unwrap();
    let args = [
        "--model-dir",
        dir,
        "--preflight",
        "--tp",
        "24",
        "--nnodes",
        "3",
        "--gpus-per-node",
        "8",
    ];
    let mut sc = Sidecar::start(&args);
    sc.wait_for_log("preflight for");
    let (code, body) = sc.get("/readyz");
    assert_eq!(code, 503);
    assert!(body.starts_with("failed: preflight"), "{body}");
    assert!(
        body.contains("tp 24 does not divide the model's 128 attention heads"),
        "{body}"
    );
    assert!(
        body.contains("fix: use a tp that divides 128: 1, 2, 4, 8, 16, 32, 64"),
        "{body}"
    );
    let m = sc.get("/metrics").1;
    let line = m
        .lines()
        .find(|l| l.starts_with("ferry_preflight_finding{") && l.contains("rule=\"tp.heads\""))
        .unwrap_or_else(|| panic!("no tp.heads finding in\n{m}"));
    assert!(
        line.contains("severity=\"error\"") && line.ends_with(" 1"),
        "{line}"
    );
    assert_eq!(metric(&m, "ferry_gate_open"), Some(0.0));
    assert!(sc.terminate().success());
    // Init mode exits with the same finding.
    let (code, err, _) = init(d.path(), &args[2..]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("preflight") && err.contains("tp.heads"),
        "{err}"
    );
}

#[test]
fn preflight_passes_and_each_node_warms_only_its_share() {
    let d = tempfile::tempdir().unwrap();
    let files = preflight_model(d.path());
    let total: usize = files.iter().map(|f| f.1.len()).sum();
    let dir = d.path().to_str().unwrap();
    // Two pipeline stages on two nodes: node 1 holds layer 1 only, so it warms less than all.
    let args = [
        "--model-dir",
        dir,
        "--preflight",
        "--warm",
        "--tp",
        "1",
        "--pp",
        "2",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
    ];
    let mut sc = Sidecar::start(&args);
    sc.wait_for_status("/readyz", 200);
    sc.wait_for_log("warmed");
    let m = sc.get("/metrics").1;
    let target = metric(&m, "ferry_warm_target_bytes").unwrap();
    assert!(
        target > 0.0 && target <= (total - 256) as f64,
        "{target} of {total}\n{m}"
    );
    assert!(!m.contains("rule=\"tp.heads\""), "{m}");
    assert!(sc.terminate().success());
}

#[test]
fn serve_shuts_the_gate_when_the_model_changes_after_it_opened() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("model");
    let files = model_files();
    write_files(&dir, &files);
    commit_manifest(&dir, &files);
    let sc = Sidecar::start(&[
        "--model-dir",
        dir.to_str().unwrap(),
        "--mode",
        "serve",
        "--recheck-every",
        "500ms",
    ]);
    sc.wait_for_status("/readyz", 200);

    // A shard deleted under the open gate: the timer alone (only /metrics polled, which does
    // not re-check) shuts it within a bound.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let started = Instant::now();
    let m = loop {
        let m = sc.get("/metrics").1;
        if metric(&m, "ferry_gate_open") == Some(0.0) {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still open 5 s after a shard was deleted: {m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(metric(&m, "ferry_recheck_failures_total"), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, r#"ferry_state{state="failed"}"#),
        Some(1.0),
        "{m}"
    );
    let reason = m
        .lines()
        .find(|l| l.starts_with("ferry_recheck_failed{"))
        .unwrap_or_else(|| panic!("no ferry_recheck_failed series: {m}"));
    assert!(
        reason.contains("model.safetensors") && reason.ends_with(" 1"),
        "{reason}"
    );
    let (code, body) = sc.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("changed after the gate opened"), "{body}");
    assert!(body.contains("model.safetensors"), "{body}");

    // Whole again: reopens; the counter keeps its count and the reason is gone.
    std::fs::write(dir.join("model.safetensors"), &files[1].1).unwrap();
    sc.wait_for_status("/readyz", 200);
    let m = sc.get("/metrics").1;
    assert_eq!(metric(&m, "ferry_recheck_failures_total"), Some(1.0), "{m}");
    assert!(!m.contains("ferry_recheck_failed{"), "{m}");

    // The manifest removed: /readyz itself notices (no wait for the timer tick).
    std::fs::remove_file(ferry_sharder::layout::manifest_path(&dir)).unwrap();
    let started = Instant::now();
    let body = sc.wait_for_status("/readyz", 503);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(body.contains("manifest") && body.contains("gone"), "{body}");
    let m = sc.get("/metrics").1;
    assert_eq!(metric(&m, "ferry_recheck_failures_total"), Some(2.0), "{m}");
    assert!(sc.terminate().success());
}
