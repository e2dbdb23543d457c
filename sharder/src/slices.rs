//! Download slices for a Kubernetes Indexed Job: N pods each fetch one byte-balanced part of a
//! model into the same shared directory.
//!
//! The assignment is deterministic (files sorted by path, then cut into N runs of equal bytes), so
//! every pod computes the same plan from the same file list without talking to the others. Files
//! are kept whole where possible; a large shard that straddles a cut is split by byte range at a
//! 1 MiB boundary, so every slice is within about 1 MiB (or one small file) of the mean.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;
pub use crate::range::FileRange;

/// Files smaller than this are never split: a range request per piece costs more than the
/// imbalance of keeping them whole.
pub const SPLIT_MIN: u64 = 64 << 20;

/// Split points are rounded to this, so that pieces line up with range requests and journals.
pub const SPLIT_ALIGN: u64 = 1 << 20;

/// One file of the model: what slicing needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceInput {
    /// Path relative to the model directory, `/`-separated.
    pub path: String,
    pub size: u64,
}

/// The part of the model one pod of the Indexed Job downloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// 0-based, `JOB_COMPLETION_INDEX`.
    pub index: u32,
    /// Whole files (`offset 0, len = size`) and pieces of split files, in path order.
    pub pieces: Vec<FileRange>,
    /// Sum of the pieces' lengths.
    pub bytes: u64,
}

impl Slice {
    /// The paths this slice touches, whole or in part.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().map(|p| p.path.as_str())
    }
}

/// Assigns every byte of `files` to exactly one of `count` slices. Same input (in any order),
/// same output. Returns no slices when `count` is 0; slices may be empty when there are fewer
/// bytes than slices.
pub fn plan_slices(files: &[SliceInput], count: u32) -> Vec<Slice> {
    if count == 0 {
        return Vec::new();
    }
    let mut sorted: Vec<&SliceInput> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let total: u64 = sorted.iter().map(|f| f.size).sum();
    let n = u64::from(count);
    // Where slice `i` should end, in bytes of the concatenated files (u128: no overflow).
    let boundary =
        |i: u64| -> u64 { ((u128::from(total) * u128::from(i + 1)) / u128::from(n)) as u64 };

    let mut slices: Vec<Slice> = (0..count)
        .map(|index| Slice {
            index,
            pieces: Vec::new(),
            bytes: 0,
        })
        .collect();
    let mut cur: u64 = 0;
    let mut pos: u64 = 0; // bytes assigned so far
    let assign = |slices: &mut Vec<Slice>, cur: u64, path: &str, offset: u64, len: u64| {
        let s = &mut slices[cur as usize];
        s.pieces.push(FileRange::new(path, offset, len));
        s.bytes += len;
    };
    for f in sorted {
        if f.size == 0 {
            assign(&mut slices, cur, &f.path, 0, 0);
            continue;
        }
        let mut off = 0;
        while off < f.size {
            let rest = f.size - off;
            if cur == n - 1 {
                assign(&mut slices, cur, &f.path, off, rest);
                pos += rest;
                break;
            }
            let room = boundary(cur).saturating_sub(pos);
            if rest <= room {
                assign(&mut slices, cur, &f.path, off, rest);
                pos += rest;
                break;
            }
            if room == 0 {
                cur += 1;
                continue;
            }
            if f.size >= SPLIT_MIN {
                // Round the cut to the nearest aligned offset; a cut at either end of the file
                // means "no split": the rest goes wholly to one side.
                let cut = (off + room + SPLIT_ALIGN / 2) / SPLIT_ALIGN * SPLIT_ALIGN;
                if cut <= off {
                    cur += 1;
                    continue;
                }
                if cut >= f.size {
                    assign(&mut slices, cur, &f.path, off, rest);
                    pos += rest;
                    break;
                }
                assign(&mut slices, cur, &f.path, off, cut - off);
                pos += cut - off;
                off = cut;
                cur += 1;
            } else if room >= rest / 2 {
                // A small file goes to the side of the cut that holds most of it.
                assign(&mut slices, cur, &f.path, off, rest);
                pos += rest;
                break;
            } else {
                cur += 1;
            }
        }
    }
    slices
}

/// `I/N` as given to `ferry fetch --slice`: slice `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceSpec {
    pub index: u32,
    pub count: u32,
}

impl FromStr for SliceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not I/N (e.g. 3/8: slice 3 of 8, counted from 0)"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("`{i}` in `{s}` is not a slice index"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` in `{s}` is not a slice count"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "slice {index}/{count} does not exist: the index counts from 0 and must be below the count"
            ));
        }
        Ok(SliceSpec { index, count })
    }
}

impl std::fmt::Display for SliceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The marker one pod writes to `.ferry/slices/I-of-N.json` once every piece of its slice is on
/// disk and verified (pieces of split files: their bytes are journaled; whole files: published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceDone {
    pub index: u32,
    pub count: u32,
    /// The commit the pieces were taken from; markers of another commit do not count.
    pub commit: String,
    /// What the slice covered, as planned by [`plan_slices`].
    pub pieces: Vec<FileRange>,
    pub bytes: u64,
    pub host: String,
    pub pid: u32,
    /// RFC 3339.
    pub finished_at: String,
}

impl SliceDone {
    /// The marker for `slice`, stamped with this host, process and time.
    pub fn new(slice: &Slice, count: u32, commit: impl Into<String>) -> Self {
        SliceDone {
            index: slice.index,
            count,
            commit: commit.into(),
            pieces: slice.pieces.clone(),
            bytes: slice.bytes,
            host: crate::host::hostname(),
            pid: std::process::id(),
            finished_at: crate::host::now_rfc3339(),
        }
    }

    /// `DIR/.ferry/slices/I-of-N.json`.
    pub fn path(dir: &Path, index: u32, count: u32) -> PathBuf {
        layout::slices_dir(dir).join(format!("{index}-of-{count}.json"))
    }

    /// Writes the marker atomically (a reader never sees half a marker).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir, self.index, self.count);
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::BadPlan {
            path: path.clone(),
            what: "slice marker",
            reason: e.to_string(),
        })?;
        crate::manifest::write_atomic(&path, &json)
    }

    /// The marker of slice `index` of `count`, if written.
    pub fn read(dir: &Path, index: u32, count: u32) -> Result<Option<SliceDone>> {
        read_marker(&Self::path(dir, index, count))
    }

    /// Every marker in the slices directory, of any count, sorted by (count, index). Temp files
    /// of a write in progress are skipped.
    pub fn read_all(dir: &Path) -> Result<Vec<SliceDone>> {
        let sdir = layout::slices_dir(dir);
        let entries = match fs::read_dir(&sdir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(sdir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&sdir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Only `I-of-N.json`: the heartbeats beside them (`progress-I-of-N.json`), pins and
            // temp files are not markers.
            let is_marker = name
                .strip_suffix(".json")
                .and_then(|stem| stem.split_once("-of-"))
                .is_some_and(|(i, n)| i.parse::<u32>().is_ok() && n.parse::<u32>().is_ok());
            if !is_marker {
                continue;
            }
            if let Some(m) = read_marker(&entry.path())? {
                out.push(m);
            }
        }
        out.sort_by_key(|m| (m.count, m.index));
        Ok(out)
    }

    /// True when all `count` slices of `commit` have their markers.
    pub fn all_done(dir: &Path, count: u32, commit: &str) -> Result<bool> {
        for index in 0..count {
            match Self::read(dir, index, count)? {
                Some(m) if m.commit == commit => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }
}

fn read_marker(path: &Path) -> Result<Option<SliceDone>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::BadPlan {
            path: path.to_path_buf(),
            what: "slice marker",
            reason: format!("{e}; delete it and re-run that slice"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[u64]) -> Vec<SliceInput> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| SliceInput {
                path: format!("f{i:03}"),
                size,
            })
            .collect()
    }

    /// Every byte of every file lands in exactly one slice.
    fn assert_exact_cover(files: &[SliceInput], slices: &[Slice]) {
        for f in files {
            let mut pieces: Vec<&FileRange> = slices
                .iter()
                .flat_map(|s| s.pieces.iter())
                .filter(|p| p.path == f.path)
                .collect();
            pieces.sort_by_key(|p| p.offset);
            assert!(!pieces.is_empty(), "{} not assigned", f.path);
            let mut at = 0;
            for p in pieces {
                assert_eq!(p.offset, at, "{}: gap or overlap", f.path);
                at = p.end();
            }
            assert_eq!(at, f.size, "{}: not fully covered", f.path);
        }
        for s in slices {
            assert_eq!(s.bytes, s.pieces.iter().map(|p| p.len).sum::<u64>());
        }
    }

    #[test]
    fn covers_every_byte_and_is_order_independent() {
        let f = files(&[5 << 30, 1 << 30, 300 << 20, 10, 0, 4 << 30, 7 << 20]);
        for count in [1, 2, 3, 5, 8, 13] {
            let s = plan_slices(&f, count);
            assert_eq!(s.len(), count as usize);
            assert_exact_cover(&f, &s);
            let mut rev = f.clone();
            rev.reverse();
            assert_eq!(plan_slices(&rev, count), s);
        }
        assert!(plan_slices(&f, 0).is_empty());
    }

    #[test]
    fn small_files_are_never_split() {
        let f = files(&[1000; 10]);
        let s = plan_slices(&f, 3);
        assert_exact_cover(&f, &s);
        assert!(s.iter().flat_map(|s| &s.pieces).all(|p| p.len == 1000));
    }

    #[test]
    fn split_points_are_aligned() {
        let f = files(&[(10 << 30) + 12345]);
        let s = plan_slices(&f, 7);
        assert_exact_cover(&f, &s);
        for p in s.iter().flat_map(|s| &s.pieces) {
            assert_eq!(p.offset % SPLIT_ALIGN, 0, "{p:?}");
        }
    }

    #[test]
    fn spec_parses_and_rejects() {
        assert_eq!(
            "3/8".parse::<SliceSpec>().unwrap(),
            SliceSpec { index: 3, count: 8 }
        );
        for bad in ["8/8", "1/0", "x/2", "3", "-1/4"] {
            assert!(bad.parse::<SliceSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn markers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(&[100, 200]);
        let s = plan_slices(&f, 2);
        assert!(!SliceDone::all_done(dir.path(), 2, "c1").unwrap());
        SliceDone::new(&s[0], 2, "c1").write(dir.path()).unwrap();
        assert!(!SliceDone::all_done(dir.path(), 2, "c1").unwrap());
        SliceDone::new(&s[1], 2, "c0").write(dir.path()).unwrap();
        assert!(
            !SliceDone::all_done(dir.path(), 2, "c1").unwrap(),
            "other commit counted"
        );
        SliceDone::new(&s[1], 2, "c1").write(dir.path()).unwrap();
        assert!(SliceDone::all_done(dir.path(), 2, "c1").unwrap());
        // Heartbeats and the pin live beside the markers and are not markers.
        let sdir = layout::slices_dir(dir.path());
        std::fs::write(sdir.join("progress-0-of-2.json"), r#"{"bytes_done": 1}"#).unwrap();
        std::fs::write(sdir.join("pin.json"), r#"{"commit": "c1"}"#).unwrap();
        let all = SliceDone::read_all(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].pieces, s[1].pieces);
    }
}
