//! A read-only view of a model directory, safe while fetches run: complete or not, what is done,
//! in progress and missing, per-slice state, who holds the lock, when progress was last made.
//!
//! Nothing here writes, locks or opens for writing: every file may change or vanish between two
//! reads, so each read that fails for that reason is reported as absent rather than as an error.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::Manifest;
use crate::slices::SliceDone;
use crate::state::Heartbeat;
use crate::verify;

mod locks;
use locks::lock_holders;

/// The heartbeat of one slice of an Indexed Job (`slices/progress-I-of-N.json`), written by
/// `ferry fetch --slice I/N` while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceProgress {
    pub index: u32,
    pub count: u32,
    pub host: Option<String>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Seconds since the slice last wrote its heartbeat.
    pub updated_seconds_ago: Option<u64>,
}

/// A process holding (or having held) the directory lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The lock file, relative to the model directory (`.ferry/lock`, `.ferry/lock.slice-2-of-8`).
    pub file: String,
    /// What the holder wrote into the file.
    pub pid: Option<u32>,
    pub host: Option<String>,
    pub started_at: Option<String>,
    /// `held` (the kernel lists a lock on the file, or a lease's heartbeat is fresh), `alive`
    /// (the named process runs on this host), `free` (a flock file whose last holder is gone,
    /// however it ended), `stale` (a lease whose heartbeat is older than its timeout: free to
    /// take over), `dead` (a lease whose holder ran on this node and is gone), `released` (a
    /// lease let go), `unknown` (another host, unlisted lock: look there).
    pub state: String,
    /// For a lease (`.ferry/lease/NAME.G.json`): seconds since its holder's last heartbeat, as
    /// seen from this node's clock, and after how many it may be taken over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_seconds_ago: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// Completion markers of one slice count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceState {
    pub count: u32,
    /// Indices with a marker.
    pub done: Vec<u32>,
    /// Indices without one.
    pub pending: Vec<u32>,
    pub commits: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub dir: String,
    /// A completion manifest is present.
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Files expected (manifest, else the heartbeat's count), when known.
    pub files_total: Option<u64>,
    /// Model files published under their final names.
    pub files_done: u64,
    /// Files being downloaded now (heartbeat), or partial files under `.ferry/partial`.
    pub in_progress: Vec<String>,
    /// Partial files under `.ferry/partial` and the bytes they hold on disk.
    pub partial_files: u64,
    pub partial_bytes: u64,
    /// Files the manifest lists that are not on disk; `None` when no expected list is known.
    pub missing: Option<Vec<String>>,
    /// `files_total - files_done` when only counts are known.
    pub missing_count: Option<u64>,
    pub bytes_total: Option<u64>,
    /// Bytes of published files plus bytes in partial files.
    pub bytes_done: u64,
    /// Stray partial files outside `.ferry/` (an interrupted copy by another tool).
    pub stray: Vec<String>,
    pub slices: Vec<SliceState>,
    /// Heartbeats of the slices of an Indexed Job, running or finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slice_progress: Vec<SliceProgress>,
    pub lock: Vec<LockHolder>,
    /// A dynamic Job's pods: which pieces each holds and how fast it goes
    /// ([`crate::claims::ClaimsView`]; its claim leases are not listed under `lock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<crate::claims::ClaimsView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Heartbeat>,
    /// Seconds since the heartbeat was last written (its `updated_at`, else its mtime).
    pub last_progress_seconds: Option<u64>,
    /// Words for an operator: what the state means and what to do.
    pub verdict: String,
}

/// Reads the state of `dir`. Fails only when `dir` itself cannot be read.
pub fn status(dir: &Path) -> Result<Status> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        ));
    }
    // A manifest being replaced is read whole or not at all (atomic rename); a broken one is
    // reported as not complete.
    let manifest = Manifest::read(dir).ok().flatten();
    let on_disk = verify::scan(dir)?;
    // A file the manifest lists is the model's, whatever its name (`notes.tmp` may be real).
    let listed: std::collections::HashSet<&str> = manifest
        .iter()
        .flat_map(|m| m.files.iter().map(|f| f.path.as_str()))
        .collect();
    let is_stray = |f: &str| verify::is_partial_name(f) && !listed.contains(f);
    let stray: Vec<String> = on_disk.iter().filter(|f| is_stray(f)).cloned().collect();
    let published: Vec<&String> = on_disk.iter().filter(|f| !is_stray(f)).collect();
    let slices = slice_states(dir);
    let progress = read_progress(dir).or_else(|| sliced_progress(dir, &slices));
    let (partial_files, partial_bytes, partial_names) = partials(dir);
    let published_bytes: u64 = published
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();

    let (files_total, missing, bytes_total, files_done) =
        expected(manifest.as_ref(), progress.as_ref(), &published);
    let missing_count = match (&missing, files_total) {
        (Some(v), _) => Some(v.len() as u64),
        (None, Some(t)) => Some(t.saturating_sub(files_done)),
        _ => None,
    };
    let in_progress = match progress.as_ref() {
        Some(p) if !p.in_progress.is_empty() => p.in_progress.clone(),
        _ => partial_names,
    };
    let last_progress_seconds = last_progress_age(dir, progress.as_ref());
    let mut slice_progress = slice_heartbeats(dir);
    // A finished slice's last heartbeat may count only what its final run moved (0 when it had
    // nothing left to fetch): its completion marker says all of it is there.
    for sp in &mut slice_progress {
        if slices
            .iter()
            .any(|st| st.count == sp.count && st.done.contains(&sp.index))
        {
            sp.bytes_done = sp.bytes_total;
        }
    }
    let lock = lock_holders(dir);
    let complete = manifest.is_some();
    let mut verdict = verdict(
        complete,
        &lock,
        last_progress_seconds,
        missing_count,
        &stray,
    );
    if let Some(why) = manifest
        .as_ref()
        .and_then(|m| crate::selection::partial_reason(dir, m))
    {
        // Complete as fetched, but not a model an engine can start on.
        verdict.push_str(&format!("; {why}"));
    }
    Ok(Status {
        dir: dir.display().to_string(),
        complete,
        repo: manifest
            .as_ref()
            .map(|m| m.repo.clone())
            .or_else(|| progress.as_ref().and_then(|p| p.repo.clone())),
        commit: manifest
            .as_ref()
            .map(|m| m.commit.clone())
            .or_else(|| progress.as_ref().and_then(|p| p.commit.clone())),
        completed_at: manifest.as_ref().map(|m| m.completed_at.clone()),
        files_total,
        files_done,
        in_progress,
        partial_files,
        partial_bytes,
        missing,
        missing_count,
        bytes_total,
        bytes_done: published_bytes + partial_bytes,
        stray,
        slices,
        slice_progress,
        lock,
        claims: crate::claims::ClaimsView::read(dir),
        progress,
        last_progress_seconds,
        verdict,
    })
}

/// What the directory should hold, from the manifest or else the heartbeat: files expected,
/// those missing (when a list is known), bytes expected, and model files published.
fn expected(
    manifest: Option<&Manifest>,
    progress: Option<&Heartbeat>,
    published: &[&String],
) -> (Option<u64>, Option<Vec<String>>, Option<u64>, u64) {
    let (files_total, missing, bytes_total) = match manifest {
        Some(m) => {
            let present: std::collections::HashSet<&str> =
                published.iter().map(|s| s.as_str()).collect();
            let missing: Vec<String> = m
                .files
                .iter()
                .filter(|f| !present.contains(f.path.as_str()))
                .map(|f| f.path.clone())
                .collect();
            (
                Some(m.files.len() as u64),
                Some(missing),
                Some(m.total_bytes()),
            )
        }
        None => (
            progress.and_then(|p| p.files_total),
            None,
            progress.and_then(|p| p.bytes_total),
        ),
    };
    // Published files that belong to the model (not extra files lying around).
    let files_done = match manifest {
        Some(m) => m.files.len() as u64 - missing.as_ref().map_or(0, |v| v.len() as u64),
        None => published.len() as u64,
    };
    (files_total, missing, bytes_total, files_done)
}

fn read_progress(dir: &Path) -> Option<Heartbeat> {
    Heartbeat::read(&layout::heartbeat_path(dir, None))
}

/// An Indexed Job's slices write a heartbeat each and no whole one: their sum, so a sliced
/// directory shows its repo, totals and the names of the files in flight. Finished slices'
/// in-flight lists are left out (their last heartbeat may predate the end).
fn sliced_progress(dir: &Path, states: &[SliceState]) -> Option<Heartbeat> {
    let entries = std::fs::read_dir(layout::slices_dir(dir)).ok()?;
    let mut beats: Vec<((u32, u32), Heartbeat)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let at = layout::parse_heartbeat_name(&name)?;
            Some((at, Heartbeat::read(&e.path())?))
        })
        .collect();
    beats.sort_by(|a, b| b.1.updated_at.cmp(&a.1.updated_at));
    let ((_, count), newest) = beats.first()?.clone();
    let finished = |i: u32, n: u32| states.iter().any(|s| s.count == n && s.done.contains(&i));
    let mut in_progress: Vec<String> = beats
        .iter()
        .filter(|((i, n), _)| *n == count && !finished(*i, *n))
        .flat_map(|(_, b)| b.in_progress.iter().cloned())
        .collect();
    in_progress.sort();
    in_progress.dedup();
    Some(Heartbeat {
        pid: None,
        host: None,
        slice: None,
        files_total: newest.model_files_total,
        bytes_total: newest.model_bytes_total,
        files_done: None,
        bytes_done: None,
        in_progress,
        ..newest
    })
}

/// Files under `.ferry/partial` and the bytes they occupy (allocated blocks: partial files are
/// sparse, so their length says nothing about progress).
fn partials(dir: &Path) -> (u64, u64, Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(layout::partial_dir(dir)) else {
        return (0, 0, Vec::new());
    };
    let (mut n, mut bytes, mut names) = (0, 0, Vec::new());
    for e in entries.flatten() {
        if let Ok(m) = e.metadata() {
            if m.is_file() {
                n += 1;
                bytes += (m.blocks() * 512).min(m.len());
                names.push(format!(
                    "{}/{}",
                    ".ferry/partial",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    names.sort();
    (n, bytes, names)
}

fn last_progress_age(dir: &Path, p: Option<&Heartbeat>) -> Option<u64> {
    let at = p
        .and_then(|p| p.updated_at.as_deref())
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
        .or_else(|| {
            std::fs::metadata(layout::heartbeat_path(dir, None))
                .and_then(|m| m.modified())
                .ok()
        })?;
    Some(
        SystemTime::now()
            .duration_since(at)
            .unwrap_or(Duration::ZERO)
            .as_secs(),
    )
}

fn slice_heartbeats(dir: &Path) -> Vec<SliceProgress> {
    let Ok(entries) = std::fs::read_dir(layout::slices_dir(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<SliceProgress> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (index, count) = layout::parse_heartbeat_name(&name)?;
            let p = Heartbeat::read(&e.path())?;
            let age = p
                .updated_at
                .as_deref()
                .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .map(|d| d.as_secs());
            Some(SliceProgress {
                index,
                count,
                host: p.host,
                bytes_done: p.bytes_done.unwrap_or(0),
                bytes_total: p.bytes_total.unwrap_or(0),
                updated_seconds_ago: age,
            })
        })
        .collect();
    out.sort_by_key(|p| (p.count, p.index));
    out
}

fn slice_states(dir: &Path) -> Vec<SliceState> {
    let markers = SliceDone::read_all(dir).unwrap_or_default();
    let mut counts: Vec<u32> = markers.iter().map(|m| m.count).collect();
    counts.dedup();
    counts
        .into_iter()
        .map(|count| {
            let of: Vec<&SliceDone> = markers.iter().filter(|m| m.count == count).collect();
            let done: Vec<u32> = of.iter().map(|m| m.index).collect();
            let mut commits: Vec<String> = of.iter().map(|m| m.commit.clone()).collect();
            commits.sort();
            commits.dedup();
            SliceState {
                count,
                pending: (0..count).filter(|i| !done.contains(i)).collect(),
                done,
                commits,
            }
        })
        .collect()
}

fn verdict(
    complete: bool,
    lock: &[LockHolder],
    age: Option<u64>,
    missing: Option<u64>,
    stray: &[String],
) -> String {
    let running = lock.iter().any(|l| l.state == "held" || l.state == "alive");
    let mut s = if complete {
        match missing {
            Some(n) if n > 0 => format!(
                "complete according to its manifest, but {n} file(s) are missing: run `ferry verify` and re-fetch"
            ),
            _ => "complete: the manifest is committed (run `ferry verify --full` to re-hash)".to_string(),
        }
    } else if running {
        match age {
            Some(a) if a > 120 => format!(
                "a fetch holds the lock but has not reported progress for {a}s: it may be stuck (check its log, or kill it: `ferry fetch` resumes from the journal)"
            ),
            _ => "fetching: a fetch holds the lock and is making progress".to_string(),
        }
    } else {
        match age {
            Some(a) => format!(
                "incomplete and no fetch is running here (last progress {a}s ago): re-run `ferry fetch` to resume"
            ),
            None => "incomplete: no manifest and no fetch has reported progress; run `ferry fetch`".to_string(),
        }
    };
    if !stray.is_empty() {
        s.push_str(&format!(
            "; {} stray partial file(s) outside .ferry/ (delete them)",
            stray.len()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_finished_slice_shows_all_its_bytes() {
        let d = tempfile::tempdir().unwrap();
        let slices = crate::layout::slices_dir(d.path());
        std::fs::create_dir_all(&slices).unwrap();
        for i in 0..2 {
            std::fs::write(
                slices.join(format!("progress-{i}-of-2.json")),
                r#"{"bytes_done": 0, "bytes_total": 1000}"#,
            )
            .unwrap();
        }
        let files: Vec<crate::slices::SliceInput> = ["a", "b"]
            .iter()
            .map(|p| crate::slices::SliceInput {
                path: p.to_string(),
                size: 500,
            })
            .collect();
        let plan = crate::slices::plan_slices(&files, 2);
        crate::slices::SliceDone::new(&plan[0], 2, "c".repeat(40))
            .write(d.path())
            .unwrap();
        let s = super::status(d.path()).unwrap();
        let by: Vec<(u32, u64, u64)> = s
            .slice_progress
            .iter()
            .map(|p| (p.index, p.bytes_done, p.bytes_total))
            .collect();
        assert_eq!(by, vec![(0, 1000, 1000), (1, 0, 1000)]);
    }
}
