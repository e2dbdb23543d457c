//! The typed `.ferry/` files a running fetch writes for others to read: the progress heartbeat,
//! the slice pin of an Indexed Job and the flock holder record. The fetcher writes them, `ferry status` reads them; both
//! go through these structs and the path functions of [`crate::layout`]. (The manifest is
//! [`crate::manifest::Manifest`], slice markers [`crate::slices::SliceDone`], leases
//! [`crate::lease::Lease`].)

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;

/// The fetch heartbeat, `.ferry/progress.json` or `.ferry/slices/progress-I-of-N.json`, rewritten
/// every few seconds while a fetch runs. Every field is optional on reading: a reader must cope
/// with a heartbeat written by an older ferry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
    /// `I/N` for one slice of an Indexed Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    #[serde(default)]
    pub files_total: Option<u64>,
    #[serde(default)]
    pub files_done: Option<u64>,
    #[serde(default)]
    pub bytes_total: Option<u64>,
    #[serde(default)]
    pub bytes_done: Option<u64>,
    #[serde(default)]
    pub in_progress: Vec<String>,
    /// For a slice: the whole selection's file count and bytes (all slices together), so a
    /// sliced directory's status shows totals before any slice finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_files_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_bytes_total: Option<u64>,
}

impl Heartbeat {
    /// Writes the heartbeat to `path`. It need not survive a crash: a plain rename keeps readers
    /// from seeing half of it, and a failure is only logged (a heartbeat is advisory).
    pub fn write(&self, path: &Path) {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let json = serde_json::to_vec(self).unwrap_or_default();
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }

    /// The heartbeat at `path`, if there is a readable one.
    pub fn read(path: &Path) -> Option<Heartbeat> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// What a flock file (`.ferry/lock`, `.ferry/lock.slice-I-of-N`) holds while its exclusive
/// holder runs: who took it, for messages and `ferry status` (the lock itself is the flock).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlockHolder {
    pub pid: Option<u32>,
    pub host: Option<String>,
    pub started_at: Option<String>,
}

impl FlockHolder {
    /// This process, now.
    pub fn me() -> FlockHolder {
        FlockHolder {
            pid: Some(std::process::id()),
            host: Some(crate::host::hostname()),
            started_at: Some(crate::host::now_rfc3339()),
        }
    }

    /// The record as written into the lock file.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The record in a lock file's text; empty or foreign text gives an all-empty record.
    pub fn parse(text: &str) -> FlockHolder {
        serde_json::from_str(text.trim()).unwrap_or_default()
    }
}

/// `.ferry/slices/pin.json`: the commit all slices of an Indexed Job fetch, written once by the
/// first pod to resolve the revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlicePin {
    pub repo: String,
    pub source: String,
    pub revision: String,
    pub commit: String,
    pub count: u32,
    /// Pods claim pieces as they go (`--dynamic`, [`crate::claims`]) instead of a fixed slice
    /// each; a directory is fetched in one mode only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dynamic: bool,
}

impl SlicePin {
    /// The pin of `dir`, if one was written.
    pub fn read(dir: &Path) -> Result<Option<SlicePin>> {
        let path = layout::pin_path(dir);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::BadState {
                    path: path.clone(),
                    what: "slice pin",
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}
