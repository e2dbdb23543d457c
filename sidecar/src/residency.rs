//! What of a file sits in the page cache, and how to drop it from there.
//!
//! Residency is measured with `mincore(2)` on a read-only mapping of the file: mapping does not
//! fault pages in, so measuring does not change what is measured. Eviction uses
//! `posix_fadvise(POSIX_FADV_DONTNEED)`, which drops clean, unmapped pages.
//!
//! Since Linux 5.2 `mincore` reports page-cache residency only for files the caller owns or may
//! write (or with CAP_FOWNER); for other files it reports only pages mapped by the caller, which
//! reads as "nothing resident". [`trustworthy`] tells the two cases apart so callers can say so.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// mincore over at most this much at once, so its vector stays small (256 Ki entries at 4 KiB
/// pages) however large the file.
const WINDOW: u64 = 1 << 30;

/// Bytes of a set of ranges that are in the page cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Residency {
    pub resident_bytes: u64,
    pub total_bytes: u64,
}

impl Residency {
    /// Resident share in `0.0..=1.0`; an empty set counts as fully resident.
    pub fn ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            1.0
        } else {
            self.resident_bytes as f64 / self.total_bytes as f64
        }
    }

    pub fn add(&mut self, other: Residency) {
        self.resident_bytes += other.resident_bytes;
        self.total_bytes += other.total_bytes;
    }
}

/// The kernel's page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ps > 0 {
        ps as u64
    } else {
        4096
    }
}

/// Measures how much of `len` bytes at `offset` of the open file `file` (named `path` in errors)
/// is in the page cache. The range is clamped to the file's current size.
pub fn measure_file(file: &File, path: &Path, offset: u64, len: u64) -> Result<Residency> {
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let end = offset.saturating_add(len).min(size);
    let mut out = Residency::default();
    if offset >= end {
        return Ok(out);
    }
    let ps = page_size();
    let mut vec: Vec<u8> = Vec::new();
    let mut pos = offset - offset % ps;
    while pos < end {
        let win_end = (pos + WINDOW).min(end);
        let map_len = (win_end - pos) as usize;
        // SAFETY: the mapping is read-only and never dereferenced: it only names the pages for
        // mincore, so a concurrent truncation cannot make us read invalid memory.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(pos)
                .len(map_len)
                .map(file)
        }
        .map_err(|e| Error::io(path, e))?;
        let pages = map_len.div_ceil(ps as usize);
        vec.clear();
        vec.resize(pages, 0);
        // SAFETY: `map` is a live mapping of `map_len` bytes starting at a page-aligned address
        // (its file offset is page aligned), and `vec` has one byte per page of it.
        let rc =
            unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, map_len, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(Error::io(path, std::io::Error::last_os_error()));
        }
        for (i, v) in vec.iter().enumerate() {
            let page_start = pos + i as u64 * ps;
            let lo = page_start.max(offset);
            let hi = (page_start + ps).min(end);
            if hi > lo {
                out.total_bytes += hi - lo;
                if v & 1 == 1 {
                    out.resident_bytes += hi - lo;
                }
            }
        }
        pos = win_end;
    }
    Ok(out)
}

/// Measures the residency of `len` bytes at `offset` of the file at `path` (`u64::MAX` for the
/// whole file).
pub fn measure(path: &Path, offset: u64, len: u64) -> Result<Residency> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    measure_file(&file, path, offset, len)
}

/// Drops the file's clean pages from the page cache. Dirty pages stay until written back: sync a
/// file you just wrote before evicting it.
pub fn evict(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    advise(&file, path, 0, 0, libc::POSIX_FADV_DONTNEED)
}

/// `posix_fadvise` with the error named after `path`.
pub(crate) fn advise(file: &File, path: &Path, offset: u64, len: u64, advice: i32) -> Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    let rc = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as libc::off_t,
            len as libc::off_t,
            advice,
        )
    };
    if rc != 0 {
        return Err(Error::io(path, std::io::Error::from_raw_os_error(rc)));
    }
    Ok(())
}

/// Whether `mincore` reports the page cache for this file, rather than only this process's own
/// mappings: true when we own the file, may write it, or run as root (see the module docs).
pub fn trustworthy(path: &Path) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.uid() == euid => true,
        Ok(_) => may_write(path),
        Err(_) => false,
    }
}

/// `faccessat(W_OK)` with the effective ids, as the kernel's mincore check uses them; asks
/// without opening the file, so nothing (inotify, NFS) sees a writer.
fn may_write(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_nothing_is_full() {
        assert_eq!(Residency::default().ratio(), 1.0);
        let r = Residency {
            resident_bytes: 1,
            total_bytes: 4,
        };
        assert_eq!(r.ratio(), 0.25);
    }

    #[test]
    fn ranges_are_clamped_to_the_file_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 10_000]).unwrap();
        // Just written: every byte is in the page cache (dirty or clean).
        let all = measure(&p, 0, u64::MAX).unwrap();
        assert_eq!(all.total_bytes, 10_000);
        assert_eq!(all.resident_bytes, 10_000);
        let mid = measure(&p, 100, 5_000).unwrap();
        assert_eq!(mid.total_bytes, 5_000);
        let past = measure(&p, 20_000, 10).unwrap();
        assert_eq!(past.total_bytes, 0);
    }
}
