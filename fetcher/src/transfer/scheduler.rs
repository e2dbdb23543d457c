//! The transfer scheduler: one connection budget shared by all files, files first and ranges
//! second, in-order hashing as ranges land, and publish on a verified hash.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::budget::Budget;
use super::buffers::BufferPool;
use super::job::{chunks, FileJob};
use super::journal::{Journal, RangeSet};
use super::range::{fetch_range, RangeCtx, WRITE_BUF};
use super::{controller, Publish, TransferOptions};
use crate::error::{Error, Result};
use crate::meter::Meter;
use crate::origin::Ranges;

/// Read-back size for hashing from the page cache: the size of a write, so a read-back is one
/// write's worth of pages while they are still hot.
const HASH_BUF: usize = WRITE_BUF;
/// Downloads of a file whose hash does not match before the fetch gives up: a damaged transfer
/// rarely repeats three times, a source that serves wrong bytes always does.
const DOWNLOADS: u32 = 3;
/// Wait before the second download, doubling for each further one.
const REDOWNLOAD_WAIT: Duration = Duration::from_secs(1);

pub struct Scheduler {
    ctx: RangeCtx,
    /// Read-back buffers (HASH_BUF long), one per file being hashed at a time.
    hash_buffers: Arc<BufferPool>,
    opts: TransferOptions,
    meter: Arc<Meter>,
    publisher: Arc<dyn Publish>,
    sched: Mutex<Sched>,
    wake: Notify,
    failed: Mutex<Option<Error>>,
    /// Ranges between their first request and their end, sleeping ones included.
    ranges_started: AtomicUsize,
}

struct Sched {
    queue: VecDeque<Arc<FileJob>>,
    active: Vec<Arc<FileJob>>,
    unfinished: usize,
}

impl Scheduler {
    pub fn new(
        ranges: Arc<dyn Ranges>,
        opts: TransferOptions,
        meter: Arc<Meter>,
        publisher: Arc<dyn Publish>,
        jobs: Vec<Arc<FileJob>>,
    ) -> Arc<Scheduler> {
        let max = opts.max_connections();
        let ctx = RangeCtx {
            ranges,
            meter: Arc::clone(&meter),
            budget: Budget::new(max),
            // As many as can be in flight: one per connection.
            write_buffers: BufferPool::new(max, || Vec::with_capacity(WRITE_BUF)),
            stall_timeout: opts.stall_timeout,
            retry_timeout: opts.retry_timeout,
        };
        Arc::new(Scheduler {
            ctx,
            hash_buffers: Arc::new(BufferPool::new(opts.jobs.max(1), || vec![0u8; HASH_BUF])),
            sched: Mutex::new(Sched {
                unfinished: jobs.len(),
                queue: jobs.into(),
                active: Vec::new(),
            }),
            wake: Notify::new(),
            failed: Mutex::new(None),
            ranges_started: AtomicUsize::new(0),
            opts,
            meter,
            publisher,
        })
    }

    /// Runs every job to a published file, or stops at the first error that retries cannot fix.
    pub async fn run(self: &Arc<Scheduler>) -> Result<()> {
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
                self.finish_if_drained(&job).await?;
            } else if let Some(job) = self.claim_finalize(&job) {
                if let Err(e) = self.finalize(&job).await {
                    self.fail(e);
                }
            }
        }
        let controller = self.opts.connections.is_none().then(|| {
            let limit = self.ctx.budget.limit(controller::START);
            tokio::spawn(controller::control(Arc::clone(&self.meter), limit))
        });
        let mut workers = tokio::task::JoinSet::new();
        // Twice as many workers as places: a range sleeping in backoff holds no place, so while
        // up to `max` of them sleep, as many others can still use every connection.
        for _ in 0..self.ctx.budget.max() * 2 {
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

    fn fail(&self, e: Error) {
        if let Ok(mut f) = self.failed.lock() {
            if f.is_none() {
                *f = Some(e);
            }
        }
        self.meter.stop();
        self.wake.notify_waiters();
    }

    async fn worker(self: Arc<Scheduler>) {
        loop {
            if self.meter.stopped() {
                return;
            }
            // Ranges started (in flight, or asleep in backoff without a connection) stay within
            // twice the count the controller allows now, not twice its ceiling: against a
            // throttling server every range asleep wakes to one more rejected request.
            while self.ranges_started.load(Ordering::SeqCst) >= 2 * self.ctx.budget.usable()
                && !self.meter.stopped()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let Ok(permit) = self.ctx.budget.acquire().await else {
                return;
            };
            let next = self.next_chunk();
            let Some((job, start, end)) = next else {
                drop(permit);
                // A piece cut short (`FileJob::cut_at`) may be left with nothing to do.
                let pieces: Vec<Arc<FileJob>> = self.lock_sched().active.clone();
                for job in pieces.iter().filter(|j| !j.whole) {
                    if let Err(e) = self.finish_if_drained(job).await {
                        self.fail(e);
                    }
                }
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
            self.ranges_started.fetch_add(1, Ordering::SeqCst);
            let result = fetch_range(&self.ctx, &job, start, end, &mut permit).await;
            self.ranges_started.fetch_sub(1, Ordering::SeqCst);
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
                self.meter.file_started(&job.remote.path);
                return take(&job);
            }
            // A piece cut to nothing before it started: the worker's sweep finishes it.
            if !job.whole {
                sched.active.push(job);
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
                if waiting >= self.opts.sync_every.max(self.opts.chunk_size) || piece_done {
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
            return self.finish_if_drained(job).await;
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
                    "{:?}: could not journal finished ranges: {e}",
                    job.remote.path
                );
            }
        }
    }

    /// A piece with nothing pending or in flight: journal what is still unsynced and take it off
    /// the books, once (`finalizing` marks it taken).
    async fn finish_if_drained(&self, job: &Arc<FileJob>) -> Result<()> {
        let unsynced = {
            let mut st = job.state.lock().unwrap_or_else(|p| p.into_inner());
            if job.whole || st.finalizing || !st.pending.is_empty() || st.active != 0 {
                return Ok(());
            }
            st.finalizing = true;
            std::mem::take(&mut st.unsynced)
        };
        self.make_durable(job, unsynced).await?;
        self.finished(job, false);
        Ok(())
    }

    /// Takes a job off the books: published (`done`), or (for a piece) all its ranges
    /// journaled.
    fn finished(&self, job: &Arc<FileJob>, done: bool) {
        self.meter.file_ended(&job.remote.path, done);
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
        let pool = Arc::clone(&self.hash_buffers);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut guard = guard;
            let mut buf = pool.take();
            let hashed = j.hash_landed(&mut guard, &file, &mut buf);
            pool.give(buf);
            hashed
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
                return Err(Error::Task {
                    task: "hash task",
                    message: format!(
                        "{:?}: hashed {} of {} bytes at finalize",
                        job.remote.path, h.upto, job.remote.size
                    ),
                });
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
            self.finished(job, true);
            return Ok(());
        }
        // Reset the hash before any range of the next download can land.
        job.hash.lock().await.upto = 0;
        let earlier = job.state.lock().map(|s| s.wrong_hashes.len()).unwrap_or(0);
        if earlier + 1 < DOWNLOADS as usize {
            // Damage on the way often comes in bursts (a proxy restarting, a bad link): wait a
            // little before asking again. This worker holds no connection while it waits.
            tokio::time::sleep(REDOWNLOAD_WAIT * (1 << earlier)).await;
        }
        self.restart_file(job, &actual)?;
        self.wake.notify_waiters();
        Ok(())
    }

    /// After a hash mismatch: start the file over (fresh journal, every chunk pending again),
    /// up to [`DOWNLOADS`] downloads in all, waiting a little longer before each; then give up,
    /// saying whether the downloads agreed (the source is wrong) or not (the way is).
    fn restart_file(&self, job: &Arc<FileJob>, actual: &ferry_sharder::FileHash) -> Result<()> {
        let mut st = job.state.lock().unwrap_or_else(|p| p.into_inner());
        st.wrong_hashes.push(actual.clone());
        let downloads = st.wrong_hashes.len() as u32;
        if downloads >= DOWNLOADS {
            return Err(Error::hash_mismatch(
                &job.remote.path,
                &job.remote.hash,
                &st.wrong_hashes,
            ));
        }
        tracing::warn!(
            "{:?}: {} mismatch (expected {}, got {}): the bytes are damaged, on the way or at the source; nothing was published under this name. Downloading it again ({} of {DOWNLOADS})",
            job.remote.path,
            job.remote.hash.algorithm(),
            job.remote.hash.hex(),
            actual.hex(),
            downloads + 1
        );
        let _ = std::fs::remove_file(&job.journal_path);
        let (journal, _) = Journal::open(&job.journal_path, job.remote.size, &job.remote.hash)?;
        *job.journal.lock().unwrap_or_else(|p| p.into_inner()) = journal;
        st.done = RangeSet::default();
        st.unsynced.clear();
        st.pending = chunks(job.remote.size, self.opts.chunk_size).into();
        st.finalizing = false;
        Ok(())
    }
}
