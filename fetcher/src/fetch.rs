//! `fetch`: the whole job, from a repo id to a complete, verified directory with its manifest.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_sharder::{layout, Manifest, ManifestFile};
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
/// keeps many TCP streams busy on a 163-shard model without thrashing the target disk, 16
/// connections in all lets the last big files be split into ranges, and 64 MiB ranges keep
/// request overhead under 0.1 % while bounding what a crash can lose per connection.
pub const DEFAULT_JOBS: usize = 8;
pub const DEFAULT_CONNECTIONS: usize = 16;
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
    pub connections: usize,
    pub chunk_size: u64,
    /// No byte for this long on a connection: drop it and reconnect.
    pub stall_timeout: Duration,
    /// A range that keeps failing without progress for this long fails the fetch.
    pub retry_timeout: Duration,
    pub progress: ProgressMode,
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
    let started = Instant::now();
    let dir = opts.dir.clone();
    for d in [
        dir.join(layout::STATE_DIR),
        layout::partial_dir(&dir),
        layout::journal_dir(&dir),
    ] {
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let _lock = lock::acquire(&dir, None)?;

    let source = Source::new(opts.kind, &opts.endpoint, token)?;
    let snapshot = source.resolve(&opts.repo, opts.revision.as_deref()).await?;
    let selection = Selection::new(&opts.include, &opts.exclude)?;
    let files = selection.apply(&opts.repo, snapshot.files.clone())?;
    let snapshot = Arc::new(Snapshot { files, ..snapshot });
    tracing::info!(
        "{} {} at {} ({}): {} files, {}",
        opts.kind.display_name(),
        snapshot.repo,
        snapshot.revision,
        &snapshot.commit[..12.min(snapshot.commit.len())],
        snapshot.files.len(),
        bytesize::ByteSize(snapshot.total_bytes())
    );

    if let Some(summary) = already_complete(&dir, &snapshot, opts.kind, started)? {
        tracing::info!(
            "{} is already complete and verified; nothing to do",
            dir.display()
        );
        return Ok(summary);
    }
    // From here on files may change: readers must not trust an old manifest meanwhile.
    remove_manifest(&dir)?;

    let publisher = Publisher::new(
        &dir,
        (opts.kind == SourceKind::HuggingFace).then(|| snapshot.commit.clone()),
    )?;
    let heartbeat = serde_json::json!({
        "repo": snapshot.repo,
        "source": opts.kind.id(),
        "revision": snapshot.revision,
        "commit": snapshot.commit,
        "host": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
    });
    let progress = Arc::new(Progress::new(
        opts.progress,
        Some((layout::progress_path(&dir), heartbeat)),
    ));
    progress
        .bytes_total
        .store(snapshot.total_bytes(), Ordering::Relaxed);
    progress
        .files_total
        .store(snapshot.files.len() as u64, Ordering::Relaxed);

    // Sort out what is already in place before opening any partial file.
    let (reused, todo) = {
        let dir = dir.clone();
        let snap = Arc::clone(&snapshot);
        let publisher = publisher.clone();
        tokio::task::spawn_blocking(move || find_reusable(&dir, &snap, &publisher))
            .await
            .map_err(|e| Error::Usage(format!("scan task failed: {e}")))??
    };
    let mut outcomes: Vec<FileOutcome> = reused
        .iter()
        .map(|f| FileOutcome {
            path: f.path.clone(),
            size: f.size,
            result: FileResult::Reused,
        })
        .collect();
    progress
        .bytes_reused
        .fetch_add(reused.iter().map(|f| f.size).sum(), Ordering::Relaxed);
    progress
        .files_done
        .fetch_add(reused.len() as u64, Ordering::Relaxed);

    let mut jobs = Vec::new();
    let mut needed = 0u64;
    // Small files first: configs and tokenizers land early, and big shards fill the connections.
    let mut todo = todo;
    todo.sort_by_key(|f| (f.size >= opts.chunk_size, f.path.clone()));
    for f in &todo {
        let name = partial_name(f);
        let (job, journaled) = FileJob::open(
            f.clone(),
            source.file_url(&snapshot, f),
            layout::partial_dir(&dir).join(&name),
            layout::journal_dir(&dir).join(format!("{name}.log")),
            opts.chunk_size,
        )?;
        progress
            .bytes_reused
            .fetch_add(journaled, Ordering::Relaxed);
        needed += f.size - journaled;
        jobs.push(Arc::new(job));
    }
    let available = space::available(&dir).map_err(|e| Error::io(&dir, e))?;
    if needed > available {
        return Err(Error::NoSpace {
            dir,
            needed,
            available,
        });
    }

    let engine = Engine::new(
        source,
        Arc::clone(&snapshot),
        EngineOptions {
            jobs: opts.jobs,
            connections: opts.connections,
            chunk_size: opts.chunk_size,
            stall_timeout: opts.stall_timeout,
            retry_timeout: opts.retry_timeout,
        },
        Arc::clone(&progress),
        publisher,
        jobs,
    );
    let ticker = {
        let progress = Arc::clone(&progress);
        let every = match opts.progress {
            ProgressMode::Bar => Duration::from_millis(200),
            ProgressMode::Json => Duration::from_secs(1),
            ProgressMode::Plain | ProgressMode::Quiet => Duration::from_secs(10),
        };
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                progress.tick(&mut last);
            }
        })
    };
    let result = engine.run().await;
    ticker.abort();
    progress.finish();
    result?;

    outcomes.extend(todo.iter().map(|f| FileOutcome {
        path: f.path.clone(),
        size: f.size,
        result: FileResult::Downloaded,
    }));
    commit_manifest(&dir, &snapshot, opts.kind)?;
    let _ = std::fs::remove_file(layout::progress_path(&dir));
    outcomes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Summary {
        repo: snapshot.repo.clone(),
        source: opts.kind.id(),
        revision: snapshot.revision.clone(),
        commit: snapshot.commit.clone(),
        dir: opts.dir,
        files: outcomes,
        bytes_total: snapshot.total_bytes(),
        bytes_downloaded: progress.bytes_downloaded.load(Ordering::Relaxed),
        bytes_reused: progress.bytes_reused.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        retries: progress.retries.load(Ordering::Relaxed),
    })
}

/// Partial files are named by path and expected content, so a resumed run picks up only bytes
/// meant for the same file content.
fn partial_name(f: &RemoteFile) -> String {
    use sha2::Digest;
    let path_hash = hex::encode(&sha2::Sha256::digest(f.path.as_bytes())[..8]);
    format!("{path_hash}-{}", &f.hash.hex()[..16])
}

/// A directory whose manifest names this commit and whose files are all in place needs nothing.
fn already_complete(
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

fn remove_manifest(dir: &Path) -> Result<()> {
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
fn find_reusable(
    dir: &Path,
    snapshot: &Snapshot,
    publisher: &Publisher,
) -> Result<(Vec<RemoteFile>, Vec<RemoteFile>)> {
    let records = read_published(dir);
    let mut reused = Vec::new();
    let mut todo = Vec::new();
    for f in &snapshot.files {
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

/// The commit point: every selected file is published and verified.
fn commit_manifest(dir: &Path, snapshot: &Snapshot, kind: SourceKind) -> Result<()> {
    let manifest = Manifest {
        format: ferry_sharder::manifest::FORMAT,
        repo: snapshot.repo.clone(),
        source: kind.id().to_string(),
        revision: snapshot.revision.clone(),
        commit: snapshot.commit.clone(),
        ferry_version: env!("CARGO_PKG_VERSION").to_string(),
        completed_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        files: snapshot
            .files
            .iter()
            .map(|f| ManifestFile {
                path: f.path.clone(),
                size: f.size,
                hash: f.hash.clone(),
            })
            .collect(),
    };
    manifest.write_atomic(dir)?;
    Ok(())
}
