//! One file being fetched, or one slice's piece of it: its partial file, journal, pending and
//! finished ranges, and the running hash of the prefix that has landed.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ferry_sharder::Hasher;
use url::Url;

use super::journal::{Journal, RangeSet};
use crate::error::{Error, Result};
use crate::snapshot::RemoteFile;

/// One file being fetched.
pub struct FileJob {
    pub remote: RemoteFile,
    /// False for a piece of a file split across the slices of an Indexed Job: this process
    /// fetches its ranges only; hashing and publishing happen once every slice is done.
    pub whole: bool,
    /// The hub URL of the file's bytes.
    pub url: Url,
    /// The CDN URL the hub last redirected to, reused for later ranges until it is refused.
    pub location: Mutex<Option<Url>>,
    pub partial_path: PathBuf,
    pub journal_path: PathBuf,
    pub file: Arc<File>,
    pub(super) journal: Mutex<Journal>,
    pub(super) state: Mutex<JobState>,
    pub(super) hash: Arc<tokio::sync::Mutex<HashState>>,
}

pub(super) struct JobState {
    pub(super) pending: VecDeque<(u64, u64)>,
    pub(super) active: usize,
    pub(super) done: RangeSet,
    /// Finished ranges written but not yet synced and journaled (see `sync_every`).
    pub(super) unsynced: Vec<(u64, u64)>,
    pub(super) finalizing: bool,
    /// The hash of each complete download that did not match, oldest first.
    pub(super) wrong_hashes: Vec<ferry_sharder::FileHash>,
}

pub(super) struct HashState {
    pub(super) hasher: Hasher,
    pub(super) upto: u64,
}

impl FileJob {
    /// Opens (or resumes) the partial file and journal for `remote`. With `piece`, only the
    /// bytes `[offset, offset + len)` are this job's to fetch, and the file is not published here.
    pub fn open(
        remote: RemoteFile,
        url: Url,
        partial_path: PathBuf,
        journal_path: PathBuf,
        chunk_size: u64,
        piece: Option<(u64, u64)>,
    ) -> Result<(FileJob, u64)> {
        let (journal, done) = Journal::open(&journal_path, remote.size, &remote.hash)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&partial_path)
            .map_err(|e| Error::io(&partial_path, e))?;
        // Sparse preallocation: ranges can land in any order (and from several pods).
        file.set_len(remote.size)
            .map_err(|e| Error::io(&partial_path, e))?;
        let (offset, len) = piece.unwrap_or((0, remote.size));
        let pending = chunks(len, chunk_size)
            .into_iter()
            .map(|(s, e)| (s + offset, e + offset))
            .filter(|(s, e)| !done.contains(*s, *e))
            .collect();
        let reused = done.covered();
        let hasher = remote.hash.hasher(remote.size);
        Ok((
            FileJob {
                remote,
                whole: piece.is_none(),
                url,
                location: Mutex::new(None),
                partial_path,
                journal_path,
                file: Arc::new(file),
                journal: Mutex::new(journal),
                state: Mutex::new(JobState {
                    pending,
                    active: 0,
                    done,
                    unsynced: Vec::new(),
                    finalizing: false,
                    wrong_hashes: Vec::new(),
                }),
                hash: Arc::new(tokio::sync::Mutex::new(HashState { hasher, upto: 0 })),
            },
            reused,
        ))
    }
}

impl FileJob {
    /// Feeds the hasher every byte from where it stopped up to the end of the contiguous prefix
    /// that has landed (which may grow while it reads), reading them back with `buf`.
    pub(super) fn hash_landed(
        &self,
        guard: &mut tokio::sync::OwnedMutexGuard<HashState>,
        file: &std::fs::File,
        buf: &mut [u8],
    ) -> Result<()> {
        loop {
            let upto = guard.upto;
            let until = self
                .state
                .lock()
                .map(|s| s.done.contiguous_from(upto))
                .unwrap_or(upto);
            if until <= upto {
                return Ok(());
            }
            let mut at = upto;
            while at < until {
                let n = ((until - at) as usize).min(buf.len());
                file.read_exact_at(&mut buf[..n], at)
                    .map_err(|e| Error::io(&self.partial_path, e))?;
                guard.hasher.update(&buf[..n]);
                at += n as u64;
            }
            guard.upto = until;
        }
    }

    /// Stops this piece at `end` (a dynamic Job's claim was split, `pipeline::claims`): pending
    /// chunks from `end` on are dropped and one straddling it is shortened; chunks already
    /// started run to their end. Only for pieces (`!whole`): a whole file must be fetched whole.
    pub fn cut_at(&self, end: u64) {
        if self.whole {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.pending.retain_mut(|(s, e)| {
            *e = (*e).min(end);
            *s < *e
        });
    }

    /// The first byte not yet started (pending chunks are taken front first), or None when
    /// every chunk has started: where a splitter may cut after.
    pub fn frontier(&self) -> Option<u64> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.pending.front().map(|(s, _)| *s)
    }

    /// Bytes still to fetch in this run.
    pub fn pending_bytes(&self) -> u64 {
        self.state
            .lock()
            .map(|s| s.pending.iter().map(|(a, b)| b - a).sum())
            .unwrap_or(0)
    }
}

/// `[start, end)` pieces of at most `chunk` bytes covering `size` bytes.
pub fn chunks(size: u64, chunk: u64) -> Vec<(u64, u64)> {
    let chunk = chunk.max(1);
    (0..size.div_ceil(chunk))
        .map(|i| (i * chunk, ((i + 1) * chunk).min(size)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_exactly() {
        assert_eq!(chunks(0, 10), vec![]);
        assert_eq!(chunks(10, 10), vec![(0, 10)]);
        assert_eq!(chunks(25, 10), vec![(0, 10), (10, 20), (20, 25)]);
    }
}
