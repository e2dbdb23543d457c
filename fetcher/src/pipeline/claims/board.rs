//! What is left to do, read from the shared directory: the next piece for a lane to claim, a file
//! to verify and publish, or a range in flight to split ([`ferry_sharder::claims`] has the
//! protocol). Blocking file I/O only, run off the async workers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use ferry_sharder::claims::{
    claim_lease_name, file_lease_name, split_point, Bounds, ClaimDone, FileDone, PodClaims,
};
use ferry_sharder::lease::{self, Lease};

use crate::error::{Error, Result};
use crate::lock::{try_lease, DirLock};
use crate::transfer::journal::RangeSet;

/// Files of at least this many chunks are fetched as claimable, splittable ranges (each range
/// journaled apart, the file hashed once all are done); smaller ones are one claim, fetched and
/// verified whole by its holder, as a plain fetch does. With the default 64 MiB chunks: files
/// from 512 MiB, i.e. every shard of a large model and none of its configs.
pub const SPLIT_MIN_CHUNKS: u64 = 8;

/// One model file, by its number in path order (the number claims name it by).
#[derive(Debug, Clone)]
pub struct BoardFile {
    pub path: String,
    pub size: u64,
    /// Already verified in place when this pod started: nothing to claim.
    pub reused: bool,
}

/// The shared directory's claims as one pod sees them.
pub struct Board {
    pub dir: PathBuf,
    pub files: Vec<BoardFile>,
    /// The chunk size of this pod's range requests: the grid of its ranges, and the unit of the
    /// margin and smallest split.
    pub chunk: u64,
    /// This pod (`index`, `count`) and its lanes: its own rate per lane, against a holder's per
    /// claim, sets where a split cuts.
    pub pod: (u32, u32),
    pub lanes: usize,
    /// Done markers read so far, by file name: they never change once written, so each is read
    /// once and later looks only list the directory.
    pub seen: std::sync::Mutex<HashMap<String, ClaimDone>>,
}

/// What a lane does next.
pub enum Work {
    /// Fetch `[start, end)` of file `file` (its end may move down while fetching: a split).
    Claim {
        file: usize,
        start: u64,
        end: u64,
        lock: DirLock,
    },
    /// Every range of `file` is done: verify and publish it.
    Finish { file: usize, lock: DirLock },
    /// Nothing free and nothing worth splitting: others hold what is left.
    Wait,
    /// Every file is published.
    AllDone,
}

/// The lease directory listed once: the highest generation of each name; a lease's content is
/// read only when asked (a few per choice, not one per claim ever made: cheap on NFS).
struct Leases {
    dir: PathBuf,
    latest: HashMap<String, u64>,
}

impl Leases {
    fn list(dir: &std::path::Path) -> (Leases, Bounds) {
        let names: Vec<String> = std::fs::read_dir(lease::lease_dir(dir))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut latest: HashMap<String, u64> = HashMap::new();
        for (name, g) in names.iter().filter_map(|n| lease::parse_file_name(n)) {
            let slot = latest.entry(name.to_string()).or_insert(g);
            *slot = (*slot).max(g);
        }
        let bounds = Bounds::from_names(names.iter().map(String::as_str));
        (
            Leases {
                dir: dir.to_path_buf(),
                latest,
            },
            bounds,
        )
    }

    /// Held by someone who is alive: not released, heartbeat fresh, holder not known gone.
    fn live(&self, name: &str, now: SystemTime) -> bool {
        let Some(g) = self.latest.get(name) else {
            return false;
        };
        let l: Option<Lease> = lease::read(&lease::lease_path(&self.dir, name, *g));
        // Unreadable (mid-write): taken as live; `try_lease` judges it properly if we ask.
        l.is_none_or(|l| !l.released && !l.is_stale(now) && !l.holder_gone())
    }
}

/// A lease somebody else holds: not an error here, just not ours.
fn try_take(dir: &std::path::Path, name: &str) -> Result<Option<DirLock>> {
    match try_lease(dir, name) {
        Ok(l) => Ok(Some(l)),
        Err(Error::Locked { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Board {
    /// Whether file number `file` is claimed in ranges (see [`SPLIT_MIN_CHUNKS`]).
    pub fn splittable(&self, file: usize) -> bool {
        self.files[file].size >= SPLIT_MIN_CHUNKS * self.chunk.max(1)
    }

    /// The union of done ranges of each file.
    fn done(&self) -> HashMap<usize, RangeSet> {
        let ddir = ferry_sharder::layout::claims_done_dir(&self.dir);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for e in std::fs::read_dir(&ddir).into_iter().flatten().flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if !name.ends_with(".json") || !name.contains('-') || seen.contains_key(&name) {
                continue;
            }
            let marker = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<ClaimDone>(&b).ok());
            if let Some(d) = marker {
                seen.insert(name, d);
            }
        }
        let mut by_file: HashMap<usize, RangeSet> = HashMap::new();
        for d in seen.values() {
            if self.files.get(d.file).is_some_and(|f| f.path == d.path) {
                by_file.entry(d.file).or_default().insert(d.start, d.end);
            }
        }
        by_file
    }

    /// True once every range of `file` is covered by done markers.
    pub fn file_covered(&self, file: usize) -> bool {
        let size = self.files[file].size;
        size == 0 || self.done().get(&file).is_some_and(|r| r.contains(0, size))
    }

    /// Picks this lane's next work, taking the lease it needs. Largest files first: the small
    /// ones are left to even out the end.
    pub fn choose(&self) -> Result<Work> {
        let dir = &self.dir;
        let (leases, bounds) = Leases::list(dir);
        let done = self.done();
        let now = SystemTime::now();
        let mut order: Vec<usize> = (0..self.files.len())
            .filter(|&i| !self.files[i].reused && !FileDone::exists(dir, i))
            .collect();
        if order.is_empty() {
            return Ok(Work::AllDone);
        }
        order.sort_by_key(|&i| (std::cmp::Reverse(self.files[i].size), i));
        let covered = |file: usize, (s, e): (u64, u64)| {
            s >= e || done.get(&file).is_some_and(|r| r.contains(s, e))
        };
        for &file in &order {
            let f = &self.files[file];
            let ranges = if self.splittable(file) {
                bounds.ranges(file, f.size)
            } else {
                vec![(0, f.size)]
            };
            if ranges.iter().all(|r| covered(file, *r)) {
                if !leases.live(&file_lease_name(file), now) {
                    if let Some(lock) = try_take(dir, &file_lease_name(file))? {
                        if FileDone::exists(dir, file) {
                            continue;
                        }
                        return Ok(Work::Finish { file, lock });
                    }
                }
                continue;
            }
            for (start, end) in ranges {
                let name = claim_lease_name(file, start);
                if covered(file, (start, end)) || leases.live(&name, now) {
                    continue;
                }
                if let Some(lock) = try_take(dir, &name)? {
                    // Done in the meantime (its holder wrote the marker, then released)?
                    if self.claim_done(file, start, end) {
                        continue;
                    }
                    let end = Bounds::read(dir).end_of(file, start, f.size);
                    return Ok(Work::Claim {
                        file,
                        start,
                        end,
                        lock,
                    });
                }
            }
        }
        self.split(&bounds, &leases, now)
    }

    fn claim_done(&self, file: usize, start: u64, end: u64) -> bool {
        self.done()
            .get(&file)
            .is_some_and(|r| r.contains(start, end))
    }

    /// Splits the range in flight with the most bytes not yet started: this lane takes its
    /// second half by creating the claim lease at the cut.
    fn split(&self, bounds: &Bounds, leases: &Leases, now: SystemTime) -> Result<Work> {
        let dir = &self.dir;
        let pods = PodClaims::read_all(dir);
        let per_claim = |p: &PodClaims| p.rate_bps as f64 / p.claims.len().max(1) as f64;
        // This lane's rate: its pod's over its lanes (none yet: assume the holder's).
        let mine = pods
            .iter()
            .find(|p| (p.index, p.count) == self.pod)
            .map(|p| p.rate_bps as f64 / self.lanes.max(1) as f64)
            .filter(|r| *r > 0.0);
        // (seconds the holder still needs, file, cut)
        let mut best: Option<(f64, usize, u64)> = None;
        for pod in &pods {
            let theirs = per_claim(pod).max(1.0);
            let ours = mine.unwrap_or(theirs);
            for c in &pod.claims {
                let Some(f) = self.files.get(c.file).filter(|f| f.path == c.path) else {
                    continue;
                };
                if !self.splittable(c.file) || !leases.live(&claim_lease_name(c.file, c.start), now)
                {
                    continue;
                }
                let end = bounds.end_of(c.file, c.start, f.size);
                let chunk = c.chunk.max(1);
                let keep = theirs / (theirs + ours);
                let Some(cut) =
                    split_point((c.start, end), c.frontier, (chunk, chunk, chunk), keep)
                else {
                    continue;
                };
                let left = (end - c.frontier.max(c.start)) as f64 / theirs;
                // Only where it helps: our part must end before the holder would end it all.
                if (end - cut) as f64 / ours >= left {
                    continue;
                }
                if best.is_none_or(|(l, _, _)| left > l) {
                    best = Some((left, c.file, cut));
                }
            }
        }
        let Some((_, file, cut)) = best else {
            return Ok(Work::Wait);
        };
        let Some(lock) = try_take(dir, &claim_lease_name(file, cut))? else {
            return Ok(Work::Wait);
        };
        let end = Bounds::read(dir).end_of(file, cut, self.files[file].size);
        if self.claim_done(file, cut, end) {
            return Ok(Work::Wait);
        }
        tracing::info!(
            "split {} at byte {cut}: this pod takes [{cut}, {end})",
            self.files[file].path
        );
        Ok(Work::Claim {
            file,
            start: cut,
            end,
            lock,
        })
    }
}
