//! A directory as the [`Target`]: files are staged as sparse partial files under
//! `.ferry/partial` with a journal of finished ranges each, verified as they land, renamed into
//! place ([`super::publish`]), validated (safetensors headers, index), and the manifest
//! `.ferry/manifest.json` is committed last.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_sharder::{layout, Manifest};

use super::publish::{read_published, stat_record, sync_dirs, Publisher};
use super::Target;
use crate::error::{blocking, Error, Result};
use crate::meter::Meter;
use crate::origin::Ranges;
use crate::snapshot::{RemoteFile, Snapshot};
use crate::space;
use crate::transfer::job::FileJob;
use crate::transfer::scheduler::Scheduler;
use crate::transfer::TransferOptions;

/// A model directory being fetched into, whole or one slice of an Indexed Job.
pub struct DirTarget {
    dir: PathBuf,
    opts: TransferOptions,
    /// Write huggingface_hub's `local_dir` metadata beside each published file.
    hf_metadata: bool,
    /// The slice this process fetches: its heartbeat and piece journals.
    slice: Option<(u32, u32)>,
    /// The publish log written: one per slice, or the directory's own when finalizing.
    log_slice: Option<(u32, u32)>,
}

impl DirTarget {
    /// Creates `dir` and its state directories.
    pub fn new(
        dir: PathBuf,
        opts: TransferOptions,
        hf_metadata: bool,
        slice: Option<(u32, u32)>,
    ) -> Result<DirTarget> {
        for d in [
            dir.join(layout::STATE_DIR),
            layout::partial_dir(&dir),
            layout::journal_dir(&dir),
            layout::slices_dir(&dir),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        Ok(DirTarget {
            dir,
            opts,
            hf_metadata,
            slice,
            log_slice: slice,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The same directory, published as a whole: what the slice that finalizes works on.
    pub fn whole(&self) -> DirTarget {
        DirTarget {
            dir: self.dir.clone(),
            opts: self.opts.clone(),
            hf_metadata: self.hf_metadata,
            slice: self.slice,
            log_slice: None,
        }
    }

    fn publisher(&self, snapshot: &Snapshot) -> Result<Publisher> {
        let hf_commit = self.hf_metadata.then(|| snapshot.commit.clone());
        Publisher::new(&self.dir, hf_commit, self.log_slice)
    }

    /// Opens the partial file and journal of `f` (or of this slice's `piece` of it), counting
    /// what an earlier run journaled as reused.
    pub fn open_job(
        &self,
        ranges: &dyn Ranges,
        f: &RemoteFile,
        piece: Option<(u64, u64)>,
        meter: &Meter,
    ) -> Result<Arc<FileJob>> {
        let name = partial_name(f);
        let journal_slice = piece.and(self.slice);
        let (job, _) = FileJob::open(
            f.clone(),
            ranges.file_url(f),
            layout::partial_path(&self.dir, &name),
            layout::journal_path(&self.dir, &name, journal_slice),
            self.opts.chunk_size,
            piece,
        )?;
        let len = piece.map_or(f.size, |(_, len)| len);
        meter.add_reused(len.saturating_sub(job.pending_bytes()));
        Ok(Arc::new(job))
    }

    /// Checks free space, then runs the transfer scheduler over `jobs`.
    pub async fn run_jobs(
        &self,
        ranges: Arc<dyn Ranges>,
        snapshot: &Snapshot,
        jobs: Vec<Arc<FileJob>>,
        meter: &Arc<Meter>,
    ) -> Result<()> {
        let needed: u64 = jobs.iter().map(|j| j.pending_bytes()).sum();
        let available = space::available(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        if needed > available {
            return Err(Error::NoSpace {
                dir: self.dir.clone(),
                needed,
                available,
            });
        }
        let publisher = Arc::new(self.publisher(snapshot)?);
        Scheduler::new(
            ranges,
            self.opts.clone(),
            Arc::clone(meter),
            publisher,
            jobs,
        )
        .run()
        .await
    }
}

impl Target for DirTarget {
    fn location(&self) -> PathBuf {
        self.dir.clone()
    }

    fn heartbeat(&self) -> Option<PathBuf> {
        Some(layout::heartbeat_path(&self.dir, self.slice))
    }

    async fn is_complete(&self, snapshot: &Snapshot, source: &str) -> Result<bool> {
        let Some(m) = Manifest::read(&self.dir)? else {
            return Ok(false);
        };
        if m.commit != snapshot.commit || m.source != source {
            return Ok(false);
        }
        Ok(snapshot.files.iter().all(|f| {
            m.files
                .iter()
                .any(|mf| mf.path == f.path && mf.hash == f.hash && mf.size == f.size)
                && std::fs::metadata(self.dir.join(&f.path))
                    .map(|md| md.len() == f.size)
                    .unwrap_or(false)
        }))
    }

    async fn withdraw(&self) -> Result<()> {
        let path = layout::manifest_path(&self.dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(ferry_sharder::manifest::sync_dir(
                path.parent().unwrap_or(&self.dir),
            )?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    async fn reuse(
        &self,
        snapshot: &Snapshot,
        files: &[RemoteFile],
    ) -> Result<(Vec<RemoteFile>, Vec<RemoteFile>)> {
        let (dir, files) = (self.dir.clone(), files.to_vec());
        let publisher = self.publisher(snapshot)?;
        blocking("scan task", move || find_reusable(&dir, &files, &publisher)).await?
    }

    async fn transfer(
        &self,
        ranges: Arc<dyn Ranges>,
        snapshot: &Arc<Snapshot>,
        mut todo: Vec<RemoteFile>,
        meter: &Arc<Meter>,
    ) -> Result<()> {
        // Small files first: configs and tokenizers land early, and big shards fill the
        // connections.
        todo.sort_by_key(|f| (f.size >= self.opts.chunk_size, f.path.clone()));
        let jobs = todo
            .iter()
            .map(|f| self.open_job(ranges.as_ref(), f, None, meter))
            .collect::<Result<Vec<_>>>()?;
        self.run_jobs(ranges, snapshot, jobs, meter).await
    }

    /// Hash-correct files can still make a checkpoint no engine loads (an index naming a
    /// missing shard or tensor, a header that overruns its file): validate the headers and
    /// index before committing, so the manifest means "loadable", not only "as published".
    async fn validate(&self, snapshot: &Snapshot, filtered: bool) -> Result<()> {
        let dir = self.dir.clone();
        let files: Vec<String> = snapshot.files.iter().map(|f| f.path.clone()).collect();
        let findings = blocking("validate task", move || {
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            ferry_sharder::validate::validate(&dir, &files)
        })
        .await?;
        let (errors, warnings): (Vec<_>, Vec<_>) = findings
            .into_iter()
            .partition(|f| f.is_error() && !filtered);
        crate::select::log_findings(&warnings, filtered);
        if errors.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidCheckpoint {
            repo: snapshot.repo.clone(),
            dir: self.dir.display().to_string(),
            count: errors.len(),
            list: ferry_sharder::finding::bullet_list(&errors),
        })
    }

    /// The commit point: every selected file is published and verified.
    async fn commit(&self, snapshot: &Snapshot, source: &str) -> Result<()> {
        let manifest = snapshot.manifest(source);
        sync_dirs(&self.dir, snapshot.files.iter().map(|f| f.path.as_str()))?;
        crate::lock::still_held(&self.dir)?;
        manifest.commit_once(&self.dir)?;
        let _ = std::fs::remove_file(layout::heartbeat_path(&self.dir, None));
        Ok(())
    }
}

/// Partial files are named by path and expected content, so a resumed run picks up only bytes
/// meant for the same file content.
pub fn partial_name(f: &RemoteFile) -> String {
    use sha2::Digest;
    let path_hash = hex::encode(&sha2::Sha256::digest(f.path.as_bytes())[..8]);
    format!("{path_hash}-{}", &f.hash.hex()[..16])
}

/// Splits `files` into those already in place and verified, and those to fetch. A file with a
/// matching publish record (same size and mtime) is trusted; one without (e.g. left by another
/// downloader) is re-hashed once and adopted when it matches.
fn find_reusable(
    dir: &Path,
    files: &[RemoteFile],
    publisher: &Publisher,
) -> Result<(Vec<RemoteFile>, Vec<RemoteFile>)> {
    let records = read_published(dir);
    let mut reused = Vec::new();
    let mut todo = Vec::new();
    for f in files {
        let Some(now) = stat_record(dir, &f.path, &f.hash) else {
            todo.push(f.clone());
            continue;
        };
        if now.size != f.size {
            todo.push(f.clone());
            continue;
        }
        if records.get(&f.path) == Some(&now) {
            reused.push(f.clone());
            continue;
        }
        let path = dir.join(&f.path);
        let actual = ferry_sharder::verify::hash_file(&path, &f.hash, f.size)
            .map_err(|e| Error::io(&path, e))?;
        if actual == f.hash {
            publisher.record(f)?;
            reused.push(f.clone());
        } else {
            todo.push(f.clone());
        }
    }
    Ok((reused, todo))
}
