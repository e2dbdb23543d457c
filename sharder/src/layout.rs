//! Where ferry keeps its own state inside a model directory.
//!
//! Everything ferry writes besides the model's own files lives under `DIR/.ferry/`, so a model
//! directory stays usable by any engine and nothing partial ever sits under a final file name.

use std::path::{Path, PathBuf};

/// The hidden directory with ferry's state (manifest, journal, partial files, lock).
pub const STATE_DIR: &str = ".ferry";

/// The completion manifest: present only once every file is published and verified.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("manifest.json")
}

/// Partial downloads, one file per model file, named by the hash they must end up with.
pub fn partial_dir(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("partial")
}

/// Journals of finished byte ranges, one per partial file.
pub fn journal_dir(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("journal")
}

/// The exclusive lock file; its content names the holder (host, pid, start time).
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("lock")
}

/// Per-slice completion markers of an Indexed Job (`slices/I-of-N.json`).
pub fn slices_dir(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("slices")
}

/// Progress heartbeat written by a running fetch, read by `ferry status`.
pub fn progress_path(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("progress.json")
}

/// True for paths (relative to the model dir) that belong to ferry or to other tools' caches,
/// not to the model.
pub fn is_state_path(rel: &Path) -> bool {
    matches!(
        rel.components().next().and_then(|c| c.as_os_str().to_str()),
        Some(STATE_DIR) | Some(".cache")
    )
}
