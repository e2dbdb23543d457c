//! What a fetch did, file by file and in bytes: returned to the caller, printed by the binary.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::meter::Meter;
use crate::snapshot::{RemoteFile, Snapshot};

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

impl Summary {
    /// A fetch of `snapshot` from `source` into `dir` that found every file in place.
    pub fn complete(snapshot: &Snapshot, source: &'static str, dir: &Path) -> Summary {
        Summary {
            repo: snapshot.repo.clone(),
            source,
            revision: snapshot.revision.clone(),
            commit: snapshot.commit.clone(),
            dir: dir.to_path_buf(),
            files: outcomes(&snapshot.files, FileResult::Reused),
            bytes_total: snapshot.total_bytes(),
            bytes_downloaded: 0,
            bytes_reused: snapshot.total_bytes(),
            seconds: 0.0,
            retries: 0,
        }
    }

    /// A fetch that reused `reused`, moved `moved`, and counted on `meter`.
    pub fn of(
        snapshot: &Snapshot,
        source: &'static str,
        dir: &Path,
        (reused, moved): (&[RemoteFile], &[RemoteFile]),
        meter: &Meter,
    ) -> Summary {
        let mut files = outcomes(reused, FileResult::Reused);
        files.extend(outcomes(moved, FileResult::Downloaded));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Summary {
            files,
            bytes_downloaded: meter.downloaded(),
            bytes_reused: meter.reused(),
            retries: meter.retries(),
            ..Summary::complete(snapshot, source, dir)
        }
    }
}

fn outcomes(files: &[RemoteFile], result: FileResult) -> Vec<FileOutcome> {
    files
        .iter()
        .map(|f| FileOutcome {
            path: f.path.clone(),
            size: f.size,
            result,
        })
        .collect()
}
