//! Dynamic claims of an Indexed Job (`ferry fetch --slices N --dynamic`): pods take pieces of the
//! model from the shared directory as they go, instead of a fixed slice each.
//!
//! The protocol, all of it in files under `DIR/.ferry/` (link(2) and rename only, so it holds on
//! NFS-like volumes where flock is node-local or missing):
//!
//! - A **claim** is a lease ([`crate::lease`]) named [`claim_lease_name`]`(file, start)`: whoever
//!   holds it fetches that file from byte `start`. File `f` is cut into ranges at the starts of
//!   every claim lease of `f` that exists (any generation, held or not) plus 0: the claim at
//!   `start` owns `[start, next start)` ([`Bounds`]). Nothing else says where a range ends.
//! - **Splitting** a range in flight: a pod with nothing left creates the claim lease at a cut
//!   `m` inside someone's range (past the holder's *frontier*, the first byte it has not started:
//!   [`PodClaims`]). Creating the lease is the whole split: the holder re-reads the claim names
//!   every [`WATCH_EVERY`], sees a start inside its range, and stops before `m` (chunks it had
//!   started run to their end: the same bytes into the same partial file, harmless). Two
//!   splitters racing for the same `m` meet at link(2); at different cuts both win and the
//!   ranges nest.
//! - A holder that finishes writes [`ClaimDone`] (the range it journaled, never more), then lets
//!   its lease go. A range is **done** when the union of done markers of its file covers it; a
//!   claim whose lease is released or stale and whose range is not covered is free again, and
//!   its taker resumes from the claim's journal ([`crate::layout::claim_journal_path`]).
//! - A file whose ranges are all done is verified and published by whoever sees it first (lease
//!   [`file_lease_name`]), which writes [`FileDone`]. The pod that finds every file done commits
//!   the manifest (once, via link), as a static slice does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;

/// How often a pod re-reads the claim names (to learn a cut) and rewrites its [`PodClaims`].
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The lease that claims file number `file` (in path order) from byte `start`.
pub fn claim_lease_name(file: usize, start: u64) -> String {
    format!("claim-{file}-{start}")
}

/// `(file, start)` of a claim lease name; None for every other lease.
pub fn parse_claim_lease_name(name: &str) -> Option<(usize, u64)> {
    let (f, s) = name.strip_prefix("claim-")?.split_once('-')?;
    Some((f.parse().ok()?, s.parse().ok()?))
}

/// The lease taken by the pod that verifies and publishes file number `file`.
pub fn file_lease_name(file: usize) -> String {
    format!("file-{file}")
}

/// Where every range of every file starts: 0 and the start of each claim lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bounds(BTreeMap<usize, BTreeSet<u64>>);

impl Bounds {
    /// From lease file names (`claim-F-S.G.json`; others ignored).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Bounds {
        let mut b = Bounds::default();
        for n in names {
            if let Some((f, s)) =
                crate::lease::parse_file_name(n).and_then(|(name, _)| parse_claim_lease_name(name))
            {
                b.0.entry(f).or_default().insert(s);
            }
        }
        b
    }

    /// Reads the claim names in `dir`'s lease directory (names only: cheap on any volume).
    pub fn read(dir: &Path) -> Bounds {
        let names: Vec<String> = std::fs::read_dir(crate::lease::lease_dir(dir))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        Bounds::from_names(names.iter().map(String::as_str))
    }

    /// The ranges of file `file` of `size` bytes, as `(start, end)`.
    pub fn ranges(&self, file: usize, size: u64) -> Vec<(u64, u64)> {
        let mut starts: Vec<u64> = self
            .0
            .get(&file)
            .map(|s| s.iter().copied().filter(|s| *s < size).collect())
            .unwrap_or_default();
        if starts.first() != Some(&0) {
            starts.insert(0, 0);
        }
        let ends = starts.iter().skip(1).copied().chain([size]);
        starts.iter().copied().zip(ends).collect()
    }

    /// Where the range of file `file` that starts at `start` ends now.
    pub fn end_of(&self, file: usize, start: u64, size: u64) -> u64 {
        self.0
            .get(&file)
            .and_then(|s| s.range(start + 1..).next().copied())
            .unwrap_or(size)
            .min(size)
    }
}

/// Where to cut `[start, end)` whose holder has started everything before `frontier`: past
/// `margin` (bytes the holder may have started since it last said), keeping the fraction `keep`
/// of the rest for the holder (its share of the two rates, so both end together), on the
/// holder's chunk grid (`start + k * chunk`, so no chunk of the holder straddles the cut). None
/// when the part the splitter would get is under `min_split`.
pub fn split_point(
    (start, end): (u64, u64),
    frontier: u64,
    (chunk, margin, min_split): (u64, u64, u64),
    keep: f64,
) -> Option<u64> {
    let chunk = chunk.max(1);
    let from = frontier.max(start).saturating_add(margin);
    if from >= end {
        return None;
    }
    let kept = ((end - from) as f64 * keep.clamp(0.0, 1.0)) as u64;
    let at = from + kept;
    let cut = start + (at - start).div_ceil(chunk) * chunk;
    (cut > from && cut < end && end - cut >= min_split).then_some(cut)
}

/// `.ferry/claims/done/F-S.json`: the holder of claim `(file, start)` journaled `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimDone {
    pub path: String,
    pub file: usize,
    pub start: u64,
    pub end: u64,
    /// The pod (`I/N`) and host that fetched it.
    pub pod: String,
    pub host: String,
}

impl ClaimDone {
    /// Writes the marker atomically and durably (the range's journal is already synced).
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json(&layout::claim_done_path(dir, self.file, self.start), self)
    }

    /// Every claim marker in `dir` (file markers and temp files skipped).
    pub fn read_all(dir: &Path) -> Vec<ClaimDone> {
        read_dir_json(&layout::claims_done_dir(dir), |n| n.contains('-'))
    }
}

/// `.ferry/claims/done/F.json`: file number `file` is verified and published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDone {
    pub path: String,
    pub file: usize,
    pub pod: String,
}

impl FileDone {
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json(&layout::file_done_path(dir, self.file), self)
    }

    pub fn exists(dir: &Path, file: usize) -> bool {
        layout::file_done_path(dir, file).exists()
    }

    pub fn read_all(dir: &Path) -> Vec<FileDone> {
        read_dir_json(&layout::claims_done_dir(dir), |n| !n.contains('-'))
    }
}

/// One claim a pod holds, as its [`PodClaims`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldClaim {
    pub path: String,
    pub file: usize,
    pub start: u64,
    /// Where the range ends as the holder last learned it.
    pub end: u64,
    /// The first byte the holder has not started fetching: a splitter cuts after it.
    pub frontier: u64,
    /// The holder's chunk size: the grid a cut must fall on.
    pub chunk: u64,
}

/// `.ferry/claims/pods/POD.json`: what one pod holds and how fast it goes, rewritten every
/// [`WATCH_EVERY`] (plain rename: advisory, a reader copes with it missing or old).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodClaims {
    /// The pod's slice index and count (`--slice I/N`, or `JOB_COMPLETION_INDEX` of `--slices N`).
    pub index: u32,
    pub count: u32,
    pub host: String,
    pub pid: u32,
    /// Unix milliseconds of this write.
    pub updated_ms: u64,
    /// Bytes this pod downloaded so far, and its rate over the last few seconds.
    pub bytes_downloaded: u64,
    pub rate_bps: u64,
    /// Pieces it finished.
    pub pieces_done: u64,
    pub claims: Vec<HeldClaim>,
    /// Its lanes found nothing to claim or split and are waiting for the others.
    #[serde(default)]
    pub idle: bool,
}

impl PodClaims {
    pub fn write(&self, dir: &Path) {
        let path = layout::pod_claims_path(dir, self.index, self.count);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        if std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default()).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    pub fn read_all(dir: &Path) -> Vec<PodClaims> {
        let mut v: Vec<PodClaims> =
            read_dir_json(&layout::claims_pods_dir(dir), |n| !n.contains(".tmp"));
        v.sort_by_key(|p| (p.count, p.index));
        v
    }
}

/// What `ferry status` shows of a dynamic Job: each pod's claims and rate, and piece counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsView {
    pub pods: Vec<PodView>,
    /// Finished pieces (claims with a done marker) and published files.
    pub pieces_done: u64,
    pub files_done: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodView {
    /// `I/N`.
    pub pod: String,
    pub host: String,
    pub rate_bps: u64,
    pub bytes_downloaded: u64,
    pub pieces_done: u64,
    /// `path [start, end) at frontier` of each claim it holds.
    pub claims: Vec<HeldClaim>,
    pub idle: bool,
    /// Seconds since the pod last wrote its state.
    pub updated_seconds_ago: u64,
}

impl ClaimsView {
    /// None when `dir` was not fetched in dynamic mode.
    pub fn read(dir: &Path) -> Option<ClaimsView> {
        if !layout::claims_dir(dir).is_dir() {
            return None;
        }
        let now = crate::lease::unix_ms(std::time::SystemTime::now());
        let pods = PodClaims::read_all(dir)
            .into_iter()
            .map(|p| PodView {
                updated_seconds_ago: now.saturating_sub(p.updated_ms) / 1000,
                pod: format!("{}/{}", p.index, p.count),
                host: p.host,
                rate_bps: p.rate_bps,
                bytes_downloaded: p.bytes_downloaded,
                pieces_done: p.pieces_done,
                claims: p.claims,
                idle: p.idle,
            })
            .collect();
        Some(ClaimsView {
            pods,
            pieces_done: ClaimDone::read_all(dir).len() as u64,
            files_done: FileDone::read_all(dir).len() as u64,
        })
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec(value).map_err(|e| Error::BadState {
        path: path.to_path_buf(),
        what: "claim marker",
        reason: e.to_string(),
    })?;
    crate::manifest::write_atomic(path, &json)
}

/// Every `*.json` in `dir` whose stem passes `keep` and that parses; the rest is skipped (a
/// reader never fails on another pod's write in progress).
fn read_dir_json<T: for<'de> Deserialize<'de>>(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<T> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".json")?;
            keep(stem).then_some(())?;
            serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bounds_cut_files_into_ranges() {
        assert_eq!(
            parse_claim_lease_name(&claim_lease_name(7, 1 << 30)),
            Some((7, 1 << 30))
        );
        assert_eq!(parse_claim_lease_name("slice-0-of-2"), None);
        assert_eq!(parse_claim_lease_name(&file_lease_name(3)), None);
        let b = Bounds::from_names([
            "claim-1-0.1.json",
            "claim-1-300.2.json",
            "claim-1-300.3.json",
            "claim-1-100.1.json",
            "claim-2-50.1.json",
            "slice-0-of-2.1.json",
            "claim-1-200.json.123.tmp",
        ]);
        assert_eq!(b.ranges(1, 400), vec![(0, 100), (100, 300), (300, 400)]);
        // A file never claimed from 0 still starts at 0; a start past the size is ignored.
        assert_eq!(b.ranges(2, 40), vec![(0, 40)]);
        assert_eq!(b.ranges(2, 80), vec![(0, 50), (50, 80)]);
        assert_eq!(b.ranges(9, 10), vec![(0, 10)]);
        assert_eq!(b.end_of(1, 0, 400), 100);
        assert_eq!(b.end_of(1, 100, 400), 300);
        assert_eq!(b.end_of(1, 300, 400), 400);
    }

    #[test]
    fn splits_fall_on_the_holders_grid_past_its_frontier() {
        // [0, 100) with chunks of 10, frontier 20, margin 10: half of [30, 100) is 65 -> 70.
        assert_eq!(split_point((0, 100), 20, (10, 10, 10), 0.5), Some(70));
        // The grid is relative to the range's start.
        assert_eq!(split_point((5, 105), 25, (10, 10, 10), 0.5), Some(75));
        // A slow holder keeps less: a fifth of [30, 100) is 14 -> 44 -> 50.
        assert_eq!(split_point((0, 100), 20, (10, 10, 10), 0.2), Some(50));
        // Too little left for the splitter.
        assert_eq!(split_point((0, 100), 80, (10, 0, 20), 0.5), None);
        assert_eq!(split_point((0, 100), 100, (10, 0, 1), 0.5), None);
        // A frontier behind the start (nothing started) counts from the start.
        assert_eq!(split_point((50, 150), 0, (10, 0, 10), 0.5), Some(100));
        for frontier in 0..100 {
            if let Some(cut) = split_point((0, 100), frontier, (7, 3, 1), 0.3) {
                assert!(
                    cut > frontier + 3 && cut < 100 && cut % 7 == 0,
                    "{frontier} {cut}"
                );
            }
        }
    }

    #[test]
    fn markers_and_pod_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            layout::claims_done_dir(dir.path()),
            layout::claims_pods_dir(dir.path()),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        let done = ClaimDone {
            path: "a".into(),
            file: 1,
            start: 0,
            end: 10,
            pod: "0/2".into(),
            host: "h".into(),
        };
        done.write(dir.path()).unwrap();
        FileDone {
            path: "a".into(),
            file: 1,
            pod: "0/2".into(),
        }
        .write(dir.path())
        .unwrap();
        assert_eq!(ClaimDone::read_all(dir.path()), vec![done]);
        assert!(FileDone::exists(dir.path(), 1));
        assert_eq!(FileDone::read_all(dir.path()).len(), 1);
        let pod = PodClaims {
            index: 1,
            count: 2,
            rate_bps: 5,
            ..PodClaims::default()
        };
        pod.write(dir.path());
        let view = ClaimsView::read(dir.path()).unwrap();
        assert_eq!(view.pods.len(), 1);
        assert_eq!((view.pieces_done, view.files_done), (1, 1));
        assert_eq!(view.pods[0].rate_bps, 5);
        assert_eq!(view.pods[0].pod, "1/2");
    }
}
