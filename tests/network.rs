//! `ferry fetch` on the networks people have: a private CA (made here with rcgen, hubsim served
//! over TLS), proxies (a dead one, NO_PROXY), each way of getting no answer (DNS, refused, TLS,
//! reset, stall) with its exit code, message and time bound, offline mode, and the exit codes of
//! a missing repo, a malformed repo id or endpoint, and a rejected token.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hubsim::generate::Layout;
use support::*;

const MIB: u64 = 1 << 20;

fn small_hub() -> Hub {
    Hub::with(|root| {
        generate(root, REPO, 2, 2 * MIB, Layout::R1);
    })
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn fetch_to(dir: &Path) -> Command {
    let mut c = ferry();
    c.args(["fetch", REPO, "--to"]).arg(dir);
    c
}

/// A private CA and a leaf for localhost / 127.0.0.1 signed by it: (ca.pem, chain.pem, key.pem).
fn private_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ferry test private CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

#[test]
fn a_private_ca_is_trusted_from_ssl_cert_file_requests_ca_bundle_or_the_flag() {
    let hub = small_hub();
    let (ca, chain, key) = private_ca();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let front = rt
        .block_on(hubsim::serve::tls::front(hub.handle.addr, &chain, &key))
        .expect("tls front");
    let pems = tempfile::tempdir().unwrap();
    let ca_file = pems.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();

    // Unknown CA: fails at once, naming the endpoint, where it came from and what to set.
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run_within(
        fetch_to(dir.path()).env("HF_ENDPOINT", front.url()),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let t = text(&out);
    for needle in [
        front.url().as_str(),
        "HF_ENDPOINT",
        "CA",
        "SSL_CERT_FILE",
        "--ca-cert",
    ] {
        assert!(t.contains(needle), "{needle:?} missing: {t}");
    }

    for how in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "--ca-cert",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = fetch_to(dir.path());
        cmd.env("HF_ENDPOINT", front.url());
        if how == "--ca-cert" {
            cmd.arg("--ca-cert").arg(&ca_file);
        } else {
            cmd.env(how, &ca_file);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{how}: {}", text(&out));
        assert_same_files(&hub.repo_dir(REPO), dir.path());
    }

    // A bundle that is named but missing is a usage error naming the variable.
    let dir = tempfile::tempdir().unwrap();
    let out = run(fetch_to(dir.path())
        .env("HF_ENDPOINT", front.url())
        .env("SSL_CERT_FILE", pems.path().join("nope.pem")));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("SSL_CERT_FILE"), "{}", text(&out));
}

#[test]
fn a_dead_proxy_fails_fast_and_is_named_without_credentials_or_token() {
    let port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run_within(
        fetch_to(dir.path())
            .env(
                "HTTPS_PROXY",
                format!("http://alice:proxy-pass@127.0.0.1:{port}"),
            )
            .env("HF_TOKEN", "hf_token_never_printed"),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let t = text(&out);
    assert!(t.contains(&format!("http://127.0.0.1:{port}")), "{t}");
    assert!(t.contains("HTTPS_PROXY"), "{t}");
    assert!(t.contains("https://huggingface.co"), "{t}");
    assert!(
        !t.contains("proxy-pass") && !t.contains("hf_token_never_printed"),
        "{t}"
    );
}

#[test]
fn no_proxy_sends_the_hub_direct_and_the_proxy_is_used_otherwise() {
    let hub = small_hub();
    let port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub
        .ferry()
        .args(["fetch", REPO, "--to"])
        .arg(dir.path())
        .env("HTTP_PROXY", format!("http://127.0.0.1:{port}"))
        .env("NO_PROXY", "localhost,127.0.0.1"));
    assert!(out.status.success(), "{}", text(&out));
    // Without NO_PROXY the same fetch goes to the dead proxy.
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub
        .ferry()
        .args(["fetch", REPO, "--to"])
        .arg(dir.path())
        .env("HTTP_PROXY", format!("http://127.0.0.1:{port}")));
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(text(&out).contains("HTTP_PROXY"), "{}", text(&out));
}

/// Runs a failing fetch against `endpoint` (from --endpoint) and checks the exit code, the time
/// bound and that the message names the endpoint, the flag and `says`.
fn fails_like(endpoint: &str, extra: &[&str], code: i32, within: Duration, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run_within(
        fetch_to(dir.path())
            .args(["--endpoint", endpoint])
            .args(extra),
        Duration::from_secs(90),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    assert!(took < within, "took {took:?}: {t}");
    assert!(t.contains(endpoint.trim_end_matches('/')), "{t}");
    assert!(t.contains("--endpoint"), "{t}");
    assert!(t.contains(says), "{says:?} missing: {t}");
    assert!(t.contains("hint:"), "{t}");
}

#[test]
fn a_name_that_does_not_resolve_fails_at_once() {
    fails_like(
        "https://hub.ferry-test.invalid",
        &[],
        6,
        Duration::from_secs(10),
        "does not resolve",
    );
}

#[test]
fn a_refused_connection_fails_at_once() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    fails_like(&endpoint, &[], 6, Duration::from_secs(10), "refused");
}

#[test]
fn tls_to_a_plain_http_server_fails_at_once() {
    let hub = small_hub();
    let endpoint = format!("https://{}", hub.handle.addr);
    fails_like(&endpoint, &[], 6, Duration::from_secs(10), "TLS");
}

/// A TCP server on loopback: `hang` keeps each connection open and silent, else it is closed
/// at once.
fn bad_server(hang: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten().take(200) {
            if hang {
                held.push(s);
            }
        }
    });
    addr
}

#[test]
fn a_connection_closed_at_once_is_retried_within_the_budget_then_named() {
    let endpoint = format!("http://{}", bad_server(false));
    fails_like(
        &endpoint,
        &["--retry-timeout", "3s"],
        6,
        Duration::from_secs(15),
        "reset",
    );
}

#[test]
fn a_server_that_accepts_and_hangs_is_a_timeout() {
    let endpoint = format!("http://{}", bad_server(true));
    fails_like(
        &endpoint,
        &["--stall-timeout", "1s", "--retry-timeout", "3s"],
        8,
        Duration::from_secs(15),
        "no answer",
    );
}

#[test]
fn offline_answers_from_disk_with_zero_requests_or_fails_at_once() {
    let hub = small_hub();
    let dir = tempfile::tempdir().unwrap();
    let out = run(hub.ferry().args(["fetch", REPO, "--to"]).arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out));
    hub.handle.reset_stats();
    for switch in [("HF_HUB_OFFLINE", "1"), ("FERRY_OFFLINE", "true")] {
        let out = run(hub
            .ferry()
            .env(switch.0, switch.1)
            .args(["fetch", REPO, "--to"])
            .arg(dir.path()));
        assert!(out.status.success(), "{switch:?}: {}", text(&out));
    }
    let out = run(hub
        .ferry()
        .args(["fetch", REPO, "--offline", "--revision", "main", "--to"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out));
    assert!(hub.handle.requests().is_empty(), "offline sent requests");

    // Nothing on disk: fails at once, says why, still no request.
    let empty = tempfile::tempdir().unwrap();
    let (out, took) = run_within(
        hub.ferry()
            .env("HF_HUB_OFFLINE", "1")
            .args(["fetch", REPO, "--to"])
            .arg(empty.path()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(text(&out).contains("HF_HUB_OFFLINE"), "{}", text(&out));
    assert!(text(&out).contains("hint:"), "{}", text(&out));
    // A file gone: incomplete, exit 4 with the verify hint.
    let victim = model_files(dir.path())
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".safetensors"))
        .unwrap();
    std::fs::remove_file(&victim).unwrap();
    let out = run(hub
        .ferry()
        .args(["fetch", REPO, "--offline", "--to"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("incomplete"), "{}", text(&out));
    assert!(hub.handle.requests().is_empty(), "offline sent requests");
}

#[test]
fn exit_codes_for_a_missing_repo_a_bad_id_a_bad_endpoint_and_a_rejected_token() {
    let hub = small_hub();
    let dir = tempfile::tempdir().unwrap();
    // The hub answers 401 for a missing repo (and a private one) without a token: not found.
    let out = run(hub
        .ferry()
        .args(["fetch", "deepseek-ai/DeepSeek-R2-typo", "--to"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("private"), "{}", text(&out));
    assert!(text(&out).contains("HF_TOKEN"), "{}", text(&out));

    for bad in ["deepseek-ai/DeepSeek-R1/extra", "../etc", "no-slash"] {
        let out = run(hub.ferry().args(["fetch", bad, "--to"]).arg(dir.path()));
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
    }
    for bad in ["ftp://mirror.example", "hf-mirror.com", "http://"] {
        let out = run(hub
            .ferry()
            .args(["fetch", REPO, "--endpoint", bad, "--to"])
            .arg(dir.path()));
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(text(&out).contains("--endpoint"), "{bad}: {}", text(&out));
    }
    // A token the hub calls invalid is an authentication failure.
    let out = run(hub
        .ferry()
        .env("HF_TOKEN", "hf_not_a_real_token")
        .args(["fetch", REPO, "--to"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!text(&out).contains("hf_not_a_real_token"));
}
