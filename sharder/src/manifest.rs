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

    /// Commits the manifest: temp file, fsync, rename over the final name, fsync of the directory.
    pub fn write_atomic(&self, dir: &Path) -> Result<()> {
        let path = layout::manifest_path(dir);
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::BadManifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json)
    }
}

/// Writes `bytes` to `path` so that readers see either the old content or the new one, and the
/// new one survives a power loss once this returns.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp.{}", std::process::id()));
        parent.join(name)
    };
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(parent)
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
