//! The one set of counters a fetch shares: bytes moved and reused, files done, retries, throttle
//! answers, the files in flight, and the stop flag. The transfer scheduler, its connection
//! controller and each range transfer (and the S3 uploader) write here instead of reaching into
//! each other; the reporting ticker reads it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::events::Stats;
use crate::snapshot::{RemoteFile, Snapshot};

pub struct Meter {
    bytes_total: AtomicU64,
    files_total: AtomicU64,
    bytes_reused: AtomicU64,
    bytes_downloaded: AtomicU64,
    files_done: AtomicU64,
    retries: AtomicU64,
    /// 429/503 answers seen, read by the connection controller.
    throttled: AtomicU64,
    /// Of those, the 429s (the rest are 503s).
    throttled_429: AtomicU64,
    /// Range requests in flight.
    connections: AtomicU64,
    in_progress: Mutex<Vec<String>>,
    stop: AtomicBool,
    pub started: Instant,
    pub started_wall: SystemTime,
}

impl Meter {
    /// A meter for moving `snapshot`'s files.
    pub fn new(snapshot: &Snapshot) -> Meter {
        Meter {
            bytes_total: AtomicU64::new(snapshot.total_bytes()),
            files_total: AtomicU64::new(snapshot.files.len() as u64),
            bytes_reused: AtomicU64::new(0),
            bytes_downloaded: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            throttled_429: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            in_progress: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            started: Instant::now(),
            started_wall: SystemTime::now(),
        }
    }

    /// Whole files already in place.
    pub fn reused_files(&self, files: &[RemoteFile]) {
        self.add_reused(files.iter().map(|f| f.size).sum());
        self.files_done
            .fetch_add(files.len() as u64, Ordering::Relaxed);
    }

    /// Bytes that need not move again (journaled ranges, parts already uploaded).
    pub fn add_reused(&self, n: u64) {
        self.bytes_reused.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_downloaded(&self, n: u64) {
        self.bytes_downloaded.fetch_add(n, Ordering::Relaxed);
    }

    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The server answered `status` (429 or 503): it wants fewer requests.
    pub fn throttled(&self, status: u16) {
        if status == 429 {
            self.throttled_429.fetch_add(1, Ordering::Relaxed);
        }
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// One range request in flight until the guard drops.
    pub fn connection(&self) -> Connection<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        Connection(self)
    }

    pub fn throttle_count(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    pub fn downloaded(&self) -> u64 {
        self.bytes_downloaded.load(Ordering::Relaxed)
    }

    pub fn reused(&self) -> u64 {
        self.bytes_reused.load(Ordering::Relaxed)
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn file_started(&self, path: &str) {
        if let Ok(mut ip) = self.in_progress.lock() {
            ip.push(path.to_string());
        }
    }

    /// `path` is off the books; `done`: it is in place and verified.
    pub fn file_ended(&self, path: &str, done: bool) {
        if let Ok(mut ip) = self.in_progress.lock() {
            ip.retain(|p| p != path);
        }
        if done {
            self.files_done.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn in_progress(&self) -> Vec<String> {
        self.in_progress
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    /// Tells every worker to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> Stats {
        let total = self.bytes_total.load(Ordering::Relaxed);
        Stats {
            bytes_done: (self.reused() + self.downloaded()).min(total),
            bytes_total: total,
            bytes_downloaded: self.downloaded(),
            files_done: self.files_done.load(Ordering::Relaxed),
            files_total: self.files_total.load(Ordering::Relaxed),
            retries: self.retries(),
            throttled_429: self.throttled_429.load(Ordering::Relaxed),
            throttled_503: self
                .throttle_count()
                .saturating_sub(self.throttled_429.load(Ordering::Relaxed)),
            connections: self.connections.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }
}

/// A range request in flight, counted in [`Stats::connections`] while it lives.
pub struct Connection<'a>(&'a Meter);

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}
