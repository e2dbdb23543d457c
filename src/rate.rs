//! The transfer rate over the last few seconds: a moving window of byte counts, so the rate
//! (and the ETA computed from it) follows the link as it is now, not the average since start,
//! which hides a slowdown for hours in a 16-hour download.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the shown rate looks.
pub const SPAN: Duration = Duration::from_secs(10);

/// Byte counts at instants; the rate is the slope between the oldest kept and the newest.
#[derive(Debug, Clone)]
pub struct Window {
    span: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl Window {
    pub fn new(span: Duration) -> Window {
        Window {
            span,
            samples: VecDeque::new(),
        }
    }

    /// `bytes` moved in all by `at`. Keeps the newest sample at least `span` old as the base, so
    /// samples further apart than the span (a log line every 10 s) still give a rate.
    pub fn push(&mut self, at: Instant, bytes: u64) {
        self.samples.push_back((at, bytes));
        while self.samples.len() > 2 && at.duration_since(self.samples[1].0) >= self.span {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the window; 0 until two samples are apart.
    pub fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                b1.saturating_sub(b0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// The time `left` bytes take at the window's rate; None while the rate is 0.
    pub fn eta(&self, left: u64) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_follows_the_last_seconds_not_the_average() {
        let t0 = Instant::now();
        let mut w = Window::new(SPAN);
        let mut bytes = 0;
        // A minute at 100 MB/s, then 20 s at 10 MB/s, sampled every second.
        for s in 1..=80u64 {
            bytes += if s <= 60 { 100_000_000 } else { 10_000_000 };
            w.push(t0 + Duration::from_secs(s), bytes);
        }
        let average = bytes as f64 / 80.0;
        assert!(average > 70e6, "{average}");
        let rate = w.rate();
        assert!((rate - 10e6).abs() < 1.0, "window rate {rate}");
        assert_eq!(w.eta(100_000_000), Some(Duration::from_secs(10)));
        // Back up to 100 MB/s: within one span the rate shows it.
        for s in 81..=90u64 {
            bytes += 100_000_000;
            w.push(t0 + Duration::from_secs(s), bytes);
        }
        assert!((w.rate() - 100e6).abs() < 1.0, "{}", w.rate());
    }

    #[test]
    fn sparse_samples_still_give_a_rate() {
        let t0 = Instant::now();
        let mut w = Window::new(SPAN);
        assert_eq!(w.rate(), 0.0);
        assert_eq!(w.eta(1), None);
        w.push(t0, 0);
        assert_eq!(w.rate(), 0.0);
        w.push(t0 + Duration::from_secs(30), 300);
        w.push(t0 + Duration::from_secs(60), 900);
        assert!((w.rate() - 20.0).abs() < 1e-9, "{}", w.rate());
    }
}
