//! One pod's share of an Indexed Job: `ferry fetch --slice I/N` into a shared directory.
//!
//! Every pod pins the same commit (the first to resolve writes `slices/pin.json`, the rest read
//! it), computes the same byte-balanced plan ([`ferry_sharder::slices::plan_slices`]), fetches
//! only its pieces, and marks its slice done. Whole files are verified and published by the pod
//! that owns them; a file split across slices is written by several pods into one partial file,
//! each journaling its own ranges. Whichever pod finds every slice done takes the finalize lock,
//! merges the journals, verifies and publishes the split files, and commits the manifest once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_sharder::layout;
use ferry_sharder::slices::{plan_slices, Slice, SliceDone, SliceInput, SliceSpec};
use ferry_sharder::state::SlicePin;

use super::report::{reporting, Beat};
use super::resolve::resolve;
use super::stages::{run_stages, Run};
use super::summary::Summary;
use crate::error::{blocking, Error, Result};
use crate::lock::DirLock;
use crate::meter::Meter;
use crate::origin::Origin;
use crate::snapshot::{RemoteFile, Snapshot};
use crate::target::dir::{partial_name, DirTarget};
use crate::target::Target;
use crate::transfer::journal::Journal;
use crate::transfer::TransferOptions;

/// Fetches slice `spec` of `origin` into the shared directory `dir`; the last slice done
/// finalizes the directory.
pub async fn fetch_slice<O: Origin>(
    run: &Run<'_>,
    origin: &O,
    dir: PathBuf,
    spec: SliceSpec,
) -> Result<Summary> {
    let ((i, n), target, _lock, snapshot) =
        join(run, origin, dir, spec, run.opts.transfer.clone(), false).await?;
    let dir = target.dir().to_path_buf();
    let plan = plan_slices(
        &snapshot
            .files
            .iter()
            .map(|f| SliceInput {
                path: f.path.clone(),
                size: f.size,
            })
            .collect::<Vec<_>>(),
        n,
    );
    let mine = plan[i as usize].clone();
    let split = split_files(&plan);

    let done_before = SliceDone::read(&dir, i, n)?.is_some_and(|d| d.commit == snapshot.commit);
    let mut own = None;
    if !target.is_complete(&snapshot, origin.id()).await? && !done_before {
        own = Some(fetch_own(run, origin, &target, &snapshot, (&mine, &split)).await?);
        SliceDone::new(&mine, n, snapshot.commit.clone()).write(&dir)?;
        tracing::info!(
            "slice {i}/{n} done: {}",
            bytesize::ByteSize(mine.bytes).display().si()
        );
    }

    if !SliceDone::all_done(&dir, n, &snapshot.commit)? {
        tracing::info!(
            "other slices are still running; the last one to finish commits the manifest"
        );
        let mut summary = match own {
            Some(s) => s,
            None => Summary {
                files: Vec::new(),
                bytes_reused: 0,
                ..Summary::complete(&snapshot, origin.id(), &dir)
            },
        };
        summary.bytes_total = mine.bytes;
        return Ok(summary);
    }

    // Every slice is done: finalize once, whoever gets here first; the others wait, then find
    // the manifest committed.
    let _finalize = finalize_lock(&dir).await?;
    for path in &split {
        if let Some(f) = snapshot.files.iter().find(|f| &f.path == path) {
            let pieces: Vec<PathBuf> = (0..n)
                .map(|i| layout::journal_path(&dir, &partial_name(f), Some((i, n))))
                .collect();
            merge_journals(&dir, f, &pieces)?;
        }
    }
    let mut summary = run_stages(run, origin, &target.whole(), Arc::clone(&snapshot)).await?;
    if let Some(own) = own {
        summary.bytes_downloaded += own.bytes_downloaded;
        summary.retries += own.retries;
    }
    Ok(summary)
}

/// Joins the Job in `dir` as pod `spec`, a static slice ([`fetch_slice`]) or a dynamic one
/// ([`super::claims`]), transferring with `opts`: checks the slice, takes the directory's slice
/// lock and pins (or reads the pin of) the commit every pod fetches. Returns the slice's
/// `(index, count)`, the shared directory as its target, the lock (held while it lives) and the
/// pinned snapshot.
pub(super) async fn join<O: Origin>(
    run: &Run<'_>,
    origin: &O,
    dir: PathBuf,
    spec: SliceSpec,
    opts: TransferOptions,
    dynamic: bool,
) -> Result<((u32, u32), DirTarget, DirLock, Arc<Snapshot>)> {
    let (i, n) = check_spec(spec)?;
    let target = DirTarget::new(dir, opts, origin.hf_metadata(), Some((i, n)))?;
    let lock = crate::lock::acquire(target.dir(), Some((i, n)))?;
    let snapshot = pinned_snapshot(run, origin, target.dir(), n, dynamic).await?;
    Ok(((i, n), target, lock, snapshot))
}

/// `(index, count)` of an existing slice (a library caller may build any spec).
fn check_spec(spec: SliceSpec) -> Result<(u32, u32)> {
    let (i, n) = (spec.index, spec.count);
    if n == 0 || i >= n {
        return Err(Error::Usage(format!(
            "slice {i}/{n} does not exist: the index must be below the count"
        )));
    }
    Ok((i, n))
}

/// Paths that more than one slice holds a piece of.
fn split_files(plan: &[Slice]) -> HashSet<String> {
    let mut owners: HashMap<&str, usize> = HashMap::new();
    for s in plan {
        for p in s.paths().collect::<HashSet<_>>() {
            *owners.entry(p).or_default() += 1;
        }
    }
    owners
        .into_iter()
        .filter(|(_, c)| *c > 1)
        .map(|(p, _)| p.to_string())
        .collect()
}

/// This slice's share: its whole files (reused or fetched, verified and published) and its
/// pieces of split files (fetched and journaled for the finalizing slice).
async fn fetch_own<O: Origin>(
    run: &Run<'_>,
    origin: &O,
    target: &DirTarget,
    snapshot: &Arc<Snapshot>,
    (mine, split): (&Slice, &HashSet<String>),
) -> Result<Summary> {
    target.withdraw().await?;
    let by_path: HashMap<&str, &RemoteFile> = snapshot
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let mine_snapshot = Arc::new(Snapshot {
        files: mine
            .paths()
            .collect::<HashSet<_>>()
            .into_iter()
            .filter_map(|p| by_path.get(p).map(|f| (*f).clone()))
            .collect(),
        ..(**snapshot).clone()
    });
    let whole: Vec<RemoteFile> = mine_snapshot
        .files
        .iter()
        .filter(|f| !split.contains(&f.path))
        .cloned()
        .collect();
    let meter = Arc::new(Meter::new(&mine_snapshot));
    let (reused, todo) = target.reuse(&mine_snapshot, &whole).await?;
    meter.reused_files(&reused);
    let ranges = origin.open(&mine_snapshot).await?;
    let mut jobs = Vec::new();
    for f in &todo {
        jobs.push(target.open_job(ranges.as_ref(), f, None, &meter)?);
    }
    for piece in mine.pieces.iter().filter(|p| split.contains(&p.path)) {
        let f = by_path[piece.path.as_str()];
        jobs.push(target.open_job(ranges.as_ref(), f, Some((piece.offset, piece.len)), &meter)?);
    }
    let slice = run.opts.slice.map(|s| (s.index, s.count));
    let beat = target
        .heartbeat()
        .map(|p| Beat::new(p, &mine_snapshot, origin.id(), slice).of_model(snapshot));
    reporting(
        &meter,
        &run.reporter,
        beat,
        target.run_jobs(ranges, &mine_snapshot, jobs, &meter),
    )
    .await?;
    Ok(Summary::of(
        snapshot,
        origin.id(),
        target.dir(),
        (&reused, &todo),
        &meter,
    ))
}

/// Folds the ranges journaled apart for `f` in `pieces` (its slices' or its claims' journals)
/// into the file's own journal, so the normal completion path sees it fully written and only
/// hashes and publishes it.
pub(super) fn merge_journals(dir: &Path, f: &RemoteFile, pieces: &[PathBuf]) -> Result<()> {
    let main = layout::journal_path(dir, &partial_name(f), None);
    let (mut journal, have) = Journal::open(&main, f.size, &f.hash)?;
    for piece in pieces {
        if let Some(ranges) = Journal::read(piece, f.size, &f.hash) {
            let missing: Vec<(u64, u64)> = ranges
                .iter()
                .filter(|&(s, e)| !have.contains(s, e))
                .collect();
            if !missing.is_empty() {
                journal.record_all(&missing)?;
            }
        }
    }
    Ok(())
}

/// The commit all slices (or, `dynamic`, all pods claiming pieces) fetch: pinned by the first
/// pod to get here.
async fn pinned_snapshot<O: Origin>(
    run: &Run<'_>,
    origin: &O,
    dir: &Path,
    count: u32,
    dynamic: bool,
) -> Result<Arc<Snapshot>> {
    let (include, exclude) = (&run.opts.include, &run.opts.exclude);
    if let Some(pin) = SlicePin::read(dir)? {
        check_pin(origin, &pin, (count, dynamic), dir)?;
        return resolve(origin, Some(&pin.commit), include, exclude).await;
    }
    let snapshot = resolve(origin, None, include, exclude).await?;
    let pin = SlicePin {
        repo: origin.repo(),
        source: origin.id().into(),
        revision: snapshot.revision.clone(),
        commit: snapshot.commit.clone(),
        count,
        dynamic,
    };
    let winner = write_pin(dir, &pin)?;
    check_pin(origin, &winner, (count, dynamic), dir)?;
    if winner.commit == snapshot.commit {
        Ok(snapshot)
    } else {
        resolve(origin, Some(&winner.commit), include, exclude).await
    }
}

/// Writes `pin` unless another pod got there first; returns the pin that won.
///
/// The pin is written whole under a private name, then hard-linked into place: link(2) fails if
/// the target exists (atomic on NFS too), so exactly one pod's pin wins and no pod, nor a
/// kill -9, can leave a half-written pin for the others to read.
fn write_pin(dir: &Path, pin: &SlicePin) -> Result<SlicePin> {
    let path = &layout::pin_path(dir);
    let bytes = serde_json::to_vec(pin).map_err(|e| Error::Task {
        task: "slice pin encoder",
        message: e.to_string(),
    })?;
    if ferry_sharder::manifest::create_whole(path, &bytes, true)? {
        return Ok(pin.clone());
    }
    SlicePin::read(dir)?.ok_or_else(|| {
        Error::Usage(format!(
            "{} vanished while being read; run again",
            path.display()
        ))
    })
}

fn check_pin<O: Origin>(
    origin: &O,
    pin: &SlicePin,
    (count, dynamic): (u32, bool),
    dir: &Path,
) -> Result<()> {
    let asked = origin.revision().unwrap_or(&pin.revision);
    if pin.repo != origin.repo()
        || pin.source != origin.id()
        || pin.count != count
        || pin.dynamic != dynamic
        || pin.revision != asked
    {
        let mode = |d: bool| if d { "dynamic" } else { "static" };
        return Err(Error::Usage(format!(
            "{} pins this directory to {} ({}) at {} in {} {} slices, not what this run asks \
             for ({count} {}); delete {} to start over",
            layout::pin_path(dir).display(),
            pin.repo,
            pin.source,
            pin.revision,
            pin.count,
            mode(pin.dynamic),
            mode(dynamic),
            layout::slices_dir(dir).display()
        )));
    }
    Ok(())
}

pub(super) async fn finalize_lock(dir: &Path) -> Result<DirLock> {
    let dir = dir.to_path_buf();
    blocking("lock task", move || crate::lock::acquire_finalize(&dir)).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(commit: &str) -> SlicePin {
        SlicePin {
            repo: "org/model".into(),
            source: "hf".into(),
            revision: "main".into(),
            commit: commit.into(),
            count: 8,
            dynamic: false,
        }
    }

    /// Pods of an Indexed Job start together: every racer must read back one whole winning
    /// pin, never an empty or half-written one (the race CI once caught with create+write).
    #[test]
    fn racing_pods_all_see_one_whole_pin() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(layout::slices_dir(dir.path())).unwrap();
            let barrier = std::sync::Barrier::new(16);
            let winners: Vec<SlicePin> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..16)
                    .map(|i| {
                        let (dir, barrier) = (dir.path(), &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            write_pin(dir, &pin(&format!("commit-{i}")))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap().unwrap())
                    .collect()
            });
            assert!(
                winners.iter().all(|w| w == &winners[0]),
                "round {round}: {winners:?}"
            );
            assert_eq!(
                SlicePin::read(dir.path()).unwrap().as_ref(),
                Some(&winners[0])
            );
            let leftovers: Vec<_> = std::fs::read_dir(layout::slices_dir(dir.path()))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n != "pin.json")
                .collect();
            assert!(leftovers.is_empty(), "temporary pins left: {leftovers:?}");
        }
    }

    #[test]
    fn an_empty_pin_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(layout::slices_dir(dir.path())).unwrap();
        std::fs::write(layout::pin_path(dir.path()), b"").unwrap();
        let err = SlicePin::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
