//! Where ferry keeps its own state inside a model directory: one path function per file.
//!
//! Everything ferry writes besides the model's own files lives under `DIR/.ferry/`, so a model
//! directory stays usable by any engine and nothing partial ever sits under a final file name.
//! Writers (the fetcher) and readers (`ferry status`, the sidecar) both name files through here;
//! the typed contents are in [`crate::manifest`], [`crate::state`] and [`crate::slices`].

use std::path::{Path, PathBuf};

/// The hidden directory with ferry's state (manifest, journal, partial files, lock).
pub const STATE_DIR: &str = ".ferry";
/// The manifest's name inside [`STATE_DIR`] (also the object key suffix of an S3 target).
pub const MANIFEST_FILE: &str = "manifest.json";

/// The completion manifest: present only once every file is published and verified.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join(MANIFEST_FILE)
}

/// Partial downloads, one file per model file, named by the hash they must end up with.
pub fn partial_dir(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("partial")
}

/// The partial file named `name` (see the fetcher's `partial_name`).
pub fn partial_path(dir: &Path, name: &str) -> PathBuf {
    partial_dir(dir).join(name)
}

/// Journals of finished byte ranges, one per partial file.
pub fn journal_dir(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("journal")
}

/// The journal of partial file `name`; with `slice`, the journal of that slice's piece of it.
pub fn journal_path(dir: &Path, name: &str, slice: Option<(u32, u32)>) -> PathBuf {
    journal_dir(dir).join(match slice {
        None => format!("{name}.log"),
        Some((i, n)) => format!("{name}.slice-{i}-of-{n}.log"),
    })
}

/// The exclusive lock file; its content names the holder (host, pid, start time).
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("lock")
}

/// Taken by the slice that finalizes an Indexed Job's directory.
pub fn finalize_lock_path(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("lock.finalize")
}

/// Per-slice completion markers of an Indexed Job (`slices/I-of-N.json`), pin and heartbeats.
pub fn slices_dir(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("slices")
}

/// The commit every slice of an Indexed Job fetches ([`crate::state::SlicePin`]).
pub fn pin_path(dir: &Path) -> PathBuf {
    slices_dir(dir).join("pin.json")
}

/// Progress heartbeat written by a running fetch, read by `ferry status`
/// ([`crate::state::Heartbeat`]): `progress.json`, or `slices/progress-I-of-N.json` for a slice.
pub fn progress_path(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("progress.json")
}

/// The heartbeat of the whole fetch (`None`) or of slice `(index, count)`.
pub fn heartbeat_path(dir: &Path, slice: Option<(u32, u32)>) -> PathBuf {
    match slice {
        None => progress_path(dir),
        Some((i, n)) => slices_dir(dir).join(format!("progress-{i}-of-{n}.json")),
    }
}

/// The `(index, count)` of a slice heartbeat's file name, for readers listing [`slices_dir`].
pub fn parse_heartbeat_name(name: &str) -> Option<(u32, u32)> {
    let (i, n) = name
        .strip_prefix("progress-")?
        .strip_suffix(".json")?
        .split_once("-of-")?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

/// The state of a dynamic Job's claims ([`crate::claims`]): done markers and per-pod state.
pub fn claims_dir(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("claims")
}

/// Done markers: `F-S.json` for a finished range, `F.json` for a published file.
pub fn claims_done_dir(dir: &Path) -> PathBuf {
    claims_dir(dir).join("done")
}

/// [`crate::claims::ClaimDone`] of the claim on file number `file` from byte `start`.
pub fn claim_done_path(dir: &Path, file: usize, start: u64) -> PathBuf {
    claims_done_dir(dir).join(format!("{file}-{start}.json"))
}

/// [`crate::claims::FileDone`] of file number `file`.
pub fn file_done_path(dir: &Path, file: usize) -> PathBuf {
    claims_done_dir(dir).join(format!("{file}.json"))
}

/// Per-pod state ([`crate::claims::PodClaims`]).
pub fn claims_pods_dir(dir: &Path) -> PathBuf {
    claims_dir(dir).join("pods")
}

/// The state file of pod `index` of `count`.
pub fn pod_claims_path(dir: &Path, index: u32, count: u32) -> PathBuf {
    claims_pods_dir(dir).join(format!("{index}-of-{count}.json"))
}

/// The journal of one claim's range of partial file `name` (the range starting at `start`):
/// each claim journals apart, so a pod taking a claim over resumes exactly its ranges.
pub fn claim_journal_path(dir: &Path, name: &str, start: u64) -> PathBuf {
    journal_dir(dir).join(format!("{name}.claim-{start}.log"))
}

/// The publish log of one writer: `published.jsonl`, or one per slice so that pods of an
/// Indexed Job never append to the same file on a shared filesystem.
pub fn published_log(dir: &Path, slice: Option<(u32, u32)>) -> PathBuf {
    let name = match slice {
        None => "published.jsonl".to_string(),
        Some((i, n)) => format!("published.slice-{i}-of-{n}.jsonl"),
    };
    dir.join(STATE_DIR).join(name)
}

/// True for paths (relative to the model dir) that belong to ferry or to other tools' caches,
/// not to the model.
pub fn is_state_path(rel: &Path) -> bool {
    matches!(
        rel.components().next().and_then(|c| c.as_os_str().to_str()),
        Some(STATE_DIR) | Some(".cache")
    )
}
