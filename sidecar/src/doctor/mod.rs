//! `ferry doctor` and the sidecar's `--preflight`: will this model run on these GPUs with this
//! engine, asked before hundreds of GB are loaded instead of learned from a crash after.
//!
//! Facts come from three places: the node ([`node`]: NVML, `/dev/shm`, RDMA, disk, cgroup), the
//! model ([`model`]: config.json and the weight sizes) and the deployment ([`Deployment`]: the
//! engine, its image's CUDA, TP/PP and the node count). [`diagnose`] runs every check over them
//! ([`gpu`] for capability, dtype, driver and fabric; [`fit`] for memory, parallelism, shm, RDMA
//! and disk) and returns one [`Finding`] per rule: its verdict, the numbers, and the fix.
//! Checks are pure functions of the facts, so the tests feed them recorded facts of real GPUs.

pub mod engine;
pub mod fit;
pub mod gpu;
pub mod memory;
pub mod model;
pub mod node;

use serde::Serialize;

pub use engine::{Capability, CudaVersion, InferenceEngine};
pub use model::ModelFacts;
pub use node::{GpuFacts, NodeFacts};

/// How the model is to be served.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub engine: InferenceEngine,
    pub image: Option<String>,
    /// The image's CUDA version: `--engine-cuda`, else read from the image tag.
    pub image_cuda: Option<CudaVersion>,
    pub tp: u32,
    pub pp: u32,
    pub nnodes: u32,
    /// GPUs each node gives the engine; `None`: the GPUs NVML sees.
    pub gpus_per_node: Option<u32>,
    /// The context length the engine is started with; `None`: the model's
    /// `max_position_embeddings`.
    pub context_length: Option<u64>,
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            engine: InferenceEngine::Sglang,
            image: None,
            image_cuda: None,
            tp: 1,
            pp: 1,
            nnodes: 1,
            gpus_per_node: None,
            context_length: None,
        }
    }
}

impl Deployment {
    /// Fills a tp left at 0: every GPU of the group (GPUs per node, else the GPUs NVML sees, ×
    /// nodes) over pp.
    pub fn resolve(&mut self, node: &NodeFacts) {
        if self.tp == 0 {
            let per_node = self
                .gpus_per_node
                .unwrap_or((node.gpus.len() as u32).max(1));
            self.tp = (per_node * self.nnodes.max(1) / self.pp.max(1)).max(1);
        }
    }

    /// GPUs the engine's ranks occupy on each node.
    pub fn ranks_per_node(&self) -> u32 {
        (self.tp.max(1) * self.pp.max(1)).div_ceil(self.nnodes.max(1))
    }
}

/// Everything the checks look at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub node: NodeFacts,
    pub model: ModelFacts,
    pub deployment: Deployment,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The rule holds.
    Pass,
    /// The rule could not be checked (a fact is missing), said so rather than passed silently.
    Skipped,
    /// It will run, but badly or only with a fallback.
    Warning,
    /// It will not run as configured.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Pass => "ok",
            Severity::Skipped => "skipped",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One rule's outcome: the rule, what was found (with its numbers), and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable name, e.g. `capability.dtype`.
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn new(rule: &'static str, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            rule,
            severity,
            message: message.into(),
            fix: None,
        }
    }
    pub fn pass(rule: &'static str, message: impl Into<String>) -> Self {
        Self::new(rule, Severity::Pass, message)
    }
    pub fn skipped(rule: &'static str, message: impl Into<String>) -> Self {
        Self::new(rule, Severity::Skipped, message)
    }
    pub fn error(rule: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(rule, Severity::Error, message).with_fix(fix)
    }
    pub fn warning(rule: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(rule, Severity::Warning, message).with_fix(fix)
    }
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// `rule: message` and the fix, as one line for `/readyz` and logs.
    pub fn one_line(&self) -> String {
        match &self.fix {
            Some(fix) => format!("{}: {} (fix: {fix})", self.rule, self.message),
            None => format!("{}: {}", self.rule, self.message),
        }
    }
}

/// The facts and every finding.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub facts: Facts,
    pub findings: Vec<Finding>,
    /// No finding is an error.
    pub ok: bool,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

/// Runs every check over `facts`.
pub fn diagnose(mut facts: Facts) -> Report {
    facts.deployment.resolve(&facts.node);
    let mut findings = gpu::check(&facts);
    findings.extend(fit::check(&facts));
    let ok = !findings.iter().any(|f| f.severity == Severity::Error);
    Report {
        facts,
        findings,
        ok,
    }
}

/// The checks over this node and the model in `dir`, as the sidecar's `--preflight` runs them
/// (blocking: reads NVML, sysfs and the model's config).
pub fn preflight(dir: &std::path::Path, deployment: Deployment) -> crate::Result<Report> {
    let model = ModelFacts::from_dir(dir)?;
    let node = NodeFacts::detect(Some(dir));
    Ok(diagnose(Facts {
        node,
        model,
        deployment,
    }))
}

/// Bytes as GB (10^9), the unit model sizes are quoted in.
pub(crate) fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// Bytes as GiB, the unit GPU memory is quoted in (MiB below one GiB: /dev/shm's 64 MiB).
pub(crate) fn gib(bytes: u64) -> String {
    if bytes < 1 << 30 {
        return format!("{} MiB", bytes >> 20);
    }
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}
