//! The exclusive lock on a target directory, so two fetchers cannot interleave writes.
//!
//! An OS file lock (flock) on `DIR/.ferry/lock`: released by the kernel when the holder dies, even
//! by kill -9, so a stale lock never needs cleaning up. The file's content names the holder for
//! the error the second fetcher prints. Slices of an Indexed Job share the directory lock and take
//! an exclusive lock of their own slice.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use ferry_sharder::layout;

use crate::error::{Error, Result};

/// Held locks; dropping releases them.
pub struct DirLock {
    _files: Vec<File>,
}

/// Locks `dir` for a whole fetch (`slice == None`) or for one slice `(index, count)`.
pub fn acquire(dir: &Path, slice: Option<(u32, u32)>) -> Result<DirLock> {
    let main = layout::lock_path(dir);
    let mut files = Vec::new();
    match slice {
        None => files.push(lock_one(dir, &main, true)?),
        Some((i, n)) => {
            files.push(lock_one(dir, &main, false)?);
            let mut p = main.clone().into_os_string();
            p.push(format!(".slice-{i}-of-{n}"));
            files.push(lock_one(dir, &PathBuf::from(p), true)?);
        }
    }
    Ok(DirLock { _files: files })
}

fn lock_one(dir: &Path, path: &Path, exclusive: bool) -> Result<File> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let attempt = if exclusive {
        f.try_lock()
    } else {
        f.try_lock_shared()
    };
    match attempt {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::Locked {
                dir: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "holder unknown".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
    }
    if exclusive {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let info = serde_json::json!({
            "pid": std::process::id(),
            "host": host,
            "started_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        });
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = f.write_all(info.to_string().as_bytes());
    }
    Ok(f)
}

/// Who holds the directory lock, if anyone (for `ferry status`): the holder text, or None.
pub fn holder(dir: &Path) -> Option<String> {
    let path = layout::lock_path(dir);
    let f = File::open(&path).ok()?;
    match f.try_lock_shared() {
        Ok(()) => None,
        Err(_) => std::fs::read_to_string(&path).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_locker_fails_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".ferry")).unwrap();
        let held = acquire(dir.path(), None).unwrap();
        let err = acquire(dir.path(), None).err().unwrap().to_string();
        assert!(
            err.contains(&format!("\"pid\":{}", std::process::id())),
            "{err}"
        );
        assert!(acquire(dir.path(), Some((0, 2))).is_err());
        drop(held);
        let a = acquire(dir.path(), Some((0, 2))).unwrap();
        let _b = acquire(dir.path(), Some((1, 2))).unwrap();
        assert!(acquire(dir.path(), Some((0, 2))).is_err());
        assert!(acquire(dir.path(), None).is_err());
        drop(a);
    }
}
