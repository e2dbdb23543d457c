//! A lease this process holds: checking it is still ours, renewing its heartbeat in place,
//! releasing it, and the registry of held leases that [`super::still_held`] reads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ferry_sharder::lease::{self, Lease};

use crate::error::Error;

/// Lease files are written at this fixed length (JSON padded with spaces), so a renewal rewrites
/// them in place with one write and readers never see a shorter, torn tail.
const LEASE_LEN: usize = 1024;

/// One lease this process holds.
pub(super) struct Held {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) lease: Mutex<Lease>,
    pub(super) lost: AtomicBool,
}

/// Every lease held in this process, for [`super::still_held`].
static HELD: Mutex<Vec<Arc<Held>>> = Mutex::new(Vec::new());

pub(super) fn register(h: &Arc<Held>) {
    HELD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::clone(h));
}

pub(super) fn unregister(h: &Arc<Held>) {
    HELD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|r| !Arc::ptr_eq(r, h));
}

/// The leases this process holds on `dir`.
pub(super) fn registered(dir: &Path) -> Vec<Arc<Held>> {
    HELD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|h| h.dir == dir)
        .cloned()
        .collect()
}

/// The lease as written: JSON padded to [`LEASE_LEN`].
pub(super) fn encode(lease: &Lease) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(lease).unwrap_or_default();
    if bytes.len() < LEASE_LEN {
        bytes.resize(LEASE_LEN - 1, b' ');
        bytes.push(b'\n');
    }
    bytes
}

impl Held {
    /// Our file still names us and no later generation exists.
    pub(super) fn check(&self) -> std::result::Result<(), String> {
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

    pub(super) fn lost_error(&self, reason: String) -> Error {
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
    pub(super) fn write(&self, released: bool) -> std::io::Result<()> {
        let bytes = {
            let mut l = self.lease.lock().unwrap_or_else(|p| p.into_inner());
            l.renewed_ms = lease::unix_ms(SystemTime::now());
            l.released = released;
            encode(&l)
        };
        self.file.write_all_at(&bytes, 0)?;
        self.file.sync_data()
    }

    pub(super) fn renew(&self) {
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

    pub(super) fn release(&self) {
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
