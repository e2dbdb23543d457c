//! The gate: shut until the model on the shared volume is complete and verified (and, if asked,
//! warmed), then open.
//!
//! [`run`] is the whole sequence as one library call: poll for the completion manifest with
//! exponential backoff (NFS and CephFS deliver no inotify events, so polling is the only
//! portable way to notice another host's write), log what is still missing every so often,
//! validate, run the preflight checks if asked, warm, open. [`Gate`] is its shared state: the HTTP server reads it for `/readyz` and
//! `/metrics` while `run` writes it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use ferry_sharder::Manifest;
use serde::Serialize;

use crate::doctor::{self, Deployment, Finding};
use crate::error::{Error, Result};
mod config;
pub use config::{GateConfig, OnBadModel, Poll, WarmSpec};

use crate::model_check::{check, describe_missing, open_detail, waiting_detail};
use crate::warm::{self, WarmControl, WarmReport};

/// Where the gate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No completion manifest yet.
    Waiting,
    /// Manifest found; checking the files against it.
    Verifying,
    /// Verified; reading into the page cache.
    Warming,
    /// The engine may start.
    Open,
    /// The model failed validation (serve mode retries; init mode exits).
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Waiting,
        Phase::Verifying,
        Phase::Warming,
        Phase::Open,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Verifying => "verifying",
            Phase::Warming => "warming",
            Phase::Open => "open",
            Phase::Failed => "failed",
        }
    }
}

/// A consistent copy of the gate's state.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub phase: Phase,
    /// What the gate does or waits for, in words (the `/readyz` body).
    pub detail: String,
    /// Seconds from start until the manifest appeared (growing while it has not).
    pub wait_seconds: f64,
    pub model_files: u64,
    pub model_bytes: u64,
    pub repo: Option<String>,
    pub revision: Option<String>,
    pub commit: Option<String>,
    pub verify_seconds: Option<f64>,
    /// Bytes planned for warming, and read so far.
    pub warm_target_bytes: u64,
    pub warm_bytes: u64,
    pub warm: Option<WarmReport>,
    /// The preflight's errors and warnings (empty until it ran, or when all passed).
    pub preflight: Vec<Finding>,
    /// Times a re-check shut the open gate, and why it is shut now (if a re-check shut it).
    pub recheck_failures: u64,
    pub recheck_failure: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) phase: Phase,
    pub(crate) detail: String,
    waited: Option<Duration>,
    pub(crate) manifest: Option<Manifest>,
    verify_seconds: Option<f64>,
    warm_target_bytes: u64,
    warm: Option<WarmReport>,
    preflight: Vec<Finding>,
    pub(crate) recheck_failures: u64,
    pub(crate) recheck_failure: Option<String>,
}

/// The gate's state, shared between [`run`] and whoever reports on it.
#[derive(Debug)]
pub struct Gate {
    model_dir: PathBuf,
    started: Instant,
    inner: Mutex<Inner>,
    /// When the last re-check started; held while one runs.
    pub(crate) last_recheck: Mutex<Option<Instant>>,
    /// Progress and cancellation of a running warm.
    pub warm: WarmControl,
}

impl Gate {
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        let model_dir = model_dir.into();
        Gate {
            inner: Mutex::new(Inner {
                phase: Phase::Waiting,
                detail: waiting_detail(&model_dir),
                waited: None,
                manifest: None,
                verify_seconds: None,
                warm_target_bytes: 0,
                warm: None,
                preflight: Vec::new(),
                recheck_failures: 0,
                recheck_failure: None,
            }),
            last_recheck: Mutex::new(None),
            model_dir,
            started: Instant::now(),
            warm: WarmControl::default(),
        }
    }

    pub fn model_dir(&self) -> &Path {
        &self.model_dir
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_open(&self) -> bool {
        self.lock().phase == Phase::Open
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let m = g.manifest.as_ref();
        Snapshot {
            phase: g.phase,
            detail: g.detail.clone(),
            wait_seconds: g
                .waited
                .unwrap_or_else(|| self.started.elapsed())
                .as_secs_f64(),
            model_files: m.map_or(0, |m| m.files.len() as u64),
            model_bytes: m.map_or(0, |m| m.total_bytes()),
            repo: m.map(|m| m.repo.clone()),
            revision: m.map(|m| m.revision.clone()),
            commit: m.map(|m| m.commit.clone()),
            verify_seconds: g.verify_seconds,
            warm_target_bytes: g.warm_target_bytes,
            warm_bytes: self.warm.bytes_done(),
            warm: g.warm.clone(),
            preflight: g.preflight.clone(),
            recheck_failures: g.recheck_failures,
            recheck_failure: g.recheck_failure.clone(),
        }
    }

    fn set(&self, phase: Phase, detail: impl Into<String>) {
        let mut g = self.lock();
        g.phase = phase;
        g.detail = detail.into();
    }
}

/// Runs a blocking closure off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))
}

/// Waits for the model, validates it, warms it if asked, and opens the gate. Returns once the
/// gate is open; errors on timeout, on a bad model (with [`OnBadModel::Fail`]), and on a warm plan
/// that does not fit.
pub async fn run(cfg: GateConfig, gate: Arc<Gate>) -> Result<()> {
    let dir = cfg.model_dir.clone();
    let manifest = verify_until_sound(&cfg, &gate).await?;
    if let Some(deployment) = &cfg.preflight {
        preflight(&cfg, &gate, deployment).await?;
    }
    if let Some(spec) = &cfg.warm {
        warm_model(&gate, &dir, spec).await?;
    }
    gate.set(Phase::Open, open_detail(&manifest, &dir));
    tracing::info!(
        "gate open after {:.1} s",
        gate.started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits for the manifest and checks the model until it passes: returns its manifest. A model
/// that fails is reported and, unless `OnBadModel::Fail`, checked again every `poll.max`.
async fn verify_until_sound(cfg: &GateConfig, gate: &Gate) -> Result<Manifest> {
    let dir = cfg.model_dir.clone();
    loop {
        let m = wait_for_manifest(cfg, gate).await?;
        gate.set(
            Phase::Verifying,
            format!(
                "verifying {} files ({:.2} GB){}",
                m.files.len(),
                m.total_bytes() as f64 / 1e9,
                if cfg.full {
                    ", re-hashing every byte"
                } else {
                    ""
                }
            ),
        );
        tracing::info!(
            "manifest found: {} {} ({} files, {:.2} GB); verifying{}",
            m.repo,
            m.commit,
            m.files.len(),
            m.total_bytes() as f64 / 1e9,
            if cfg.full {
                " every byte"
            } else {
                " names, sizes and headers"
            }
        );
        let started = Instant::now();
        let (d, mc, full, partial_ok) = (dir.clone(), m.clone(), cfg.full, cfg.allow_partial);
        let verdict = blocking(move || {
            whole_for_engine(&d, &mc, partial_ok).and_then(|()| check(&d, &mc, full))
        })
        .await?;
        let secs = started.elapsed().as_secs_f64();
        gate.lock().verify_seconds = Some(secs);
        match verdict {
            Ok(()) => {
                tracing::info!("model verified in {secs:.2} s");
                return Ok(m);
            }
            Err(source) => {
                let err = Error::BadModel {
                    dir: dir.clone(),
                    cause: source,
                };
                gate.set(Phase::Failed, err.to_string());
                if cfg.on_bad_model == OnBadModel::Fail {
                    return Err(err);
                }
                if cfg.timeout.is_some_and(|t| gate.started.elapsed() >= t) {
                    return Err(Error::Timeout {
                        dir: dir.clone(),
                        waited: gate.started.elapsed(),
                        waiting_for: format!("the model still fails validation: {err}"),
                    });
                }
                tracing::error!("{err}\n  checking again in {:?}", cfg.poll.max);
                tokio::time::sleep(cfg.poll.max).await;
                gate.lock().waited = None;
            }
        }
    }
}

/// Warms the model into the page cache as `spec` says. Only an interruption or a plan that
/// does not fit is an error: a failed warm opens the gate cold.
async fn warm_model(gate: &Arc<Gate>, dir: &Path, spec: &WarmSpec) -> Result<()> {
    tracing::info!("warming {}", spec.share.describe());
    let (d, share) = (dir.to_path_buf(), spec.share.clone());
    let targets = blocking(move || share.targets(&d)).await??;
    let total: u64 = targets.iter().map(|t| t.len).sum();
    gate.lock().warm_target_bytes = total;
    gate.set(
        Phase::Warming,
        format!(
            "warming {:.2} GB of {} file ranges into the page cache",
            total as f64 / 1e9,
            targets.len()
        ),
    );
    tracing::info!(
        "warming {:.2} GB ({} ranges)",
        total as f64 / 1e9,
        targets.len(),
    );
    let (g, opts) = (gate.clone(), spec.options.clone());
    match blocking(move || warm::warm(&targets, &opts, &g.warm)).await? {
        Ok(r) => {
            tracing::info!(
                "warmed {:.2} GB in {:.1} s ({:.2} GB/s, {} readers: {}); resident {:.1} % before, {:.1} % after",
                r.bytes as f64 / 1e9,
                r.seconds,
                r.bytes_per_second / 1e9,
                r.jobs,
                r.jobs_reason,
                r.before.ratio() * 100.0,
                r.after.ratio() * 100.0
            );
            gate.lock().warm = Some(r);
        }
        Err(e @ Error::Interrupted { .. }) => return Err(e),
        // Warming only saves load time: the engine can still read the files from storage, so
        // a failed warm is reported but never keeps the gate shut.
        Err(e) => tracing::warn!("warming failed, opening the gate cold: {e}"),
    }
    Ok(())
}

/// Runs the doctor's checks until none fails: a failure keeps the gate shut with the finding
/// and its fix as the detail (init mode returns it). Facts can change (a fabric manager started,
/// a driver upgraded), so serve mode looks again every `poll.max`.
async fn preflight(cfg: &GateConfig, gate: &Gate, deployment: &Deployment) -> Result<()> {
    loop {
        let (d, dep) = (cfg.model_dir.clone(), deployment.clone());
        let report = blocking(move || doctor::preflight(&d, dep)).await??;
        let bad: Vec<Finding> = report
            .findings
            .iter()
            .filter(|f| f.severity >= doctor::Severity::Warning)
            .cloned()
            .collect();
        for w in bad
            .iter()
            .filter(|f| f.severity == doctor::Severity::Warning)
        {
            tracing::warn!("preflight: {}", w.one_line());
        }
        gate.lock().preflight = bad;
        let errors: Vec<String> = report.errors().map(Finding::one_line).collect();
        if errors.is_empty() {
            tracing::info!("preflight passed ({} checks)", report.findings.len());
            return Ok(());
        }
        let err = Error::Preflight {
            dir: cfg.model_dir.clone(),
            findings: errors.join("\n  "),
        };
        gate.set(Phase::Failed, err.to_string());
        if cfg.on_bad_model == OnBadModel::Fail
            || cfg.timeout.is_some_and(|t| gate.started.elapsed() >= t)
        {
            return Err(err);
        }
        tracing::error!("{err}\n  checking again in {:?}", cfg.poll.max);
        tokio::time::sleep(cfg.poll.max).await;
    }
}

/// A manifest whose selection left out what an engine loads is not a model to open on, unless
/// `allow_partial`.
fn whole_for_engine(dir: &Path, m: &Manifest, allow_partial: bool) -> ferry_sharder::Result<()> {
    match ferry_sharder::selection::partial_reason(dir, m) {
        Some(why) if !allow_partial => Err(ferry_sharder::Error::Invalid {
            dir: dir.to_path_buf(),
            findings: vec![ferry_sharder::Finding::error(".ferry/manifest.json", why)],
        }),
        Some(why) => {
            tracing::warn!("{why} (opening anyway: --allow-partial)");
            Ok(())
        }
        None => Ok(()),
    }
}

/// Polls until the manifest is there; errors when `cfg.timeout` (counted from the gate's start)
/// runs out, or when the manifest cannot be read and `cfg.on_bad_model` says fail.
async fn wait_for_manifest(cfg: &GateConfig, gate: &Gate) -> Result<Manifest> {
    let dir = cfg.model_dir.clone();
    let started = gate.started;
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(cfg.poll.min)
        .with_max_delay(cfg.poll.max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build();
    let mut last_log: Option<Instant> = None;
    loop {
        let d = dir.clone();
        match blocking(move || Manifest::read(&d)).await? {
            Ok(Some(m)) => {
                let mut g = gate.lock();
                g.waited = Some(gate.started.elapsed());
                g.manifest = Some(m.clone());
                return Ok(m);
            }
            Ok(None) => {
                // Back to waiting, also after a failed check whose manifest was then removed.
                if gate.lock().phase != Phase::Waiting {
                    gate.set(Phase::Waiting, waiting_detail(&dir));
                }
            }
            // The manifest is written atomically, so an unreadable one is not a write in
            // progress: it is broken until someone rewrites it.
            Err(source) => {
                let err = Error::BadModel {
                    dir: dir.clone(),
                    cause: source,
                };
                if cfg.on_bad_model == OnBadModel::Fail {
                    return Err(err);
                }
                gate.set(Phase::Failed, err.to_string());
                if last_log.is_none_or(|t| t.elapsed() >= cfg.poll.log_every) {
                    tracing::error!("{err}");
                    last_log = Some(Instant::now());
                }
            }
        }
        if let Some(limit) = cfg.timeout {
            if started.elapsed() >= limit {
                let d = dir.clone();
                let waiting_for = blocking(move || describe_missing(&d)).await?;
                return Err(Error::Timeout {
                    dir,
                    waited: started.elapsed(),
                    waiting_for,
                });
            }
        }
        if last_log.is_none_or(|t| t.elapsed() >= cfg.poll.log_every) {
            let d = dir.clone();
            let what = blocking(move || describe_missing(&d)).await?;
            // Unless a broken manifest is being reported, /readyz tells the same story.
            if gate.lock().phase == Phase::Waiting {
                gate.set(Phase::Waiting, what.clone());
            }
            tracing::info!(
                "waited {:.0} s for a complete model in {}: {what}",
                started.elapsed().as_secs_f64(),
                dir.display()
            );
            last_log = Some(Instant::now());
        }
        // Jitter spreads the many sidecars of a group over time; the cap keeps its promise.
        let mut delay = delays.next().unwrap_or(cfg.poll.max).min(cfg.poll.max);
        if let Some(limit) = cfg.timeout {
            // Never sleep past the deadline: a timeout should fire on time.
            delay = delay.min(limit.saturating_sub(started.elapsed()));
        }
        tokio::time::sleep(delay).await;
    }
}

/// `NODE_RANK`, else `LWS_WORKER_INDEX` (LeaderWorkerSet sets it on every pod of a group: 0 for
/// the leader, 1.. for the workers), as a number.
pub fn node_rank_from_env() -> Option<u32> {
    ["NODE_RANK", "LWS_WORKER_INDEX"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
}
