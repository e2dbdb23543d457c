//! `ferry deploy render`: a consistent set of manifests (Namespace, storage, download, PodGroup,
//! LeaderWorkerSet or Deployment, Service, optional pre-warm DaemonSet) from a few parameters.
//! The render is linted before it is printed, so what comes out passes `ferry lint`.

use std::path::PathBuf;

use ferry_deploy::engine::InferenceEngine;
use ferry_deploy::lint::{self, Options};
use ferry_deploy::objects::Object;
use ferry_deploy::render::{self, Params, Scheduler, Storage};

#[derive(clap::Args)]
#[command(after_help = crate::help::DEPLOY_RENDER)]
pub struct RenderArgs {
    /// The inference engine: sglang or vllm.
    #[arg(long)]
    engine: InferenceEngine,
    /// Hub repository to serve, ORG/NAME.
    #[arg(long)]
    model: String,
    /// Nodes per engine instance: 1 renders a Deployment, more a LeaderWorkerSet of that size.
    #[arg(long, default_value_t = 1, value_parser = crate::args::positive::<u64>)]
    nodes: u64,
    /// GPUs per node (the nvidia.com/gpu limit of each pod).
    #[arg(long, default_value_t = 8, value_parser = crate::args::positive::<u64>)]
    gpus_per_node: u64,
    /// Tensor-parallel size (default: every GPU for SGLang, GPUs per node for vLLM).
    #[arg(long)]
    tp: Option<u64>,
    /// Pipeline-parallel size (default: 1 for SGLang, --nodes for vLLM). TP × PP must equal
    /// nodes × GPUs per node.
    #[arg(long)]
    pp: Option<u64>,
    /// The model's config.json: TP must divide its num_attention_heads (known models need none).
    #[arg(long, value_name = "CONFIG_JSON")]
    model_config: Option<PathBuf>,
    /// The shared ReadWriteMany PVC holding the model.
    #[arg(long, default_value = "models")]
    pvc: String,
    /// StorageClass of the PVC (a ReadWriteMany one: CFS-Turbo, NFS, CephFS, ...).
    #[arg(long, default_value = "cfs-turbo")]
    storage_class: String,
    /// Size of the PVC (DeepSeek-R1 is 642 GB).
    #[arg(long, default_value = "1Ti")]
    pvc_size: String,
    /// Keep the model on each node's own disk (e.g. local NVMe) at this host path instead of a
    /// shared PVC: the download runs once per node (a DaemonSet) and each gate checks its node's
    /// copy. The directory must exist and be writable by uid 65532.
    #[arg(long, value_name = "HOST_PATH", conflicts_with_all = ["pvc", "storage_class"])]
    local_dir: Option<String>,
    /// Namespace to put every object in (default: none, i.e. where it is applied).
    #[arg(long)]
    namespace: Option<String>,
    /// Base name of the objects (default: the model's name, lower-cased).
    #[arg(long)]
    name: Option<String>,
    /// Pods of the Indexed download Job, each fetching one slice.
    #[arg(long, default_value_t = 8, value_parser = crate::args::positive::<u64>)]
    slices: u64,
    /// Model hub: hf or modelscope.
    #[arg(long, default_value = "hf")]
    source: String,
    /// Revision (branch, tag or commit) to download.
    #[arg(long)]
    revision: Option<String>,
    /// Hugging Face endpoint of the download (a mirror, e.g. https://hf-mirror.com).
    #[arg(long, value_name = "URL")]
    hf_endpoint: Option<String>,
    /// Environment of the engine containers, KEY=VALUE (repeatable; replaces a rendered entry).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// One more word on the engine's command line (repeatable), e.g. --engine-arg=--enable-dp-attention.
    #[arg(long = "engine-arg", value_name = "ARG", allow_hyphen_values = true)]
    engine_args: Vec<String>,
    /// Node labels the GPU pods must have, KEY=VALUE (repeatable or comma-separated).
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    node_selector: Vec<String>,
    /// Taints to tolerate besides nvidia.com/gpu, KEY[=VALUE][:EFFECT] (repeatable or
    /// comma-separated).
    #[arg(long, value_name = "TAINT", value_delimiter = ',')]
    tolerations: Vec<String>,
    /// RDMA (InfiniBand / RoCE) between the nodes: request this device-plugin resource per pod,
    /// add IPC_LOCK and the NCCL/Gloo environment.
    #[arg(long, value_name = "RESOURCE", num_args = 0..=1, default_missing_value = render::DEFAULT_RDMA_RESOURCE)]
    rdma: Option<String>,
    /// With --rdma: host networking (RoCE without a secondary network, as in the SGLang docs):
    /// hostNetwork, dnsPolicy ClusterFirstWithHostNet, /dev/infiniband.
    #[arg(long, requires = "rdma")]
    host_network: bool,
    /// Gang scheduler: volcano renders schedulerName: volcano and a PodGroup of the group.
    #[arg(long, value_parser = ["default", "volcano"], default_value = "default")]
    scheduler: String,
    /// TKE super nodes: the GPU model (annotation eks.tke.cloud.tencent.com/gpu-type), e.g. A800.
    #[arg(long, value_name = "MODEL")]
    gpu_type: Option<String>,
    /// Memory request and limit of each engine container (default: this node's share of the
    /// weights + 25% + the 32 Gi /dev/shm).
    #[arg(long, value_name = "QUANTITY")]
    memory: Option<String>,
    /// The ferry image.
    #[arg(long, default_value = render::DEFAULT_FERRY_IMAGE)]
    image: String,
    /// The engine image (default: a pinned SGLang / vLLM release).
    #[arg(long)]
    engine_image: Option<String>,
    /// Add a DaemonSet that warms the page cache of every GPU node.
    #[arg(long)]
    prewarm: bool,
    /// Write one file per object and a kustomization.yaml into DIR instead of printing.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum DeployCommand {
    /// Render a consistent set of manifests from a few parameters.
    Render(Box<RenderArgs>),
}

pub async fn run(cmd: DeployCommand) -> anyhow::Result<()> {
    match cmd {
        DeployCommand::Render(a) => render_cmd(*a),
    }
}

fn params(a: &RenderArgs) -> anyhow::Result<Params> {
    let mut p = Params::new(a.engine, &a.model);
    p.nodes = a.nodes;
    p.gpus_per_node = a.gpus_per_node;
    p.tp = a.tp;
    p.pp = a.pp;
    if let Some(config) = &a.model_config {
        p.attention_heads = Some(ferry_deploy::models::heads_from_config(config)?);
    }
    p.pvc = a.pvc.clone();
    p.storage_class = a.storage_class.clone();
    p.pvc_size = a.pvc_size.clone();
    if let Some(dir) = &a.local_dir {
        p.storage = Storage::Local {
            host_path: dir.clone(),
        };
    }
    p.namespace = a.namespace.clone();
    p.name = a.name.clone();
    p.slices = a.slices;
    p.source = a.source.clone();
    p.revision = a.revision.clone();
    p.hf_endpoint = a.hf_endpoint.clone();
    p.ferry_image = a.image.clone();
    p.engine_image = a.engine_image.clone();
    p.prewarm = a.prewarm;
    p.env = a
        .env
        .iter()
        .map(|e| render::key_value(e))
        .collect::<Result<_, _>>()?;
    p.engine_args = a.engine_args.clone();
    p.node_selector = a
        .node_selector
        .iter()
        .map(|e| render::key_value(e))
        .collect::<Result<_, _>>()?;
    p.tolerations = a
        .tolerations
        .iter()
        .map(|t| render::toleration(t))
        .collect::<Result<_, _>>()?;
    p.rdma = a.rdma.clone();
    p.host_network = a.host_network;
    if a.scheduler == "volcano" {
        p.scheduler = Scheduler::Volcano;
    }
    p.gpu_type = a.gpu_type.clone();
    p.memory = a.memory.clone();
    p.command = Some(command_line());
    Ok(p)
}

/// The command line as typed, each word quoted when it needs it, for the render's header.
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, w)| if i == 0 { "ferry".to_string() } else { w })
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:@%+".contains(c));
            if plain {
                w
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn render_cmd(a: RenderArgs) -> anyhow::Result<()> {
    let params = params(&a)?;
    let objects = render::render(&params)?;
    let set: Vec<Object> = objects
        .iter()
        .map(|v| Object::new("render", v.clone()))
        .collect();
    let errors: Vec<String> = lint::lint(&set, &Options::default())
        .into_iter()
        .filter(|f| f.severity == lint::Severity::Error)
        .map(|f| format!("{} {}: {}", f.rule, f.object, f.message))
        .collect();
    if !errors.is_empty() {
        anyhow::bail!(
            "the render does not pass ferry lint (a bug):\n{}",
            errors.join("\n")
        );
    }
    let header = render::header(&params);
    match a.out {
        Some(dir) => {
            for path in render::write_dir(&objects, &dir, &header)? {
                outln!("{}", path.display());
            }
        }
        None => crate::output::raw(&render::to_yaml(&objects, &header)?),
    }
    Ok(())
}
