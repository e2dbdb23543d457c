//! How far the connection controller may grow when the user did not fix a count.
//!
//! More connections pay behind a CDN that caps each one (the count is the throughput there), and
//! cost memory everywhere: each connection holds a write buffer and the HTTP layer's body buffers.
//! So the controller may double up to [`CEILING`], but never past what an eighth of the memory
//! this process may still use (its cgroup's room, else the machine's available memory) holds at
//! [`PER_CONNECTION`] each: a pod with 256 MiB of room stays at 32, a node with a gigabyte free
//! reaches 128.

use super::controller::START;
use super::range::WRITE_BUF;

/// The most connections the controller opens on its own. 128 is above what any peer opens by
/// default (aria2c's `-j 8 -x 16` is 128 at most, measured 77 at once on hubsim) and keeps the
/// connections' memory at 128 MiB.
pub const CEILING: usize = 128;
/// What one connection holds at most: its write buffer, hyper's read buffer (up to ~408 KiB)
/// and the allocator's slack around them.
pub const PER_CONNECTION: u64 = 4 * WRITE_BUF as u64;
/// The share of the available memory the connections may take.
const SHARE: u64 = 8;

/// The adaptive ceiling on this machine, now.
pub fn adaptive() -> usize {
    for_memory(available_memory())
}

/// The ceiling for `available` bytes of memory (None: unknown, so the documented ceiling).
fn for_memory(available: Option<u64>) -> usize {
    match available {
        None => CEILING,
        Some(bytes) => usize::try_from(bytes / SHARE / PER_CONNECTION)
            .unwrap_or(CEILING)
            .clamp(START, CEILING),
    }
}

/// The smaller of the cgroup's room (limit minus use) and the machine's `MemAvailable`.
fn available_memory() -> Option<u64> {
    let machine = meminfo_available();
    let cgroup = cgroup_room();
    match (machine, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn meminfo_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// cgroup v2 (`memory.max`, "max" when unlimited) or v1 (`memory.limit_in_bytes`, a huge number
/// when unlimited), as a container sees its own cgroup at the mount's root.
fn cgroup_room() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok();
    let (limit, used) = match read("/sys/fs/cgroup/memory.max") {
        Some(limit) => (limit, read("/sys/fs/cgroup/memory.current")),
        None => (
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?,
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
        ),
    };
    // v1 says "unlimited" as a page-rounded i64::MAX.
    if limit >= 1 << 60 {
        return None;
    }
    Some(limit.saturating_sub(used.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn memory_bounds_the_ceiling() {
        assert_eq!(for_memory(None), CEILING);
        assert_eq!(for_memory(Some(64 << 30)), CEILING);
        // A pod with 256 MiB of room: an eighth of it at 1 MiB a connection.
        assert_eq!(for_memory(Some(256 * MIB)), 32);
        assert_eq!(for_memory(Some(512 * MIB)), 64);
        // Never below the count the controller starts with.
        assert_eq!(for_memory(Some(8 * MIB)), START);
        assert_eq!(for_memory(Some(0)), START);
    }

    #[test]
    fn this_machine_gets_a_ceiling_in_range() {
        let c = adaptive();
        assert!((START..=CEILING).contains(&c), "{c}");
    }
}
