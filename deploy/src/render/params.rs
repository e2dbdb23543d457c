//! The knobs of `ferry deploy render`, their defaults, and the checks that refuse a set of knobs
//! that cannot make a working deployment (bad names, TP × PP against the GPUs, TP against the
//! model's attention heads).

use serde_json::{json, Value};

use super::{DEFAULT_FERRY_IMAGE, MODELS_ROOT};
use crate::engine::InferenceEngine;
use crate::models::{self, ModelFacts};
use crate::{Error, Result};

/// The RDMA device plugin resource the render asks for by default (one per pod: the shared-device
/// plugins hand every pod all the HCAs of its node).
pub const DEFAULT_RDMA_RESOURCE: &str = "rdma/ib";

/// The gang scheduler a render can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// The default kube-scheduler: pods of a group are placed one by one.
    Default,
    /// Volcano: `schedulerName: volcano` and a PodGroup of the whole group (all or nothing).
    Volcano,
}

/// Where the model lives on the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// One ReadWriteMany PVC every node mounts; one Indexed Job downloads into it.
    Shared,
    /// A directory on each node's own disk (local NVMe): a DaemonSet downloads a copy per node
    /// and each gate checks its own node's copy.
    Local { host_path: String },
}

/// The knobs of a render.
#[derive(Debug, Clone)]
pub struct Params {
    pub engine: InferenceEngine,
    /// Hub repository, `ORG/NAME`.
    pub model: String,
    /// Nodes per engine instance: 1 renders a Deployment, more a LeaderWorkerSet.
    pub nodes: u64,
    pub gpus_per_node: u64,
    /// Tensor- and pipeline-parallel sizes; None: every GPU in TP (SGLang), or TP within a node
    /// and PP across nodes (vLLM).
    pub tp: Option<u64>,
    pub pp: Option<u64>,
    /// Attention heads of the model (config.json `num_attention_heads`); None: from the table of
    /// known models, unchecked for others.
    pub attention_heads: Option<u64>,
    /// The shared model PVC.
    pub pvc: String,
    pub storage_class: String,
    pub pvc_size: String,
    pub storage: Storage,
    pub namespace: Option<String>,
    /// Base name of the objects; defaults to the model's name, lower-cased.
    pub name: Option<String>,
    /// Slices of the download Job (pods downloading in parallel).
    pub slices: u64,
    /// `hf` or `modelscope`.
    pub source: String,
    pub revision: Option<String>,
    /// HF_ENDPOINT of the download (a mirror such as https://hf-mirror.com).
    pub hf_endpoint: Option<String>,
    pub ferry_image: String,
    pub engine_image: Option<String>,
    /// Add a DaemonSet that pre-warms the page cache of every GPU node.
    pub prewarm: bool,
    /// Extra environment of the engine containers (replacing rendered entries of the same name).
    pub env: Vec<(String, String)>,
    /// Extra words appended to the engine's command line.
    pub engine_args: Vec<String>,
    /// Node labels the engine (and per-node download) pods must match.
    pub node_selector: Vec<(String, String)>,
    /// Extra tolerations, as Kubernetes toleration objects.
    pub tolerations: Vec<Value>,
    /// RDMA: the device plugin resource to ask for (e.g. `rdma/ib`), None for TCP sockets.
    pub rdma: Option<String>,
    /// Host networking for RoCE without a secondary network (the SGLang docs' variant).
    pub host_network: bool,
    pub scheduler: Scheduler,
    /// TKE super nodes: the GPU model to ask for (`eks.tke.cloud.tencent.com/gpu-type`).
    pub gpu_type: Option<String>,
    /// Memory request and limit of each engine container; None: sized from the model.
    pub memory: Option<String>,
    /// The whole command line that asked for this render, for the header.
    pub command: Option<String>,
}

impl Params {
    /// The parameters for `model` with the defaults of the docs.
    pub fn new(engine: InferenceEngine, model: &str) -> Self {
        Self {
            engine,
            model: model.to_string(),
            nodes: 1,
            gpus_per_node: 8,
            tp: None,
            pp: None,
            attention_heads: None,
            pvc: "models".into(),
            storage_class: "cfs-turbo".into(),
            pvc_size: "1Ti".into(),
            storage: Storage::Shared,
            namespace: None,
            name: None,
            slices: 8,
            source: "hf".into(),
            revision: None,
            hf_endpoint: None,
            ferry_image: DEFAULT_FERRY_IMAGE.into(),
            engine_image: None,
            prewarm: false,
            env: Vec::new(),
            engine_args: Vec::new(),
            node_selector: Vec::new(),
            tolerations: Vec::new(),
            rdma: None,
            host_network: false,
            scheduler: Scheduler::Default,
            gpu_type: None,
            memory: None,
            command: None,
        }
    }

    /// The base name of the rendered objects.
    pub fn base_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let last = self.model.rsplit('/').next().unwrap_or(&self.model);
        let mut s: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        while s.contains("--") {
            s = s.replace("--", "-");
        }
        s.trim_matches('-')
            .chars()
            .take(40)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    }

    /// Where the model lives in the containers.
    pub fn model_dir(&self) -> String {
        let last = self.model.rsplit('/').next().unwrap_or(&self.model);
        format!("{MODELS_ROOT}/{last}")
    }

    /// (TP, PP): as given, or every GPU in TP for SGLang, TP per node × PP across nodes for vLLM.
    pub fn parallelism(&self) -> (u64, u64) {
        let gpus = self.nodes * self.gpus_per_node;
        match (self.tp, self.pp) {
            (Some(tp), Some(pp)) => (tp, pp),
            (Some(tp), None) => (tp, (gpus / tp.max(1)).max(1)),
            (None, Some(pp)) => ((gpus / pp.max(1)).max(1), pp),
            (None, None) => match self.engine {
                InferenceEngine::Sglang => (gpus, 1),
                InferenceEngine::Vllm => (self.gpus_per_node, self.nodes),
            },
        }
    }

    /// What the render knows of the model.
    pub fn facts(&self) -> Option<ModelFacts> {
        models::known(&self.model)
    }

    /// Memory request = limit of an engine container: this node's share of the weights (read
    /// through the page cache, which counts against the limit) plus a quarter for the engine's
    /// host buffers, plus the 32 Gi /dev/shm; 128 Gi for models it does not know.
    pub fn engine_memory(&self) -> String {
        if let Some(m) = &self.memory {
            return m.clone();
        }
        let gib = 1u64 << 30;
        let share = self
            .facts()
            .map(|f| f.weight_bytes.div_ceil(self.nodes.max(1)))
            .unwrap_or(96 * gib);
        let total = share + share / 4 + 32 * gib;
        // Whole multiples of 16 Gi read better and schedule the same.
        format!("{}Gi", total.div_ceil(16 * gib) * 16)
    }

    pub(super) fn engine_image(&self) -> String {
        self.engine_image
            .clone()
            .unwrap_or_else(|| match self.engine {
                InferenceEngine::Sglang => "lmsysorg/sglang:v0.5.2-cu126".into(),
                InferenceEngine::Vllm => "vllm/vllm-openai:v0.10.1".into(),
            })
    }

    pub(super) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Params(m));
        let parts: Vec<&str> = self.model.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return bad(format!("--model `{}` is not ORG/NAME", self.model));
        }
        if self.nodes == 0 || self.gpus_per_node == 0 || self.slices == 0 {
            return bad("--nodes, --gpus-per-node and --slices must be at least 1".into());
        }
        for (what, v) in [("--pvc", self.pvc.clone()), ("--name", self.base_name())] {
            if !dns_label(&v) {
                return bad(format!(
                    "{what} `{v}` is not a DNS label (lower-case letters, digits, '-', at most 63)"
                ));
            }
        }
        if let Some(ns) = self.namespace.as_deref().filter(|n| !dns_label(n)) {
            return bad(format!("--namespace `{ns}` is not a DNS label"));
        }
        let name = self.base_name();
        if name == "sglang" || name == "vllm" {
            return bad(format!(
                "--name `{name}`: a Service named after the engine injects {}_PORT into its pods; \
                 name it after the model",
                name.to_ascii_uppercase()
            ));
        }
        if !matches!(self.source.as_str(), "hf" | "modelscope") {
            return bad(format!(
                "--source `{}`: expected hf or modelscope",
                self.source
            ));
        }
        if self.host_network && self.rdma.is_none() {
            return bad("--host-network is the RoCE variant of --rdma: pass --rdma too".into());
        }
        self.validate_parallelism()
    }

    fn validate_parallelism(&self) -> Result<()> {
        let (tp, pp) = self.parallelism();
        let gpus = self.nodes * self.gpus_per_node;
        if tp * pp != gpus {
            return Err(Error::Params(format!(
                "--tp {tp} × --pp {pp} = {} GPUs, but {} nodes × {} GPUs = {gpus}: every GPU of \
                 the group must hold one rank (e.g. --tp {gpus}, or --tp {} --pp {})",
                tp * pp,
                self.nodes,
                self.gpus_per_node,
                self.gpus_per_node,
                self.nodes
            )));
        }
        let heads = self
            .attention_heads
            .or_else(|| self.facts().map(|f| f.attention_heads));
        if let Some(problem) = heads.and_then(|h| models::tp_problem(tp, h)) {
            return Err(Error::Params(format!(
                "{problem}; change --tp/--pp or --nodes/--gpus-per-node"
            )));
        }
        Ok(())
    }
}

/// Parses `K=V` (for `--env`, `--node-selector`).
pub fn key_value(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(Error::Params(format!("`{s}` is not KEY=VALUE"))),
    }
}

/// Parses a toleration `KEY[=VALUE][:EFFECT]` (as `kubectl taint` writes taints); without a
/// value it tolerates any value of the key.
pub fn toleration(s: &str) -> Result<Value> {
    let (kv, effect) = match s.rsplit_once(':') {
        Some((kv, e)) => (kv, Some(e)),
        None => (s, None),
    };
    if let Some(e) = effect {
        if !matches!(e, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(Error::Params(format!(
                "--tolerations `{s}`: effect `{e}` is not NoSchedule, PreferNoSchedule or NoExecute"
            )));
        }
    }
    let mut t = match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => json!({"key": k, "operator": "Equal", "value": v}),
        None if !kv.is_empty() => json!({"key": kv, "operator": "Exists"}),
        _ => return Err(Error::Params(format!("--tolerations `{s}`: no key"))),
    };
    if let Some(e) = effect {
        t["effect"] = json!(e);
    }
    Ok(t)
}

pub(super) fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_and_key_values_parse_like_kubectl() {
        assert_eq!(
            toleration("gpu=a800:NoSchedule").expect("parses"),
            json!({"key": "gpu", "operator": "Equal", "value": "a800", "effect": "NoSchedule"})
        );
        assert_eq!(
            toleration("nvidia.com/gpu").expect("parses"),
            json!({"key": "nvidia.com/gpu", "operator": "Exists"})
        );
        assert!(toleration("gpu:Sometimes").is_err());
        assert_eq!(
            key_value("A=b=c").expect("parses"),
            ("A".into(), "b=c".into())
        );
        assert!(key_value("novalue").is_err());
    }

    #[test]
    fn memory_fits_the_node_share_of_the_load() {
        let mut p = Params::new(InferenceEngine::Sglang, "deepseek-ai/DeepSeek-R1");
        p.nodes = 2;
        // 321 GB per node + a quarter + 32 Gi shm, in 16 Gi steps.
        assert_eq!(p.engine_memory(), "416Gi");
        p.nodes = 1;
        assert_eq!(p.engine_memory(), "784Gi");
        p.memory = Some("1Ti".into());
        assert_eq!(p.engine_memory(), "1Ti");
    }

    #[test]
    fn tp_against_gpus_and_heads() {
        let mut p = Params::new(InferenceEngine::Sglang, "deepseek-ai/DeepSeek-R1");
        p.nodes = 3;
        let err = p.validate().unwrap_err().to_string();
        assert!(
            err.contains("size 24 does not divide") && err.contains("128"),
            "{err}"
        );
        p.nodes = 2;
        p.tp = Some(8);
        p.pp = Some(1);
        assert!(p.validate().unwrap_err().to_string().contains("= 8 GPUs"));
        p.pp = Some(2);
        assert!(p.validate().is_ok());
        assert!(matches!(p.validate(), Ok(())));
    }
}
