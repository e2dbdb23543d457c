//! The repo store: which repos exist under the root, their refs, and the snapshot (commit + files
//! with hashes) of each ref.
//!
//! A repo is a directory `ROOT/ORG/NAME/`; its files are the `main` branch (alias `master`, the
//! ModelScope default). An optional `ROOT/ORG/NAME/.hubsim.json` ([`RepoConfig`]) adds refs and
//! access rules and is never listed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use super::hashes::{git_blob_sha1, lfs_pointer, FileHashes, HashCache};
use crate::generate::{load_virtual, RepoPlan, VIRTUAL_FILE};

/// Name of the per-repo config file (excluded from listings).
pub const CONFIG_FILE: &str = ".hubsim.json";

/// Contents of `.hubsim.json`. Every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RepoConfig {
    /// Private: invisible without a token that has access.
    pub private: bool,
    /// Gated: metadata is public, file downloads need a token that has access.
    pub gated: bool,
    /// Tokens with access to this repo. Empty: every `--token` has access.
    pub authorized_tokens: Vec<String>,
    /// Extra refs (branches or tags): name -> `main`/`master`, another ref's name, or a directory
    /// holding that ref's tree, relative to the server root.
    pub refs: BTreeMap<String, String>,
}

/// One repo as found on disk.
#[derive(Debug, Clone)]
pub struct Repo {
    /// `ORG/NAME`.
    pub id: String,
    pub dir: PathBuf,
    pub config: RepoConfig,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk.
    Disk(PathBuf),
    /// File `index` of a virtual repo's plan: made on the fly.
    Planned(Arc<RepoPlan>, usize),
    /// A small blob held in memory (an Ollama config).
    Bytes(Arc<[u8]>),
}

/// One file of a snapshot.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Repo-relative path with `/` separators.
    pub path: String,
    pub source: Source,
    pub size: u64,
    pub lfs: bool,
    pub hashes: FileHashes,
}

/// The tree of one ref at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// Deterministic 40-hex commit id derived from paths, sizes and sha256s.
    pub commit: String,
    /// Sorted by path.
    pub files: Vec<FileEntry>,
    /// Every directory path (no trailing `/`), sorted, with a deterministic oid.
    pub dirs: Vec<(String, String)>,
}

impl Snapshot {
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }
}

/// Why a revision or repo could not be found.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("repository not found")]
    RepoNotFound,
    #[error("invalid rev id: {0}")]
    RevisionNotFound(String),
    #[error("I/O error reading the repo: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid {CONFIG_FILE} in {repo}: {message}")]
    Config { repo: String, message: String },
    #[error("{0}")]
    Virtual(String),
}

/// Which files count as LFS (like real repos: large files and weight formats).
#[derive(Debug, Clone)]
pub struct LfsRule {
    pub threshold: u64,
}

const LFS_EXTENSIONS: &[&str] = &[
    "safetensors",
    "bin",
    "pt",
    "pth",
    "ckpt",
    "gguf",
    "onnx",
    "h5",
    "msgpack",
    "npz",
    "npy",
    "pkl",
    "model",
    "tflite",
    "ot",
    "zip",
    "gz",
    "tar",
    "zst",
    "parquet",
    "arrow",
];

impl LfsRule {
    pub fn is_lfs(&self, path: &str, size: u64) -> bool {
        size >= self.threshold
            || path
                .rsplit_once('.')
                .is_some_and(|(_, ext)| LFS_EXTENSIONS.contains(&ext))
    }
}

/// A cheap fingerprint of a tree (path, size, mtime per file) used to reuse snapshots.
type Signature = Vec<(String, u64, Option<SystemTime>)>;

/// Finds repos, resolves refs and caches snapshots and hashes.
pub struct RepoStore {
    root: PathBuf,
    lfs: LfsRule,
    hashes: HashCache,
    snapshots: Mutex<HashMap<PathBuf, (Signature, Arc<Snapshot>)>>,
}

impl RepoStore {
    /// `hash_cache`: a file that keeps computed hashes across restarts (None: memory only).
    pub fn new(root: PathBuf, lfs: LfsRule, hash_cache: Option<PathBuf>) -> Self {
        Self {
            root,
            lfs,
            hashes: hash_cache.map_or_else(HashCache::default, HashCache::with_file),
            snapshots: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Hashes of any file under the root (cached like a repo file's); `lfs` style (no git sha1).
    pub async fn file_hashes(
        &self,
        path: &Path,
        size: u64,
        mtime: Option<SystemTime>,
    ) -> std::io::Result<FileHashes> {
        self.hashes.get(path, size, mtime, true).await
    }

    /// Every repo under the root (`ORG/NAME` directories, hidden names skipped).
    pub fn repo_ids(&self) -> std::io::Result<Vec<(String, String)>> {
        let mut ids = Vec::new();
        for org in std::fs::read_dir(&self.root)? {
            let org = org?;
            let Ok(ns) = org.file_name().into_string() else {
                continue;
            };
            if !is_plain_segment(&ns) || !org.file_type()?.is_dir() {
                continue;
            }
            for repo in std::fs::read_dir(org.path())? {
                let repo = repo?;
                let Ok(name) = repo.file_name().into_string() else {
                    continue;
                };
                if is_plain_segment(&name) && repo.file_type()?.is_dir() {
                    ids.push((ns.clone(), name));
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Hashes every ref of every repo now, so that no later request waits for hashing
    /// (benchmarks). Returns the number of snapshots built.
    pub async fn prehash(&self) -> Result<usize, LookupError> {
        let mut n = 0;
        for (ns, name) in self.repo_ids()? {
            let repo = self.repo(&ns, &name)?;
            for r in self.ref_names(&repo) {
                if self.ref_dir(&repo, &r).is_some() {
                    self.resolve(&repo, &r).await?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The repo `ns/name`, if its directory exists.
    pub fn repo(&self, ns: &str, name: &str) -> Result<Repo, LookupError> {
        if !is_plain_segment(ns) || !is_plain_segment(name) {
            return Err(LookupError::RepoNotFound);
        }
        let dir = self.root.join(ns).join(name);
        if !dir.is_dir() {
            return Err(LookupError::RepoNotFound);
        }
        let id = format!("{ns}/{name}");
        let config = match std::fs::read(dir.join(CONFIG_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LookupError::Config {
                repo: id.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RepoConfig::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(Repo { id, dir, config })
    }

    /// The repo id whose spelling differs from `ns/name` only in case, if one exists.
    pub fn canonical_id(&self, ns: &str, name: &str) -> Option<String> {
        self.repo_ids()
            .ok()?
            .into_iter()
            .find(|(n, m)| n.eq_ignore_ascii_case(ns) && m.eq_ignore_ascii_case(name))
            .map(|(n, m)| format!("{n}/{m}"))
    }

    /// The directory holding `rev`'s tree, following ref aliases; None if `rev` is no ref.
    fn ref_dir(&self, repo: &Repo, rev: &str) -> Option<PathBuf> {
        let mut name = rev.to_string();
        // Aliases may chain (`v1.0` -> `dev` -> dir); the bound stops cycles.
        for _ in 0..8 {
            if name == "main" || name == "master" {
                return Some(repo.dir.clone());
            }
            let target = repo.config.refs.get(&name)?;
            if repo.config.refs.contains_key(target) || target == "main" || target == "master" {
                name = target.clone();
                continue;
            }
            let rel = Path::new(target);
            if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return None;
            }
            let dir = self.root.join(rel);
            return dir.is_dir().then_some(dir);
        }
        None
    }

    /// All ref names of a repo: `main` first, then the configured ones.
    pub fn ref_names(&self, repo: &Repo) -> Vec<String> {
        let mut names = vec!["main".to_string()];
        names.extend(repo.config.refs.keys().filter(|k| *k != "main").cloned());
        names
    }

    /// Resolves a branch, tag or 40-hex commit of a known ref to its snapshot.
    pub async fn resolve(&self, repo: &Repo, rev: &str) -> Result<Arc<Snapshot>, LookupError> {
        if let Some(dir) = self.ref_dir(repo, rev) {
            return self.snapshot(&dir).await;
        }
        if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            let wanted = rev.to_ascii_lowercase();
            let mut seen = BTreeSet::new();
            for name in self.ref_names(repo) {
                let Some(dir) = self.ref_dir(repo, &name) else {
                    continue;
                };
                if !seen.insert(dir.clone()) {
                    continue;
                }
                let snap = self.snapshot(&dir).await?;
                if snap.commit == wanted {
                    return Ok(snap);
                }
            }
        }
        Err(LookupError::RevisionNotFound(rev.to_string()))
    }

    /// The snapshot of a tree directory, reused while no file's size or mtime changed.
    async fn snapshot(&self, dir: &Path) -> Result<Arc<Snapshot>, LookupError> {
        if let Ok(meta) = std::fs::metadata(dir.join(VIRTUAL_FILE)) {
            return self.virtual_snapshot(dir, &meta);
        }
        let owned = dir.to_path_buf();
        let walked = tokio::task::spawn_blocking(move || walk(&owned))
            .await
            .map_err(std::io::Error::other)??;
        let signature: Signature = walked
            .iter()
            .map(|w| (w.path.clone(), w.size, w.mtime))
            .collect();
        if let Some((sig, snap)) = self
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dir)
        {
            if *sig == signature {
                return Ok(snap.clone());
            }
        }
        // Hash files in parallel (bounded by the cores): a 163-shard repo hashes in one pass.
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let files: Vec<FileEntry> = stream::iter(walked.into_iter().map(|w| async move {
            let lfs = self.lfs.is_lfs(&w.path, w.size);
            let hashes = self.hashes.get(&w.abs, w.size, w.mtime, lfs).await?;
            Ok::<_, std::io::Error>(FileEntry {
                path: w.path,
                source: Source::Disk(w.abs),
                size: w.size,
                lfs,
                hashes,
            })
        }))
        .buffered(workers)
        .try_collect()
        .await?;
        if let Err(e) = self.hashes.save() {
            // The cache file is an optimisation: serving goes on without it.
            tracing::warn!("hubsim: cannot write the hash cache: {e}");
        }
        let snap = Arc::new(build_snapshot(files));
        self.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir.to_path_buf(), (signature, snap.clone()));
        Ok(snap)
    }
}

impl RepoStore {
    /// The snapshot of a virtual repo (`hubsim generate --virtual`): planned from its spec, hashes
    /// from its file; reused while that file's size and mtime stay.
    fn virtual_snapshot(
        &self,
        dir: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<Arc<Snapshot>, LookupError> {
        let signature: Signature = vec![(VIRTUAL_FILE.into(), meta.len(), meta.modified().ok())];
        let mut cache = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((sig, snap)) = cache.get(dir) {
            if *sig == signature {
                return Ok(snap.clone());
            }
        }
        let (plan, doc) = load_virtual(dir)
            .map_err(|e| LookupError::Virtual(e.to_string()))?
            .ok_or_else(|| LookupError::Virtual(format!("{VIRTUAL_FILE} vanished")))?;
        let plan = Arc::new(plan);
        let files = doc
            .files
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let lfs = self.lfs.is_lfs(&v.path, v.size);
                let hashes = if lfs {
                    let pointer = lfs_pointer(&v.sha256, v.size);
                    FileHashes {
                        git_oid: git_blob_sha1(pointer.as_bytes()),
                        pointer_size: pointer.len() as u64,
                        sha256: v.sha256,
                    }
                } else {
                    FileHashes {
                        git_oid: v.git_sha1.unwrap_or_default(),
                        pointer_size: 0,
                        sha256: v.sha256,
                    }
                };
                FileEntry {
                    path: v.path,
                    source: Source::Planned(plan.clone(), i),
                    size: v.size,
                    lfs,
                    hashes,
                }
            })
            .collect();
        let snap = Arc::new(build_snapshot(files));
        cache.insert(dir.to_path_buf(), (signature, snap.clone()));
        Ok(snap)
    }
}

fn build_snapshot(files: Vec<FileEntry>) -> Snapshot {
    let mut commit = Sha1::new();
    commit.update(b"hubsim-commit\0");
    let mut dirs: BTreeMap<String, Sha1> = BTreeMap::new();
    for f in &files {
        commit.update(format!("{}\0{}\0{}\n", f.path, f.size, f.hashes.sha256).as_bytes());
        let mut parts: Vec<&str> = f.path.split('/').collect();
        parts.pop();
        for i in 1..=parts.len() {
            let d = parts[..i].join("/");
            dirs.entry(d)
                .or_insert_with(|| {
                    let mut h = Sha1::new();
                    h.update(b"hubsim-tree\0");
                    h
                })
                .update(format!("{}\0{}\n", f.path, f.hashes.git_oid).as_bytes());
        }
    }
    Snapshot {
        commit: hex::encode(commit.finalize()),
        files,
        dirs: dirs
            .into_iter()
            .map(|(d, h)| (d, hex::encode(h.finalize())))
            .collect(),
    }
}

/// A path segment that cannot escape the root (`..`, hidden names, separators).
fn is_plain_segment(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\', '\0'])
}

struct Walked {
    path: String,
    abs: PathBuf,
    size: u64,
    mtime: Option<SystemTime>,
}

/// Every regular file under `dir`, sorted by repo path, skipping `.hubsim.json` and `.git`.
fn walk(dir: &Path) -> std::io::Result<Vec<Walked>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs_dir, rel_dir)) = stack.pop() {
        for entry in std::fs::read_dir(&abs_dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name == ".git"
                || (rel_dir.is_empty() && (name == CONFIG_FILE || name == VIRTUAL_FILE))
            {
                continue;
            }
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            let abs = entry.path();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push((abs, rel));
                continue;
            }
            // Follow file symlinks (never directory ones, which could loop).
            let meta = std::fs::metadata(&abs)?;
            if meta.is_file() {
                out.push(Walked {
                    path: rel,
                    abs,
                    size: meta.len(),
                    mtime: meta.modified().ok(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
