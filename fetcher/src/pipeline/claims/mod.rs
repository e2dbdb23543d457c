//! One pod of a dynamic Indexed Job: `ferry fetch --slices N --dynamic` into a shared directory.
//!
//! Instead of a fixed slice, the pod runs `--jobs` lanes; each claims the next free piece (a
//! whole small file, or a range of a large one) through a lease in the shared directory, fetches
//! it with the ordinary transfer scheduler, marks it done and claims again. A lane with nothing
//! free splits the range in flight with the most bytes left and takes its second half; the
//! holder learns the new end from the claim names ([`watch`], every
//! [`ferry_sharder::claims::WATCH_EVERY`]) and stops there. A pod that dies loses its claims
//! when their leases go stale (`FERRY_LEASE_TIMEOUT`), and whoever takes one resumes from its
//! journal. A large file is hashed and published once all its ranges are done, by the pod that
//! sees that first; the pod that finds every file published commits the manifest, once. The
//! protocol and its files: [`ferry_sharder::claims`].

mod board;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_sharder::claims::{Bounds, ClaimDone, FileDone, HeldClaim, PodClaims, WATCH_EVERY};
use ferry_sharder::layout;
use ferry_sharder::slices::SliceSpec;

use super::report::{reporting, Beat};
use super::slice::{finalize_lock, join, merge_journals};
use super::stages::{run_stages, Run};
use super::summary::Summary;
use crate::error::{Error, Result};
use crate::meter::Meter;
use crate::origin::{Origin, Ranges};
use crate::snapshot::{RemoteFile, Snapshot};
use crate::target::dir::{partial_name, DirTarget};
use crate::target::Target;
use crate::transfer::job::FileJob;
use crate::transfer::TransferOptions;
use board::{Board, BoardFile, Work};

/// Connections per lane when `--connections` is not given: 8 lanes x 2 is the 16 a plain fetch
/// settles at on most links, and a slow pod keeps few bytes in flight (what it still holds when
/// the others run out of work).
const LANE_CONNECTIONS: usize = 2;

/// How often a lane with nothing to do looks again: a listing of two small directories, so
/// often enough that the end of the Job (the last file published, a split worth making) is
/// seen within a fraction of a second.
const WAIT_EVERY: Duration = Duration::from_millis(200);

/// One claim this pod holds now.
struct Holding {
    file: usize,
    start: u64,
    /// The end as last learned (lowered by a split).
    end: AtomicU64,
    job: Arc<FileJob>,
}

/// This pod: what its lanes share.
struct Pod<'a, O: Origin> {
    run: &'a Run<'a>,
    origin: &'a O,
    target: DirTarget,
    snapshot: Arc<Snapshot>,
    /// The snapshot's files in path order: the numbers claims name them by.
    files: Vec<RemoteFile>,
    board: Arc<Board>,
    ranges: Arc<dyn Ranges>,
    meter: Arc<Meter>,
    spec: SliceSpec,
    held: Mutex<Vec<Arc<Holding>>>,
    pieces_done: AtomicU64,
    /// Lanes waiting for the others (nothing to claim or split).
    waiting: AtomicUsize,
    published: Mutex<Vec<RemoteFile>>,
}

/// Fetches into the shared directory `dir` as pod `spec.index` of a dynamic Job.
pub async fn fetch_claims<O: Origin>(
    run: &Run<'_>,
    origin: &O,
    dir: PathBuf,
    spec: SliceSpec,
) -> Result<Summary> {
    let opts = lane_options(&run.opts.transfer);
    let ((i, n), target, _lock, snapshot) =
        join(run, origin, dir, spec, opts.clone(), true).await?;
    let dir = target.dir().to_path_buf();
    for d in [layout::claims_done_dir(&dir), layout::claims_pods_dir(&dir)] {
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    if target.is_complete(&snapshot, origin.id()).await? {
        return Ok(Summary::complete(&snapshot, origin.id(), &dir));
    }
    target.withdraw().await?;
    let mut files = snapshot.files.clone();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let (reused, _) = target.reuse(&snapshot, &files).await?;
    let meter = Arc::new(Meter::new(&snapshot));
    meter.reused_files(&reused);
    let board = Arc::new(Board {
        dir: dir.clone(),
        files: files
            .iter()
            .map(|f| BoardFile {
                path: f.path.clone(),
                size: f.size,
                reused: reused.iter().any(|r| r.path == f.path),
            })
            .collect(),
        chunk: opts.chunk_size,
        pod: (i, n),
        lanes: run.opts.transfer.jobs.max(1),
        seen: Default::default(),
    });
    let ranges = origin.open(&snapshot).await?;
    let pod = Pod {
        run,
        origin,
        target,
        snapshot: Arc::clone(&snapshot),
        files,
        board,
        ranges,
        meter: Arc::clone(&meter),
        spec,
        held: Mutex::new(Vec::new()),
        pieces_done: AtomicU64::new(0),
        waiting: AtomicUsize::new(0),
        published: Mutex::new(Vec::new()),
    };
    let beat = Beat::new(
        layout::heartbeat_path(&dir, Some((i, n))),
        &snapshot,
        origin.id(),
        Some((i, n)),
    );
    let lanes = run.opts.transfer.jobs.max(1);
    let work = async {
        let lanes = futures_util::future::try_join_all((0..lanes).map(|_| pod.lane()));
        // The watcher never ends on its own: it goes when the lanes are done.
        let out = tokio::select! {
            out = lanes => out.map(|_| ()),
            () = pod.watch() => Ok(()),
        };
        pod.write_state(&mut VecDeque::new());
        out
    };
    reporting(&meter, &run.reporter, Some(beat), work).await?;
    pod.finalize(&reused).await
}

/// Each lane's transfer options: one file at a time, its share of the connections, and every
/// finished range journaled at once (another pod may take the claim over and resume from it).
fn lane_options(t: &TransferOptions) -> TransferOptions {
    let lanes = t.jobs.max(1);
    let per_lane = t
        .connections
        .map_or(LANE_CONNECTIONS, |c| c.div_ceil(lanes))
        .max(1);
    TransferOptions {
        jobs: 1,
        connections: Some(per_lane),
        sync_every: t.chunk_size,
        ..t.clone()
    }
}

impl<O: Origin> Pod<'_, O> {
    /// Claims, fetches and finishes pieces until every file is published.
    async fn lane(&self) -> Result<()> {
        let mut waited = false;
        loop {
            if self.meter.stopped() {
                return Ok(());
            }
            let board = Arc::clone(&self.board);
            let work = crate::error::blocking("claim task", move || board.choose()).await??;
            let wait = matches!(work, Work::Wait);
            if wait != waited {
                if wait {
                    self.waiting.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                }
                waited = wait;
            }
            match work {
                Work::AllDone => {
                    if waited {
                        self.waiting.fetch_sub(1, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Work::Wait => tokio::time::sleep(WAIT_EVERY).await,
                Work::Finish { file, lock } => {
                    self.finish_file(file).await?;
                    drop(lock);
                }
                Work::Claim {
                    file,
                    start,
                    end,
                    lock,
                } => {
                    self.fetch_claim(file, (start, end)).await?;
                    drop(lock);
                    if self.board.splittable(file) && self.board.file_covered(file) {
                        let name = ferry_sharder::claims::file_lease_name(file);
                        if let Ok(l) = crate::lock::try_lease(&self.board.dir, &name) {
                            if !FileDone::exists(&self.board.dir, file) {
                                self.finish_file(file).await?;
                            }
                            drop(l);
                        }
                    }
                }
            }
        }
    }

    /// Fetches the claim `[start, end)` of `file` and marks what it journaled done.
    async fn fetch_claim(&self, file: usize, (start, end): (u64, u64)) -> Result<()> {
        let f = self.remote(file);
        let whole = !self.board.splittable(file);
        let job = if whole {
            self.target
                .open_job(self.ranges.as_ref(), &f, None, &self.meter)?
        } else {
            self.target
                .open_claim_job(self.ranges.as_ref(), &f, (start, end), &self.meter)?
        };
        let holding = Arc::new(Holding {
            file,
            start,
            end: AtomicU64::new(end),
            job: Arc::clone(&job),
        });
        self.held_mut().push(Arc::clone(&holding));
        let result = self
            .target
            .run_jobs(
                Arc::clone(&self.ranges),
                &self.snapshot,
                vec![job],
                &self.meter,
            )
            .await;
        self.held_mut().retain(|h| !Arc::ptr_eq(h, &holding));
        result?;
        let end = if whole {
            end
        } else {
            holding.end.load(Ordering::Relaxed)
        };
        self.mark_done(file, start, end)?;
        if whole {
            self.file_done(file)?;
        }
        Ok(())
    }

    fn mark_done(&self, file: usize, start: u64, end: u64) -> Result<()> {
        ClaimDone {
            path: self.board.files[file].path.clone(),
            file,
            start,
            end,
            pod: self.spec.to_string(),
            host: ferry_sharder::host::hostname(),
        }
        .write(&self.board.dir)?;
        self.pieces_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn file_done(&self, file: usize) -> Result<()> {
        let f = &self.files[file];
        FileDone {
            path: f.path.clone(),
            file,
            pod: self.spec.to_string(),
        }
        .write(&self.board.dir)?;
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(f.clone());
        Ok(())
    }

    /// Every range of a large file is done: fold the claims' journals into the file's own, then
    /// let the scheduler hash it (fetching anything a journal lost) and publish it.
    async fn finish_file(&self, file: usize) -> Result<()> {
        let f = self.remote(file);
        let dir = self.board.dir.clone();
        let one = Arc::new(Snapshot {
            files: vec![f.clone()],
            ..(*self.snapshot).clone()
        });
        // Published already by a pod that died before it said so.
        let (reused, _) = self.target.reuse(&one, &one.files).await?;
        if !reused.is_empty() {
            return self.file_done(file);
        }
        let claim_journals = merge_claim_journals(&dir, &f)?;
        let meter = Arc::new(Meter::new(&one));
        let job = self
            .target
            .open_job(self.ranges.as_ref(), &f, None, &meter)?;
        self.target
            .run_jobs(Arc::clone(&self.ranges), &one, vec![job], &meter)
            .await?;
        self.meter.add_downloaded(meter.downloaded());
        for j in claim_journals {
            let _ = std::fs::remove_file(j);
        }
        tracing::info!("{}: all ranges done, verified and published", f.path);
        self.file_done(file)
    }

    /// Every file is published: the first pod here validates and commits the manifest; the
    /// others wait for it, then find it committed.
    async fn finalize(&self, reused: &[RemoteFile]) -> Result<Summary> {
        let dir = self.board.dir.clone();
        let mut summary = Summary::of(
            &self.snapshot,
            self.origin.id(),
            &dir,
            (
                reused,
                &self.published.lock().unwrap_or_else(|p| p.into_inner()),
            ),
            &self.meter,
        );
        if !self
            .board
            .files
            .iter()
            .enumerate()
            .all(|(i, f)| f.reused || FileDone::exists(&dir, i))
        {
            // Stopped early (the meter's stop flag after an error is returned by the lanes).
            return Ok(summary);
        }
        let _finalize = finalize_lock(&dir).await?;
        let whole = self.target.whole();
        let done = run_stages(self.run, self.origin, &whole, Arc::clone(&self.snapshot)).await?;
        summary.bytes_downloaded += done.bytes_downloaded;
        Ok(summary)
    }

    /// Learns splits of the claims this pod holds and tells the others what it holds, until
    /// the lanes are done (the caller drops it then).
    async fn watch(&self) {
        let mut samples = VecDeque::new();
        loop {
            let bounds = Bounds::read(&self.board.dir);
            for h in self.held_mut().iter() {
                let size = self.board.files[h.file].size;
                let end = bounds.end_of(h.file, h.start, size);
                if end < h.end.load(Ordering::Relaxed) {
                    h.end.store(end, Ordering::Relaxed);
                    h.job.cut_at(end);
                    tracing::info!(
                        "{}: another lane took [{end}, ...); this claim stops there",
                        self.board.files[h.file].path
                    );
                }
            }
            self.write_state(&mut samples);
            tokio::time::sleep(WATCH_EVERY).await;
        }
    }

    /// Rewrites this pod's [`PodClaims`]: what it holds, how far each claim got, its rate.
    fn write_state(&self, samples: &mut VecDeque<(Instant, u64)>) {
        let now = Instant::now();
        let bytes = self.meter.downloaded();
        samples.push_back((now, bytes));
        while samples.len() > 2 && now - samples[0].0 > Duration::from_secs(5) {
            samples.pop_front();
        }
        let rate = samples.front().map_or(0, |(t, b)| {
            let secs = (now - *t).as_secs_f64();
            if secs > 0.1 {
                ((bytes - b) as f64 / secs) as u64
            } else {
                0
            }
        });
        let claims = self
            .held_mut()
            .iter()
            .map(|h| {
                let end = h.end.load(Ordering::Relaxed);
                HeldClaim {
                    path: self.board.files[h.file].path.clone(),
                    file: h.file,
                    start: h.start,
                    end,
                    frontier: h.job.frontier().unwrap_or(end),
                    chunk: self.board.chunk,
                }
            })
            .collect();
        PodClaims {
            index: self.spec.index,
            count: self.spec.count,
            host: ferry_sharder::host::hostname(),
            pid: std::process::id(),
            updated_ms: ferry_sharder::lease::unix_ms(std::time::SystemTime::now()),
            bytes_downloaded: bytes,
            rate_bps: rate,
            pieces_done: self.pieces_done.load(Ordering::Relaxed),
            claims,
            idle: self.waiting.load(Ordering::Relaxed) >= self.run.opts.transfer.jobs.max(1),
        }
        .write(&self.board.dir);
    }

    fn held_mut(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Holding>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remote(&self, file: usize) -> RemoteFile {
        self.files[file].clone()
    }
}

/// Folds every claim journal of `f` into its own journal; returns the claim journals.
fn merge_claim_journals(dir: &std::path::Path, f: &RemoteFile) -> Result<Vec<PathBuf>> {
    let jdir = layout::journal_dir(dir);
    let prefix = format!("{}.claim-", partial_name(f));
    let entries = std::fs::read_dir(&jdir).map_err(|e| Error::io(&jdir, e))?;
    let found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".log"))
        })
        .map(|e| e.path())
        .collect();
    merge_journals(dir, f, &found)?;
    Ok(found)
}
