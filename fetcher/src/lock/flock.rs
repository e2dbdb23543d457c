//! flock on the lock files, as an extra beside the lease: where the filesystem does it, a second
//! fetch on the same node is refused at once; where it does not, that is logged and ignored.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use ferry_sharder::state::FlockHolder;

use crate::error::{Error, Result};

/// Takes flock on `path` as an extra: Some(file) when held, None when the filesystem does not do
/// flock (logged, not fatal), and `Locked` when another holder has it.
pub(super) fn flock_one(dir: &Path, path: &Path, exclusive: bool) -> Result<Option<File>> {
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
                    "flock held, holder unknown".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(TryLockError::Error(e)) => {
            tracing::warn!(
                "{}: flock not available here ({e}); relying on the lease alone",
                path.display()
            );
            return Ok(None);
        }
    }
    if exclusive {
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = f.write_all(FlockHolder::me().to_json().as_bytes());
    }
    Ok(Some(f))
}
