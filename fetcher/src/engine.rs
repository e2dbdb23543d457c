//! The transfer engine: one connection budget shared by all files, files first and ranges
//! second, in-order hashing as ranges land, and publish on a verified hash.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_sharder::Hasher;
use tokio::sync::{Notify, Semaphore};
use url::Url;

use crate::error::{Error, Result};
use crate::journal::{Journal, RangeSet};
use crate::progress::Progress;
use crate::publish::Publisher;
use crate::snapshot::{RemoteFile, Snapshot};
use crate::source::Source;
use crate::transfer::fetch_range;

/// Read-back size for hashing from the page cache.
const HASH_BUF: usize = 4 << 20;

/// Tuning of the engine; see `FetchOptions` for the user-facing meaning.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub jobs: usize,
    /// The most connections at once.
    pub connections: usize,
    /// Find the best count up to `connections` by measuring (see [`crate::adapt`]).
    pub adaptive: bool,
    pub chunk_size: u64,
    /// Finished ranges of a file are made durable (fdatasync, then journaled) once this many
    /// bytes of them are waiting: per range would cost a sync per `chunk_size`, which at small
    /// chunks is most of the run's I/O. A crash loses at most this much per file in progress,
    /// beside the ranges in flight.
    pub sync_every: u64,
    pub stall_timeout: Duration,
    pub retry_timeout: Duration,
}

/// One file being fetched.
pub struct FileJob {
    pub remote: RemoteFile,
    /// False for a piece of a file split across the slices of an Indexed Job: this process
    /// fetches its ranges only; hashing and publishing happen once every slice is done.
    pub whole: bool,
    /// The hub URL of the file's bytes.
    pub url: Url,
    /// The CDN URL the hub last redirected to, reused for later ranges until it is refused.
    pub location: Mutex<Option<Url>>,
    pub partial_path: PathBuf,
    pub journal_path: PathBuf,
    pub file: Arc<File>,
    journal: Mutex<Journal>,
    state: Mutex<JobState>,
    hash: Arc<tokio::sync::Mutex<HashState>>,
}

struct JobState {
    pending: VecDeque<(u64, u64)>,
    active: usize,
    done: RangeSet,
    /// Finished ranges written but not yet synced and journaled (see `sync_every`).
    unsynced: Vec<(u64, u64)>,
    finalizing: bool,
    redownloaded: bool,
}

struct HashState {
    hasher: Hasher,
    upto: u64,
}

impl FileJob {
    /// Opens (or resumes) the partial file and journal for `remote`. With `piece`, only the
    /// bytes `[offset, offset + len)` are this job's to fetch, and the file is not published here.
    pub fn open(
        remote: RemoteFile,
        url: Url,
        partial_path: PathBuf,
        journal_path: PathBuf,
        chunk_size: u64,
        piece: Option<(u64, u64)>,
    ) -> Result<(FileJob, u64)> {
        let (journal, done) = Journal::open(&journal_path, remote.size, &remote.hash)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&partial_path)
            .map_err(|e| Error::io(&partial_path, e))?;
        // Sparse preallocation: ranges can land in any order (and from several pods).
        file.set_len(remote.size)
            .map_err(|e| Error::io(&partial_path, e))?;
        let (offset, len) = piece.unwrap_or((0, remote.size));
        let pending = chunks(len, chunk_size)
            .into_iter()
            .map(|(s, e)| (s + offset, e + offset))
            .filter(|(s, e)| !done.contains(*s, *e))
            .collect();
        let reused = done.covered();
        let hasher = remote.hash.hasher(remote.size);
        Ok((
            FileJob {
                remote,
                whole: piece.is_none(),
                url,
                location: Mutex::new(None),
                partial_path,
                journal_path,
                file: Arc::new(file),
                journal: Mutex::new(journal),
                state: Mutex::new(JobState {
                    pending,
                    active: 0,
                    done,
                    unsynced: Vec::new(),
                    finalizing: false,
                    redownloaded: false,
                }),
                hash: Arc::new(tokio::sync::Mutex::new(HashState { hasher, upto: 0 })),
            },
            reused,
        ))
    }
}

impl FileJob {
    /// Bytes still to fetch in this run.
    pub fn pending_bytes(&self) -> u64 {
        self.state
            .lock()
            .map(|s| s.pending.iter().map(|(a, b)| b - a).sum())
            .unwrap_or(0)
    }
}

/// `[start, end)` pieces of at most `chunk` bytes covering `size` bytes.
pub fn chunks(size: u64, chunk: u64) -> Vec<(u64, u64)> {
    let chunk = chunk.max(1);
    (0..size.div_ceil(chunk))
        .map(|i| (i * chunk, ((i + 1) * chunk).min(size)))
        .collect()
}

pub struct Engine {
    pub source: Source,
    pub snapshot: Arc<Snapshot>,
    pub opts: EngineOptions,
    pub progress: Arc<Progress>,
    /// 429/503 answers seen, read by the connection controller.
    pub throttled: AtomicU64,
    publisher: Publisher,
    sched: Mutex<Sched>,
    wake: Notify,
    /// The connection budget: one permit per range in progress.
    pub(crate) connections: Arc<Semaphore>,
    /// Permits the adaptive controller wants back (see [`crate::adapt::Limit`]).
    pub(crate) permit_debt: Arc<std::sync::atomic::AtomicUsize>,
    failed: Mutex<Option<Error>>,
    stop: AtomicBool,
}

struct Sched {
    queue: VecDeque<Arc<FileJob>>,
    active: Vec<Arc<FileJob>>,
    unfinished: usize,
}

impl Engine {
    pub fn new(
        source: Source,
        snapshot: Arc<Snapshot>,
        opts: EngineOptions,
        progress: Arc<Progress>,
        publisher: Publisher,
        jobs: Vec<Arc<FileJob>>,
    ) -> Arc<Engine> {
        let connections = Arc::new(Semaphore::new(opts.connections.max(1)));
        Arc::new(Engine {
            source,
            snapshot,
            throttled: AtomicU64::new(0),
            publisher,
            sched: Mutex::new(Sched {
                unfinished: jobs.len(),
                queue: jobs.into(),
                active: Vec::new(),
            }),
            wake: Notify::new(),
            connections,
            permit_debt: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            failed: Mutex::new(None),
            stop: AtomicBool::new(false),
            opts,
            progress,
        })
    }

    /// Runs every job to a published file, or stops at the first error that retries cannot fix.
    pub async fn run(self: &Arc<Engine>) -> Result<()> {
        // Files whose every range was journaled before need only hashing and publishing.
        let ready: Vec<Arc<FileJob>> = self
            .lock_sched()
            .queue
            .iter()
            .filter(|j| {
                j.state
                    .lock()
                    .map(|s| s.pending.is_empty())
                    .unwrap_or(false)
            })
            .cloned()
            .collect();
        for job in ready {
            if !job.whole {
                self.finished(&job);
            } else if let Some(job) = self.claim_finalize(&job) {
                if let Err(e) = self.finalize(&job).await {
                    self.fail(e);
                }
            }
        }
        let controller = self.opts.adaptive.then(|| {
            let limit = crate::adapt::Limit::new(
                Arc::clone(&self.connections),
                Arc::clone(&self.permit_debt),
                self.opts.connections.max(1),
                crate::adapt::START,
            );
            tokio::spawn(crate::adapt::control(Arc::clone(self), limit))
        });
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.opts.connections.max(1) {
            let eng = Arc::clone(self);
            workers.spawn(async move { eng.worker().await });
        }
        while workers.join_next().await.is_some() {}
        if let Some(c) = controller {
            c.abort();
        }
        if let Some(e) = self.failed.lock().ok().and_then(|mut f| f.take()) {
            self.flush_unsynced().await;
            return Err(e);
        }
        Ok(())
    }

    fn lock_sched(&self) -> std::sync::MutexGuard<'_, Sched> {
        // A panic while holding the lock is a bug; keep going with the data as it is.
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True once every worker has been told to stop.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn fail(&self, e: Error) {
        if let Ok(mut f) = self.failed.lock() {
            if f.is_none() {
                *f = Some(e);
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    async fn worker(self: Arc<Engine>) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(permit) = self.connections.clone().acquire_owned().await else {
                return;
            };
            let next = self.next_chunk();
            let Some((job, start, end)) = next else {
                drop(permit);
                if self.lock_sched().unfinished == 0 {
                    self.wake.notify_waiters();
                    return;
                }
                // Wait for a re-queue (hash mismatch) or the end; the timeout guards lost wake-ups.
                let _ =
                    tokio::time::timeout(Duration::from_millis(500), self.wake.notified()).await;
                continue;
            };
            let mut permit = Some(permit);
            let result = fetch_range(&self, &job, start, end, &mut permit).await;
            drop(permit);
            match result {
                Ok(()) => {
                    if let Err(e) = self.range_done(&job, start, end).await {
                        self.fail(e);
                    }
                }
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }

    /// Files first, ranges second: an idle file in progress, else a new file while under the
    /// jobs limit, else a second connection on the file with the fewest.
    fn next_chunk(&self) -> Option<(Arc<FileJob>, u64, u64)> {
        let mut sched = self.lock_sched();
        let take = |job: &Arc<FileJob>| -> Option<(Arc<FileJob>, u64, u64)> {
            let mut st = job.state.lock().ok()?;
            let (s, e) = st.pending.pop_front()?;
            st.active += 1;
            Some((Arc::clone(job), s, e))
        };
        let idle = sched.active.iter().find(|j| {
            j.state
                .lock()
                .map(|s| s.active == 0 && !s.pending.is_empty())
                .unwrap_or(false)
        });
        if let Some(j) = idle.cloned() {
            return take(&j);
        }
        while sched.active.len() < self.opts.jobs.max(1) {
            let Some(job) = sched.queue.pop_front() else {
                break;
            };
            let has_work = job
                .state
                .lock()
                .map(|s| !s.pending.is_empty())
                .unwrap_or(false);
            // A file without pending ranges was finalized before the workers started.
            if has_work {
                sched.active.push(Arc::clone(&job));
                if let Ok(mut ip) = self.progress.in_progress.lock() {
                    ip.push(job.remote.path.clone());
                }
                return take(&job);
            }
        }
        let busiest_first = sched
            .active
            .iter()
            .filter_map(|j| {
                let s = j.state.lock().ok()?;
                (!s.pending.is_empty()).then_some((s.active, Arc::clone(j)))
            })
            .min_by_key(|(active, _)| *active)
            .map(|(_, j)| j);
        busiest_first.and_then(|j| take(&j))
    }

    async fn range_done(&self, job: &Arc<FileJob>, start: u64, end: u64) -> Result<()> {
        // The range that completes a file is not journaled: publishing syncs the data and
        // renames it right away, and a crash in between costs at most this one range.
        let completes_file = job.whole
            && job
                .state
                .lock()
                .map(|st| {
                    let mut done = st.done.clone();
                    done.insert(start, end);
                    st.pending.is_empty() && st.active == 1 && done.contains(0, job.remote.size)
                })
                .unwrap_or(false);
        // Synced (or not) before this range stops counting as active, so no other range can
        // finalize or restart the file while its journal is being written.
        let to_sync = {
            let mut st = job.state.lock().unwrap_or_else(|p| p.into_inner());
            if completes_file {
                Vec::new()
            } else {
                st.unsynced.push((start, end));
                let waiting: u64 = st.unsynced.iter().map(|(s, e)| e - s).sum();
                // A piece of a split file must be fully journaled: another pod merges it.
                let piece_done = !job.whole && st.pending.is_empty() && st.active == 1;
                if waiting >= self.opts.sync_every || piece_done {
                    std::mem::take(&mut st.unsynced)
                } else {
                    Vec::new()
                }
            }
        };
        self.make_durable(job, to_sync).await?;
        {
            let mut st = job.state.lock().unwrap_or_else(|p| p.into_inner());
            st.done.insert(start, end);
            st.active -= 1;
        }
        if !job.whole {
            let last = job
                .state
                .lock()
                .map(|s| s.pending.is_empty() && s.active == 0)
                .unwrap_or(false);
            if last {
                self.finished(job);
            }
            return Ok(());
        }
        self.advance_hash(job, false).await?;
        if let Some(job) = self.claim_finalize(job) {
            self.finalize(&job).await?;
        }
        Ok(())
    }

    /// Data first, then the journal lines that vouch for it.
    async fn make_durable(&self, job: &Arc<FileJob>, ranges: Vec<(u64, u64)>) -> Result<()> {
        if ranges.is_empty() {
            return Ok(());
        }
        let file = Arc::clone(&job.file);
        let j = Arc::clone(job);
        let path = job.partial_path.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            file.sync_data().map_err(|e| Error::io(&path, e))?;
            let mut journal = j.journal.lock().unwrap_or_else(|p| p.into_inner());
            journal.record_all(&ranges)
        })
        .await
        .map_err(|e| Error::Task {
            task: "journal task",
            message: e.to_string(),
        })?
    }

    /// On the way out after an error: what was fetched stays fetched for the next run.
    async fn flush_unsynced(&self) {
        let jobs: Vec<Arc<FileJob>> = self.lock_sched().active.clone();
        for job in jobs {
            let ranges = job
                .state
                .lock()
                .map(|mut st| std::mem::take(&mut st.unsynced))
                .unwrap_or_default();
            if let Err(e) = self.make_durable(&job, ranges).await {
                tracing::warn!(
                    "{}: could not journal finished ranges: {e}",
                    job.remote.path
                );
            }
        }
    }

    /// Takes a job off the books: published, or (for a piece) all its ranges journaled.
    fn finished(&self, job: &Arc<FileJob>) {
        if let Ok(mut ip) = self.progress.in_progress.lock() {
            ip.retain(|p| p != &job.remote.path);
        }
        let mut sched = self.lock_sched();
        sched.active.retain(|j| !Arc::ptr_eq(j, job));
        sched.queue.retain(|j| !Arc::ptr_eq(j, job));
        sched.unfinished -= 1;
        drop(sched);
        self.wake.notify_waiters();
    }

    /// The one caller that sees a file fully written gets to finalize it.
    fn claim_finalize(&self, job: &Arc<FileJob>) -> Option<Arc<FileJob>> {
        let mut st = job.state.lock().ok()?;
        if !st.finalizing
            && st.pending.is_empty()
            && st.active == 0
            && st.done.contains(0, job.remote.size)
        {
            st.finalizing = true;
            return Some(Arc::clone(job));
        }
        None
    }

    /// Hashes the contiguous prefix that has landed, reading it back while it is still in the
    /// page cache. With `wait == false` it yields to a hasher already running on this file,
    /// which picks the new bytes up; finalize waits and catches up whatever is left.
    async fn advance_hash(&self, job: &Arc<FileJob>, wait: bool) -> Result<()> {
        let guard = if wait {
            Arc::clone(&job.hash).lock_owned().await
        } else {
            match Arc::clone(&job.hash).try_lock_owned() {
                Ok(g) => g,
                Err(_) => return Ok(()),
            }
        };
        let file = Arc::clone(&job.file);
        let j = Arc::clone(job);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut guard = guard;
            let mut buf = vec![0u8; HASH_BUF];
            loop {
                let upto = guard.upto;
                let until = j
                    .state
                    .lock()
                    .map(|s| s.done.contiguous_from(upto))
                    .unwrap_or(upto);
                if until <= upto {
                    return Ok(());
                }
                let mut at = upto;
                while at < until {
                    let n = ((until - at) as usize).min(HASH_BUF);
                    file.read_exact_at(&mut buf[..n], at)
                        .map_err(|e| Error::io(&j.partial_path, e))?;
                    guard.hasher.update(&buf[..n]);
                    at += n as u64;
                }
                guard.upto = until;
            }
        })
        .await
        .map_err(|e| Error::Task {
            task: "hash task",
            message: e.to_string(),
        })?
    }

    async fn finalize(&self, job: &Arc<FileJob>) -> Result<()> {
        self.advance_hash(job, true).await?;
        let actual = {
            let mut h = job.hash.lock().await;
            if h.upto != job.remote.size {
                return Err(Error::Usage(format!(
                    "{}: hashed {} of {} bytes at finalize",
                    job.remote.path, h.upto, job.remote.size
                )));
            }
            let fresh = job.remote.hash.hasher(job.remote.size);
            std::mem::replace(&mut h.hasher, fresh).finish()
        };
        if actual == job.remote.hash {
            let publisher = self.publisher.clone();
            let j = Arc::clone(job);
            tokio::task::spawn_blocking(move || {
                publisher.publish(&j.remote, &j.file, &j.partial_path, &j.journal_path)
            })
            .await
            .map_err(|e| Error::Task {
                task: "publish task",
                message: e.to_string(),
            })??;
            self.progress.files_done.fetch_add(1, Ordering::Relaxed);
            self.finished(job);
            return Ok(());
        }
        // Reset the hash before any range of the second download can land.
        job.hash.lock().await.upto = 0;
        self.restart_file(job, &actual)?;
        self.wake.notify_waiters();
        Ok(())
    }

    /// After a hash mismatch: the first time, start the file over (fresh journal, every chunk
    /// pending again); the second time, give up.
    fn restart_file(&self, job: &Arc<FileJob>, actual: &ferry_sharder::FileHash) -> Result<()> {
        let mut st = job.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.redownloaded {
            return Err(Error::HashMismatch {
                path: job.remote.path.clone(),
                algorithm: job.remote.hash.algorithm(),
                expected: job.remote.hash.hex().to_string(),
                actual: actual.hex().to_string(),
            });
        }
        tracing::warn!(
            "{}: {} mismatch (expected {}, got {}); downloading the file again",
            job.remote.path,
            job.remote.hash.algorithm(),
            job.remote.hash.hex(),
            actual.hex()
        );
        let _ = std::fs::remove_file(&job.journal_path);
        let (journal, _) = Journal::open(&job.journal_path, job.remote.size, &job.remote.hash)?;
        *job.journal.lock().unwrap_or_else(|p| p.into_inner()) = journal;
        st.done = RangeSet::default();
        st.unsynced.clear();
        st.pending = chunks(job.remote.size, self.opts.chunk_size).into();
        st.redownloaded = true;
        st.finalizing = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_exactly() {
        assert_eq!(chunks(0, 10), vec![]);
        assert_eq!(chunks(10, 10), vec![(0, 10)]);
        assert_eq!(chunks(25, 10), vec![(0, 10), (10, 20), (20, 25)]);
    }
}
