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
//!
//! Here: [`acquire`] and friends, and the renewal thread of a [`DirLock`]; `take` takes one
//! lease (generations, races, takeover), `held` is a lease this process holds (check, renew,
//! release, the registry [`still_held`] reads), `flock` the node-local extra.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ferry_sharder::layout;
use ferry_sharder::lease::{self, Lease};

use crate::error::{Error, Result};

mod flock;
mod held;
mod take;

use held::Held;

/// Overrides the lease timeout (humantime: `30s`, `2m`). Longer than any pause a live fetch
/// can take (NFS server failover, a frozen node), shorter than an operator's patience.
pub const TIMEOUT_ENV: &str = "FERRY_LEASE_TIMEOUT";

/// Held locks; dropping stops the renewal thread and releases them.
pub struct DirLock {
    leases: Vec<Arc<Held>>,
    _flocks: Vec<File>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<JoinHandle<()>>,
}

/// Locks `dir` for a whole fetch (`slice == None`) or for one slice `(index, count)`.
pub fn acquire(dir: &Path, slice: Option<(u32, u32)>) -> Result<DirLock> {
    let timeout = timeout()?;
    let main = layout::lock_path(dir);
    let mut flocks = Vec::new();
    let name = match slice {
        None => {
            flocks.extend(flock::flock_one(dir, &main, true)?);
            "dir".to_string()
        }
        Some((i, n)) => {
            flocks.extend(flock::flock_one(dir, &main, false)?);
            let mut p = main.clone().into_os_string();
            p.push(format!(".slice-{i}-of-{n}"));
            flocks.extend(flock::flock_one(dir, &PathBuf::from(p), true)?);
            format!("slice-{i}-of-{n}")
        }
    };
    let held = take::take(dir, &name, timeout)?;
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
        .find(|l| conflicting(l) && take::is_live(l, now))
    {
        return Err(Error::Locked {
            dir: dir.to_path_buf(),
            holder: take::describe(&other, now),
        });
    }
    Ok(lock)
}

/// The finalize lease of an Indexed Job: waits while another slice finalizes (it then finds the
/// manifest committed), and takes it over if that slice dies.
pub fn acquire_finalize(dir: &Path) -> Result<DirLock> {
    let timeout = timeout()?;
    loop {
        match take::take(dir, "finalize", timeout) {
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
    let held = take::take(dir, name, timeout)?;
    Ok(DirLock::start(vec![held], Vec::new(), timeout))
}

/// Fails when a lease this process holds on `dir` was taken over (or its file vanished): call
/// it before every step that another writer must not see twice (publish, manifest).
pub fn still_held(dir: &Path) -> Result<()> {
    for h in held::registered(dir) {
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
        .find(|l| take::is_live(l, now))
        .map(|l| take::describe(&l, now))
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
        for h in &self.leases {
            h.release();
            held::unregister(h);
        }
    }
}

#[cfg(test)]
mod tests;
