//! `ferry fetch --dry-run`: what a fetch into a directory would do, found without writing
//! anything: stage 1 (resolve) for real, then a read-only look at the target (its manifest, the
//! files in place, the partial files of an interrupted run) and at the free space under it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ferry_sharder::{layout, Manifest};
use serde::Serialize;

use super::options::FetchOptions;
use super::resolve::resolve;
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::origin::hub_origin::HubOrigin;
use crate::origin::s3::S3Origin;
use crate::origin::{Origin, OriginSpec};
use crate::snapshot::Snapshot;
use crate::target::dir::partial_name;
use crate::target::TargetSpec;

/// What the fetch would do with one file.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The manifest of this very commit lists it: verified, nothing to do.
    Reuse,
    /// A file of the right size is in place: reused if its hash matches (hashed by the fetch).
    Check,
    /// An interrupted run left a partial file: the fetch resumes it.
    Resume,
    /// Not there: downloaded whole.
    Fetch,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreviewFile {
    pub path: String,
    pub size: u64,
    pub action: Action,
}

/// The answer of a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub repo: String,
    pub source: &'static str,
    pub revision: String,
    pub commit: String,
    pub dir: PathBuf,
    pub files: Vec<PreviewFile>,
    pub bytes_total: u64,
    /// Bytes of files marked reuse or check.
    pub bytes_in_place: u64,
    /// Bytes of files marked resume or fetch (a resumed file moves only its missing ranges).
    pub bytes_to_fetch: u64,
    /// New disk space the fetch needs at most: what is to fetch, less what partial files hold.
    pub disk_needed: u64,
    /// Free space for this user on the target's filesystem (None: it could not be read).
    pub disk_free: Option<u64>,
    /// The directory already holds this commit, complete: the fetch would do nothing.
    pub complete: bool,
}

impl Preview {
    pub fn enough_space(&self) -> bool {
        self.disk_free.is_none_or(|f| f >= self.disk_needed)
    }
}

/// Resolves `opts.origin` and looks at `opts.target`; writes nothing.
pub async fn preview(opts: &FetchOptions, token: Option<Secret>) -> Result<Preview> {
    let TargetSpec::Dir(dir) = &opts.target else {
        return Err(Error::Usage(
            "--dry-run previews fetches into a directory; an s3:// target is not previewed".into(),
        ));
    };
    match &opts.origin {
        OriginSpec::Hub(repo) => {
            let origin = HubOrigin::new(repo.clone(), token)?;
            look(&origin, opts, dir).await
        }
        OriginSpec::S3(url) => {
            let max = opts.transfer.max_connections();
            let origin = S3Origin::connect(url.clone(), opts.s3_endpoint.as_deref(), max).await?;
            look(&origin, opts, dir).await
        }
        OriginSpec::Ollama(name) => {
            let origin = crate::origin::ollama::OllamaOrigin::new(name.clone())?;
            look(&origin, opts, dir).await
        }
    }
}

async fn look<O: Origin>(origin: &O, opts: &FetchOptions, dir: &Path) -> Result<Preview> {
    let snapshot = resolve(origin, None, &opts.include, &opts.exclude).await?;
    let dir = dir.to_path_buf();
    let source = origin.id();
    tokio::task::spawn_blocking(move || examine(&snapshot, source, dir))
        .await
        .map_err(|e| Error::Task {
            task: "dry run",
            message: e.to_string(),
        })
}

/// The read-only look at `dir` for `snapshot`.
fn examine(snapshot: &Snapshot, source: &'static str, dir: PathBuf) -> Preview {
    let manifest = Manifest::read(&dir).ok().flatten();
    let same_commit = manifest
        .as_ref()
        .filter(|m| m.commit == snapshot.commit && m.repo == snapshot.repo);
    let mut files = Vec::new();
    let mut partial_held = 0u64;
    for f in &snapshot.files {
        let listed = same_commit.is_some_and(|m| {
            m.files
                .iter()
                .any(|mf| mf.path == f.path && mf.size == f.size && mf.hash == f.hash)
        });
        let in_place = std::fs::metadata(dir.join(&f.path))
            .ok()
            .filter(|m| m.is_file() && m.len() == f.size)
            .is_some();
        let partial = std::fs::metadata(layout::partial_path(&dir, &partial_name(f))).ok();
        let action = match (listed && in_place, in_place, &partial) {
            (true, _, _) => Action::Reuse,
            (false, true, _) => Action::Check,
            (false, false, Some(p)) => {
                // Blocks the partial file already holds are not needed again.
                partial_held += (p.blocks() * 512).min(f.size);
                Action::Resume
            }
            (false, false, None) => Action::Fetch,
        };
        files.push(PreviewFile {
            path: f.path.clone(),
            size: f.size,
            action,
        });
    }
    let sum = |pick: &dyn Fn(Action) -> bool| -> u64 {
        files
            .iter()
            .filter(|f| pick(f.action))
            .map(|f| f.size)
            .sum()
    };
    let bytes_in_place = sum(&|a| matches!(a, Action::Reuse | Action::Check));
    let bytes_to_fetch = sum(&|a| matches!(a, Action::Resume | Action::Fetch));
    Preview {
        repo: snapshot.repo.clone(),
        source,
        revision: snapshot.revision.clone(),
        commit: snapshot.commit.clone(),
        complete: files.iter().all(|f| f.action == Action::Reuse),
        disk_needed: bytes_to_fetch.saturating_sub(partial_held),
        disk_free: free_space(&dir),
        dir,
        files,
        bytes_total: snapshot.total_bytes(),
        bytes_in_place,
        bytes_to_fetch,
    }
}

/// Free space on the filesystem `dir` would be on: its own, or its nearest existing parent's.
fn free_space(dir: &Path) -> Option<u64> {
    let dir = std::path::absolute(dir).ok()?;
    dir.ancestors()
        .find(|a| a.exists())
        .and_then(|a| crate::space::available(a).ok())
}
