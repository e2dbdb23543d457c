//! How many connections to use when the user did not say: found by measuring, not guessed.
//!
//! Hubs and CDNs differ: loopback or a fat pipe is saturated by a few streams, a CDN that caps
//! each connection needs many, and one that throttles clients with too many connections collapses
//! when given them. The controller starts with 8 connections and doubles them while each
//! doubling buys at least 10 % more throughput (every 0.65 s at first, every 1.25 s once a
//! doubling did not pay or the server throttled), up to the budget's ceiling
//! ([`ceiling`](super::ceiling): 128, fewer when memory is short); an increase that does not pay
//! is reverted, a 429/503 halves the count, and every 30 s it probes upward again in case the
//! link changed.
//!
//! A storm of 429/503s can halve the count down to 1. That level says nothing about the link, so
//! once a whole window passes without a throttle answer the count goes straight back to where it
//! was before the storm, instead of waiting 30 s to probe and then doubling only while it pays.
//! A server that throttles again at the old level was not in a storm but at its limit: the
//! count goes straight back to the level that was clean and, after [`RESTORES`] such failed
//! return, stays there until the next re-probe. (Two returns, each followed by halving, cost a
//! throttling CDN up to twice the rejections of one, measured with hubsim's 2-body limit.)

use std::sync::Arc;
use std::time::Duration;

use super::budget::Limit;
use crate::meter::Meter;

/// Connections to start with.
pub const START: usize = 8;
/// Left out after a change, while new streams ramp up (on loopback and on a LAN mirror a new
/// stream is at speed within a few round trips).
const SETTLE: Duration = Duration::from_millis(250);
/// Measurement window after the settling time: long enough to hold dozens of 1 MiB writes even
/// at 100 MB/s, short enough that 8 → 128 takes 5 s of a fetch, not 10.
const WINDOW: Duration = Duration::from_millis(1000);
/// The same while ramping up from [`START`], like TCP's slow start: until the first throttle
/// answer or the first doubling that does not pay, so a download of a few seconds reaches its
/// count in 3 s, not 5. A doubling that does not pay in a short window is measured again over
/// a full one before it is reverted (new streams over a long round trip need longer).
const RAMP_SETTLE: Duration = Duration::from_millis(150);
const RAMP_WINDOW: Duration = Duration::from_millis(500);
/// A larger count must bring this much more throughput to stay.
const GAIN: f64 = 1.10;
/// How often owed permits are taken back and throttling is looked for.
const POLL: Duration = Duration::from_millis(100);
/// After a cut, throttle answers to requests already sent are not counted again.
const COOLDOWN: Duration = Duration::from_secs(1);
/// How long a settled count is kept before probing upward again.
const REPROBE: Duration = Duration::from_secs(30);
/// Returns to the pre-storm count that may be throttled before the clean count is taken for
/// the server's limit.
const RESTORES: u32 = 1;

/// Sleeps for `d` in short steps, settling owed permits; returns early with true when the
/// server throttled (429/503) since `seen`.
async fn watch(meter: &Meter, limit: &mut Limit, d: Duration, seen: &mut u64) -> bool {
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(POLL.min(until - tokio::time::Instant::now())).await;
        limit.settle();
        let now = meter.throttle_count();
        if now > *seen {
            *seen = now;
            return true;
        }
    }
    false
}

/// Runs until the transfer stops; only started when the connection count is adaptive.
pub async fn control(meter: Arc<Meter>, mut limit: Limit) {
    let mut previous: Option<(usize, f64)> = None;
    let mut settled_at: Option<tokio::time::Instant> = None;
    let mut seen = meter.throttle_count();
    // The count before the first cut of a storm, to return to once the storm is over; whether
    // the count was just returned to it; how often such a return was throttled again.
    let mut before_storm: Option<usize> = None;
    // The clean count a return to `before_storm` started from, while that return is on trial.
    let mut restored: Option<usize> = None;
    let mut failed_restores = 0u32;
    let mut ramping = true;
    loop {
        // Let the new count ramp up, then measure a clean window; a 429/503 at any point halves
        // the count at once.
        let (settle, window) = match ramping {
            true => (RAMP_SETTLE, RAMP_WINDOW),
            false => (SETTLE, WINDOW),
        };
        let mut throttled = watch(&meter, &mut limit, settle, &mut seen).await;
        let before = meter.downloaded();
        if !throttled {
            throttled = watch(&meter, &mut limit, window, &mut seen).await;
        }
        if meter.stopped() {
            return;
        }
        let n = limit.current();
        if throttled {
            ramping = false;
            let to = after_throttle(n, &mut restored, &mut before_storm, &mut failed_restores);
            limit.set(to);
            tracing::debug!(
                "connections: rate limited at {n}, down to {}",
                limit.current()
            );
            previous = None;
            settled_at = Some(tokio::time::Instant::now());
            // Answers to requests sent before the cut still arrive: let them drain.
            watch(&meter, &mut limit, COOLDOWN, &mut seen).await;
            seen = meter.throttle_count();
            continue;
        }
        if restored.take().is_some() {
            // A whole window clean at the old count: the storm is over.
            before_storm = None;
            failed_restores = 0;
        }
        if let Some(level) = before_storm {
            if level > n {
                limit.set(level);
                restored = Some(n);
                tracing::debug!("connections: no throttling for a window; back to {level}");
                previous = None;
                settled_at = Some(tokio::time::Instant::now());
                continue;
            }
            before_storm = None;
        }
        let rate = (meter.downloaded() - before) as f64 / window.as_secs_f64();
        match previous {
            // Measured in a short window: look again over a full one.
            Some((prev_n, prev_rate)) if n > prev_n && rate < prev_rate * GAIN && ramping => {
                ramping = false;
            }
            // The last doubling did not pay: go back and stay there for a while.
            Some((prev_n, prev_rate)) if n > prev_n && rate < prev_rate * GAIN => {
                limit.set(prev_n);
                tracing::debug!(
                    "connections: {n} gave {:.0} MB/s vs {:.0} MB/s at {prev_n}; keeping {prev_n}",
                    rate / 1e6,
                    prev_rate / 1e6
                );
                previous = None;
                settled_at = Some(tokio::time::Instant::now());
            }
            _ => {
                let probing = settled_at.is_none_or(|t| t.elapsed() >= REPROBE);
                if probing && n < limit.max() {
                    // Long quiet at this count: a later storm may be returned from again.
                    failed_restores = 0;
                    previous = Some((n, rate));
                    settled_at = None;
                    limit.set(n * 2);
                    tracing::debug!(
                        "connections: {n} gave {:.0} MB/s; trying {}",
                        rate / 1e6,
                        limit.current()
                    );
                } else {
                    ramping = false;
                    previous = None;
                    settled_at.get_or_insert_with(tokio::time::Instant::now);
                }
            }
        }
    }
}

/// Where a count `n` the server throttled goes: a return on trial (`restored`) straight back to
/// the count that was clean, not down by halves from the old level (each half another burst
/// of rejections); any other count to half, remembering the level before the storm.
fn after_throttle(
    n: usize,
    restored: &mut Option<usize>,
    before_storm: &mut Option<usize>,
    failed_restores: &mut u32,
) -> usize {
    match restored.take() {
        Some(clean) => {
            *failed_restores += 1;
            if *failed_restores >= RESTORES {
                *before_storm = None;
            }
            clean
        }
        None => {
            if *failed_restores < RESTORES {
                before_storm.get_or_insert(n);
            }
            n / 2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;
    use crate::transfer::budget::Budget;

    #[tokio::test]
    async fn the_count_returns_to_its_level_once_a_storm_is_over() {
        let meter = Arc::new(Meter::new(&Snapshot {
            repo: "o/r".into(),
            revision: "main".into(),
            commit: "0".repeat(40),
            files: Vec::new(),
        }));
        let budget = Budget::new(32);
        let limit = budget.limit(START);
        let m = Arc::clone(&meter);
        // The controller's count, read through a probe: how many permits are usable.
        let task = tokio::spawn(control(Arc::clone(&m), limit));
        let usable = |b: &Budget| {
            let b = b.clone();
            async move {
                let mut held = Vec::new();
                while let Ok(Ok(p)) =
                    tokio::time::timeout(Duration::from_millis(1), b.acquire()).await
                {
                    held.push(p);
                }
                held.len()
            }
        };
        // A storm: throttle answers every 100 ms for 5 s.
        for _ in 0..50 {
            m.throttled(503);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let low = usable(&budget).await;
        assert!(low <= 2, "not cut during the storm: {low}");
        // The storm is over: within a few seconds the count is back where it was (without the
        // return to the pre-storm level it stays at 1 until the 30 s re-probe).
        tokio::time::sleep(Duration::from_secs(4)).await;
        let back = usable(&budget).await;
        assert!(back >= START, "still at {back} after the storm");
        task.abort();
    }

    /// Runs the controller against a simulated link where `n` connections move
    /// `min(n, saturate)` units of 1 MB/s each, and returns the count it settled on.
    async fn settles_at(max: usize, saturate: usize) -> usize {
        let meter = Arc::new(Meter::new(&Snapshot {
            repo: "o/r".into(),
            revision: "main".into(),
            commit: "0".repeat(40),
            files: Vec::new(),
        }));
        let budget = Budget::new(max);
        let task = tokio::spawn(control(Arc::clone(&meter), budget.limit(START)));
        let mut last = tokio::time::Instant::now();
        let until = last + Duration::from_secs(9);
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = tokio::time::Instant::now();
            let n = budget.available().min(saturate) as f64;
            meter.add_downloaded((n * 1e6 * (now - last).as_secs_f64()) as u64);
            last = now;
        }
        let n = budget.available();
        task.abort();
        n
    }

    #[tokio::test]
    async fn the_count_grows_past_32_while_doubling_pays() {
        // A per-connection cap and a link wide enough for 100 connections: 8 → … → 128 (each
        // doubling pays at least 56 %), and no further than the ceiling.
        assert_eq!(settles_at(super::super::ceiling::CEILING, 100).await, 128);
        // Full at 40 connections: 64 pays 25 % over 32, 128 nothing over 64, so back to 64.
        assert_eq!(settles_at(super::super::ceiling::CEILING, 40).await, 64);
    }
}
