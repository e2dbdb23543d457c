//! `/metrics`: the gate's state in the OpenMetrics text format, which Prometheus scrapes
//! natively, encoded by the `prometheus-client` crate.
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

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
    gate_open: Gauge,
    state: Family<StateLabels, Gauge>,
    wait_seconds: FGauge,
    model_files: Gauge,
    model_bytes: Gauge,
    model_info: Family<ModelLabels, Gauge>,
    verify_seconds: FGauge,
    warm_target_bytes: Gauge,
    warm_bytes: Gauge,
    warm_seconds: FGauge,
    warm_bytes_per_second: FGauge,
    residency_ratio: FGauge,
    preflight: Family<FindingLabels, Gauge>,
    recheck_failures: Counter,
    recheck_failed: Family<ReasonLabels, Gauge>,
    download_bytes_done: Gauge,
    download_bytes_total: Gauge,
    download_files_done: Gauge,
    download_files_total: Gauge,
    download_slices_done: Gauge,
    download_heartbeat_age: FGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            gate_open: Gauge::default(),
            state: Family::default(),
            wait_seconds: FGauge::default(),
            model_files: Gauge::default(),
            model_bytes: Gauge::default(),
            model_info: Family::default(),
            verify_seconds: FGauge::default(),
            warm_target_bytes: Gauge::default(),
            warm_bytes: Gauge::default(),
            warm_seconds: FGauge::default(),
            warm_bytes_per_second: FGauge::default(),
            residency_ratio: FGauge::default(),
            preflight: Family::default(),
            recheck_failures: Counter::default(),
            recheck_failed: Family::default(),
            download_bytes_done: Gauge::default(),
            download_bytes_total: Gauge::default(),
            download_files_done: Gauge::default(),
            download_files_total: Gauge::default(),
            download_slices_done: Gauge::default(),
            download_heartbeat_age: FGauge::default(),
        };
        m.register_gate();
        m.register_checks_and_warm();
        m
    }

    /// The gate's own series: open, phase, wait, and the model it waited for.
    fn register_gate(&mut self) {
        let r = &mut self.registry;
        r.register(
            "ferry_gate_open",
            "1 once the model is complete, verified (and warmed, if asked): the engine may start",
            self.gate_open.clone(),
        );
        r.register(
            "ferry_state",
            "The gate's phase: 1 for the current one (waiting, verifying, warming, open, failed)",
            self.state.clone(),
        );
        r.register_with_unit(
            "ferry_wait",
            "Time from sidecar start until the completion manifest appeared (growing while absent)",
            Unit::Seconds,
            self.wait_seconds.clone(),
        );
        r.register(
            "ferry_model_files",
            "Files the completion manifest lists",
            self.model_files.clone(),
        );
        r.register_with_unit(
            "ferry_model",
            "Bytes the completion manifest lists",
            Unit::Bytes,
            self.model_bytes.clone(),
        );
        r.register(
            "ferry_model_info",
            "The model being served: 1 with its repo, revision and commit as labels",
            self.model_info.clone(),
        );
    }

    /// What happened after the manifest appeared: verify, warm, preflight, re-checks.
    fn register_checks_and_warm(&mut self) {
        let r = &mut self.registry;
        r.register_with_unit(
            "ferry_verify",
            "How long validating the model took",
            Unit::Seconds,
            self.verify_seconds.clone(),
        );
        r.register_with_unit(
            "ferry_warm_target",
            "Bytes this node is to warm (its plan's ranges, or the whole model)",
            Unit::Bytes,
            self.warm_target_bytes.clone(),
        );
        r.register_with_unit(
            "ferry_warm",
            "Bytes read into the page cache so far",
            Unit::Bytes,
            self.warm_bytes.clone(),
        );
        r.register_with_unit(
            "ferry_warm_duration",
            "How long warming took",
            Unit::Seconds,
            self.warm_seconds.clone(),
        );
        r.register(
            "ferry_warm_bytes_per_second",
            "Warm throughput",
            self.warm_bytes_per_second.clone(),
        );
        r.register(
            "ferry_residency_ratio",
            "Share of the bytes to warm that mincore found in the page cache after warming (0 until then)",
            self.residency_ratio.clone(),
        );
        r.register(
            "ferry_preflight_finding",
            "A preflight check that failed (error: the gate stays shut) or warned: 1, with the \
             rule, the finding and its fix as labels",
            self.preflight.clone(),
        );
        r.register(
            "ferry_recheck_failures",
            "Times a re-check found the model changed after the gate opened, and shut it",
            self.recheck_failures.clone(),
        );
        r.register(
            "ferry_recheck_failed",
            "1 while a re-check keeps the gate shut, with what it found as the reason label",
            self.recheck_failed.clone(),
        );
        r.register_with_unit(
            "ferry_download_done",
            "Bytes of the model on disk so far (published and partial files); the model's size once complete",
            Unit::Bytes,
            self.download_bytes_done.clone(),
        );
        r.register_with_unit(
            "ferry_download_size",
            "Bytes the download will hold, from the manifest or the fetch's heartbeat (0 while unknown)",
            Unit::Bytes,
            self.download_bytes_total.clone(),
        );
        r.register(
            "ferry_download_files_done",
            "Model files published under their final names",
            self.download_files_done.clone(),
        );
        r.register(
            "ferry_download_files",
            "Files the download will hold (0 while unknown)",
            self.download_files_total.clone(),
        );
        r.register(
            "ferry_download_slices_done",
            "Slices of an Indexed download Job that have finished",
            self.download_slices_done.clone(),
        );
        r.register_with_unit(
            "ferry_download_heartbeat_age",
            "Time since the fetch last wrote its heartbeat (NaN when there is none)",
            Unit::Seconds,
            self.download_heartbeat_age.clone(),
        );
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
        self.download_bytes_done.set(bytes_done as i64);
        self.download_bytes_total.set(bytes_total as i64);
        self.download_files_done.set(files_done as i64);
        self.download_files_total.set(files_total as i64);
        self.download_slices_done.set(slices as i64);
        self.download_heartbeat_age.set(age);
    }

    /// Sets every series from `s` (and the download's progress from `download`, while the gate
    /// waits for it) and encodes them.
    pub fn render(&self, s: &Snapshot, download: Option<&Status>) -> String {
        self.set_download(s, download);
        self.gate_open.set(i64::from(s.phase == Phase::Open));
        for p in Phase::ALL {
            self.state
                .get_or_create(&StateLabels { state: p.as_str() })
                .set(i64::from(p == s.phase));
        }
        self.wait_seconds.set(s.wait_seconds);
        self.model_files.set(s.model_files as i64);
        self.model_bytes.set(s.model_bytes as i64);
        self.model_info.clear();
        if let (Some(repo), Some(revision), Some(commit)) = (&s.repo, &s.revision, &s.commit) {
            self.model_info
                .get_or_create(&ModelLabels {
                    repo: repo.clone(),
                    revision: revision.clone(),
                    commit: commit.clone(),
                })
                .set(1);
        }
        self.verify_seconds.set(s.verify_seconds.unwrap_or(0.0));
        self.warm_target_bytes.set(s.warm_target_bytes as i64);
        self.warm_bytes.set(s.warm_bytes as i64);
        let (secs, bps, ratio) = match &s.warm {
            Some(w) => (w.seconds, w.bytes_per_second, w.after.ratio()),
            None => (0.0, 0.0, 0.0),
        };
        self.warm_seconds.set(secs);
        self.warm_bytes_per_second.set(bps);
        self.residency_ratio.set(ratio);
        self.preflight.clear();
        for f in &s.preflight {
            self.preflight
                .get_or_create(&FindingLabels {
                    rule: f.rule.to_string(),
                    severity: f.severity.as_str().to_string(),
                    message: f.message.clone(),
                    fix: f.fix.clone().unwrap_or_default(),
                })
                .set(1);
        }
        // The gate counts; the counter catches up (a scrape may follow several shuts).
        let seen = self.recheck_failures.get();
        if s.recheck_failures > seen {
            self.recheck_failures.inc_by(s.recheck_failures - seen);
        }
        self.recheck_failed.clear();
        if let Some(reason) = &s.recheck_failure {
            self.recheck_failed
                .get_or_create(&ReasonLabels {
                    reason: reason.clone(),
                })
                .set(1);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
