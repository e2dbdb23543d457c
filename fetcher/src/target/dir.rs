//! A directory as the [`Target`]: files are staged as sparse partial files under
//! `.ferry/partial` with a journal of finished ranges each, verified as they land, renamed into
//! place ([`super::publish`]), validated (safetensors headers, index), and the manifest
//! `.ferry/manifest.json` is committed last.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_sharder::selection::Selection;
use ferry_sharder::{layout, Manifest};

use super::publish::{no_link_on_the_way, stat_record, sync_dirs, Publisher};
use super::Target;
use crate::error::{blocking, Error, Result};
use crate::meter::Meter;
use crate::origin::Ranges;
use crate::snapshot::{RemoteFile, Snapshot};
use crate::space;
use crate::transfer::job::FileJob;
use crate::transfer::scheduler::Scheduler;
use crate::transfer::{Publish, TransferOptions};

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
    /// What `--include` / `--exclude` left out, for the manifest.
    selection: Option<Selection>,
    /// Replace another model's files instead of refusing to mix them (`--replace`).
    replace: bool,
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
            selection: None,
            replace: false,
        })
    }

    /// Records what the fetch's patterns left out, written into the manifest at commit.
    pub fn set_selection(&mut self, selection: Option<Selection>) {
        self.selection = selection;
    }

    /// Lets this fetch replace a directory that holds another model (see [`DirTarget::settle_previous`]).
    pub fn set_replace(&mut self, replace: bool) {
        self.replace = replace;
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
            selection: self.selection.clone(),
            replace: self.replace,
        }
    }

    fn publisher(&self, snapshot: &Snapshot) -> Result<Publisher> {
        let hf_commit = self.hf_metadata.then(|| snapshot.commit.clone());
        Publisher::new(&self.dir, hf_commit, self.log_slice)
    }

    /// Settles a directory whose manifest names another snapshot, before anything is written.
    /// Another repo: refused (two models' files would mix and the gate would open on the mix),
    /// unless `--replace`, which removes the files the old manifest lists that this snapshot
    /// does not have. The same repo at another commit is an update: files of the old commit
    /// the new one no longer lists are removed. Only files the old manifest names are ever
    /// removed, never anything else in the directory.
    pub fn settle_previous(&self, snapshot: &Snapshot) -> Result<()> {
        let Some(old) = Manifest::read(&self.dir)? else {
            return Ok(());
        };
        let same_repo = old.repo == snapshot.repo;
        if !same_repo && !self.replace {
            return Err(Error::OtherModel {
                dir: self.dir.clone(),
                theirs: format!("{}@{}", old.repo, short(&old.commit)),
                ours: format!("{}@{}", snapshot.repo, short(&snapshot.commit)),
            });
        }
        if same_repo && old.commit == snapshot.commit {
            return Ok(());
        }
        let mut keep: std::collections::HashSet<&str> =
            snapshot.files.iter().map(|f| f.path.as_str()).collect();
        if same_repo {
            // Files this run's patterns leave out are still the repo's: an update with
            // --include must not delete the rest of the model.
            keep.extend(
                self.selection
                    .iter()
                    .flat_map(|s| s.left_out.iter().map(String::as_str)),
            );
        }
        let stale: Vec<&str> = old
            .files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|p| !keep.contains(p))
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        // Readers must stop trusting the directory before any file goes.
        let manifest = layout::manifest_path(&self.dir);
        std::fs::remove_file(&manifest).map_err(|e| Error::io(&manifest, e))?;
        for rel in &stale {
            // The file and huggingface_hub's side file for it, which would vouch for it.
            let meta = format!(".cache/huggingface/download/{rel}.metadata");
            for rel in [*rel, meta.as_str()] {
                no_link_on_the_way(&self.dir, rel)?;
                let path = self.dir.join(rel);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
        }
        tracing::info!(
            "removed {} file(s) of {}@{} that {}@{} does not have",
            stale.len(),
            old.repo,
            short(&old.commit),
            snapshot.repo,
            short(&snapshot.commit)
        );
        Ok(())
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
        let journal_slice = piece.and(self.slice);
        open_job_in(
            &self.dir,
            &self.opts,
            ranges,
            f,
            piece,
            journal_slice,
            meter,
        )
    }

    /// Opens the piece `[start, end)` of `f` that a dynamic Job's claim holds, journaled apart
    /// under the claim's start so whoever takes the claim over resumes it
    /// ([`layout::claim_journal_path`]).
    pub fn open_claim_job(
        &self,
        ranges: &dyn Ranges,
        f: &RemoteFile,
        (start, end): (u64, u64),
        meter: &Meter,
    ) -> Result<Arc<FileJob>> {
        let journal = layout::claim_journal_path(&self.dir, &partial_name(f), start);
        let piece = Some((start, end - start));
        open_journaled(&self.dir, &self.opts, ranges, f, piece, journal, meter)
    }

    /// Checks free space, then runs the transfer scheduler over `jobs`.
    pub async fn run_jobs(
        &self,
        ranges: Arc<dyn Ranges>,
        snapshot: &Snapshot,
        jobs: Vec<Arc<FileJob>>,
        meter: &Arc<Meter>,
    ) -> Result<()> {
        let publisher = Arc::new(self.publisher(snapshot)?);
        run_scheduler(&self.dir, &self.opts, ranges, publisher, jobs, meter).await
    }
}

/// Opens the partial file and journal of `f` under `state_root`'s `.ferry/` (or of `piece` of
/// it, journaled for `journal_slice`), counting what an earlier run journaled as reused.
pub fn open_job_in(
    state_root: &Path,
    opts: &TransferOptions,
    ranges: &dyn Ranges,
    f: &RemoteFile,
    piece: Option<(u64, u64)>,
    journal_slice: Option<(u32, u32)>,
    meter: &Meter,
) -> Result<Arc<FileJob>> {
    let journal = layout::journal_path(state_root, &partial_name(f), journal_slice);
    open_journaled(state_root, opts, ranges, f, piece, journal, meter)
}

/// Opens the partial file of `f` under `state_root`'s `.ferry/` for `piece` of it (or all of
/// it), journaled in `journal`; what that journal already records counts as reused.
fn open_journaled(
    state_root: &Path,
    opts: &TransferOptions,
    ranges: &dyn Ranges,
    f: &RemoteFile,
    piece: Option<(u64, u64)>,
    journal: PathBuf,
    meter: &Meter,
) -> Result<Arc<FileJob>> {
    let (job, _) = FileJob::open(
        f.clone(),
        ranges.file_url(f),
        layout::partial_path(state_root, &partial_name(f)),
        journal,
        opts.chunk_size,
        piece,
    )?;
    let len = piece.map_or(f.size, |(_, len)| len);
    meter.add_reused(len.saturating_sub(job.pending_bytes()));
    Ok(Arc::new(job))
}

/// Checks that `dir` has room for what `jobs` still need, then runs the transfer scheduler,
/// handing each verified file to `publisher`.
pub async fn run_scheduler(
    dir: &Path,
    opts: &TransferOptions,
    ranges: Arc<dyn Ranges>,
    publisher: Arc<dyn Publish>,
    jobs: Vec<Arc<FileJob>>,
    meter: &Arc<Meter>,
) -> Result<()> {
    let needed: u64 = jobs.iter().map(|j| j.pending_bytes()).sum();
    let available = space::available(dir).map_err(|e| Error::io(dir, e))?;
    if needed > available {
        return Err(Error::NoSpace {
            dir: dir.to_path_buf(),
            needed,
            available,
        });
    }
    Scheduler::new(ranges, opts.clone(), Arc::clone(meter), publisher, jobs)
        .run()
        .await
}

/// Hash-correct files can still make a checkpoint no engine loads (an index naming a missing
/// shard or tensor, a header that overruns its file): the headers and index of `snapshot` as
/// laid out in `dir`, checked before committing, so the manifest means "loadable", not only "as
/// published". With `filtered`, findings are warnings only.
pub async fn validate_checkpoint(dir: &Path, snapshot: &Snapshot, filtered: bool) -> Result<()> {
    let files: Vec<String> = snapshot.files.iter().map(|f| f.path.clone()).collect();
    let root = dir.to_path_buf();
    let findings = blocking("validate task", move || {
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        ferry_sharder::validate::validate(&root, &files)
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
        dir: dir.display().to_string(),
        count: errors.len(),
        list: ferry_sharder::finding::bullet_list(&errors),
    })
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

    async fn validate(&self, snapshot: &Snapshot, filtered: bool) -> Result<()> {
        validate_checkpoint(&self.dir, snapshot, filtered).await
    }

    /// The commit point: every selected file is published and verified.
    async fn commit(&self, snapshot: &Snapshot, source: &str) -> Result<()> {
        let mut manifest = snapshot.manifest(source);
        manifest.selection = self.selection.clone();
        sync_dirs(&self.dir, snapshot.files.iter().map(|f| f.path.as_str()))?;
        crate::lock::still_held(&self.dir)?;
        manifest.commit_once(&self.dir)?;
        let _ = std::fs::remove_file(layout::heartbeat_path(&self.dir, None));
        Ok(())
    }
}

fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// Partial files are named by path and expected content, so a resumed run picks up only bytes
/// meant for the same file content.
pub fn partial_name(f: &RemoteFile) -> String {
    use sha2::Digest;
    let path_hash = hex::encode(&sha2::Sha256::digest(f.path.as_bytes())[..8]);
    format!("{path_hash}-{}", &f.hash.hex()[..16])
}

/// Splits `files` into those already in place and verified, and those to fetch. Every file
/// already under its final name with the right size is re-hashed (in parallel, on every core)
/// before it counts: this run is about to write a fresh manifest vouching for it, and a publish
/// record (size, mtime) cannot tell a shard corrupted in place from a good one. A file that
/// matches is recorded (and adopted, when another downloader left it); one that does not is
/// fetched again.
fn find_reusable(
    dir: &Path,
    files: &[RemoteFile],
    publisher: &Publisher,
) -> Result<(Vec<RemoteFile>, Vec<RemoteFile>)> {
    let mut candidates = Vec::new();
    let mut todo = Vec::new();
    for f in files {
        // Before any byte moves: a link planted on the way would be refused at publish time.
        no_link_on_the_way(dir, &f.path)?;
        let is_link =
            std::fs::symlink_metadata(dir.join(&f.path)).is_ok_and(|m| m.file_type().is_symlink());
        // A link in a file's place is never adopted (its bytes live elsewhere): publishing
        // replaces it with the real file.
        let stat = (!is_link)
            .then(|| stat_record(dir, &f.path, &f.hash))
            .flatten();
        match stat {
            Some(now) if now.size == f.size => candidates.push(f),
            _ => todo.push(f.clone()),
        }
    }
    let hashed =
        ferry_sharder::parallel::map(&candidates, ferry_sharder::parallel::default_jobs(), |f| {
            let path = dir.join(&f.path);
            ferry_sharder::verify::hash_file(&path, &f.hash, f.size)
                .map_err(|e| Error::io(&path, e))
        });
    let mut reused = Vec::new();
    for (f, actual) in candidates.into_iter().zip(hashed) {
        if actual? == f.hash {
            publisher.record(f)?;
            reused.push(f.clone());
        } else {
            tracing::warn!(
                "{:?}: in place but its bytes do not match the source's {} (changed or damaged since it was written); fetching it again",
                f.path,
                f.hash.algorithm()
            );
            todo.push(f.clone());
        }
    }
    Ok((reused, todo))
}
