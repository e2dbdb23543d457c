//! The lease file: who is writing a model directory (or one slice of it), from any node.
//!
//! flock is node-local or missing on the shared volumes ferry runs on (NFS with `local_lock` or
//! `nolock`, FUSE without lock forwarding, Lustre-like clients without `-o flock`), so exclusion
//! rests on a lease instead: a small JSON file created with link(2), which fails when the name
//! exists on every filesystem ferry supports, NFS included. Leases are numbered: the holder of
//! `NAME.G.json` holds the lease while no `NAME.(G+1).json` exists and its heartbeat is fresh; a
//! newcomer takes a stale or released lease over by linking `NAME.(G+1).json`, so two takers
//! never both win. The fetcher writes leases ([`Lease`] is the one format); `ferry status` and
//! anyone else only read them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::host::{identity, pid_start};
use crate::layout;

/// A holder whose heartbeat is older than this is presumed dead or paused and may be taken over.
/// Renewed every `timeout / 6`, so a holder misses five renewals (a long GC-free pause, a node
/// under memory pressure, NFS attribute caching of up to `acregmax`) before it loses the lease.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One lease, as written by its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// What is leased: `dir` (a whole fetch), `slice-I-of-N`, `finalize`.
    pub name: String,
    /// The lease's number: the highest one present is the current lease.
    pub generation: u64,
    /// A random token naming this holding, unique across nodes.
    pub holder: String,
    /// Host name (the pod name in Kubernetes).
    pub host: String,
    pub pid: u32,
    /// The kernel and pid namespace the pid lives in (boot id and pid-namespace inode): a reader
    /// with the same `node` can check whether the pid still runs; others rely on the heartbeat.
    pub node: String,
    /// Start time of the pid (clock ticks since boot), so a reused pid is not taken for the holder.
    pub pid_start: u64,
    /// When the lease was taken, Unix milliseconds.
    pub started_ms: u64,
    /// The last heartbeat, Unix milliseconds (the holder's clock: nodes must be NTP-synced to
    /// within a fraction of `timeout_ms`).
    pub renewed_ms: u64,
    /// How old the heartbeat may get before the lease can be taken over.
    pub timeout_ms: u64,
    /// The holder let go (finished or failed cleanly).
    #[serde(default)]
    pub released: bool,
}

impl Lease {
    /// How long ago the heartbeat was written, by this machine's clock (zero if in the future).
    pub fn heartbeat_age(&self, now: SystemTime) -> Duration {
        Duration::from_millis(unix_ms(now).saturating_sub(self.renewed_ms))
    }

    /// The heartbeat is older than the holder's own timeout.
    pub fn is_stale(&self, now: SystemTime) -> bool {
        self.heartbeat_age(now) > Duration::from_millis(self.timeout_ms)
    }
}

impl Lease {
    /// The holder ran in this kernel and pid namespace and its process is gone (or the pid now
    /// names another process): dead for sure, whatever the heartbeat says.
    pub fn holder_gone(&self) -> bool {
        self.node == identity().node && pid_start(self.pid) != Some(self.pid_start)
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lease files live here: `DIR/.ferry/lease/NAME.GENERATION.json`.
pub fn lease_dir(dir: &Path) -> PathBuf {
    dir.join(layout::STATE_DIR).join("lease")
}

/// The file of generation `generation` of lease `name`.
pub fn lease_path(dir: &Path, name: &str, generation: u64) -> PathBuf {
    lease_dir(dir).join(format!("{name}.{generation}.json"))
}

/// Splits a lease file name into (name, generation); None for anything else (temp files).
pub fn parse_file_name(file: &str) -> Option<(&str, u64)> {
    let stem = file.strip_suffix(".json")?;
    let (name, generation) = stem.rsplit_once('.')?;
    Some((name, generation.parse().ok()?))
}

/// Reads one lease file: None when it is absent or not (yet, or no longer) a whole lease.
pub fn read(path: &Path) -> Option<Lease> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(bytes.trim_ascii()).ok()
}

/// The current (highest) generation of every lease in `dir`, sorted by name. Unreadable files
/// are skipped: a reader never fails because a writer is mid-renewal.
pub fn current(dir: &Path) -> Vec<Lease> {
    let mut best: std::collections::BTreeMap<String, u64> = Default::default();
    let Ok(entries) = std::fs::read_dir(lease_dir(dir)) else {
        return Vec::new();
    };
    for e in entries.flatten() {
        let file = e.file_name();
        if let Some((name, g)) = file.to_str().and_then(parse_file_name) {
            let slot = best.entry(name.to_string()).or_insert(g);
            *slot = (*slot).max(g);
        }
    }
    best.into_iter()
        .filter_map(|(name, g)| read(&lease_path(dir, &name, g)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_temp_files_are_not_leases() {
        let p = lease_path(Path::new("/m"), "slice-2-of-8", 17);
        assert_eq!(p, Path::new("/m/.ferry/lease/slice-2-of-8.17.json"));
        let file = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_file_name(file), Some(("slice-2-of-8", 17)));
        assert_eq!(parse_file_name("dir.3.json.1234.tmp"), None);
        assert_eq!(parse_file_name("dir.x.json"), None);
    }

    #[test]
    fn staleness_follows_the_holders_timeout() {
        let now = SystemTime::now();
        let lease = Lease {
            name: "dir".into(),
            generation: 1,
            holder: "h".into(),
            host: "node-a".into(),
            pid: 1,
            node: "n".into(),
            pid_start: 0,
            started_ms: unix_ms(now) - 10_000,
            renewed_ms: unix_ms(now) - 5_000,
            timeout_ms: 4_000,
            released: false,
        };
        assert!(lease.is_stale(now));
        assert!(!Lease {
            timeout_ms: 6_000,
            ..lease.clone()
        }
        .is_stale(now));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(lease_dir(dir.path())).unwrap();
        for g in [1, 3, 2] {
            let l = Lease {
                generation: g,
                ..lease.clone()
            };
            std::fs::write(
                lease_path(dir.path(), "dir", g),
                serde_json::to_vec(&l).unwrap(),
            )
            .unwrap();
        }
        std::fs::write(lease_dir(dir.path()).join("dir.9.json.tmp"), b"{").unwrap();
        let cur = current(dir.path());
        assert_eq!(cur.len(), 1);
        assert_eq!(cur[0].generation, 3);
    }
}
