//! `/metrics`: the gate's state in the OpenMetrics text format, which Prometheus scrapes
//! natively, encoded by the `prometheus-client` crate ([`crate::openmetrics`]).
//!
//! Every series is a gauge refreshed from a [`Snapshot`] at scrape time, so the gate never has to
//! know about metrics and a scrape always sees one consistent state. While the gate waits for the
//! manifest, the download's progress comes from what the fetch (or its slices) leaves under
//! `.ferry/` ([`ferry_sharder::status`]: heartbeats, published and partial files).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use ferry_sharder::status::Status;

use crate::gate::{Phase, Snapshot};
use crate::openmetrics::{self, series};

/// The content type of [`Metrics::render`]'s output.
pub use crate::openmetrics::CONTENT_TYPE;

type FGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    repo: String,
    revision: String,
    commit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    rule: String,
    severity: String,
    message: String,
    fix: String,
}

/// The sidecar's series.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    gate: GateSeries,
    checks: CheckSeries,
    download: DownloadSeries,
}

/// The gate's own series: open, phase, wait, and the model it waited for.
#[derive(Debug)]
struct GateSeries {
    open: Gauge,
    state: Family<StateLabels, Gauge>,
    wait_seconds: FGauge,
    model_files: Gauge,
    model_bytes: Gauge,
    model_info: Family<ModelLabels, Gauge>,
}

/// What happened after the manifest appeared: verify, warm, preflight, re-checks.
#[derive(Debug)]
struct CheckSeries {
    verify_seconds: FGauge,
    warm_target_bytes: Gauge,
    warm_bytes: Gauge,
    warm_seconds: FGauge,
    warm_bytes_per_second: FGauge,
    residency_ratio: FGauge,
    preflight: Family<FindingLabels, Gauge>,
    recheck_failures: Counter,
    recheck_failed: Family<ReasonLabels, Gauge>,
}

/// The download's progress, while the gate waits for it.
#[derive(Debug)]
struct DownloadSeries {
    bytes_done: Gauge,
    bytes_total: Gauge,
    files_done: Gauge,
    files_total: Gauge,
    slices_done: Gauge,
    heartbeat_age: FGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GateSeries {
    fn register(r: &mut Registry) -> Self {
        GateSeries {
            open: series(
                r,
                "ferry_gate_open",
                "1 once the model is complete, verified (and warmed, if asked): the engine may start",
                None,
            ),
            state: series(
                r,
                "ferry_state",
                "The gate's phase: 1 for the current one (waiting, verifying, warming, open, failed)",
                None,
            ),
            wait_seconds: series(
                r,
                "ferry_wait",
                "Time from sidecar start until the completion manifest appeared (growing while absent)",
                Some(Unit::Seconds),
            ),
            model_files: series(
                r,
                "ferry_model_files",
                "Files the completion manifest lists",
                None,
            ),
            model_bytes: series(
                r,
                "ferry_model",
                "Bytes the completion manifest lists",
                Some(Unit::Bytes),
            ),
            model_info: series(
                r,
                "ferry_model_info",
                "The model being served: 1 with its repo, revision and commit as labels",
                None,
            ),
        }
    }
}

impl CheckSeries {
    fn register(r: &mut Registry) -> Self {
        CheckSeries {
            verify_seconds: series(
                r,
                "ferry_verify",
                "How long validating the model took",
                Some(Unit::Seconds),
            ),
            warm_target_bytes: series(
                r,
                "ferry_warm_target",
                "Bytes this node is to warm (its plan's ranges, or the whole model)",
                Some(Unit::Bytes),
            ),
            warm_bytes: series(
                r,
                "ferry_warm",
                "Bytes read into the page cache so far",
                Some(Unit::Bytes),
            ),
            warm_seconds: series(
                r,
                "ferry_warm_duration",
                "How long warming took",
                Some(Unit::Seconds),
            ),
            warm_bytes_per_second: series(
                r,
                "ferry_warm_bytes_per_second",
                "Warm throughput",
                None,
            ),
            residency_ratio: series(
                r,
                "ferry_residency_ratio",
                "Share of the bytes to warm that mincore found in the page cache after warming (0 until then)",
                None,
            ),
            preflight: series(
                r,
                "ferry_preflight_finding",
                "A preflight check that failed (error: the gate stays shut) or warned: 1, with the \
                 rule, the finding and its fix as labels",
                None,
            ),
            recheck_failures: series(
                r,
                "ferry_recheck_failures",
                "Times a re-check found the model changed after the gate opened, and shut it",
                None,
            ),
            recheck_failed: series(
                r,
                "ferry_recheck_failed",
                "1 while a re-check keeps the gate shut, with what it found as the reason label",
                None,
            ),
        }
    }
}

impl DownloadSeries {
    fn register(r: &mut Registry) -> Self {
        DownloadSeries {
            bytes_done: series(
                r,
                "ferry_download_done",
                "Bytes of the model on disk so far (published and partial files); the model's size once complete",
                Some(Unit::Bytes),
            ),
            bytes_total: series(
                r,
                "ferry_download_size",
                "Bytes the download will hold, from the manifest or the fetch's heartbeat (0 while unknown)",
                Some(Unit::Bytes),
            ),
            files_done: series(
                r,
                "ferry_download_files_done",
                "Model files published under their final names",
                None,
            ),
            files_total: series(
                r,
                "ferry_download_files",
                "Files the download will hold (0 while unknown)",
                None,
            ),
            slices_done: series(
                r,
                "ferry_download_slices_done",
                "Slices of an Indexed download Job that have finished",
                None,
            ),
            heartbeat_age: series(
                r,
                "ferry_download_heartbeat_age",
                "Time since the fetch last wrote its heartbeat (NaN when there is none)",
                Some(Unit::Seconds),
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        // Registration order is the order of the exposition: the gate, the checks, the download.
        let mut registry = Registry::default();
        Metrics {
            gate: GateSeries::register(&mut registry),
            checks: CheckSeries::register(&mut registry),
            download: DownloadSeries::register(&mut registry),
            registry,
        }
    }

    /// The download's progress: from `download` (the directory's status, read while the gate
    /// waits), else, once the manifest is there, all of the model.
    fn set_download(&self, s: &Snapshot, download: Option<&Status>) {
        let (bytes_done, bytes_total, files_done, files_total, slices, age) = match download {
            Some(d) => (
                d.bytes_total.map_or(d.bytes_done, |t| d.bytes_done.min(t)),
                d.bytes_total.unwrap_or(0),
                d.files_done,
                d.files_total.unwrap_or(0),
                d.slices.iter().map(|sl| sl.done.len()).max().unwrap_or(0) as u64,
                d.last_progress_seconds.map_or(f64::NAN, |a| a as f64),
            ),
            None => (
                s.model_bytes,
                s.model_bytes,
                s.model_files,
                s.model_files,
                0,
                f64::NAN,
            ),
        };
        let m = &self.download;
        m.bytes_done.set(bytes_done as i64);
        m.bytes_total.set(bytes_total as i64);
        m.files_done.set(files_done as i64);
        m.files_total.set(files_total as i64);
        m.slices_done.set(slices as i64);
        m.heartbeat_age.set(age);
    }

    /// Sets every series from `s` (and the download's progress from `download`, while the gate
    /// waits for it) and encodes them.
    pub fn render(&self, s: &Snapshot, download: Option<&Status>) -> String {
        self.set_download(s, download);
        let (gate, checks) = (&self.gate, &self.checks);
        gate.open.set(i64::from(s.phase == Phase::Open));
        for p in Phase::ALL {
            gate.state
                .get_or_create(&StateLabels { state: p.as_str() })
                .set(i64::from(p == s.phase));
        }
        gate.wait_seconds.set(s.wait_seconds);
        gate.model_files.set(s.model_files as i64);
        gate.model_bytes.set(s.model_bytes as i64);
        gate.model_info.clear();
        if let (Some(repo), Some(revision), Some(commit)) = (&s.repo, &s.revision, &s.commit) {
            gate.model_info
                .get_or_create(&ModelLabels {
                    repo: repo.clone(),
                    revision: revision.clone(),
                    commit: commit.clone(),
                })
                .set(1);
        }
        checks.verify_seconds.set(s.verify_seconds.unwrap_or(0.0));
        checks.warm_target_bytes.set(s.warm_target_bytes as i64);
        checks.warm_bytes.set(s.warm_bytes as i64);
        let (secs, bps, ratio) = match &s.warm {
            Some(w) => (w.seconds, w.bytes_per_second, w.after.ratio()),
            None => (0.0, 0.0, 0.0),
        };
        checks.warm_seconds.set(secs);
        checks.warm_bytes_per_second.set(bps);
        checks.residency_ratio.set(ratio);
        checks.preflight.clear();
        for f in &s.preflight {
            checks
                .preflight
                .get_or_create(&FindingLabels {
                    rule: f.rule.to_string(),
                    severity: f.severity.as_str().to_string(),
                    message: f.message.clone(),
                    fix: f.fix.clone().unwrap_or_default(),
                })
                .set(1);
        }
        // The gate counts; the counter catches up (a scrape may follow several shuts).
        let seen = checks.recheck_failures.get();
        if s.recheck_failures > seen {
            checks.recheck_failures.inc_by(s.recheck_failures - seen);
        }
        checks.recheck_failed.clear();
        if let Some(reason) = &s.recheck_failure {
            checks
                .recheck_failed
                .get_or_create(&ReasonLabels {
                    reason: reason.clone(),
                })
                .set(1);
        }
        openmetrics::encode(&self.registry)
    }
}
