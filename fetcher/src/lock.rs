//! Exclusion on a target directory that holds on shared volumes: a lease, with flock as an extra.
//!
//! A fetch (or one slice of an Indexed Job) takes a lease ([`ferry_sharder::lease`]): a JSON file
//! created with link(2), which either creates the name or fails because it exists, atomically on
//! NFS too. The holder renews its heartbeat from a thread every `timeout / 6`; a newcomer takes
//! the lease over only when the heartbeat is older than the timeout (`FERRY_LEASE_TIMEOUT`,
//! default [`lease::DEFAULT_TIMEOUT`]), when the holder released it, or when the holder ran on
//! this very kernel and pid namespace and its process is gone (kill -9 on the same node is
//! noticed at once). A whole fetch excludes every slice and each slice excludes a whole fetch.
//!
//! flock on `DIR/.ferry/lock` is still taken where it works: on one node it refuses a second
//! fetch at once. On shared volumes it is node-local or fails (ENOSYS, EOPNOTSUPP, ENOLCK on NFS
//! without lockd or Lustre-like clients without `-o flock`); a failure is logged and ignored,
//! never fatal. A holder that was paused past the timeout and resumes finds its lease gone: the
//! renewal thread and [`still_held`] (called before each publish and before the manifest) say
//! so, and it stops. Until it notices, what it does stays safe: same bytes into the same
//! partial file, hash verified before a rename publishes it, the manifest committed once.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ferry_sharder::layout;
use ferry_sharder::lease::{self, Lease};

use crate::error::{Error, Result};

/// Overrides the lease timeout (humantime: `30s`, `2m`). Longer than any pause a live fetch
/// can take (NFS server failover, a frozen node), shorter than an operator's patience.
pub const TIMEOUT_ENV: &str = "FERRY_LEASE_TIMEOUT";

/// Lease files are written at this fixed length (JSON padded with spaces), so a renewal rewrites
/// them in place with one write and readers never see a shorter, torn tail.
const LEASE_LEN: usize = 1024;

/// Held locks; dropping stops the renewal thread and releases them.
pub struct DirLock {
    leases: Vec<Arc<Held>>,
    _flocks: Vec<File>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<JoinHandle<()>>,
}

/// One lease this process holds.
struct Held {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    lease: Mutex<Lease>,
    lost: AtomicBool,
}

/// Every lease held in this process, for [`still_held`].
static HELD: Mutex<Vec<Arc<Held>>> = Mutex::new(Vec::new());

/// Locks `dir` for a whole fetch (`slice == None`) or for one slice `(index, count)`.
pub fn acquire(dir: &Path, slice: Option<(u32, u32)>) -> Result<DirLock> {
    let timeout = timeout()?;
    let main = layout::lock_path(dir);
    let mut flocks = Vec::new();
    let name = match slice {
        None => {
            flocks.extend(flock_one(dir, &main, true)?);
            "dir".to_string()
        }
        Some((i, n)) => {
            flocks.extend(flock_one(dir, &main, false)?);
            let mut p = main.clone().into_os_string();
            p.push(format!(".slice-{i}-of-{n}"));
            flocks.extend(flock_one(dir, &PathBuf::from(p), true)?);
            format!("slice-{i}-of-{n}")
        }
    };
    let held = take(dir, &name, timeout)?;
    let lock = DirLock::start(vec![held], flocks, timeout);
    // Taken first, checked second: of a whole fetch and a slice starting together, at least one
    // sees the other's lease and backs off (both may, and retry later; never neither).
    let conflicting = |l: &Lease| match slice {
        None => l.name.starts_with("slice-"),
        Some(_) => l.name == "dir",
    };
    let now = SystemTime::now();
    if let Some(other) = lease::current(dir)
        .into_iter()
        .find(|l| conflicting(l) && is_live(l, now))
    {
        return Err(Error::Locked {
            dir: dir.to_path_buf(),
            holder: describe(&other, now),
        });
    }
    Ok(lock)
}

/// The finalize lease of an Indexed Job: waits while another slice finalizes (it then finds the
/// manifest committed), and takes it over if that slice dies.
pub fn acquire_finalize(dir: &Path) -> Result<DirLock> {
    let timeout = timeout()?;
    loop {
        match take(dir, "finalize", timeout) {
            Ok(held) => return Ok(DirLock::start(vec![held], Vec::new(), timeout)),
            Err(Error::Locked { holder, .. }) => {
                tracing::debug!("waiting for the finalizing slice ({holder})");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Takes lease `name` on `dir` if it is free (never held, released, stale, or its holder gone),
/// renewed until dropped; `Locked` when a live holder has it. For the claims of a dynamic Job.
pub fn try_lease(dir: &Path, name: &str) -> Result<DirLock> {
    let timeout = timeout()?;
    let held = take(dir, name, timeout)?;
    Ok(DirLock::start(vec![held], Vec::new(), timeout))
}

/// Fails when a lease this process holds on `dir` was taken over (or its file vanished): call
/// it before every step that another writer must not see twice (publish, manifest).
pub fn still_held(dir: &Path) -> Result<()> {
    let held: Vec<Arc<Held>> = HELD
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|h| h.dir == dir)
        .cloned()
        .collect();
    for h in held {
        if let Err(reason) = h.check() {
            h.lost.store(true, Ordering::Relaxed);
            return Err(h.lost_error(reason));
        }
    }
    Ok(())
}

/// Who holds a lease on `dir`, if anyone live (for messages): the holder, or None.
pub fn holder(dir: &Path) -> Option<String> {
    let now = SystemTime::now();
    lease::current(dir)
        .into_iter()
        .find(|l| is_live(l, now))
        .map(|l| describe(&l, now))
}

fn timeout() -> Result<Duration> {
    match std::env::var(TIMEOUT_ENV) {
        Err(_) => Ok(lease::DEFAULT_TIMEOUT),
        Ok(v) => humantime::parse_duration(v.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{TIMEOUT_ENV}={v:?} is not a duration; use e.g. 60s or 2m"
                ))
            }),
    }
}

/// Takes lease `name` in `dir`: the next generation after the current one, if that one is free.
fn take(dir: &Path, name: &str, timeout: Duration) -> Result<Arc<Held>> {
    let ldir = lease::lease_dir(dir);
    std::fs::create_dir_all(&ldir).map_err(|e| Error::io(&ldir, e))?;
    let me = lease::identity();
    // A lost link race means another taker got there: look again (bounded, since every lost
    // race means someone else's lease now exists and the next look finds it live).
    for _ in 0..8 {
        let now = SystemTime::now();
        let current = latest(dir, name);
        if let Some((_, Some(cur))) = &current {
            if is_live(cur, now) {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    holder: describe(cur, now),
                });
            }
        }
        if let Some((g, None)) = &current {
            // Present but unreadable (mid-write by a holder on another client, or torn by a
            // crash): judge it by its mtime instead.
            let path = lease::lease_path(dir, name, *g);
            let fresh = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() < timeout);
            if fresh {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    holder: format!("{} is being written", path.display()),
                });
            }
        }
        let generation = current.as_ref().map_or(1, |(g, _)| g + 1);
        let ms = lease::unix_ms(now);
        let mine = Lease {
            name: name.to_string(),
            generation,
            holder: format!("{:016x}", rand::random::<u64>()),
            host: me.host.clone(),
            pid: std::process::id(),
            node: me.node.clone(),
            pid_start: me.pid_start,
            started_ms: ms,
            renewed_ms: ms,
            timeout_ms: timeout.as_millis() as u64,
            released: false,
        };
        let path = lease::lease_path(dir, name, generation);
        if !link_new(&path, &mine)? {
            continue;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let held = Arc::new(Held {
            dir: dir.to_path_buf(),
            path,
            file,
            lease: Mutex::new(mine),
            lost: AtomicBool::new(false),
        });
        // Our link changed the directory, so this listing is fresh even where the client caches
        // directory entries: a higher generation than ours means our view was stale.
        if let Some((g, _)) = latest(dir, name).filter(|(g, _)| *g > generation) {
            held.release();
            tracing::debug!("lease {name}: generation {g} exists beyond ours; looking again");
            continue;
        }
        cleanup(dir, name, generation);
        register(&held);
        return Ok(held);
    }
    Err(Error::Locked {
        dir: dir.to_path_buf(),
        holder: format!("lease {name} is contended by several takers"),
    })
}

/// Creates `path` holding `lease`; false when it exists (another taker won).
fn link_new(path: &Path, lease: &Lease) -> Result<bool> {
    Ok(ferry_sharder::manifest::create_whole(
        path,
        &encode(lease),
        false,
    )?)
}

fn encode(lease: &Lease) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(lease).unwrap_or_default();
    if bytes.len() < LEASE_LEN {
        bytes.resize(LEASE_LEN - 1, b' ');
        bytes.push(b'\n');
    }
    bytes
}

/// The highest generation of lease `name` and its content (None when unreadable).
fn latest(dir: &Path, name: &str) -> Option<(u64, Option<Lease>)> {
    let entries = std::fs::read_dir(lease::lease_dir(dir)).ok()?;
    let g = entries
        .flatten()
        .filter_map(|e| {
            let f = e.file_name();
            let (n, g) = lease::parse_file_name(f.to_str()?)?;
            (n == name).then_some(g)
        })
        .max()?;
    Some((g, lease::read(&lease::lease_path(dir, name, g))))
}

/// Removes generations before the one we took over from: their holders are gone or will find
/// their file missing. The previous one stays, so its holder, if paused, finds ours above it.
fn cleanup(dir: &Path, name: &str, ours: u64) {
    let Ok(entries) = std::fs::read_dir(lease::lease_dir(dir)) else {
        return;
    };
    for e in entries.flatten() {
        let f = e.file_name();
        let Some((n, g)) = f.to_str().and_then(lease::parse_file_name) else {
            continue;
        };
        if n == name && g + 1 < ours {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Not released, heartbeat fresh, and (where this process can tell) the holder still running.
fn is_live(l: &Lease, now: SystemTime) -> bool {
    !l.released && !l.is_stale(now) && !l.holder_gone()
}

fn describe(l: &Lease, now: SystemTime) -> String {
    format!(
        "lease {} held by pid {} on {}, heartbeat {:.1}s ago, timeout {}s",
        l.name,
        l.pid,
        l.host,
        l.heartbeat_age(now).as_secs_f64(),
        l.timeout_ms / 1000
    )
}

fn register(h: &Arc<Held>) {
    HELD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::clone(h));
}

impl Held {
    /// Our file still names us and no later generation exists.
    fn check(&self) -> std::result::Result<(), String> {
        if self.lost.load(Ordering::Relaxed) {
            return Err("taken over earlier".into());
        }
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let next = lease::lease_path(&self.dir, &lease.name, lease.generation + 1);
        if let Some(other) = lease::read(&next) {
            return Err(format!("taken over by pid {} on {}", other.pid, other.host));
        }
        if next.exists() {
            return Err(format!("{} exists", next.display()));
        }
        match lease::read(&self.path) {
            Some(on_disk) if on_disk.holder == lease.holder => Ok(()),
            Some(on_disk) => Err(format!("{} names pid {}", self.path.display(), on_disk.pid)),
            None => Err(format!("{} is gone", self.path.display())),
        }
    }

    fn lost_error(&self, reason: String) -> Error {
        let name = self
            .lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .name
            .clone();
        Error::LeaseLost {
            dir: self.dir.clone(),
            lease: name,
            reason,
        }
    }

    /// Rewrites the lease in place with a fresh heartbeat (or as released).
    fn write(&self, released: bool) -> std::io::Result<()> {
        let bytes = {
            let mut l = self.lease.lock().unwrap_or_else(|p| p.into_inner());
            l.renewed_ms = lease::unix_ms(SystemTime::now());
            l.released = released;
            encode(&l)
        };
        self.file.write_all_at(&bytes, 0)?;
        self.file.sync_data()
    }

    fn renew(&self) {
        if self.lost.load(Ordering::Relaxed) {
            return;
        }
        if let Err(reason) = self.check() {
            self.lost.store(true, Ordering::Relaxed);
            tracing::error!("{}", self.lost_error(reason));
            return;
        }
        if let Err(e) = self.write(false) {
            // A missed renewal is retried at the next tick; only many in a row lose the lease.
            tracing::warn!("{}: lease renewal failed: {e}", self.path.display());
        }
    }

    fn release(&self) {
        if self.lost.load(Ordering::Relaxed) || self.check().is_err() {
            return;
        }
        if let Err(e) = self.write(true) {
            tracing::warn!(
                "{}: could not release the lease ({e}); it expires after its timeout",
                self.path.display()
            );
        }
    }
}

impl DirLock {
    fn start(leases: Vec<Arc<Held>>, flocks: Vec<File>, timeout: Duration) -> DirLock {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let every = (timeout / 6).max(Duration::from_millis(50));
        let renewer = {
            let (leases, stop) = (leases.clone(), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("ferry-lease".into())
                .spawn(move || loop {
                    let (flag, cv) = &*stop;
                    let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
                    let (guard, _) = cv
                        .wait_timeout_while(guard, every, |stopped| !*stopped)
                        .unwrap_or_else(|p| p.into_inner());
                    if *guard {
                        return;
                    }
                    drop(guard);
                    for h in &leases {
                        h.renew();
                    }
                })
                .ok()
        };
        if renewer.is_none() {
            tracing::warn!(
                "could not start the lease renewal thread; leases expire after {timeout:?}"
            );
        }
        DirLock {
            leases,
            _flocks: flocks,
            stop,
            renewer,
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        {
            let (flag, cv) = &*self.stop;
            *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        let mut registry = HELD.lock().unwrap_or_else(|p| p.into_inner());
        for h in &self.leases {
            h.release();
            registry.retain(|r| !Arc::ptr_eq(r, h));
        }
    }
}

/// Takes flock on `path` as an extra: Some(file) when held, None when the filesystem does not do
/// flock (logged, not fatal), and `Locked` when another holder has it.
fn flock_one(dir: &Path, path: &Path, exclusive: bool) -> Result<Option<File>> {
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
        let me = lease::identity();
        let info = serde_json::json!({
            "pid": std::process::id(),
            "host": me.host,
            "started_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = f.write_all(info.to_string().as_bytes());
    }
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(dir: &Path) {
        std::fs::create_dir_all(dir.join(".ferry")).unwrap();
    }

    #[test]
    fn second_locker_fails_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        state(dir.path());
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

    /// Without flock (the lock file's flock is held by nobody, as on a node-local FUSE mount
    /// seen from another node), the lease alone still excludes a second holder.
    #[test]
    fn the_lease_alone_excludes_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        state(dir.path());
        let held = take(dir.path(), "dir", Duration::from_secs(60)).unwrap();
        let err = take(dir.path(), "dir", Duration::from_secs(60))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        held.release();
        let again = take(dir.path(), "dir", Duration::from_secs(60)).unwrap();
        assert_eq!(again.lease.lock().unwrap().generation, 2);
    }

    /// A holder whose heartbeat stopped (paused, or on a node that vanished) is taken over after
    /// the timeout, and then learns it lost the lease.
    #[test]
    fn a_stale_lease_is_taken_over_and_the_old_holder_notices() {
        let dir = tempfile::tempdir().unwrap();
        state(dir.path());
        let old = take(dir.path(), "slice-0-of-2", Duration::from_millis(300)).unwrap();
        assert!(still_held(dir.path()).is_ok());
        assert!(take(dir.path(), "slice-0-of-2", Duration::from_millis(300)).is_err());
        std::thread::sleep(Duration::from_millis(400));
        let new = take(dir.path(), "slice-0-of-2", Duration::from_millis(300)).unwrap();
        assert_eq!(new.lease.lock().unwrap().generation, 2);
        let err = old.check().unwrap_err();
        assert!(err.contains("taken over"), "{err}");
        assert!(matches!(
            still_held(dir.path()),
            Err(Error::LeaseLost { .. })
        ));
        // A renewal by the old holder must not resurrect it.
        old.renew();
        assert!(new.check().is_ok());
        assert!(old.check().is_err());
    }

    /// A holder that died on this node is noticed at once, without waiting for the timeout.
    #[test]
    fn a_dead_holder_on_this_node_is_taken_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        state(dir.path());
        let me = lease::identity();
        let ms = lease::unix_ms(SystemTime::now());
        let dead = Lease {
            name: "dir".into(),
            generation: 4,
            holder: "x".into(),
            host: me.host,
            pid: std::process::id(),
            node: me.node,
            pid_start: me.pid_start + 1,
            started_ms: ms,
            renewed_ms: ms,
            timeout_ms: 3_600_000,
            released: false,
        };
        std::fs::create_dir_all(lease::lease_dir(dir.path())).unwrap();
        std::fs::write(lease::lease_path(dir.path(), "dir", 4), encode(&dead)).unwrap();
        let l = acquire(dir.path(), None).unwrap();
        assert_eq!(l.leases[0].lease.lock().unwrap().generation, 5);
    }

    #[test]
    fn racing_takers_end_with_exactly_one_holder() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            state(dir.path());
            let barrier = std::sync::Barrier::new(8);
            let won: Vec<bool> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|_| {
                        let (d, b) = (dir.path(), &barrier);
                        s.spawn(move || {
                            b.wait();
                            take(d, "dir", Duration::from_secs(60)).map(|h| {
                                // Keep it held until every racer has tried.
                                std::mem::forget(h);
                            })
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap().is_ok()).collect()
            });
            assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        }
    }
}
