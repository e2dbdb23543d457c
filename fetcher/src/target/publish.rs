//! Publishing a verified file under its final name, and remembering that it was.
//!
//! The partial file is fsync'd and renamed over the final name: a reader sees the old file, no
//! file, or the complete verified one, never a mix. Directories are fsync'd once, before the
//! manifest commits. A line in
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
use crate::transfer::Publish;

/// fsyncs every directory that holds one of `paths` (and the model directory), so that all
/// renames are durable before the manifest says the directory is complete.
pub fn sync_dirs<'a>(dir: &Path, paths: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut dirs: std::collections::BTreeSet<PathBuf> = paths
        .filter_map(|p| dir.join(p).parent().map(Path::to_path_buf))
        .collect();
    dirs.insert(dir.to_path_buf());
    for d in dirs {
        sync_dir(&d)?;
    }
    Ok(())
}

/// What was recorded when a file was published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub path: String,
    pub size: u64,
    pub hash: FileHash,
    pub mtime_ns: i64,
}

/// Reads every publish log; later lines win, torn or unreadable lines are skipped (the file is
/// then re-hashed instead of trusted).
pub fn read_published(dir: &Path) -> HashMap<String, Published> {
    let mut map = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir.join(layout::STATE_DIR)) else {
        return map;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with("published") && n.ends_with(".jsonl")
        })
        .collect();
    logs.sort();
    for log in logs {
        if let Ok(f) = File::open(&log) {
            for line in BufReader::new(f).lines().map_while(|l| l.ok()) {
                if let Ok(p) = serde_json::from_str::<Published>(&line) {
                    map.insert(p.path.clone(), p);
                }
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

/// Refuses to write `rel` under `dir` through a symbolic link: a link planted at
/// `DIR/sub -> /elsewhere` would otherwise put the hub's `sub/x` outside `DIR`. A link in the
/// file's own place is fine: rename replaces the link, it does not follow it.
pub fn no_link_on_the_way(dir: &Path, rel: &str) -> Result<()> {
    match ferry_sharder::links::first_link(dir, rel, false) {
        Ok(None) => Ok(()),
        Ok(Some((link, points_to))) => Err(Error::LinkInDir {
            path: rel.to_string(),
            link,
            points_to,
        }),
        Err(e) => Err(Error::io(dir.join(rel), e)),
    }
}

fn same_size(target: &Path, remote: &RemoteFile) -> bool {
    std::fs::metadata(target).is_ok_and(|m| m.is_file() && m.len() == remote.size)
}

#[derive(Clone)]
pub struct Publisher {
    dir: PathBuf,
    log_path: PathBuf,
    log: Arc<Mutex<File>>,
    /// The commit, when huggingface_hub's local_dir metadata should be written.
    hf_commit: Option<String>,
}

impl Publisher {
    pub fn new(dir: &Path, hf_commit: Option<String>, slice: Option<(u32, u32)>) -> Result<Self> {
        let path = layout::published_log(dir, slice);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Publisher {
            dir: dir.to_path_buf(),
            log_path: path,
            log: Arc::new(Mutex::new(log)),
            hf_commit,
        })
    }

    /// The folder that published paths are relative to.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let path = &self.log_path;
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        // Not fsync'd: a lost record only means the file is re-hashed instead of trusted.
        log.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| Error::io(path, e))
    }

    /// `.cache/huggingface/download/{path}.metadata`: commit, etag, timestamp, one per line,
    /// the format huggingface_hub reads to accept a local_dir file without a request.
    fn write_hf_metadata(&self, remote: &RemoteFile, commit: &str) -> Result<()> {
        let name = remote.path.rsplit('/').next().unwrap_or(&remote.path);
        if name.len() + ".metadata".len() > crate::select::NAME_MAX {
            // A legal 255-byte name leaves no room for the side file's suffix: the file itself
            // is fine, huggingface_hub will just check it again with a request.
            tracing::debug!(
                "{:?}: name too long for huggingface_hub's .metadata side file; not written",
                remote.path
            );
            return Ok(());
        }
        let rel = format!(".cache/huggingface/download/{}.metadata", remote.path);
        no_link_on_the_way(&self.dir, &rel)?;
        let meta = self.dir.join(&rel);
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

impl Publish for Publisher {
    fn publish(
        &self,
        remote: &RemoteFile,
        file: &File,
        partial: &Path,
        journal: &Path,
    ) -> Result<()> {
        file.sync_all().map_err(|e| Error::io(partial, e))?;
        let target = self.dir.join(&remote.path);
        let parent = target.parent().unwrap_or(&self.dir).to_path_buf();
        no_link_on_the_way(&self.dir, &remote.path)?;
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        // A writer whose lease was taken over stops here rather than publish after the new one.
        crate::lock::still_held(&self.dir)?;
        match std::fs::rename(partial, &target) {
            Ok(()) => {}
            // Another writer (one that took the lease over while this one was paused) verified
            // and published the same content first: the bytes under the final name are right.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && same_size(&target, remote) => {
                tracing::warn!("{:?}: already published by another writer", remote.path);
            }
            Err(e) => return Err(Error::io(&target, e)),
        }
        // The directory is fsync'd once for all files before the manifest commits (see
        // `sync_dirs`): a rename lost to a power cut only means that file is fetched again.
        let _ = std::fs::remove_file(journal);
        self.record(remote)
    }
}
