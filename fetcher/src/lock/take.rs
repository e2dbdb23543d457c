//! Taking one lease: the next generation after the current one, when that one is free (released,
//! stale, or its holder gone), with link(2) deciding races between takers.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferry_sharder::lease::{self, Lease};

use super::held::{self, Held};
use crate::error::{Error, Result};

/// Takes lease `name` in `dir`: the next generation after the current one, if that one is free.
pub(super) fn take(dir: &Path, name: &str, timeout: Duration) -> Result<Arc<Held>> {
    let ldir = lease::lease_dir(dir);
    std::fs::create_dir_all(&ldir).map_err(|e| Error::io(&ldir, e))?;
    let me = ferry_sharder::host::identity();
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
        held::register(&held);
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
        &held::encode(lease),
        false,
    )?)
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
pub(super) fn is_live(l: &Lease, now: SystemTime) -> bool {
    !l.released && !l.is_stale(now) && !l.holder_gone()
}

pub(super) fn describe(l: &Lease, now: SystemTime) -> String {
    format!(
        "lease {} held by pid {} on {}, heartbeat {:.1}s ago, timeout {}s",
        l.name,
        l.pid,
        l.host,
        l.heartbeat_age(now).as_secs_f64(),
        l.timeout_ms / 1000
    )
}
