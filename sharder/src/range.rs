//! A byte range of one model file: the unit of slices and warm plans.

use serde::{Deserialize, Serialize};

/// `len` bytes of the file at `path` (relative to the model directory, `/`-separated), starting
/// at `offset`. A whole file is `offset: 0, len: size`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileRange {
    pub path: String,
    pub offset: u64,
    pub len: u64,
}

impl FileRange {
    pub fn new(path: impl Into<String>, offset: u64, len: u64) -> Self {
        FileRange {
            path: path.into(),
            offset,
            len,
        }
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Sorts ranges by file and offset and merges those that touch or overlap, so that a plan reads
/// each byte once and in order.
pub fn coalesce(mut ranges: Vec<FileRange>) -> Vec<FileRange> {
    ranges.sort();
    let mut out: Vec<FileRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.path == r.path && r.offset <= last.end() => {
                let end = last.end().max(r.end());
                last.len = end - last.offset;
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_touching_and_overlapping_only() {
        let got = coalesce(vec![
            FileRange::new("b", 10, 5),
            FileRange::new("a", 0, 10),
            FileRange::new("a", 10, 10),
            FileRange::new("a", 15, 2),
            FileRange::new("a", 30, 1),
        ]);
        assert_eq!(
            got,
            vec![
                FileRange::new("a", 0, 20),
                FileRange::new("a", 30, 1),
                FileRange::new("b", 10, 5),
            ]
        );
    }
}
