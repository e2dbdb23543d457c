//! The journal of finished byte ranges of one partial file.
//!
//! A range is appended (and fdatasync'd, after the data itself was) only once its bytes are on
//! disk, so after a kill -9 or a power loss the next run re-fetches at most the ranges that were
//! in flight. A torn last line is ignored.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use ferry_sharder::FileHash;

use crate::error::{Error, Result};

/// Disjoint, merged `[start, end)` intervals.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RangeSet(BTreeMap<u64, u64>);

impl RangeSet {
    pub fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        // Merge with every interval that touches or overlaps [start, end).
        let overlapping: Vec<(u64, u64)> = self
            .0
            .range(..=end)
            .filter(|(_, e)| **e >= start)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in overlapping {
            self.0.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.0.insert(start, end);
    }

    /// The end of the interval that starts at or covers `from`, i.e. how far bytes are
    /// contiguous from `from`.
    pub fn contiguous_from(&self, from: u64) -> u64 {
        match self.0.range(..=from).next_back() {
            Some((_, e)) if *e >= from => *e,
            _ => from,
        }
    }

    pub fn covered(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    pub fn contains(&self, start: u64, end: u64) -> bool {
        self.contiguous_from(start) >= end
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(s, e)| (*s, *e))
    }
}

fn header(size: u64, hash: &FileHash) -> String {
    format!("ferry-journal v1 size={size} {hash}")
}

pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Opens the journal of a partial file that must become `size` bytes with `hash`; returns
    /// the ranges already finished. A journal written for another file content starts over.
    pub fn open(path: &Path, size: u64, hash: &FileHash) -> Result<(Journal, RangeSet)> {
        let header = header(size, hash);
        let existing = Journal::read(path, size, hash);
        let valid = existing.is_some();
        let mut done = existing.unwrap_or_default();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if !valid {
            file.set_len(0).map_err(|e| Error::io(path, e))?;
            writeln!(file, "{header}").map_err(|e| Error::io(path, e))?;
            file.sync_data().map_err(|e| Error::io(path, e))?;
            done = RangeSet::default();
        }
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
            },
            done,
        ))
    }

    /// The finished ranges a journal records, without changing it; None when there is no
    /// journal for this size and hash.
    pub fn read(path: &Path, size: u64, hash: &FileHash) -> Option<RangeSet> {
        let f = File::open(path).ok()?;
        let mut lines = BufReader::new(f).lines();
        if lines.next()?.ok()? != header(size, hash) {
            return None;
        }
        let mut done = RangeSet::default();
        for line in lines.map_while(|l| l.ok()) {
            let mut it = line.split(' ');
            if let (Some(Ok(s)), Some(Ok(e)), None) = (
                it.next().map(str::parse::<u64>),
                it.next().map(str::parse::<u64>),
                it.next(),
            ) {
                if s < e && e <= size {
                    done.insert(s, e);
                }
            }
        }
        Some(done)
    }

    /// Records finished ranges, with one write and one sync for all of them. The caller has
    /// already made their data durable.
    pub fn record_all(&mut self, ranges: &[(u64, u64)]) -> Result<()> {
        let lines: String = ranges.iter().map(|(s, e)| format!("{s} {e}\n")).collect();
        // One write of whole lines: a crash leaves at most a torn last line, which open() skips.
        self.file
            .write_all(lines.as_bytes())
            .map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Records `[start, end)` as finished.
    pub fn record(&mut self, start: u64, end: u64) -> Result<()> {
        self.record_all(&[(start, end)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge() {
        let mut r = RangeSet::default();
        r.insert(10, 20);
        r.insert(30, 40);
        assert_eq!(r.contiguous_from(0), 0);
        assert_eq!(r.contiguous_from(10), 20);
        r.insert(20, 30);
        assert_eq!(r.contiguous_from(10), 40);
        r.insert(0, 10);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(0, 40)]);
        assert_eq!(r.covered(), 40);
        r.insert(35, 50);
        assert_eq!(r.covered(), 50);
        assert!(r.contains(5, 45));
        assert!(!r.contains(5, 51));
    }

    #[test]
    fn journal_survives_reopen_and_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let h = FileHash::Sha256("ab".repeat(32));
        let (mut j, done) = Journal::open(&p, 100, &h).unwrap();
        assert_eq!(done.covered(), 0);
        j.record(0, 10).unwrap();
        j.record(50, 60).unwrap();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"60 7")
            .unwrap();
        let (_, done) = Journal::open(&p, 100, &h).unwrap();
        assert_eq!(done.iter().collect::<Vec<_>>(), vec![(0, 10), (50, 60)]);
        // Another expected content: the journal starts over.
        let (_, done) = Journal::open(&p, 100, &FileHash::Sha256("cd".repeat(32))).unwrap();
        assert_eq!(done.covered(), 0);
    }
}
