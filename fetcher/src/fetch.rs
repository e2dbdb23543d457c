//! `fetch`: the whole job, from a repo id to a complete, verified directory with its manifest.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_sharder::slices::SliceSpec;
use ferry_sharder::{layout, Manifest};
use serde::Serialize;

use crate::engine::{Engine, EngineOptions, FileJob};
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressMode};
use crate::publish::{read_published, stat_record, Publisher};
use crate::select::Selection;
use crate::snapshot::{RemoteFile, Snapshot};
use crate::source::{Source, SourceKind};
use crate::{lock, space};

/// Defaults, chosen so a single `ferry fetch` fills a fast link without flags: 8 files at once
/// keeps many TCP streams busy on a 163-shard model without thrashing the target disk; the
/// connection count is measured ([`crate::adapt`]: from 8, doubling while it pays, up to 32,
/// which is what a CDN that caps each connection needs); 64 MiB ranges keep request overhead
/// under 0.1 % while bounding what a crash can lose per connection.
pub const DEFAULT_JOBS: usize = 8;
pub const DEFAULT_MAX_CONNECTIONS: usize = 32;
pub const DEFAULT_CHUNK: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub kind: SourceKind,
    pub endpoint: String,
    pub repo: String,
    pub revision: Option<String>,
    pub dir: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub jobs: usize,
    /// A fixed number of connections in all; None: adaptive up to [`DEFAULT_MAX_CONNECTIONS`].
    pub connections: Option<usize>,
    pub chunk_size: u64,
    /// Finished ranges are synced and journaled per file once this many bytes of them wait
    /// (never less than one chunk): the most a crash loses per file in progress.
    pub sync_every: u64,
    /// No byte for this long on a connection: drop it and reconnect.
    pub stall_timeout: Duration,
    /// A range that keeps failing without progress for this long fails the fetch.
    pub retry_timeout: Duration,
    pub progress: ProgressMode,
    /// Fetch only slice `index` of `count` of an Indexed Job; the last slice done completes the
    /// directory.
    pub slice: Option<SliceSpec>,
    /// S3 endpoint for `s3://` sources and targets (`--s3-endpoint`); None: `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL`, else AWS itself.
    pub s3_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileResult {
    /// Downloaded (fully or the missing ranges) and verified in this run.
    Downloaded,
    /// Already in place and verified; nothing transferred.
    Reused,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileOutcome {
    pub path: String,
    pub size: u64,
    pub result: FileResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub repo: String,
    pub source: &'static str,
    pub revision: String,
    pub commit: String,
    pub dir: PathBuf,
    pub files: Vec<FileOutcome>,
    pub bytes_total: u64,
    pub bytes_downloaded: u64,
    pub bytes_reused: u64,
    pub seconds: f64,
    pub retries: u64,
}

/// Fetches `opts.repo` into `opts.dir`. The token, if any, is given separately so that options
/// can be logged.
pub async fn fetch(opts: FetchOptions, token: Option<crate::auth::Secret>) -> Result<Summary> {
    // S3 on either side has its own flow (crate::s3); everything else below is the hub flow.
    if crate::s3::S3Url::is_s3(&opts.repo) {
        return crate::s3::source::fetch(opts).await;
    }
    if let Some(dest) = opts.dir.to_str().filter(|d| crate::s3::S3Url::is_s3(d)) {
        let dest = crate::s3::S3Url::parse(dest)?;
        return crate::s3::sink::fetch(opts, token, dest).await;
    }
    let started = Instant::now();
    let dir = opts.dir.clone();
    for d in [
        dir.join(layout::STATE_DIR),
        layout::partial_dir(&dir),
        layout::journal_dir(&dir),
        layout::slices_dir(&dir),
    ] {
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let source = Source::new(opts.kind, &opts.endpoint, token)?;
    match opts.slice {
        None => {
            let _lock = lock::acquire(&dir, None)?;
            let snapshot = resolve(&opts, &source, None).await?;
            complete(&opts, &source, snapshot, started).await
        }
        Some(spec) => crate::slice::fetch_slice(&opts, &source, spec, started).await,
    }
}

/// Resolves the revision (or an already pinned commit) and applies the file selection.
pub(crate) async fn resolve(
    opts: &FetchOptions,
    source: &Source,
    pinned: Option<&str>,
) -> Result<Arc<Snapshot>> {
    let revision = opts.revision.clone().unwrap_or_else(|| {
        match opts.kind {
            SourceKind::HuggingFace => "main",
            SourceKind::ModelScope => "master",
            SourceKind::S3 => "latest",
        }
        .to_string()
    });
    let snapshot = source
        .resolve(&opts.repo, Some(pinned.unwrap_or(&revision)))
        .await?;
    let selection = Selection::new(&opts.include, &opts.exclude)?;
    let files = selection.apply(&opts.repo, snapshot.files.clone())?;
    tracing::info!(
        "{} {} at {} ({}): {} files, {}",
        opts.kind.display_name(),
        snapshot.repo,
        revision,
        &snapshot.commit[..12.min(snapshot.commit.len())],
        files.len(),
        bytesize::ByteSize(files.iter().map(|f| f.size).sum())
    );
    Ok(Arc::new(Snapshot {
        files,
        revision,
        ..snapshot
    }))
}

/// Brings the whole snapshot into `opts.dir` and commits the manifest. The caller holds the
/// directory lock (or, for slices, the finalize lock).
pub(crate) async fn complete(
    opts: &FetchOptions,
    source: &Source,
    snapshot: Arc<Snapshot>,
    started: Instant,
) -> Result<Summary> {
    let dir = opts.dir.clone();
    if let Some(summary) = already_complete(&dir, &snapshot, opts.kind, started)? {
        tracing::info!(
            "{} is already complete and verified; nothing to do",
            dir.display()
        );
        return Ok(summary);
    }
    // From here on files may change: readers must not trust an old manifest meanwhile.
    remove_manifest(&dir)?;

    let publisher = Publisher::new(&dir, hf_commit(opts, &snapshot), None)?;
    let progress = new_progress(opts, &snapshot);

    // Sort out what is already in place before opening any partial file.
    let (reused, todo) = {
        let dir = dir.clone();
        let snap = Arc::clone(&snapshot);
        let publisher = publisher.clone();
        tokio::task::spawn_blocking(move || find_reusable(&dir, &snap.files, &publisher))
            .await
            .map_err(|e| Error::Task {
                task: "scan task",
                message: e.to_string(),
            })??
    };
    let mut outcomes = outcomes(&reused, FileResult::Reused);
    progress
        .bytes_reused
        .fetch_add(reused.iter().map(|f| f.size).sum(), Ordering::Relaxed);
    progress
        .files_done
        .fetch_add(reused.len() as u64, Ordering::Relaxed);

    // Small files first: configs and tokenizers land early, and big shards fill the connections.
    let mut todo = todo;
    todo.sort_by_key(|f| (f.size >= opts.chunk_size, f.path.clone()));
    let mut jobs = Vec::new();
    for f in &todo {
        let name = partial_name(f);
        jobs.push(open_job(
            opts,
            source,
            &snapshot,
            &progress,
            f,
            layout::journal_dir(&dir).join(format!("{name}.log")),
            None,
        )?);
    }
    transfer(opts, source, &snapshot, jobs, &progress, publisher).await?;

    outcomes.extend(self::outcomes(&todo, FileResult::Downloaded));
    check_checkpoint(opts, &snapshot).await?;
    commit_manifest(&dir, &snapshot, opts.kind)?;
    let _ = std::fs::remove_file(layout::progress_path(&dir));
    outcomes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Summary {
        repo: snapshot.repo.clone(),
        source: opts.kind.id(),
        revision: snapshot.revision.clone(),
        commit: snapshot.commit.clone(),
        dir: opts.dir.clone(),
        files: outcomes,
        bytes_total: snapshot.total_bytes(),
        bytes_downloaded: progress.bytes_downloaded.load(Ordering::Relaxed),
        bytes_reused: progress.bytes_reused.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        retries: progress.retries.load(Ordering::Relaxed),
    })
}

pub(crate) fn outcomes(files: &[RemoteFile], result: FileResult) -> Vec<FileOutcome> {
    files
        .iter()
        .map(|f| FileOutcome {
            path: f.path.clone(),
            size: f.size,
            result,
        })
        .collect()
}

/// huggingface_hub's local_dir metadata is written for Hugging Face sources only.
pub(crate) fn hf_commit(opts: &FetchOptions, snapshot: &Snapshot) -> Option<String> {
    (opts.kind == SourceKind::HuggingFace).then(|| snapshot.commit.clone())
}

pub(crate) fn new_progress(opts: &FetchOptions, snapshot: &Snapshot) -> Arc<Progress> {
    let heartbeat = serde_json::json!({
        "repo": snapshot.repo,
        "source": opts.kind.id(),
        "revision": snapshot.revision,
        "commit": snapshot.commit,
        "slice": opts.slice.map(|s| format!("{}/{}", s.index, s.count)),
        "host": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
    });
    let heartbeat_path = match opts.slice {
        None => layout::progress_path(&opts.dir),
        Some(s) => {
            layout::slices_dir(&opts.dir).join(format!("progress-{}-of-{}.json", s.index, s.count))
        }
    };
    let progress = Arc::new(Progress::new(
        opts.progress,
        Some((heartbeat_path, heartbeat)),
    ));
    progress
        .bytes_total
        .store(snapshot.total_bytes(), Ordering::Relaxed);
    progress
        .files_total
        .store(snapshot.files.len() as u64, Ordering::Relaxed);
    progress
}

/// Opens the partial file and journal of `f` (or of its `piece`), counting journaled bytes as
/// reused.
pub(crate) fn open_job(
    opts: &FetchOptions,
    source: &Source,
    snapshot: &Snapshot,
    progress: &Progress,
    f: &RemoteFile,
    journal: PathBuf,
    piece: Option<(u64, u64)>,
) -> Result<Arc<FileJob>> {
    let (job, _) = FileJob::open(
        f.clone(),
        source.file_url(snapshot, f),
        layout::partial_dir(&opts.dir).join(partial_name(f)),
        journal,
        opts.chunk_size,
        piece,
    )?;
    // What this job need not fetch again was journaled by an earlier run.
    let len = piece.map_or(f.size, |(_, len)| len);
    progress
        .bytes_reused
        .fetch_add(len.saturating_sub(job.pending_bytes()), Ordering::Relaxed);
    Ok(Arc::new(job))
}

/// Checks free space, then runs the engine over `jobs` with a progress display.
pub(crate) async fn transfer(
    opts: &FetchOptions,
    source: &Source,
    snapshot: &Arc<Snapshot>,
    jobs: Vec<Arc<FileJob>>,
    progress: &Arc<Progress>,
    publisher: Publisher,
) -> Result<()> {
    let needed: u64 = jobs.iter().map(|j| j.pending_bytes()).sum();
    let available = space::available(&opts.dir).map_err(|e| Error::io(&opts.dir, e))?;
    if needed > available {
        return Err(Error::NoSpace {
            dir: opts.dir.clone(),
            needed,
            available,
        });
    }
    let engine = Engine::new(
        source.clone(),
        Arc::clone(snapshot),
        EngineOptions {
            jobs: opts.jobs,
            connections: opts.connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            adaptive: opts.connections.is_none(),
            chunk_size: opts.chunk_size,
            sync_every: opts.sync_every.max(opts.chunk_size),
            stall_timeout: opts.stall_timeout,
            retry_timeout: opts.retry_timeout,
        },
        Arc::clone(progress),
        publisher,
        jobs,
    );
    let ticker = {
        let progress = Arc::clone(progress);
        let every = match opts.progress {
            ProgressMode::Bar => Duration::from_millis(200),
            ProgressMode::Json => Duration::from_secs(1),
            ProgressMode::Plain | ProgressMode::Quiet => Duration::from_secs(10),
        };
        // The heartbeat for `ferry status` is written at once and every 2 s; the display at its
        // own pace.
        const HEARTBEAT: Duration = Duration::from_secs(2);
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            let (mut shown, mut beat) = (Instant::now(), Instant::now());
            progress.heartbeat();
            let mut interval = tokio::time::interval(every.min(HEARTBEAT));
            interval.tick().await;
            loop {
                interval.tick().await;
                if shown.elapsed() >= every {
                    shown = Instant::now();
                    progress.tick(&mut last);
                }
                if beat.elapsed() >= HEARTBEAT {
                    beat = Instant::now();
                    progress.heartbeat();
                }
            }
        })
    };
    let result = engine.run().await;
    ticker.abort();
    progress.finish();
    result
}

/// Partial files are named by path and expected content, so a resumed run picks up only bytes
/// meant for the same file content.
pub(crate) fn partial_name(f: &RemoteFile) -> String {
    use sha2::Digest;
    let path_hash = hex::encode(&sha2::Sha256::digest(f.path.as_bytes())[..8]);
    format!("{path_hash}-{}", &f.hash.hex()[..16])
}

/// A directory whose manifest names this commit and whose files are all in place needs nothing.
pub(crate) fn already_complete(
    dir: &Path,
    snapshot: &Snapshot,
    kind: SourceKind,
    started: Instant,
) -> Result<Option<Summary>> {
    let Some(m) = Manifest::read(dir)? else {
        return Ok(None);
    };
    if m.commit != snapshot.commit || m.source != kind.id() {
        return Ok(None);
    }
    let all_there = snapshot.files.iter().all(|f| {
        m.files
            .iter()
            .any(|mf| mf.path == f.path && mf.hash == f.hash && mf.size == f.size)
            && std::fs::metadata(dir.join(&f.path))
                .map(|md| md.len() == f.size)
                .unwrap_or(false)
    });
    if !all_there {
        return Ok(None);
    }
    Ok(Some(Summary {
        repo: snapshot.repo.clone(),
        source: kind.id(),
        revision: snapshot.revision.clone(),
        commit: snapshot.commit.clone(),
        dir: dir.to_path_buf(),
        files: snapshot
            .files
            .iter()
            .map(|f| FileOutcome {
                path: f.path.clone(),
                size: f.size,
                result: FileResult::Reused,
            })
            .collect(),
        bytes_total: snapshot.total_bytes(),
        bytes_downloaded: 0,
        bytes_reused: snapshot.total_bytes(),
        seconds: started.elapsed().as_secs_f64(),
        retries: 0,
    }))
}

pub(crate) fn remove_manifest(dir: &Path) -> Result<()> {
    let path = layout::manifest_path(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(ferry_sharder::manifest::sync_dir(
            path.parent().unwrap_or(dir),
        )?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Splits the snapshot into files already in place and verified, and files to fetch. A file
/// with a matching publish record (same size and mtime) is trusted; one without (e.g. left by
/// another downloader) is re-hashed once and adopted when it matches.
pub(crate) fn find_reusable(
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
        if hash_file(&dir.join(&f.path), f)? == f.hash {
            publisher.record(f)?;
            reused.push(f.clone());
        } else {
            todo.push(f.clone());
        }
    }
    Ok((reused, todo))
}

fn hash_file(path: &Path, f: &RemoteFile) -> Result<ferry_sharder::FileHash> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = f.hash.hasher(f.size);
    let mut buf = vec![0u8; 4 << 20];
    let mut at = 0u64;
    while at < f.size {
        let n = ((f.size - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| Error::io(path, e))?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finish())
}

/// Hash-correct files can still make a checkpoint no engine loads (an index naming a missing
/// shard or tensor, a header that overruns its file): validate the headers and index before
/// committing, so the manifest means "loadable", not only "as published". With --include or
/// --exclude the selection may leave out shards on purpose, so findings are only warnings then.
async fn check_checkpoint(opts: &FetchOptions, snapshot: &Snapshot) -> Result<()> {
    let dir = opts.dir.clone();
    let files: Vec<String> = snapshot.files.iter().map(|f| f.path.clone()).collect();
    let findings = tokio::task::spawn_blocking(move || {
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        ferry_sharder::validate::validate(&dir, &files)
    })
    .await
    .map_err(|e| Error::Task {
        task: "validate task",
        message: e.to_string(),
    })?;
    let filtered = !opts.include.is_empty() || !opts.exclude.is_empty();
    let (errors, warnings): (Vec<_>, Vec<_>) = findings
        .into_iter()
        .partition(|f| f.is_error() && !filtered);
    for w in &warnings {
        tracing::warn!("checkpoint: {w}");
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidCheckpoint {
        repo: snapshot.repo.clone(),
        dir: opts.dir.display().to_string(),
        count: errors.len(),
        list: ferry_sharder::finding::bullet_list(&errors),
    })
}

/// The commit point: every selected file is published and verified.
fn commit_manifest(dir: &Path, snapshot: &Snapshot, kind: SourceKind) -> Result<()> {
    let manifest = snapshot.manifest(kind.id());
    crate::publish::sync_dirs(dir, snapshot.files.iter().map(|f| f.path.as_str()))?;
    lock::still_held(dir)?;
    manifest.commit_once(dir)?;
    Ok(())
}
