//! One pod's share of an Indexed Job: `ferry fetch --slice I/N` into a shared directory.
//!
//! Every pod pins the same commit (the first to resolve writes `slices/pin.json`, the rest read
//! it), computes the same byte-balanced plan ([`ferry_sharder::slices::plan_slices`]), fetches
//! only its pieces, and marks its slice done. Whole files are verified and published by the pod
//! that owns them; a file split across slices is written by several pods into one partial file,
//! each journaling its own ranges. Whichever pod finds every slice done takes the finalize lock,
//! merges the journals, verifies and publishes the split files, and commits the manifest once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ferry_sharder::layout;
use ferry_sharder::slices::{plan_slices, SliceDone, SliceInput, SliceSpec};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fetch::{
    already_complete, complete, find_reusable, hf_commit, new_progress, open_job, outcomes,
    partial_name, remove_manifest, resolve, transfer, FetchOptions, FileResult, Summary,
};
use crate::journal::Journal;
use crate::lock;
use crate::publish::Publisher;
use crate::snapshot::Snapshot;
use crate::source::Source;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pin {
    repo: String,
    source: String,
    revision: String,
    commit: String,
    count: u32,
}

pub async fn fetch_slice(
    opts: &FetchOptions,
    source: &Source,
    spec: SliceSpec,
    started: Instant,
) -> Result<Summary> {
    let dir = &opts.dir;
    let (i, n) = (spec.index, spec.count);
    if n == 0 || i >= n {
        return Err(Error::Usage(format!(
            "slice {i}/{n} does not exist: the index must be below the count"
        )));
    }
    let _lock = lock::acquire(dir, Some((i, n)))?;
    let snapshot = pinned_snapshot(opts, source, n).await?;
    let inputs: Vec<SliceInput> = snapshot
        .files
        .iter()
        .map(|f| SliceInput {
            path: f.path.clone(),
            size: f.size,
        })
        .collect();
    let plan = plan_slices(&inputs, n);
    let mine = plan[i as usize].clone();
    let mut owners: HashMap<&str, usize> = HashMap::new();
    for s in &plan {
        for p in s.paths().collect::<HashSet<_>>() {
            *owners.entry(p).or_default() += 1;
        }
    }
    let split: HashSet<String> = owners
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(p, _)| p.to_string())
        .collect();

    let mut summary_files = Vec::new();
    let mut downloaded = 0;
    let mut reused_bytes = 0;
    let mut retries = 0;
    let done_before = SliceDone::read(dir, i, n)?.is_some_and(|d| d.commit == snapshot.commit);
    if already_complete(dir, &snapshot, opts.kind, started)?.is_none() && !done_before {
        remove_manifest(dir)?;
        let by_path: HashMap<&str, _> = snapshot
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
            ..(*snapshot).clone()
        });
        let publisher = Publisher::new(dir, hf_commit(opts, &snapshot), Some((i, n)))?;
        let progress = new_progress(opts, &mine_snapshot);
        let whole: Vec<_> = mine_snapshot
            .files
            .iter()
            .filter(|f| !split.contains(&f.path))
            .cloned()
            .collect();
        let (reused, todo) = {
            let dir = dir.clone();
            let publisher = publisher.clone();
            tokio::task::spawn_blocking(move || find_reusable(&dir, &whole, &publisher))
                .await
                .map_err(|e| Error::Task {
                    task: "scan task",
                    message: e.to_string(),
                })??
        };
        progress.bytes_reused.fetch_add(
            reused.iter().map(|f| f.size).sum(),
            std::sync::atomic::Ordering::Relaxed,
        );
        summary_files.extend(outcomes(&reused, FileResult::Reused));
        let mut jobs = Vec::new();
        for f in &todo {
            jobs.push(open_job(
                opts,
                source,
                &mine_snapshot,
                &progress,
                f,
                layout::journal_dir(dir).join(format!("{}.log", partial_name(f))),
                None,
            )?);
        }
        summary_files.extend(outcomes(&todo, FileResult::Downloaded));
        for piece in mine.pieces.iter().filter(|p| split.contains(&p.path)) {
            let f = by_path[piece.path.as_str()];
            jobs.push(open_job(
                opts,
                source,
                &mine_snapshot,
                &progress,
                f,
                slice_journal(dir, f, i, n),
                Some((piece.offset, piece.len)),
            )?);
        }
        transfer(opts, source, &mine_snapshot, jobs, &progress, publisher).await?;
        SliceDone::new(&mine, n, snapshot.commit.clone()).write(dir)?;
        tracing::info!("slice {i}/{n} done: {}", bytesize::ByteSize(mine.bytes));
        downloaded = progress
            .bytes_downloaded
            .load(std::sync::atomic::Ordering::Relaxed);
        reused_bytes = progress
            .bytes_reused
            .load(std::sync::atomic::Ordering::Relaxed);
        retries = progress.retries.load(std::sync::atomic::Ordering::Relaxed);
    }

    if !SliceDone::all_done(dir, n, &snapshot.commit)? {
        tracing::info!(
            "other slices are still running; the last one to finish commits the manifest"
        );
        return Ok(Summary {
            repo: snapshot.repo.clone(),
            source: opts.kind.id(),
            revision: snapshot.revision.clone(),
            commit: snapshot.commit.clone(),
            dir: dir.clone(),
            files: summary_files,
            bytes_total: mine.bytes,
            bytes_downloaded: downloaded,
            bytes_reused: reused_bytes,
            seconds: started.elapsed().as_secs_f64(),
            retries,
        });
    }

    // Every slice is done: finalize once, whoever gets here first; the others wait, then find
    // the manifest committed.
    let _finalize = finalize_lock(dir).await?;
    for path in &split {
        if let Some(f) = snapshot.files.iter().find(|f| &f.path == path) {
            merge_journals(dir, f, n)?;
        }
    }
    let mut summary = complete(opts, source, Arc::clone(&snapshot), started).await?;
    summary.bytes_downloaded += downloaded;
    summary.retries += retries;
    Ok(summary)
}

fn slice_journal(
    dir: &Path,
    f: &crate::snapshot::RemoteFile,
    i: u32,
    n: u32,
) -> std::path::PathBuf {
    layout::journal_dir(dir).join(format!("{}.slice-{i}-of-{n}.log", partial_name(f)))
}

/// Folds every slice's ranges of a split file into the file's own journal, so the normal
/// completion path sees it fully written and only hashes and publishes it.
fn merge_journals(dir: &Path, f: &crate::snapshot::RemoteFile, n: u32) -> Result<()> {
    let main = layout::journal_dir(dir).join(format!("{}.log", partial_name(f)));
    let (mut journal, have) = Journal::open(&main, f.size, &f.hash)?;
    for i in 0..n {
        if let Some(ranges) = Journal::read(&slice_journal(dir, f, i, n), f.size, &f.hash) {
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

/// The commit all slices fetch: pinned by the first pod to get here.
async fn pinned_snapshot(
    opts: &FetchOptions,
    source: &Source,
    count: u32,
) -> Result<Arc<Snapshot>> {
    let path = layout::slices_dir(&opts.dir).join("pin.json");
    if let Some(pin) = read_pin(&path)? {
        check_pin(opts, &pin, count, &path)?;
        return resolve(opts, source, Some(&pin.commit)).await;
    }
    let snapshot = resolve(opts, source, None).await?;
    let pin = Pin {
        repo: opts.repo.clone(),
        source: opts.kind.id().into(),
        revision: snapshot.revision.clone(),
        commit: snapshot.commit.clone(),
        count,
    };
    let winner = write_pin(&path, &pin)?;
    check_pin(opts, &winner, count, &path)?;
    if winner.commit == snapshot.commit {
        Ok(snapshot)
    } else {
        resolve(opts, source, Some(&winner.commit)).await
    }
}

/// Writes `pin` unless another pod got there first; returns the pin that won.
///
/// The pin is written whole under a private name, then hard-linked into place: link(2) fails if
/// the target exists (atomic on NFS too), so exactly one pod's pin wins and no pod, nor a
/// kill -9, can leave a half-written pin for the others to read.
fn write_pin(path: &Path, pin: &Pin) -> Result<Pin> {
    let bytes = serde_json::to_vec(pin).map_err(|e| Error::Usage(e.to_string()))?;
    if ferry_sharder::manifest::create_whole(path, &bytes, true)? {
        return Ok(pin.clone());
    }
    read_pin(path)?.ok_or_else(|| {
        Error::Usage(format!(
            "{} vanished while being read; run again",
            path.display()
        ))
    })
}

fn read_pin(path: &Path) -> Result<Option<Pin>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::Usage(format!(
                "{}: unreadable slice pin ({e}); delete it to start the Job over",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn check_pin(opts: &FetchOptions, pin: &Pin, count: u32, path: &Path) -> Result<()> {
    let asked = opts
        .revision
        .clone()
        .unwrap_or_else(|| pin.revision.clone());
    if pin.repo != opts.repo
        || pin.source != opts.kind.id()
        || pin.count != count
        || pin.revision != asked
    {
        return Err(Error::Usage(format!(
            "{} pins this directory to {} ({}) at {} in {} slices, not what this run asks for; \
             delete {} to start over",
            path.display(),
            pin.repo,
            pin.source,
            pin.revision,
            pin.count,
            layout::slices_dir(&opts.dir).display()
        )));
    }
    Ok(())
}

async fn finalize_lock(dir: &Path) -> Result<lock::DirLock> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || lock::acquire_finalize(&dir))
        .await
        .map_err(|e| Error::Task {
            task: "lock task",
            message: e.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(commit: &str) -> Pin {
        Pin {
            repo: "org/model".into(),
            source: "hf".into(),
            revision: "main".into(),
            commit: commit.into(),
            count: 8,
        }
    }

    /// Pods of an Indexed Job start together: every racer must read back one whole winning
    /// pin, never an empty or half-written one (the race CI once caught with create+write).
    #[test]
    fn racing_pods_all_see_one_whole_pin() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("pin.json");
            let barrier = std::sync::Barrier::new(16);
            let winners: Vec<Pin> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..16)
                    .map(|i| {
                        let (path, barrier) = (&path, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            write_pin(path, &pin(&format!("commit-{i}")))
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
            assert_eq!(read_pin(&path).unwrap().as_ref(), Some(&winners[0]));
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
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
        let path = dir.path().join("pin.json");
        std::fs::write(&path, b"").unwrap();
        let err = read_pin(&path).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
