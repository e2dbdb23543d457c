//! What the gate is told: the model directory, how long to wait and how often to look, what to
//! do with a bad model, and what to warm and check before opening.

use std::path::PathBuf;
use std::time::Duration;

use crate::doctor::Deployment;
use crate::share::WarmShare;
use crate::warm::WarmOptions;

/// What to do when the manifest is there but the model fails validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadModel {
    /// Return the error: an init container exits and the pod shows why.
    Fail,
    /// Report it on `/readyz` and check again later: someone may re-fetch the model, and a
    /// native sidecar that exits only gets restarted into the same wait.
    Retry,
}

/// How often to look for the manifest.
#[derive(Debug, Clone)]
pub struct Poll {
    /// First delay; doubles (with jitter) up to `max`.
    pub min: Duration,
    pub max: Duration,
    /// How often to log what the gate still waits for.
    pub log_every: Duration,
}

impl Default for Poll {
    fn default() -> Self {
        Poll {
            min: Duration::from_millis(200),
            max: Duration::from_secs(10),
            log_every: Duration::from_secs(30),
        }
    }
}

/// Which bytes to warm before opening.
#[derive(Debug, Clone, Default)]
pub struct WarmSpec {
    pub share: WarmShare,
    pub options: WarmOptions,
}

#[derive(Debug, Clone)]
pub struct GateConfig {
    pub model_dir: PathBuf,
    /// How long the gate may stay shut, counted from the start (waiting, and failing validation
    /// in [`OnBadModel::Retry`]); `None` waits for ever.
    pub timeout: Option<Duration>,
    /// Re-hash every byte instead of the quick check (names, sizes, headers).
    pub full: bool,
    pub warm: Option<WarmSpec>,
    /// Run `ferry doctor`'s checks once the model is verified; an error keeps the gate shut.
    pub preflight: Option<Deployment>,
    pub poll: Poll,
    pub on_bad_model: OnBadModel,
    /// How often serve mode re-checks an open gate (see [`crate::recheck`]).
    pub recheck_every: Duration,
    /// Open on a manifest whose `--include`/`--exclude` selection left out files an engine
    /// loads (a partial model on purpose); by default such a manifest keeps the gate shut.
    pub allow_partial: bool,
}

impl GateConfig {
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        GateConfig {
            model_dir: model_dir.into(),
            timeout: None,
            full: false,
            warm: None,
            preflight: None,
            poll: Poll::default(),
            on_bad_model: OnBadModel::Fail,
            recheck_every: crate::recheck::EVERY,
            allow_partial: false,
        }
    }
}
