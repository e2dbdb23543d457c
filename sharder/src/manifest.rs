//! The completion manifest: the commit point of a model directory.
//!
//! Written last, atomically (temp file, fsync, rename, fsync of the directory), only after every
//! file was published and verified. A reader sees either no manifest or a complete model.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hash::FileHash;
use crate::layout;

/// Version of the manifest format; bumped on incompatible changes.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `ORG/NAME` on a hub, or `s3://bucket/prefix`.
    pub repo: String,
    /// `hf`, `modelscope` or `s3`.
    pub source: String,
    /// The revision the user asked for (a branch, tag or commit).
    pub revision: String,
    /// The commit every file was taken from.
    pub commit: String,
    /// The ferry version that wrote this manifest.
    pub ferry_version: String,
    /// RFC 3339 time the manifest was committed.
    pub completed_at: String,
    pub files: Vec<ManifestFile>,
    /// Present when `--include` / `--exclude` left files of the snapshot out; absent for a
    /// whole snapshot (and in manifests written before selections were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<crate::selection::Selection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the model directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub hash: FileHash,
}

impl Manifest {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Reads `DIR/.ferry/manifest.json`; `Ok(None)` when the directory is not complete yet.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = layout::manifest_path(dir);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::BadManifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if m.format != FORMAT {
            return Err(Error::BadManifest {
                path,
                reason: format!(
                    "format {} is not the {} this ferry understands",
                    m.format, FORMAT
                ),
            });
        }
        Ok(Some(m))
    }

    /// Commits the manifest exactly once: created with link(2), so of two writers that overlap
    /// (a lease taken over from a paused holder) one creates it and the other finds the same
    /// manifest and leaves it be. A manifest of another snapshot is replaced by rename, and so
    /// is everything on a volume without hard links.
    pub fn commit_once(&self, dir: &Path) -> Result<()> {
        let (path, json) = self.encoded(dir)?;
        match create_whole(&path, &json, true) {
            Ok(true) => sync_dir(path.parent().unwrap_or(dir)),
            Ok(false)
                if Manifest::read(dir)
                    .ok()
                    .flatten()
                    .is_some_and(|m| m.same_snapshot(self)) =>
            {
                Ok(())
            }
            _ => write_atomic(&path, &json),
        }
    }

    /// Same repo, source, commit, files and selection (the time and ferry version aside).
    pub fn same_snapshot(&self, other: &Manifest) -> bool {
        (
            &self.repo,
            &self.source,
            &self.commit,
            &self.files,
            &self.selection,
        ) == (
            &other.repo,
            &other.source,
            &other.commit,
            &other.files,
            &other.selection,
        )
    }

    /// Commits the manifest: temp file, fsync, rename over the final name, fsync of the directory.
    pub fn write_atomic(&self, dir: &Path) -> Result<()> {
        let (path, json) = self.encoded(dir)?;
        write_atomic(&path, &json)
    }

    /// The manifest's path in `dir` and its JSON.
    fn encoded(&self, dir: &Path) -> Result<(PathBuf, Vec<u8>)> {
        let path = layout::manifest_path(dir);
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::BadManifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok((path, json))
    }
}

/// Writes `bytes` to `path` so that readers see either the old content or the new one, and the
/// new one survives a power loss once this returns.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temp(path, bytes, true)?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates `path` with `bytes` unless it exists: written whole under a temp name, then
/// hard-linked into place. link(2) fails when the name exists, atomically on NFS too, so of
/// racing writers exactly one wins (true) and nobody, nor a kill -9, leaves a half-written file.
///
/// `durable`: fsync before linking (the manifest and the pin); a lease skips it, as one lost to
/// a power cut only reads as free.
pub fn create_whole(path: &Path, bytes: &[u8], durable: bool) -> Result<bool> {
    let tmp = write_temp(path, bytes, durable)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes `bytes` whole and durable under a temp name beside `path`. The name is unique across
/// nodes sharing the volume (pods in different containers are often all pid 1).
fn write_temp(path: &Path, bytes: &[u8], durable: bool) -> Result<PathBuf> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(
            ".tmp.{}.{}.{nanos:x}.{}",
            crate::host::hostname(),
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        parent.join(name)
    };
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    Ok(tmp)
}

/// fsync a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    d.sync_all().map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Manifest::read(dir.path()).unwrap().is_none());
        let m = Manifest {
            selection: None,
            format: FORMAT,
            repo: "org/m".into(),
            source: "hf".into(),
            revision: "main".into(),
            commit: "a".repeat(40),
            ferry_version: "0.1.0".into(),
            completed_at: "2026-01-01T00:00:00Z".into(),
            files: vec![ManifestFile {
                path: "config.json".into(),
                size: 3,
                hash: FileHash::GitSha1("b".repeat(40)),
            }],
        };
        m.write_atomic(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), Some(m));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = layout::manifest_path(dir.path());
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"{not json").unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json"), "{err}");
    }
}
