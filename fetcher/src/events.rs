//! What a fetch tells whoever watches it. The fetcher never draws: it sends [`Event`]s to a
//! [`Reporter`] the caller gives it, and the binary renders them (a terminal bar, plain log
//! lines for a Kubernetes Job log, JSON lines with `--json`, the Prometheus exporter of
//! `--metrics-listen`).

use std::time::Duration;

/// The counters of a running fetch at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Bytes in place: reused from disk (files, journaled ranges) plus downloaded in this run,
    /// at most `bytes_total`.
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes received over the network in this run (including re-sent ranges).
    pub bytes_downloaded: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub retries: u64,
    /// Throttle answers from the server, by cause: 429 Too Many Requests.
    pub throttled_429: u64,
    /// Throttle answers from the server, by cause: 503 Service Unavailable.
    pub throttled_503: u64,
    /// Range requests in flight now (each holds one connection).
    pub connections: u64,
    /// Since the transfer started.
    pub elapsed: Duration,
}

/// One thing that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The transfer stage starts, with what is already in place.
    Started(Stats),
    /// Periodic, at the reporter's [`Reporter::interval`].
    Progress(Stats),
    /// The transfer stage ended (successfully or not): a bar is taken down.
    Finished(Stats),
}

/// Receives the events of a fetch; called from the runtime's threads, so it must be quick.
pub trait Reporter: Send + Sync {
    /// How often [`Event::Progress`] is wanted.
    fn interval(&self) -> Duration {
        Duration::from_secs(10)
    }
    fn event(&self, event: Event);
}

/// Reports nothing (`--quiet`, and library callers without a display).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: Event) {}
}
