//! How many connections to use when the user did not say: found by measuring, not guessed.
//!
//! Hubs and CDNs differ: loopback or a fat pipe is saturated by a few streams, a CDN that caps
//! each connection needs many, and one that throttles clients with too many connections collapses
//! when given them. The controller starts with a few connections and doubles them while each
//! doubling buys at least 10 % more throughput; an increase that does not pay is reverted, a
//! 429/503 halves the count, and every 30 s it probes upward again in case the link changed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::engine::Engine;

/// Connections to start with.
pub const START: usize = 4;
/// Measurement window after a change (the first second of it is left out: streams ramp up).
const WINDOW: Duration = Duration::from_secs(2);
/// A larger count must bring this much more throughput to stay.
const GAIN: f64 = 1.10;
/// How long a settled count is kept before probing upward again.
const REPROBE: Duration = Duration::from_secs(30);

/// Grows or shrinks the usable permits of `sem` between 1 and `max`.
pub struct Limit {
    sem: Arc<Semaphore>,
    max: usize,
    current: usize,
    /// Permits still to take away once in-flight requests return them.
    debt: usize,
}

impl Limit {
    /// `sem` was created with `max` permits; the usable count becomes `start`.
    pub fn new(sem: Arc<Semaphore>, max: usize, start: usize) -> Limit {
        let mut l = Limit {
            sem,
            max,
            current: max,
            debt: 0,
        };
        l.set(start);
        l
    }

    pub fn current(&self) -> usize {
        self.current
    }

    pub fn set(&mut self, n: usize) {
        let n = n.clamp(1, self.max);
        if n > self.current {
            let mut grow = n - self.current;
            let cancel = grow.min(self.debt);
            self.debt -= cancel;
            grow -= cancel;
            self.sem.add_permits(grow);
        } else {
            self.debt += self.current - n;
        }
        self.current = n;
        self.settle();
    }

    /// Takes away owed permits as they become free.
    pub fn settle(&mut self) {
        if self.debt > 0 {
            self.debt -= self.sem.forget_permits(self.debt);
        }
    }
}

/// Runs until the engine stops; only started when the connection count is adaptive.
pub async fn control(engine: Arc<Engine>, mut limit: Limit) {
    let mut previous: Option<(usize, f64)> = None;
    let mut settled_at: Option<tokio::time::Instant> = None;
    let mut throttled_seen = engine.throttled.load(Ordering::Relaxed);
    loop {
        // Let the new count ramp up, then measure a clean window.
        tokio::time::sleep(Duration::from_secs(1)).await;
        limit.settle();
        let before = engine.progress.bytes_downloaded.load(Ordering::Relaxed);
        tokio::time::sleep(WINDOW).await;
        limit.settle();
        if engine.stopped() {
            return;
        }
        let rate = (engine.progress.bytes_downloaded.load(Ordering::Relaxed) - before) as f64
            / WINDOW.as_secs_f64();
        let throttled = engine.throttled.load(Ordering::Relaxed);
        let n = limit.current();
        if throttled > throttled_seen {
            throttled_seen = throttled;
            limit.set(n / 2);
            tracing::debug!(
                "connections: rate limited at {n}, down to {}",
                limit.current()
            );
            previous = None;
            settled_at = Some(tokio::time::Instant::now());
            continue;
        }
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
                if probing && n < limit.max {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_moves_permits_and_waits_for_busy_ones() {
        let sem = Arc::new(Semaphore::new(8));
        let mut l = Limit::new(Arc::clone(&sem), 8, 2);
        assert_eq!(sem.available_permits(), 2);
        l.set(5);
        assert_eq!(sem.available_permits(), 5);
        let held = sem.clone().try_acquire_many_owned(5).unwrap();
        l.set(1);
        assert_eq!(sem.available_permits(), 0);
        drop(held);
        l.settle();
        assert_eq!(sem.available_permits(), 1);
        l.set(100);
        assert_eq!(l.current(), 8);
        assert_eq!(sem.available_permits(), 8);
    }
}
