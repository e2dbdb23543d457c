//! Helpers shared by the `hubsim serve` integration tests: a small repo on disk, an in-process
//! server, and a reqwest client that never uses a proxy.
#![allow(dead_code)]

use std::path::Path;

use hubsim::serve::{FaultConfig, Handle, ServeConfig};
use sha2::{Digest, Sha256};

pub const REPO: &str = "org/tiny";
/// An LFS file big enough for body faults and throttling (4 MiB).
pub const BIG: &str = "model-00001-of-00002.safetensors";
pub const BIG_LEN: usize = 4 << 20;

/// Deterministic pseudo-random bytes (xorshift), so every byte position is distinguishable.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// `org/tiny` (main), a `dev` tree with a different config.json, a private and a gated repo.
pub fn make_root(root: &Path) {
    write(root, "org/tiny/README.md", b"# tiny\n");
    write(root, "org/tiny/config.json", b"{\"hidden_size\": 8}\n");
    write(root, &format!("org/tiny/{BIG}"), &bytes(BIG_LEN, 1));
    write(
        root,
        "org/tiny/model-00002-of-00002.safetensors",
        &bytes(400_128, 2),
    );
    write(
        root,
        "org/tiny/extra/adapter.safetensors",
        &bytes(50_120, 3),
    );
    write(root, "org/tiny/extra/notes.txt", b"hello\n");
    write(
        root,
        "org/tiny/.hubsim.json",
        br#"{"refs": {"dev": "trees/tiny-dev", "v1.0": "main", "feature/x y": "dev"}}"#,
    );
    write(root, "trees/tiny-dev/README.md", b"# tiny\n");
    write(
        root,
        "trees/tiny-dev/config.json",
        b"{\"hidden_size\": 16}\n",
    );
    write(root, "org/private/config.json", b"{}\n");
    write(
        root,
        "org/private/.hubsim.json",
        br#"{"private": true, "authorized_tokens": ["alice"]}"#,
    );
    write(root, "org/gated/config.json", b"{}\n");
    write(root, "org/gated/.hubsim.json", br#"{"gated": true}"#);
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub struct Hub {
    pub dir: tempfile::TempDir,
    pub handle: Handle,
    pub url: String,
}

pub async fn start_with(faults: FaultConfig, page_size: usize) -> Hub {
    let dir = tempfile::tempdir().unwrap();
    make_root(dir.path());
    let mut config = ServeConfig::new(dir.path());
    config.tokens = vec!["alice".into(), "bob".into()];
    config.page_size = page_size;
    config.faults = faults;
    let handle = hubsim::serve::start(config).await.unwrap();
    let url = handle.url();
    Hub { dir, handle, url }
}

pub async fn start() -> Hub {
    start_with(FaultConfig::default(), 1000).await
}

pub fn faults(json: serde_json::Value) -> FaultConfig {
    serde_json::from_value(json).unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
        .to_string()
}

/// Reads a body chunk by chunk, returning the bytes received and whether the stream failed.
pub async fn read_body(mut resp: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}
