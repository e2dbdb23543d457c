//! Request and byte counters served at `GET /_hubsim/stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Counters of one request path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStats {
    pub requests: u64,
    pub bytes_sent: u64,
}

/// The JSON document of `GET /_hubsim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Requests answered, excluding `/_hubsim/*`.
    pub requests: u64,
    /// File body bytes handed to the connection.
    pub bytes_sent: u64,
    /// Per request path (HF: the URL path; ModelScope file downloads: path + `?FilePath=<path>`).
    pub paths: BTreeMap<String, PathStats>,
    /// Requests to `/_cdn/...` that carried an Authorization header (a leaked token).
    pub cdn_requests_with_auth: u64,
    /// Most file bodies streaming at once since the last reset.
    pub max_concurrent_bodies: u64,
    /// File bodies streaming right now.
    pub active_bodies: u64,
    /// Times each fault kind fired.
    pub faults_fired: BTreeMap<String, u64>,
    /// Responses by status code.
    pub statuses: BTreeMap<String, u64>,
}

/// One answered request, as `GET /_hubsim/requests` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    /// The `Host` header (`127.0.0.1:PORT` or `localhost:PORT`): which origin saw the request.
    pub host: String,
    /// Path and query as sent.
    pub path: String,
    /// Whether an `Authorization` header came with it (never its value).
    pub authorization: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_encoding: Option<String>,
    /// The `Accept` header (the Ollama registry's manifest type, for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    pub status: u16,
    /// Milliseconds since the server started, when the request arrived (to check waits).
    #[serde(default)]
    pub at_ms: u64,
    /// `gzip` when the answer was gzipped (quirk `gzip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
}

/// Most records kept by the request log (older ones are dropped).
const LOG_CAP: usize = 10_000;

/// Shared counters.
#[derive(Default)]
pub struct Stats {
    inner: Mutex<StatsSnapshot>,
    active: AtomicUsize,
    log: Mutex<std::collections::VecDeque<RequestRecord>>,
}

impl Stats {
    fn with<R>(&self, f: impl FnOnce(&mut StatsSnapshot) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn request(&self, key: &str, cdn_with_auth: bool) {
        self.with(|s| {
            s.requests += 1;
            s.paths.entry(key.to_string()).or_default().requests += 1;
            if cdn_with_auth {
                s.cdn_requests_with_auth += 1;
            }
        });
    }

    pub fn status(&self, status: u16) {
        self.with(|s| *s.statuses.entry(status.to_string()).or_default() += 1);
    }

    pub fn bytes(&self, key: &str, n: u64) {
        self.with(|s| {
            s.bytes_sent += n;
            if let Some(p) = s.paths.get_mut(key) {
                p.bytes_sent += n;
            } else {
                s.paths.entry(key.to_string()).or_default().bytes_sent += n;
            }
        });
    }

    pub fn fault(&self, kind: &str) {
        self.with(|s| *s.faults_fired.entry(kind.to_string()).or_default() += 1);
    }

    /// Bodies streaming now.
    pub fn active_bodies(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Registers a streaming body until the guard drops.
    pub fn body_started(self: &Arc<Self>) -> BodyGuard {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.with(|s| s.max_concurrent_bodies = s.max_concurrent_bodies.max(now as u64));
        BodyGuard {
            stats: self.clone(),
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let active = self.active_bodies() as u64;
        self.with(|s| {
            let mut out = s.clone();
            out.active_bodies = active;
            out
        })
    }

    /// Milliseconds since this process's first call: the clock of [`RequestRecord::at_ms`].
    pub fn now_ms() -> u64 {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }

    pub fn log(&self, record: RequestRecord) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() >= LOG_CAP {
            log.pop_front();
        }
        log.push_back(record);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().cloned().collect()
    }

    pub fn reset(&self) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let active = self.active_bodies() as u64;
        self.with(|s| {
            *s = StatsSnapshot {
                max_concurrent_bodies: active,
                ..Default::default()
            }
        });
    }
}

/// Decrements the active body count when the body ends or the connection drops.
pub struct BodyGuard {
    stats: Arc<Stats>,
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Ordering::SeqCst);
    }
}
