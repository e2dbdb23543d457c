//! Shared helpers for the binary's integration tests: a synthetic model, an in-process hubsim,
//! and running `ferry` as a real subprocess.
#![allow(dead_code)]

pub mod fuse;
pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hubsim::generate::{GenerateArgs, Layout};
use hubsim::serve::{FaultConfig, Handle, ServeConfig};

pub const REPO: &str = "deepseek-ai/DeepSeek-R1";

/// A hub root holding one synthetic DeepSeek-R1-layout repo, served by hubsim in this process.
pub struct Hub {
    pub root: tempfile::TempDir,
    pub handle: Handle,
    rt: tokio::runtime::Runtime,
}

/// Writes a DeepSeek-R1-layout repo (`shards` valid safetensors shards, `total` bytes) under
/// `root/ORG/NAME`.
pub fn generate(root: &Path, repo: &str, shards: u32, total: u64, layout: Layout) -> PathBuf {
    let out = root.join(repo);
    hubsim::generate::run(&GenerateArgs {
        out: out.clone(),
        repo: repo.into(),
        shards,
        total_size: total,
        layout,
        seed: 0,
        sparse: false,
    })
    .expect("generate model");
    out
}

impl Hub {
    /// 163 shards like the real model, small enough for a test.
    pub fn r1(total: u64) -> Hub {
        Hub::with(|root| {
            generate(root, REPO, 163, total, Layout::R1);
        })
    }

    /// `shards` large shards of a DeepSeek-R1-layout repo (split into many ranges), served as
    /// LFS (sha256) from 64 KiB up.
    pub fn shards(shards: u32, total: u64) -> Hub {
        Hub::with_config(
            |root| {
                generate(root, REPO, shards, total, Layout::R1);
            },
            |cfg| cfg.lfs_threshold = 64 * 1024,
        )
    }

    pub fn with(setup: impl FnOnce(&Path)) -> Hub {
        Hub::with_config(setup, |_| {})
    }

    pub fn with_config(setup: impl FnOnce(&Path), config: impl FnOnce(&mut ServeConfig)) -> Hub {
        let root = tempfile::tempdir().expect("tempdir");
        setup(root.path());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut cfg = ServeConfig::new(root.path());
        config(&mut cfg);
        let handle = rt
            .block_on(hubsim::serve::start(cfg))
            .expect("start hubsim");
        Hub { root, handle, rt }
    }

    pub fn url(&self) -> String {
        self.handle.url()
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.path().join(repo)
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.handle.set_faults(faults).expect("set faults");
    }

    pub fn faults_json(&self, json: serde_json::Value) {
        self.set_faults(serde_json::from_value(json).expect("fault config"));
    }

    pub fn stats(&self) -> hubsim::serve::StatsSnapshot {
        self.handle.stats()
    }

    /// A `ferry` command with a clean environment pointed at this hub.
    pub fn ferry(&self) -> Command {
        let mut c = ferry();
        c.env("HF_ENDPOINT", self.url())
            .env("MODELSCOPE_ENDPOINT", self.url())
            .env("FERRY_OLLAMA_REGISTRY", self.url());
        c
    }
}

/// The ferry binary with no hub tokens or endpoints inherited from the environment.
pub fn ferry() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    for var in [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_ENDPOINT",
        "MODELSCOPE_ENDPOINT",
        "MODELSCOPE_API_TOKEN",
        "FERRY_OLLAMA_REGISTRY",
        "MODELSCOPE_DOMAIN",
        "RUST_LOG",
        // The network as the developer's shell has it: proxies, CAs, offline switches.
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HF_HUB_OFFLINE",
        "FERRY_OFFLINE",
    ] {
        c.env_remove(var);
    }
    // No token file from the developer's home either.
    c.env(
        "HF_HOME",
        std::env::temp_dir().join("ferry-test-no-hf-home"),
    );
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run ferry")
}

pub fn text(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file of `src` is in `dst` with the same bytes (ferry's and hub clients' state dirs aside).
pub fn assert_same_files(src: &Path, dst: &Path) {
    let mut n = 0;
    for entry in walk(src) {
        let rel = entry.strip_prefix(src).unwrap();
        if rel.starts_with(".hubsim.json") {
            continue;
        }
        let a = std::fs::read(&entry).unwrap();
        let b = std::fs::read(dst.join(rel))
            .unwrap_or_else(|e| panic!("{} missing in {}: {e}", rel.display(), dst.display()));
        assert!(a == b, "{} differs", rel.display());
        n += 1;
    }
    assert!(n > 0, "no files compared");
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Files under `dir` that are not the model's: ferry's and huggingface_hub's state.
pub fn model_files(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            let rel = p.strip_prefix(dir).unwrap();
            !rel.starts_with(".ferry") && !rel.starts_with(".cache")
        })
        .collect()
}

/// The completion manifest of a model directory.
pub fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(".ferry/manifest.json")).expect("manifest"))
        .expect("manifest json")
}

/// Runs `cmd`, killing it after `limit` (a test of a time bound must not hang on a bug); the
/// output and how long it ran.
pub fn run_within(cmd: &mut Command, limit: std::time::Duration) -> (Output, std::time::Duration) {
    let started = std::time::Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = std::sync::Arc::clone(&done);
    std::thread::spawn(move || {
        while started.elapsed() < limit {
            if watching.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !watching.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: kill(2) on the child this test spawned and has not reaped yet.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().expect("wait ferry");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    (out, started.elapsed())
}

/// Parses the `--json` summary line of a fetch.
pub fn summary(o: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary line\n{}", text(o)))
}
