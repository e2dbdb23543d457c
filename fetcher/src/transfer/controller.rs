//! How many connections to use when the user did not say: found by measuring, not guessed.
//!
//! Hubs and CDNs differ: loopback or a fat pipe is saturated by a few streams, a CDN that caps
//! each connection needs many, and one that throttles clients with too many connections collapses
//! when given them. The controller starts with 8 connections and every 2 s doubles them while each
//! doubling buys at least 10 % more throughput; an increase that does not pay is reverted, a
//! 429/503 halves the count, and every 30 s it probes upward again in case the link changed.

use std::sync::Arc;
use std::time::Duration;

use super::budget::Limit;
use crate::meter::Meter;

/// Connections to start with.
pub const START: usize = 8;
/// Left out after a change, while new streams ramp up.
const SETTLE: Duration = Duration::from_millis(500);
/// Measurement window after the settling time.
const WINDOW: Duration = Duration::from_millis(1500);
/// A larger count must bring this much more throughput to stay.
const GAIN: f64 = 1.10;
/// How often owed permits are taken back and throttling is looked for.
const POLL: Duration = Duration::from_millis(100);
/// After a cut, throttle answers to requests already sent are not counted again.
const COOLDOWN: Duration = Duration::from_secs(1);
/// How long a settled count is kept before probing upward again.
const REPROBE: Duration = Duration::from_secs(30);

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
    loop {
        // Let the new count ramp up, then measure a clean window; a 429/503 at any point halves
        // the count at once.
        let mut throttled = watch(&meter, &mut limit, SETTLE, &mut seen).await;
        let before = meter.downloaded();
        if !throttled {
            throttled = watch(&meter, &mut limit, WINDOW, &mut seen).await;
        }
        if meter.stopped() {
            return;
        }
        let n = limit.current();
        if throttled {
            limit.set(n / 2);
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
        let rate = (meter.downloaded() - before) as f64 / WINDOW.as_secs_f64();
        match previous {
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
                    previous = Some((n, rate));
                    settled_at = None;
                    limit.set(n * 2);
                    tracing::debug!(
                        "connections: {n} gave {:.0} MB/s; trying {}",
                        rate / 1e6,
                        limit.current()
                    );
                } else {
                    previous = None;
                    settled_at.get_or_insert_with(tokio::time::Instant::now);
                }
            }
        }
    }
}
