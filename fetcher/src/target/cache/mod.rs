//! A hub client's own cache as the [`Target`] (`ferry fetch --cache-dir DIR`): the layout
//! huggingface_hub or modelscope reads offline ([`layout`]), so `HF_HUB_OFFLINE=1 vllm serve
//! ORG/NAME` finds the model, with ferry's guarantees kept:
//!
//! - every file is staged as a partial file with a journal under the repo folder's `.ferry/`,
//!   verified, then renamed into the store (`blobs/<hash>`): resumable after kill -9, and a file
//!   already in the store (another revision, the client's own download) is not fetched again;
//! - the snapshot's view is built whole, validated, and moved into `snapshots/` in one rename,
//!   with the ferry manifest in its `.ferry/`; the Hugging Face `refs/<revision>` is written last
//!   ([`view`]).

pub mod layout;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_sharder::{layout as state, Manifest};

use super::dir::{open_job_in, run_scheduler, validate_checkpoint};
use super::publish::{read_published, stat_record, Published, Publisher};
use super::Target;
use crate::error::{blocking, Error, Result};
use crate::meter::Meter;
use crate::origin::{HubKind, Ranges};
use crate::snapshot::{RemoteFile, Snapshot};
use crate::transfer::{Publish, TransferOptions};
pub use layout::CacheLayout;

/// The cache a hub client uses when none is named: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`; `MODELSCOPE_CACHE`, else `~/.cache/modelscope`.
pub fn default_dir(kind: HubKind) -> Result<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = || {
        env("HOME").ok_or_else(|| {
            Error::Usage(
                "no cache directory: HOME is not set; give --cache-dir DIR or --to DIR".into(),
            )
        })
    };
    Ok(match kind {
        HubKind::HuggingFace => match (env("HF_HUB_CACHE"), env("HF_HOME")) {
            (Some(c), _) => c,
            (None, Some(h)) => h.join("hub"),
            (None, None) => home()?.join(".cache/huggingface/hub"),
        },
        HubKind::ModelScope => match env("MODELSCOPE_CACHE") {
            Some(c) => c,
            None => home()?.join(".cache/modelscope"),
        },
    })
}

/// One repo's folder in a hub cache, being fetched into.
pub struct CacheTarget {
    cache: CacheLayout,
    repo_dir: PathBuf,
    opts: TransferOptions,
}

impl CacheTarget {
    /// The folder of `repo` in the cache at `root`, with ferry's state folders created.
    pub fn new(
        cache: CacheLayout,
        root: &Path,
        repo: &str,
        opts: TransferOptions,
    ) -> Result<CacheTarget> {
        let repo_dir = cache.repo_dir(root, repo);
        for d in [
            state::partial_dir(&repo_dir),
            state::journal_dir(&repo_dir),
            repo_dir.join(cache.store_dir_rel()),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        Ok(CacheTarget {
            cache,
            repo_dir,
            opts,
        })
    }

    /// The repo folder: its `.ferry/lock` is taken for the whole fetch, as the store is shared.
    pub fn repo_dir(&self) -> &Path {
        &self.repo_dir
    }

    /// The snapshot folder the client opens for `revision` at `commit`.
    pub fn view_of(&self, revision: &str, commit: &str) -> PathBuf {
        let name = match self.cache {
            CacheLayout::HuggingFace => commit,
            CacheLayout::ModelScope => revision,
        };
        self.repo_dir.join("snapshots").join(name)
    }

    fn staging(&self, snapshot: &Snapshot) -> PathBuf {
        layout::staging_dir(&self.repo_dir, self.cache.view_name(snapshot))
    }

    fn publisher(&self) -> Result<StorePublisher> {
        Ok(StorePublisher {
            cache: self.cache,
            inner: Publisher::new(&self.repo_dir, None, None)?,
        })
    }
}

impl Target for CacheTarget {
    fn location(&self) -> PathBuf {
        self.repo_dir.clone()
    }

    fn heartbeat(&self) -> Option<PathBuf> {
        Some(state::heartbeat_path(&self.repo_dir, None))
    }

    async fn is_complete(&self, snapshot: &Snapshot, source: &str) -> Result<bool> {
        let view = view::view_dir(self.cache, &self.repo_dir, snapshot);
        let Some(m) = Manifest::read(&view)? else {
            return Ok(false);
        };
        if m.commit != snapshot.commit || m.source != source {
            return Ok(false);
        }
        if let Some(r) = self.cache.ref_path(&self.repo_dir, snapshot) {
            if std::fs::read_to_string(r).ok().as_deref() != Some(snapshot.commit.as_str()) {
                return Ok(false);
            }
        }
        Ok(snapshot.files.iter().all(|f| {
            m.files
                .iter()
                .any(|mf| mf.path == f.path && mf.hash == f.hash && mf.size == f.size)
                && std::fs::metadata(view.join(&f.path)).is_ok_and(|md| md.len() == f.size)
        }))
    }

    /// Nothing to withdraw yet: the client's folders stay as they are until [`view::commit`]
    /// replaces them, which drops a view's old manifest before changing its files.
    async fn withdraw(&self) -> Result<()> {
        Ok(())
    }

    async fn reuse(
        &self,
        snapshot: &Snapshot,
        files: &[RemoteFile],
    ) -> Result<(Vec<RemoteFile>, Vec<RemoteFile>)> {
        let publisher = self.publisher()?;
        let view = view::view_dir(self.cache, &self.repo_dir, snapshot);
        let files = files.to_vec();
        blocking("scan task", move || {
            let records = read_published(&publisher.inner_dir());
            let (mut reused, mut todo) = (Vec::new(), Vec::new());
            for f in files {
                if publisher.holds(&f, &records, &view.join(&f.path))? {
                    reused.push(f);
                } else {
                    todo.push(f);
                }
            }
            Ok((reused, todo))
        })
        .await?
    }

    async fn transfer(
        &self,
        ranges: Arc<dyn Ranges>,
        _snapshot: &Arc<Snapshot>,
        mut todo: Vec<RemoteFile>,
        meter: &Arc<Meter>,
    ) -> Result<()> {
        // Small files first, as for a directory; one transfer per content, as the store keeps
        // one copy of each.
        todo.sort_by_key(|f| (f.size >= self.opts.chunk_size, f.path.clone()));
        let mut seen = std::collections::HashSet::new();
        let (unique, same): (Vec<_>, Vec<_>) =
            todo.into_iter().partition(|f| seen.insert(f.hash.clone()));
        meter.reused_files(&same);
        let jobs = unique
            .iter()
            .map(|f| {
                open_job_in(
                    &self.repo_dir,
                    &self.opts,
                    ranges.as_ref(),
                    f,
                    None,
                    None,
                    meter,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let publisher = Arc::new(self.publisher()?);
        run_scheduler(&self.repo_dir, &self.opts, ranges, publisher, jobs, meter).await
    }

    /// Builds the view in its staging folder and checks the checkpoint through it, as the
    /// engine will read it.
    async fn validate(&self, snapshot: &Snapshot, filtered: bool) -> Result<()> {
        let staging = self.staging(snapshot);
        let (cache, repo_dir, snap, st) = (
            self.cache,
            self.repo_dir.clone(),
            snapshot.clone(),
            staging.clone(),
        );
        blocking("view task", move || {
            view::build(cache, &repo_dir, &st, &snap)
        })
        .await??;
        validate_checkpoint(&staging, snapshot, filtered).await
    }

    async fn commit(&self, snapshot: &Snapshot, source: &str) -> Result<()> {
        let manifest = snapshot.manifest(source);
        let (cache, repo_dir, staging, snap) = (
            self.cache,
            self.repo_dir.clone(),
            self.staging(snapshot),
            snapshot.clone(),
        );
        blocking("commit task", move || {
            let view = view::commit(cache, &repo_dir, &staging, &snap, &manifest)?;
            if !cache.symlinks() {
                view::prune_store(&repo_dir.join(cache.store_dir_rel()))?;
            }
            tracing::info!("{} can open {} offline", cache.client(), view.display());
            Ok::<_, Error>(())
        })
        .await??;
        let _ = std::fs::remove_file(state::heartbeat_path(&self.repo_dir, None));
        Ok(())
    }
}

/// Publishes verified files into the store (`blobs/<hash>`) and remembers them in the repo
/// folder's publish log, keyed by store path.
struct StorePublisher {
    cache: CacheLayout,
    inner: Publisher,
}

impl StorePublisher {
    fn stored(&self, f: &RemoteFile) -> RemoteFile {
        RemoteFile {
            path: self.cache.store_rel(&f.hash),
            ..f.clone()
        }
    }

    fn inner_dir(&self) -> PathBuf {
        self.inner.dir().to_path_buf()
    }

    /// True when the store holds `f` verified: trusted from the publish log (same size and
    /// mtime), else re-hashed once. A file the client left at `seen` (its own download) is
    /// hashed and, when it matches, linked into the store: adopted without a transfer.
    fn holds(
        &self,
        f: &RemoteFile,
        records: &std::collections::HashMap<String, Published>,
        seen: &Path,
    ) -> Result<bool> {
        let stored = self.stored(f);
        let dir = self.inner_dir();
        let store = dir.join(&stored.path);
        if stat_record(&dir, &stored.path, &f.hash).is_none() {
            let adoptable = std::fs::symlink_metadata(seen)
                .is_ok_and(|m| m.is_file() && m.len() == f.size)
                && hashes_to(seen, f)?;
            if !adoptable {
                return Ok(false);
            }
            match std::fs::hard_link(seen, &store) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&store, e)),
            }
            self.inner.record(&stored)?;
            return Ok(true);
        }
        let Some(now) = stat_record(&dir, &stored.path, &f.hash) else {
            return Ok(false);
        };
        if now.size != f.size {
            return Ok(false);
        }
        if records.get(&stored.path) == Some(&now) {
            return Ok(true);
        }
        if hashes_to(&store, f)? {
            self.inner.record(&stored)?;
            return Ok(true);
        }
        Ok(false)
    }
}

fn hashes_to(path: &Path, f: &RemoteFile) -> Result<bool> {
    let actual =
        ferry_sharder::verify::hash_file(path, &f.hash, f.size).map_err(|e| Error::io(path, e))?;
    Ok(actual == f.hash)
}

impl Publish for StorePublisher {
    fn publish(
        &self,
        remote: &RemoteFile,
        file: &std::fs::File,
        partial: &Path,
        journal: &Path,
    ) -> Result<()> {
        self.inner
            .publish(&self.stored(remote), file, partial, journal)
    }
}
