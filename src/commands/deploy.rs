//! `ferry deploy render`: a consistent set of manifests (PVC, download Job, LeaderWorkerSet or
//! Deployment, Service, optional pre-warm DaemonSet) from a few parameters. The render is linted
//! before it is printed, so what comes out passes `ferry lint`.

use std::path::PathBuf;

use ferry_deploy::engine::EngineKind;
use ferry_deploy::lint::{self, Options};
use ferry_deploy::objects::Object;
use ferry_deploy::render::{self, Params};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Engine {
    Sglang,
    Vllm,
}

#[derive(clap::Args)]
pub struct RenderArgs {
    /// The inference engine.
    #[arg(long, value_enum)]
    engine: Engine,
    /// Hub repository to serve, ORG/NAME.
    #[arg(long)]
    model: String,
    /// Nodes per engine instance: 1 renders a Deployment, more a LeaderWorkerSet of that size.
    #[arg(long, default_value_t = 1)]
    nodes: u64,
    /// GPUs per node (the nvidia.com/gpu limit of each pod).
    #[arg(long, default_value_t = 8)]
    gpus_per_node: u64,
    /// The shared ReadWriteMany PVC holding the model.
    #[arg(long, default_value = "models")]
    pvc: String,
    /// StorageClass of the PVC (a ReadWriteMany one: CFS-Turbo, NFS, CephFS, ...).
    #[arg(long, default_value = "cfs-turbo")]
    storage_class: String,
    /// Size of the PVC (DeepSeek-R1 is 642 GB).
    #[arg(long, default_value = "1Ti")]
    pvc_size: String,
    /// Namespace to put every object in (default: none, i.e. where it is applied).
    #[arg(long)]
    namespace: Option<String>,
    /// Base name of the objects (default: the model's name, lower-cased).
    #[arg(long)]
    name: Option<String>,
    /// Pods of the Indexed download Job, each fetching one slice.
    #[arg(long, default_value_t = 8)]
    slices: u64,
    /// Model hub: hf or modelscope.
    #[arg(long, default_value = "hf")]
    source: String,
    /// Revision (branch, tag or commit) to download.
    #[arg(long)]
    revision: Option<String>,
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
    Render(RenderArgs),
}

pub async fn run(cmd: DeployCommand) -> anyhow::Result<()> {
    match cmd {
        DeployCommand::Render(a) => render_cmd(a),
    }
}

fn render_cmd(a: RenderArgs) -> anyhow::Result<()> {
    let engine = match a.engine {
        Engine::Sglang => EngineKind::Sglang,
        Engine::Vllm => EngineKind::Vllm,
    };
    let params = Params {
        engine,
        model: a.model,
        nodes: a.nodes,
        gpus_per_node: a.gpus_per_node,
        pvc: a.pvc,
        storage_class: a.storage_class,
        pvc_size: a.pvc_size,
        namespace: a.namespace,
        name: a.name,
        slices: a.slices,
        source: a.source,
        revision: a.revision,
        ferry_image: a.image,
        engine_image: a.engine_image,
        prewarm: a.prewarm,
    };
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
    let header = format!(
        "Rendered by `ferry deploy render --engine {} --model {} --nodes {} --gpus-per-node {}`.\n\
         Check with: ferry lint <this>; apply the PVC and Job first, then the rest.",
        engine.name(),
        params.model,
        params.nodes,
        params.gpus_per_node
    );
    match a.out {
        Some(dir) => {
            for path in render::write_dir(&objects, &dir, &header)? {
                println!("{}", path.display());
            }
        }
        None => print!("{}", render::to_yaml(&objects, &header)?),
    }
    Ok(())
}
