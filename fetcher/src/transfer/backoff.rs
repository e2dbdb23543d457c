//! How long a failing range waits before it tries again: exponential from 200 ms, jittered, and
//! capped *after* the jitter, so no wait exceeds [`MAX_DELAY`] (backon's own jitter adds up to
//! one more full delay on top of the cap: a 30 s cap became 60 s of silence after a storm).
//!
//! The wait is "equal jitter": half the exponential delay fixed, half random, so ranges that
//! failed together do not come back together, and none comes back sooner than half its delay.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The first wait.
pub const MIN_DELAY: Duration = Duration::from_millis(200);
/// No wait of ferry's own is longer, jitter included (a server's Retry-After may be).
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The waits of one failing range, one per failed attempt.
pub struct Backoff {
    delays: Box<dyn Iterator<Item = Duration> + Send>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    pub fn new() -> Backoff {
        let delays = ExponentialBuilder::default()
            .with_min_delay(MIN_DELAY)
            .with_max_delay(MAX_DELAY)
            .without_max_times()
            .build();
        Backoff {
            delays: Box::new(delays),
        }
    }

    /// The next wait; `server` (a Retry-After) is honoured when longer.
    pub fn next_delay(&mut self, server: Option<Duration>) -> Duration {
        let base = self.delays.next().unwrap_or(MAX_DELAY).min(MAX_DELAY);
        jitter(base).max(server.unwrap_or_default())
    }
}

/// Somewhere in `[base / 2, base]`.
fn jitter(base: Duration) -> Duration {
    let half = base / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_after_jitter_and_waits_grow_then_spread() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..200).map(|_| b.next_delay(None)).collect();
        assert!(waits[0] >= MIN_DELAY / 2 && waits[0] <= MIN_DELAY);
        assert!(waits.iter().all(|w| *w <= MAX_DELAY), "{waits:?}");
        // At the cap, waits are spread over its upper half, not all equal.
        let late = &waits[50..];
        assert!(late.iter().all(|w| *w >= MAX_DELAY / 2));
        assert!(late.iter().any(|w| *w < MAX_DELAY.mul_f64(0.9)));
        // A server's Retry-After wins when longer, even over the cap.
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(90))),
            Duration::from_secs(90)
        );
    }
}
