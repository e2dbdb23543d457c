//! Who holds a model directory's locks, read without taking them: the flock files of this host
//! (through `/proc/locks`) and the lease files any node can read.

use std::path::Path;

use super::LockHolder;
use crate::layout;
use crate::state::FlockHolder;

/// The lock files and their holders. The kernel's `/proc/locks` lists flock locks by inode, so
/// whether a lock is held on this host is read without taking it (taking it, even shared, could
/// make a starting fetch fail).
pub(super) fn lock_holders(dir: &Path) -> Vec<LockHolder> {
    use std::os::unix::fs::MetadataExt;
    let state_dir = dir.join(layout::STATE_DIR);
    let Ok(entries) = std::fs::read_dir(&state_dir) else {
        return Vec::new();
    };
    let proc_locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let here = crate::host::hostname();
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "lock" && !name.starts_with("lock.slice-") {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let content = std::fs::read_to_string(e.path()).unwrap_or_default();
        let FlockHolder {
            pid,
            host,
            started_at,
        } = FlockHolder::parse(&content);
        let held = locked_in_proc(&proc_locks, meta.dev(), meta.ino());
        let state = if held {
            "held"
        } else if host.as_deref() == Some(here.as_str()) || host.is_none() {
            match pid {
                Some(pid) if std::path::Path::new(&format!("/proc/{pid}")).exists() => "alive",
                // flock is released however its holder ended (a clean finish too): the file
                // only names the last holder; the lease says whether it ended cleanly.
                Some(_) | None => "free",
            }
        } else {
            "unknown"
        };
        out.push(LockHolder {
            file: format!("{}/{name}", layout::STATE_DIR),
            pid,
            host,
            started_at,
            state: state.to_string(),
            heartbeat_seconds_ago: None,
            timeout_seconds: None,
        });
    }
    out.extend(lease_holders(dir));
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// The current lease of each name (whole fetch, slices, finalize), readable from any node: the
/// lease file, unlike flock, says who holds it and how fresh its heartbeat is.
fn lease_holders(dir: &Path) -> Vec<LockHolder> {
    let now = std::time::SystemTime::now();
    crate::lease::current(dir)
        .into_iter()
        // A dynamic Job's claims are many and short-lived: `claims` shows them per pod.
        .filter(|l| !l.name.starts_with("claim-") && !l.name.starts_with("file-"))
        .map(|l| {
            let state = if l.released {
                "released"
            } else if l.is_stale(now) {
                "stale"
            } else if l.holder_gone() {
                "dead"
            } else {
                "held"
            };
            let started = std::time::UNIX_EPOCH + std::time::Duration::from_millis(l.started_ms);
            LockHolder {
                file: format!(
                    "{}/lease/{}.{}.json",
                    layout::STATE_DIR,
                    l.name,
                    l.generation
                ),
                pid: Some(l.pid),
                host: Some(l.host.clone()),
                started_at: Some(humantime::format_rfc3339_seconds(started).to_string()),
                state: state.to_string(),
                heartbeat_seconds_ago: Some(l.heartbeat_age(now).as_secs()),
                timeout_seconds: Some(l.timeout_ms / 1000),
            }
        })
        .collect()
}

/// True when `/proc/locks` lists a lock on the file with this device and inode. Lines look like
/// `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF` (device as hex major:minor).
fn locked_in_proc(proc_locks: &str, dev: u64, ino: u64) -> bool {
    let major = libc::major(dev) as u64;
    let minor = libc::minor(dev) as u64;
    proc_locks.lines().any(|line| {
        line.split_whitespace()
            .filter(|f| f.matches(':').count() == 2)
            .any(|f| {
                let mut parts = f.split(':');
                let maj = parts.next().and_then(|s| u64::from_str_radix(s, 16).ok());
                let min = parts.next().and_then(|s| u64::from_str_radix(s, 16).ok());
                let i = parts.next().and_then(|s| s.parse::<u64>().ok());
                maj == Some(major) && min == Some(minor) && i == Some(ino)
            })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_locks_line_matches_by_device_and_inode() {
        let dev = libc::makedev(8, 1);
        let text = "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF\n";
        assert!(super::locked_in_proc(text, dev, 5678));
        assert!(!super::locked_in_proc(text, dev, 5679));
        assert!(!super::locked_in_proc(text, libc::makedev(8, 2), 5678));
    }
}
