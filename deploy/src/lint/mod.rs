//! The trap rules. Each rule group lives in its own module and adds [`Finding`]s for one set of
//! objects (a kustomize build, or the files given together). A finding names the rule, the
//! object, the field, what is wrong and the fix.

mod download;
mod fit;
mod gate;
mod network;
mod ports;
mod probes;
mod scheduling;
mod services;
mod storage;
mod topology;

use serde::Serialize;

use crate::engine::{self, EngineCommand};
use crate::objects::{Object, PodTemplate};

/// How bad a finding is: errors fail `ferry lint`, warnings are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Rule id, e.g. `service-env-collision`.
    pub rule: &'static str,
    pub severity: Severity,
    /// `Kind/name` of the object.
    pub object: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The file, `-`, or kustomization directory the object came from.
    pub source: String,
    /// Path of the offending field inside the object.
    pub field: String,
    /// What is wrong and what happens because of it.
    pub message: String,
    /// What to change.
    pub fix: String,
}

/// A rule's id, default severity and one-line summary (`ferry lint --list-rules`, the docs).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RuleInfo {
    pub id: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

/// Every rule, in the order they are documented.
pub const RULES: &[RuleInfo] = &[
    services::ENV_COLLISION,
    services::SELECTS_WORKERS,
    probes::LIVENESS_WITHOUT_STARTUP,
    probes::STARTUP_TOO_SHORT,
    probes::NO_READINESS,
    probes::LWS_STARTUP_DEADLOCK,
    ports::PROBE_PORT,
    storage::VOLUME_MISMATCH,
    storage::MODEL_NOT_MOUNTED,
    storage::MODEL_FROM_HUB,
    storage::PVC_NOT_RWX,
    storage::SHM,
    topology::PARALLELISM,
    topology::GPU_MISMATCH,
    topology::MULTINODE_ARGS,
    topology::LWS_RESTART_POLICY,
    fit::TP_HEADS,
    fit::DTYPE_GPU,
    network::RDMA_WITHOUT_DEVICE,
    network::RDMA_IPC_LOCK,
    network::HOST_NETWORK_DNS,
    scheduling::VOLCANO_GANG,
    gate::NO_GATE,
    gate::GATE_NO_STARTUP,
    gate::GATE_MODE,
    gate::GATE_MODEL_MISMATCH,
    download::SLICES,
    download::S3_SLICES,
    download::RETRY_POLICY,
    download::SECRET_IN_ENV,
    download::IMAGE_TAG,
];

/// Knobs for the rules.
#[derive(Debug, Clone)]
pub struct Options {
    /// The least startupProbe budget (seconds) for an engine: a 671B model takes many minutes to
    /// load from a network filesystem even when the page cache is warm.
    pub min_startup_seconds: u64,
    /// The least /dev/shm (bytes) for an engine: NCCL and the engines' IPC put buffers there.
    pub min_shm_bytes: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            min_startup_seconds: 1800,
            min_shm_bytes: 1024f64 * 1024.0 * 1024.0,
        }
    }
}

/// An engine container inside a pod template of an object.
pub(crate) struct EnginePod<'a> {
    pub object: &'a Object,
    pub pod: PodTemplate<'a>,
    pub container: &'a serde_json::Value,
    pub engine: EngineCommand,
}

impl EnginePod<'_> {
    pub fn field(&self, rest: &str) -> String {
        crate::objects::container_field(&self.pod, false, self.container, rest)
    }

    pub fn container_name(&self) -> &str {
        self.container["name"].as_str().unwrap_or("?")
    }
}

/// One container of a pod template, init or main.
pub(crate) struct ContainerAt<'a> {
    pub object: &'a Object,
    pub pod: PodTemplate<'a>,
    pub init: bool,
    pub container: &'a serde_json::Value,
}

impl ContainerAt<'_> {
    pub fn field(&self, rest: &str) -> String {
        crate::objects::container_field(&self.pod, self.init, self.container, rest)
    }

    pub fn name(&self) -> &str {
        self.container["name"].as_str().unwrap_or("?")
    }
}

/// Every container of every pod template of `objects`, main containers before init containers.
pub(crate) fn all_containers(objects: &[Object]) -> Vec<ContainerAt<'_>> {
    let mut out = Vec::new();
    for object in objects {
        for pod in object.pod_templates() {
            let main = pod.containers().into_iter().map(|c| (false, c));
            let init = pod.init_containers().into_iter().map(|c| (true, c));
            for (init, container) in main.chain(init) {
                out.push(ContainerAt {
                    object,
                    pod: pod.clone(),
                    init,
                    container,
                });
            }
        }
    }
    out
}

/// What the rules share: the objects and the engine containers found in them.
pub(crate) struct Context<'a> {
    pub objects: &'a [Object],
    pub engines: Vec<EnginePod<'a>>,
    pub options: &'a Options,
    /// Behind a RefCell so a rule can report while it walks `engines`.
    findings: std::cell::RefCell<Vec<Finding>>,
}

impl<'a> Context<'a> {
    fn new(objects: &'a [Object], options: &'a Options) -> Self {
        let mut engines = Vec::new();
        for object in objects {
            for pod in object.pod_templates() {
                for container in pod.containers() {
                    if let Some(engine) = engine::detect(container) {
                        engines.push(EnginePod {
                            object,
                            pod: pod.clone(),
                            container,
                            engine,
                        });
                    }
                }
            }
        }
        Self {
            objects,
            engines,
            options,
            findings: Default::default(),
        }
    }

    /// Records a finding against `object`.
    pub fn report(
        &self,
        rule: &RuleInfo,
        object: &Object,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.report_as(rule, rule.severity, object, field, message, fix)
    }

    /// Records a finding with a severity other than the rule's default.
    pub fn report_as(
        &self,
        rule: &RuleInfo,
        severity: Severity,
        object: &Object,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.borrow_mut().push(Finding {
            rule: rule.id,
            severity,
            object: object.id(),
            namespace: object.namespace().map(str::to_string),
            source: object.source.clone(),
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// Engine containers of one object and role.
    pub fn engines_of(&self, object: &Object) -> impl Iterator<Item = &EnginePod<'a>> {
        let id = object.id();
        let source = object.source.clone();
        self.engines
            .iter()
            .filter(move |e| e.object.id() == id && e.object.source == source)
    }
}

/// Runs every rule over one set of objects. Findings come out errors first, then in object order.
pub fn lint(objects: &[Object], options: &Options) -> Vec<Finding> {
    let cx = Context::new(objects, options);
    services::check(&cx);
    probes::check(&cx);
    storage::check(&cx);
    topology::check(&cx);
    gate::check(&cx);
    download::check(&cx);
    ports::check(&cx);
    fit::check(&cx);
    network::check(&cx);
    scheduling::check(&cx);
    let mut findings = cx.findings.into_inner();
    // One finding per rule, object and field: the same template checked for the leader and a
    // worker built from it (LWS without a leaderTemplate) says the same thing twice otherwise.
    let mut seen = std::collections::HashSet::new();
    findings.retain(|f| seen.insert((f.rule, f.object.clone(), f.source.clone(), f.field.clone())));
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}
