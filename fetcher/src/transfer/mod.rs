//! The transfer stage: moving the byte ranges of many files over one connection budget into
//! partial files, durably and resumably.
//!
//! - [`scheduler`]: files first, ranges second; in-order hashing as ranges land; hands each
//!   verified file to a [`Publish`]er;
//! - [`job`]: one file (or one slice's piece of it) being fetched;
//! - [`range`]: one ranged GET with retries, stall detection and resume;
//! - [`backoff`]: how long a failing range waits (jittered, capped after the jitter);
//! - [`controller`]: how many connections pay, found by measuring ([`budget`] holds the count,
//!   [`ceiling`] how far it may grow);
//! - [`buffers`]: write and hash buffers reused across ranges;
//! - [`journal`]: the finished ranges of each partial file, durable across kill -9.
//!
//! They share a [`Meter`](crate::meter::Meter) (bytes, throttle answers, the stop flag), never
//! each other's state.

pub mod backoff;
pub mod budget;
pub mod buffers;
pub mod ceiling;
pub mod controller;
pub mod job;
pub mod journal;
pub mod range;
pub mod scheduler;

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::snapshot::RemoteFile;

/// Defaults, chosen so a single `ferry fetch` fills a fast link without flags: 8 files at once
/// keeps many TCP streams busy on a 163-shard model without thrashing the target disk; the
/// connection count is measured ([`controller`]: from 8, doubling while it pays, up to
/// [`ceiling::CEILING`] or less in a small memory limit, which is what a CDN that caps each
/// connection needs); 64 MiB ranges keep request overhead under 0.1 % while bounding what a crash
/// can lose per connection.
pub const DEFAULT_JOBS: usize = 8;
pub const DEFAULT_CHUNK: u64 = 64 << 20;

/// How to transfer; see the `ferry fetch` flags for the user-facing meaning.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Files at once.
    pub jobs: usize,
    /// A fixed number of connections in all; None: adaptive up to [`ceiling::adaptive`].
    pub connections: Option<usize>,
    /// Size of one ranged request.
    pub chunk_size: u64,
    /// Finished ranges of a file are made durable (fdatasync, then journaled) once this many
    /// bytes of them are waiting (never less than one chunk): per range would cost a sync per
    /// `chunk_size`, which at small chunks is most of the run's I/O. A crash loses at most this
    /// much per file in progress, beside the ranges in flight.
    pub sync_every: u64,
    /// No byte for this long on a connection: drop it and reconnect.
    pub stall_timeout: Duration,
    /// A range that keeps failing without progress for this long fails the fetch.
    pub retry_timeout: Duration,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            jobs: DEFAULT_JOBS,
            connections: None,
            chunk_size: DEFAULT_CHUNK,
            sync_every: DEFAULT_CHUNK,
            stall_timeout: Duration::from_secs(30),
            retry_timeout: Duration::from_secs(600),
        }
    }
}

impl TransferOptions {
    /// The most connections at once.
    pub fn max_connections(&self) -> usize {
        self.connections.unwrap_or_else(ceiling::adaptive).max(1)
    }
}

/// Where a fully written, verified file goes: implemented by the target, so the scheduler never
/// needs to know what a target is.
pub trait Publish: Send + Sync {
    /// Moves `partial` (the open `file`) to its final place and forgets its `journal`.
    fn publish(
        &self,
        remote: &RemoteFile,
        file: &File,
        partial: &Path,
        journal: &Path,
    ) -> Result<()>;
}
