//! The `hubsim serve` binary: the ready line, CLI fault flags, tokens, and a clean SIGTERM exit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(root: &std::path::Path, extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubsim"))
        .args(["serve", "--root"])
        .arg(root)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .strip_prefix("hubsim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_string();
    (server, url)
}

#[tokio::test]
async fn flags_set_the_fault_set_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("org/tiny");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("config.json"), b"{}\n").unwrap();
    let (_server, url) = spawn(
        dir.path(),
        &[
            "--token",
            "tok1",
            "--bandwidth-total",
            "100MiB",
            "--bandwidth-per-body",
            "1MiB",
            "--latency-ms",
            "5",
            "--max-bodies",
            "4",
            "--over-limit",
            "reject",
            "--redirect",
            "--cdn-expiry-secs",
            "60",
            "--fault",
            r#"{"kind":"status","status":503,"count":1}"#,
        ],
    );
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && port != 0, "{url}");

    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let faults: serde_json::Value = c
        .get(format!("{url}/_hubsim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["bandwidth_total_bps"], 100 * 1024 * 1024);
    assert_eq!(faults["bandwidth_per_body_bps"], 1024 * 1024);
    assert_eq!(faults["latency_ms"], 5);
    assert_eq!(faults["body_limit"]["max_bodies"], 4);
    assert_eq!(faults["body_limit"]["mode"], "reject");
    assert_eq!(faults["cdn_expiry_secs"], 60);
    assert_eq!(
        faults["rules"],
        serde_json::json!([
            {"kind": "redirect"},
            {"kind": "status", "status": 503, "count": 1}
        ])
    );
    let file = format!("{url}/org/tiny/resolve/main/config.json");
    assert_eq!(c.get(&file).send().await.unwrap().status(), 503);
    assert_eq!(
        c.get(&file)
            .bearer_auth("tok1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(&file)
            .bearer_auth("tok2")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[test]
fn bad_flags_fail_fast_and_sigterm_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hubsim"))
        .args(["serve", "--root"])
        .arg(dir.path())
        .args(["--fault", r#"{"kind":"nope"}"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fault"));
    let out = Command::new(env!("CARGO_BIN_EXE_hubsim"))
        .args(["serve", "--root", "/nonexistent/hubsim-root"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let (mut server, _url) = spawn(dir.path(), &[]);
    // SIGTERM through the kill utility (no libc dependency in this crate).
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            assert!(s.success(), "exit status {s:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn prehash_fills_the_hash_cache_before_the_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("org/tiny");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("model.safetensors"), b"hello\n").unwrap();
    let (server, _url) = spawn(dir.path(), &["--prehash"]);
    // Written before the ready line: no request was needed.
    let cache = std::fs::read_to_string(dir.path().join(".hubsim-hashes.json")).unwrap();
    assert!(
        cache.contains("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"),
        "{cache}"
    );
    drop(server);
    let (_server, _url) = spawn(dir.path(), &["--no-hash-cache", "--prehash"]);
}

#[tokio::test]
async fn realistic_and_quirks_flags_set_the_quirks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("org/tiny")).unwrap();
    let get = |url: String| async move {
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let v: serde_json::Value = c
            .get(format!("{url}/_hubsim/faults"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["quirks"].clone()
    };
    let (_a, url) = spawn(dir.path(), &["--realistic"]);
    let want = serde_json::to_value(hubsim::serve::Quirks::realistic()).unwrap();
    assert_eq!(get(url).await, want);
    // tests/python/test_realistic.py spells the same set out.
    let py = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../python/test_realistic.py"
    ))
    .unwrap();
    for (k, _) in want.as_object().unwrap() {
        assert!(
            py.contains(&format!("\"{k}\"")),
            "test_realistic.py lacks {k}"
        );
    }
    let (_b, url) = spawn(dir.path(), &["--quirks", r#"{"ms_listing_cap": 5}"#]);
    assert_eq!(get(url).await, serde_json::json!({"ms_listing_cap": 5}));
}
