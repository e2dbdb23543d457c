//! Bandwidth pacing: a virtual clock that hands out send slots at a fixed byte rate.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Reserves time slots for bytes at a rate; shared by all bodies for a total cap, or owned by one
/// body for a per-body cap. Idle time earns no credit, so a cap is never exceeded by a burst.
#[derive(Default)]
pub struct Pacer {
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// Reserves `bytes` at `bps` bytes/s and returns when that slot ends (sleep until then before
    /// sending).
    pub fn reserve(&self, bytes: u64, bps: u64) -> Instant {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let start = next.map_or(now, |n| n.max(now));
        let end = start + Duration::from_secs_f64(bytes as f64 / bps.max(1) as f64);
        *next = Some(end);
        end
    }
}

/// Chunk size to use under a cap: small enough that pacing stays smooth (~16 slots/s).
pub fn chunk_for(bps: u64, max: usize) -> usize {
    ((bps / 16) as usize).clamp(4096, max)
}
