//! Publishing a verified file under its final name, and remembering that it was.
//!
//! The partial file is fsync'd, renamed over the final name, and the directory fsync'd: a reader
//! sees the old file, no file, or the complete verified one, never a mix. A line in
//! `.ferry/published.jsonl` records path, size, hash and mtime so a later run can trust the file
//! without re-reading it. For Hugging Face sources the `local_dir` metadata huggingface_hub keeps
//! is written too, so `snapshot_download(local_dir=DIR)` finds the files current.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_sharder::{layout, manifest::sync_dir, FileHash};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::snapshot::RemoteFile;

/// What was recorded when a file was published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub path: String,
    pub size: u64,
    pub hash: FileHash,
    pub mtime_ns: i64,
}

pub fn published_log(dir: &Path) -> PathBuf {
    dir.join(layout::STATE_DIR).join("published.jsonl")
}

/// Reads the publish records; later lines win, torn or unreadable lines are skipped.
pub fn read_published(dir: &Path) -> HashMap<String, Published> {
    let mut map = HashMap::new();
    if let Ok(f) = File::open(published_log(dir)) {
        for line in BufReader::new(f).lines().map_while(|l| l.ok()) {
            if let Ok(p) = serde_json::from_str::<Published>(&line) {
                map.insert(p.path.clone(), p);
            }
        }
    }
    map
}

/// The final path's current state as a record, for comparing with the log.
pub fn stat_record(dir: &Path, path: &str, hash: &FileHash) -> Option<Published> {
    let md = std::fs::metadata(dir.join(path)).ok()?;
    md.is_file().then(|| Published {
        path: path.to_string(),
        size: md.len(),
        hash: hash.clone(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
    })
}

#[derive(Clone)]
pub struct Publisher {
    dir: PathBuf,
    log: Arc<Mutex<File>>,
    /// The commit, when huggingface_hub's local_dir metadata should be written.
    hf_commit: Option<String>,
}

impl Publisher {
    pub fn new(dir: &Path, hf_commit: Option<String>) -> Result<Self> {
        let path = published_log(dir);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Publisher {
            dir: dir.to_path_buf(),
            log: Arc::new(Mutex::new(log)),
            hf_commit,
        })
    }

    pub fn publish(
        &self,
        remote: &RemoteFile,
        file: &File,
        partial: &Path,
        journal: &Path,
    ) -> Result<()> {
        file.sync_all().map_err(|e| Error::io(partial, e))?;
        let target = self.dir.join(&remote.path);
        let parent = target.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        std::fs::rename(partial, &target).map_err(|e| Error::io(&target, e))?;
        sync_dir(&parent)?;
        let _ = std::fs::remove_file(journal);
        self.record(remote)
    }

    /// Records a file that is in place and verified (published now, or found intact).
    pub fn record(&self, remote: &RemoteFile) -> Result<()> {
        if let Some(commit) = &self.hf_commit {
            self.write_hf_metadata(remote, commit)?;
        }
        let rec = stat_record(&self.dir, &remote.path, &remote.hash).ok_or_else(|| {
            Error::io(
                self.dir.join(&remote.path),
                std::io::Error::new(std::io::ErrorKind::NotFound, "vanished after publishing"),
            )
        })?;
        let line = serde_json::to_string(&rec).unwrap_or_default();
        let path = published_log(&self.dir);
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        log.sync_data().map_err(|e| Error::io(&path, e))
    }

    /// `.cache/huggingface/download/{path}.metadata`: commit, etag, timestamp, one per line,
    /// the format huggingface_hub reads to accept a local_dir file without a request.
    fn write_hf_metadata(&self, remote: &RemoteFile, commit: &str) -> Result<()> {
        let meta = self
            .dir
            .join(".cache/huggingface/download")
            .join(format!("{}.metadata", remote.path));
        if let Some(p) = meta.parent() {
            std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        std::fs::write(&meta, format!("{commit}\n{}\n{now}\n", remote.hash.hex()))
            .map_err(|e| Error::io(&meta, e))
    }
}
