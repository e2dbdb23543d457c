//! Virtual repositories: a model whose files are never written. `hubsim generate --virtual`
//! stores only the spec and every file's hashes in `DIR/.hubsim-virtual.json` (a few KB even for
//! 163 shards of 4.3 GB); `hubsim serve` re-plans the repo from the spec and produces any byte
//! range on the fly from the counter-based stream (`stream.rs`), so full-size shards can be
//! served from a disk that holds only the destination.
//!
//! The hashes are computed once here (every file read through, in parallel over the files),
//! because a server cannot answer a listing without them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::error::GenerateError;
use super::plan::{plan, PlannedContent, PlannedFile, RepoPlan};
use super::write::{refuse_stale_weights, WriteSummary};
use super::{Layout, ModelSpec};

/// The file that makes a repo directory virtual (hidden: never listed or served itself).
pub const VIRTUAL_FILE: &str = ".hubsim-virtual.json";

const VERSION: u32 = 1;

/// Contents of [`VIRTUAL_FILE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtualRepo {
    pub hubsim_virtual: u32,
    pub repo: String,
    /// `r1` or `distill`.
    pub layout: String,
    pub shards: u32,
    pub total_size: u64,
    pub seed: u64,
    /// Every file of the plan, in its order.
    pub files: Vec<VirtualFile>,
}

/// One file's size and hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtualFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// The git blob sha1 of the content, for small (non-weight) files only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_sha1: Option<String>,
}

/// Plans `spec`, hashes every file and writes `dir/.hubsim-virtual.json` (nothing else).
pub fn write_virtual(spec: &ModelSpec, dir: &Path) -> Result<WriteSummary, GenerateError> {
    let start = Instant::now();
    let plan = plan(spec)?;
    std::fs::create_dir_all(dir).map_err(GenerateError::io("create directory", dir))?;
    refuse_stale_weights(&plan, dir)?;
    let files = hash_all(&plan);
    let doc = VirtualRepo {
        hubsim_virtual: VERSION,
        repo: spec.repo.clone(),
        layout: spec.layout.name().to_string(),
        shards: spec.shards,
        total_size: spec.total_size,
        seed: spec.seed,
        files,
    };
    let path = dir.join(VIRTUAL_FILE);
    let tmp = dir.join(format!("{VIRTUAL_FILE}.tmp"));
    let body = serde_json::to_vec_pretty(&doc).map_err(|e| GenerateError::Io {
        action: "encode",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&tmp, body).map_err(GenerateError::io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(GenerateError::io("rename", &path))?;
    Ok(WriteSummary {
        dir: dir.to_path_buf(),
        files: plan.files.len(),
        shards: plan.shards().count(),
        bytes: plan.total_file_bytes(),
        sparse: false,
        virtual_repo: true,
        elapsed: start.elapsed(),
    })
}

/// Why a virtual repo could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a hubsim virtual repo: {message}; write it again with `hubsim generate --virtual`", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// Reads `dir/.hubsim-virtual.json` and re-plans the repo; `None` when the directory has none.
pub fn load_virtual(dir: &Path) -> Result<Option<(RepoPlan, VirtualRepo)>, LoadError> {
    let path = dir.join(VIRTUAL_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    let invalid = |message: String| LoadError::Invalid {
        path: path.clone(),
        message,
    };
    let doc: VirtualRepo = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if doc.hubsim_virtual != VERSION {
        return Err(invalid(format!("version {}", doc.hubsim_virtual)));
    }
    let layout = <Layout as clap::ValueEnum>::from_str(&doc.layout, true)
        .map_err(|_| invalid(format!("unknown layout {:?}", doc.layout)))?;
    let spec = ModelSpec {
        repo: doc.repo.clone(),
        layout,
        shards: doc.shards,
        total_size: doc.total_size,
        seed: doc.seed,
    };
    let plan = plan(&spec).map_err(|e| invalid(e.to_string()))?;
    let same = plan.files.len() == doc.files.len()
        && plan
            .files
            .iter()
            .zip(&doc.files)
            .all(|(p, v)| p.path == v.path && p.size == v.size);
    if !same {
        // A different hubsim version plans other files: the stored hashes would lie.
        return Err(invalid(
            "its files differ from what this hubsim plans for the same spec".into(),
        ));
    }
    Ok(Some((plan, doc)))
}

/// Hashes every file, several at once (largest first), each read through in 4 MiB pieces.
fn hash_all(plan: &RepoPlan) -> Vec<VirtualFile> {
    let mut order: Vec<usize> = (0..plan.files.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(plan.files[i].size));
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<VirtualFile>>> = Mutex::new(vec![None; plan.files.len()]);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(plan.files.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = order.get(k) else { break };
                let f = hash_file(&plan.files[i]);
                out.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(f);
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

fn hash_file(f: &PlannedFile) -> VirtualFile {
    let small = matches!(f.content, PlannedContent::Bytes(_));
    let mut sha256 = Sha256::new();
    let mut sha1 = small.then(|| {
        let mut h = Sha1::new();
        h.update(format!("blob {}\0", f.size).as_bytes());
        h
    });
    let mut buf = vec![0u8; 4 << 20];
    let mut offset = 0;
    loop {
        let n = f.read_at(offset, &mut buf);
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        if let Some(h) = sha1.as_mut() {
            h.update(&buf[..n]);
        }
        offset += n as u64;
    }
    VirtualFile {
        path: f.path.clone(),
        size: f.size,
        sha256: hex::encode(sha256.finalize()),
        git_sha1: sha1.map(|h| hex::encode(h.finalize())),
    }
}
