//! `ferry doctor`: will this model run on these GPUs with this engine? Reads the node (NVML, shm,
//! RDMA, disk, cgroup), the model (config.json, weight sizes) and the deployment flags, and prints
//! one finding per rule with its numbers and fix. Exits 1 when any check fails.

use std::path::PathBuf;

use anyhow::Context as _;

use ferry_sidecar::doctor::{
    self, gpu, CudaVersion, Deployment, Facts, ModelFacts, NodeFacts, Report, Severity,
};

use super::warm::TopologyArgs;

/// The engine's build and start-up flags the checks need (shared with `ferry sidecar`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct EngineArgs {
    /// The engine image; its CUDA version is read from the tag (`…-cu124`, `…-cu12.8`).
    #[arg(long)]
    pub engine_image: Option<String>,
    /// The image's CUDA version, when the tag does not say (e.g. 12.4).
    #[arg(long, value_parser = parse_cuda)]
    pub engine_cuda: Option<CudaVersion>,
    /// The context length the engine is started with [default: the model's
    /// max_position_embeddings].
    #[arg(long)]
    pub context_length: Option<u64>,
}

fn parse_cuda(s: &str) -> Result<CudaVersion, String> {
    CudaVersion::parse(s).ok_or_else(|| format!("`{s}` is not a CUDA version: use e.g. 12.4"))
}

impl EngineArgs {
    /// The deployment these flags and `topology` describe; tp left out is worked out from the
    /// GPUs (see `Deployment::resolve`).
    pub fn deployment(&self, topology: &TopologyArgs) -> Deployment {
        Deployment {
            engine: topology.engine,
            image: self.engine_image.clone(),
            image_cuda: self.engine_cuda.or_else(|| {
                self.engine_image
                    .as_deref()
                    .and_then(CudaVersion::from_image)
            }),
            tp: topology.tp.unwrap_or(0),
            pp: topology.pp.unwrap_or(1).max(1),
            nnodes: topology.nnodes(),
            gpus_per_node: topology.gpus_per_node,
            context_length: self.context_length,
        }
    }
}

#[derive(clap::Args)]
#[command(after_help = crate::help::DOCTOR)]
pub struct Args {
    /// The model directory (its config.json, and the manifest's or the files' sizes).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// A hub repo, ORG/NAME[@REV], not fetched yet: its config.json is downloaded alone and the
    /// weights' sizes come from the hub's listing.
    #[arg(long, conflicts_with = "model_dir")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub hub: crate::args::Hub,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
    /// Check against recorded facts of a GPU type instead of this node's GPUs (T4, V100, A10,
    /// A100, A800, H800, H100, H200), one per rank on each node.
    #[arg(long, value_name = "GPU")]
    pub assume_gpu: Option<String>,
    /// Print the facts and findings as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let listed = match &args.repo {
        Some(spec) => Some(from_hub(&args.hub, spec).await?),
        None => None,
    };
    let deployment = args.engine.deployment(&args.topology);
    let dir = args.model_dir.clone();
    let assume = args.assume_gpu.clone();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<Report> {
        let model = match (&dir, listed) {
            (_, Some(m)) => m,
            (Some(d), None) => ModelFacts::from_dir(d)?,
            (None, None) => ModelFacts::default(),
        };
        let mut node = NodeFacts::detect(dir.as_deref());
        if let Some(name) = &assume {
            assume_gpus(&mut node, name, &deployment)?;
        }
        Ok(doctor::diagnose(Facts {
            node,
            model,
            deployment,
        }))
    })
    .await??;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    let errors = report.errors().count();
    if errors > 0 {
        anyhow::bail!("{errors} check(s) failed: the engine will not run as configured");
    }
    Ok(())
}

/// Replaces the node's GPUs with `count` recorded ones of type `name`.
fn assume_gpus(node: &mut NodeFacts, name: &str, d: &Deployment) -> anyhow::Result<()> {
    let Some(g) = gpu::recorded(name) else {
        anyhow::bail!(
            "--assume-gpu {name}: no recorded facts for it\n  hint: use one of T4, V100, A10, \
             A100, A800, H800, H100, H200"
        );
    };
    let count = d.gpus_per_node.unwrap_or_else(|| {
        let mut d = d.clone();
        d.resolve(node);
        d.ranks_per_node()
    });
    node.nvml_error = None;
    node.gpus = (0..count.max(1))
        .map(|index| doctor::GpuFacts { index, ..g.clone() })
        .collect();
    Ok(())
}

fn print_report(r: &Report) {
    let f = &r.facts;
    let d = &f.deployment;
    outln!(
        "deployment: {} tp {} × pp {} on {} node(s){}",
        d.engine,
        d.tp,
        d.pp,
        d.nnodes,
        d.image.as_ref().map_or(String::new(), |i| format!(
            ", image {i} (CUDA {})",
            d.image_cuda.map_or("unknown".into(), |v| v.to_string())
        ))
    );
    print_node(&f.node);
    print_model(&f.model);
    outln!();
    for x in &r.findings {
        outln!("{:<8} {:<18} {}", x.severity.as_str(), x.rule, x.message);
        if let (Some(fix), true) = (&x.fix, x.severity >= Severity::Warning) {
            outln!("{:<27} fix: {fix}", "");
        }
    }
    let count = |s| r.findings.iter().filter(|x| x.severity == s).count();
    outln!();
    if r.ok && f.node.nvml_error.is_some() {
        outln!(
            "verdict: the model-side checks pass ({} passed, {} warnings, {} skipped); the GPU \
             checks did not run (no NVIDIA driver)",
            count(Severity::Pass),
            count(Severity::Warning),
            count(Severity::Skipped)
        );
    } else if r.ok {
        outln!(
            "verdict: should run ({} checks passed, {} warnings, {} skipped)",
            count(Severity::Pass),
            count(Severity::Warning),
            count(Severity::Skipped)
        );
    } else {
        outln!(
            "verdict: will not run as configured ({} errors, {} warnings)",
            count(Severity::Error),
            count(Severity::Warning)
        );
    }
}

fn print_node(n: &NodeFacts) {
    match &n.nvml_error {
        Some(why) => outln!("node: {why}"),
        None => {
            for g in &n.gpus {
                outln!(
                    "gpu {}: {}, {}, {:.1} GiB{}",
                    g.index,
                    g.name,
                    g.capability,
                    g.memory_bytes as f64 / (1u64 << 30) as f64,
                    g.fabric
                        .as_ref()
                        .map_or(String::new(), |s| format!(", fabric {s:?}"))
                );
            }
            outln!(
                "driver: {}, CUDA up to {}",
                n.driver_version.as_deref().unwrap_or("unknown"),
                n.cuda_driver_version
                    .map_or("unknown".into(), |v| v.to_string())
            );
        }
    }
    let gb = |b: Option<u64>| b.map_or("unknown".into(), |b| format!("{:.1} GB", b as f64 / 1e9));
    let rdma: Vec<&str> = n.rdma_devices.iter().map(|d| d.name.as_str()).collect();
    outln!(
        "node: /dev/shm {}, RDMA {}, disk free {}{}, cgroup memory limit {}, MemAvailable {}",
        gb(n.shm_bytes),
        if rdma.is_empty() {
            "none".to_string()
        } else {
            rdma.join(",")
        },
        gb(n.disk_free_bytes),
        n.disk_path
            .as_ref()
            .map_or(String::new(), |p| format!(" at {}", p.display())),
        n.memory.cgroup_limit.map_or("none".into(), |b| gb(Some(b))),
        gb(n.memory.mem_available),
    );
}

fn print_model(m: &ModelFacts) {
    let Some(c) = &m.config else {
        outln!(
            "model: no config.json{}",
            m.dir
                .as_ref()
                .map_or(" (no --model-dir)".into(), |d| format!(
                    " in {}",
                    d.display()
                ))
        );
        return;
    };
    let n = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    outln!(
        "model: {} {}{}; {} heads, {} KV heads, {} layers, hidden {}, context {}{}",
        c.architecture.as_deref().unwrap_or("unknown architecture"),
        c.torch_dtype.as_deref().unwrap_or("?"),
        c.quant_method
            .as_deref()
            .map_or(String::new(), |q| format!(", {q} weights")),
        n(c.num_attention_heads),
        n(c.kv_heads()),
        n(c.num_hidden_layers),
        n(c.hidden_size),
        n(c.max_position_embeddings),
        if c.is_mla() {
            format!(
                ", MLA (kv_lora_rank {}, rope {})",
                n(c.kv_lora_rank),
                n(c.qk_rope_head_dim)
            )
        } else {
            String::new()
        }
    );
    if let (Some(w), Some(src)) = (m.weight_bytes, m.weight_source) {
        outln!(
            "model: {:.1} GB of weights (from the {src})",
            w as f64 / 1e9
        );
    }
}

/// The facts of a hub repo before any weight is downloaded: the listing's weight sizes and its
/// config.json, fetched alone (verified as every fetch is) into a private temporary directory.
async fn from_hub(hub: &crate::args::Hub, spec: &str) -> anyhow::Result<ModelFacts> {
    use ferry_fetcher::origin::{hub_origin::list, OriginSpec};
    use ferry_fetcher::target::TargetSpec;
    let repo = hub.repo(spec)?;
    let snapshot = list(&repo, &[], &[])
        .await
        .with_context(|| format!("listing {spec}"))?;
    let weights = snapshot
        .files
        .iter()
        .filter(|f| ferry_sidecar::doctor::model::is_weight(&f.path))
        .map(|f| f.size)
        .sum();
    let tmp = std::env::temp_dir().join(format!(
        "ferry-doctor-{}-{}",
        std::process::id(),
        snapshot.commit
    ));
    let opts = ferry_fetcher::FetchOptions {
        origin: OriginSpec::Hub(repo.clone()),
        target: TargetSpec::Dir(tmp.clone()),
        include: vec!["config.json".into()],
        exclude: Vec::new(),
        transfer: ferry_fetcher::transfer::TransferOptions::default(),
        slice: None,
        dynamic: false,
        s3_endpoint: None,
        replace: false,
        offline: false,
    };
    let fetched = ferry_fetcher::fetch(
        opts,
        repo.kind.token_from_env(),
        std::sync::Arc::new(ferry_fetcher::events::Silent),
    )
    .await
    .with_context(|| format!("fetching config.json of {spec}"));
    let facts = fetched.and_then(|_| Ok(ModelFacts::from_listing(&tmp, weights)?));
    let _ = std::fs::remove_dir_all(&tmp);
    facts
}
