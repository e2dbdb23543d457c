//! How many connections to use when the user did not say: found by measuring, not guessed.
//!
//! Hubs and CDNs differ: loopback or a fat pipe is saturated by a few streams, a CDN that caps
//! each connection needs many, and one that throttles clients with too many connections collapses
//! when given them. The controller starts with 8 connections and every 2 s doubles them while each
//! doubling buys at least 10 % more throughput; an increase that does not pay is reverted, a
//! 429/503 halves the count, and every 30 s it probes upward again in case the link changed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::engine::Engine;

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

/// Grows or shrinks the usable permits of `sem` between 1 and `max`.
pub struct Limit {
    sem: Arc<Semaphore>,
    max: usize,
    current: usize,
    /// Permits still to take away: by [`Limit::settle`] as they become free, or by a request
    /// that holds one while it waits to retry ([`pay_debt`]).
    debt: Arc<AtomicUsize>,
}

impl Limit {
    /// `sem` was created with `max` permits; the usable count becomes `start`.
    pub fn new(sem: Arc<Semaphore>, debt: Arc<AtomicUsize>, max: usize, start: usize) -> Limit {
        let mut l = Limit {
            sem,
            max,
            current: max,
            debt,
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
            // Cancel owed permits first; only the rest are new.
            while grow > 0 && pay_debt(&self.debt) {
                grow -= 1;
            }
            self.sem.add_permits(grow);
        } else {
            self.debt.fetch_add(self.current - n, Ordering::SeqCst);
        }
        self.current = n;
        self.settle();
    }

    /// Takes away owed permits that are free now.
    pub fn settle(&mut self) {
        let owed = self.debt.load(Ordering::SeqCst);
        if owed > 0 {
            let taken = self.sem.forget_permits(owed);
            self.debt.fetch_sub(taken, Ordering::SeqCst);
        }
    }
}

/// Takes one unit off the debt, if there is any; the caller then forgets a permit it holds.
pub fn pay_debt(debt: &AtomicUsize) -> bool {
    debt.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
        .is_ok()
}

/// Sleeps for `d` in short steps, settling owed permits; returns early with true when the
/// server throttled (429/503) since `seen`.
async fn watch(engine: &Engine, limit: &mut Limit, d: Duration, seen: &mut u64) -> bool {
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(POLL.min(until - tokio::time::Instant::now())).await;
        limit.settle();
        let now = engine.throttled.load(Ordering::Relaxed);
        if now > *seen {
            *seen = now;
            return true;
        }
    }
    false
}

/// Runs until the engine stops; only started when the connection count is adaptive.
pub async fn control(engine: Arc<Engine>, mut limit: Limit) {
    let mut previous: Option<(usize, f64)> = None;
    let mut settled_at: Option<tokio::time::Instant> = None;
    let mut seen = engine.throttled.load(Ordering::Relaxed);
    loop {
        // Let the new count ramp up, then measure a clean window; a 429/503 at any point halves
        // the count at once.
        let mut throttled = watch(&engine, &mut limit, SETTLE, &mut seen).await;
        let before = engine.progress.bytes_downloaded.load(Ordering::Relaxed);
        if !throttled {
            throttled = watch(&engine, &mut limit, WINDOW, &mut seen).await;
        }
        if engine.stopped() {
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
            watch(&engine, &mut limit, COOLDOWN, &mut seen).await;
            seen = engine.throttled.load(Ordering::Relaxed);
            continue;
        }
        let rate = (engine.progress.bytes_downloaded.load(Ordering::Relaxed) - before) as f64
            / WINDOW.as_secs_f64();
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
        let debt = Arc::new(AtomicUsize::new(0));
        let mut l = Limit::new(Arc::clone(&sem), Arc::clone(&debt), 8, 2);
        assert_eq!(sem.available_permits(), 2);
        l.set(5);
        assert_eq!(sem.available_permits(), 5);
        let held = sem.clone().try_acquire_many_owned(5).unwrap();
        l.set(1);
        assert_eq!(sem.available_permits(), 0);
        // A holder that pays a unit of debt forgets its permit instead of returning it.
        assert!(pay_debt(&debt));
        let mut held = held;
        held.split(1).unwrap().forget();
        drop(held);
        l.settle();
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(debt.load(Ordering::SeqCst), 0);
        l.set(100);
        assert_eq!(l.current(), 8);
        assert_eq!(sem.available_permits(), 8);
    }
}
