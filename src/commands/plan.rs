//! `ferry plan slices` and `ferry plan warm`: partition the work, print a table or JSON.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ferry_sharder::loader::{self, Parallelism, ReadMode};
use ferry_sharder::model::ModelLayout;
use ferry_sharder::slices::{plan_slices, SliceInput};
use ferry_sharder::InferenceEngine;
use ferry_sharder::{sim, Error};

use crate::format::size as human;

#[derive(clap::Subcommand)]
pub enum PlanCommand {
    /// Byte-balanced download slices for an Indexed Job (`ferry fetch --slice I/N`).
    Slices(SlicesArgs),
    /// Which bytes each node reads when the engine loads the model (`ferry warm --plan`).
    Warm(WarmArgs),
}

/// Where the model's file list comes from.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// A model directory (headers, index and config.json are read; no tensor data).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A JSON file list: `[{"path", "size"}]`, or an object with such a `files` array (a ferry
    /// manifest). Slices only.
    #[arg(long)]
    files: Option<PathBuf>,
    /// A built-in full-scale layout instead of a directory: deepseek-r1 (163 shards, 688.6 GB)
    /// or llama-70b.
    #[arg(long)]
    simulate: Option<String>,
    /// A repo on the hub, ORG/NAME or ORG/NAME@REVISION: its listing, the same plan
    /// `ferry fetch --slice I/N` computes for it. Slices only.
    #[arg(long, value_name = "ORG/NAME[@REV]")]
    repo: Option<String>,
}

/// With --repo: which hub (--source, --endpoint; --hub is an old name of --source), and which
/// files (as given to `ferry fetch`).
#[derive(clap::Args)]
pub struct HubArgs {
    #[command(flatten)]
    hub: crate::args::Hub,
    /// With --repo: only files matching these globs (repeatable), as fetched.
    #[arg(long, requires = "repo")]
    include: Vec<String>,
    /// With --repo: leave out files matching these globs (repeatable), as fetched.
    #[arg(long, requires = "repo")]
    exclude: Vec<String>,
}

#[derive(clap::Args)]
#[command(after_help = crate::help::PLAN_SLICES)]
pub struct SlicesArgs {
    /// Number of slices (the Indexed Job's completions).
    #[arg(long, value_parser = crate::args::positive::<u32>)]
    count: u32,
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    hub: HubArgs,
    /// The plan as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
#[command(after_help = crate::help::PLAN_WARM)]
pub struct WarmArgs {
    /// Nodes serving one replica of the model.
    #[arg(long)]
    nnodes: u32,
    /// GPUs per node.
    #[arg(long)]
    gpus_per_node: u32,
    /// Tensor-parallel size (default: all GPUs / pp).
    #[arg(long, default_value_t = 0)]
    tp: u32,
    /// Pipeline-parallel size.
    #[arg(long, default_value_t = 1)]
    pp: u32,
    /// sglang or vllm.
    #[arg(long, default_value = "sglang")]
    engine: InferenceEngine,
    /// Expert parallelism over the TP group (SGLang --ep-size = tp, vLLM --enable-expert-parallel).
    #[arg(long)]
    ep: bool,
    /// The engine also loads multi-token-prediction layers (speculative decoding, e.g. NextN).
    #[arg(long)]
    mtp: bool,
    /// How the loader reads shards: tensors (default lazy mmap of both engines: only what each
    /// rank loads) or full (whole files on every rank: disable_mmap, eager, prefetch loaders).
    #[arg(long, default_value = "tensors")]
    read: ReadMode,
    #[command(flatten)]
    source: Source,
    /// The plan as JSON on stdout (what `ferry warm --plan` reads).
    #[arg(long)]
    json: bool,
    /// Also write the JSON plan to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub async fn run(cmd: PlanCommand) -> anyhow::Result<()> {
    let listed = match &cmd {
        PlanCommand::Slices(a) => match &a.source.repo {
            Some(spec) => Some(hub_files(&a.hub, spec).await?),
            None => None,
        },
        PlanCommand::Warm(a) if a.source.repo.is_some() => {
            return Err(Error::CannotPlan {
                reason: "a warm plan needs the tensors of each shard".into(),
                hint: "use --dir DIR or --simulate MODEL (a hub listing has no tensors)".into(),
            }
            .into())
        }
        PlanCommand::Warm(_) => None,
    };
    tokio::task::spawn_blocking(move || match cmd {
        PlanCommand::Slices(a) => slices(a, listed),
        PlanCommand::Warm(a) => warm(a),
    })
    .await
    .context("the planning task failed")?
}

fn layout_of(src: &Source) -> anyhow::Result<ModelLayout> {
    if let Some(name) = &src.simulate {
        return Ok(sim::by_name(name)?.layout);
    }
    if let Some(dir) = &src.dir {
        return Ok(ModelLayout::from_dir(dir)?);
    }
    Err(Error::CannotPlan {
        reason: "a warm plan needs the tensors of each shard".into(),
        hint: "use --dir DIR or --simulate MODEL (a file list has no tensors)".into(),
    }
    .into())
}

fn read_file_list(path: &Path) -> anyhow::Result<Vec<SliceInput>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))?;
    let list = v.get("files").cloned().unwrap_or(v);
    serde_json::from_value(list).map_err(|e| {
        Error::CannotPlan {
            reason: format!("{}: not a file list: {e}", path.display()),
            hint: r#"give a JSON array of {"path": "...", "size": N}, or a ferry manifest"#.into(),
        }
        .into()
    })
}

/// The files `ferry fetch` would take from the hub for `spec` (ORG/NAME[@REV]), in the same
/// order and selection, so the plan printed is the plan the pods compute.
async fn hub_files(hub: &HubArgs, spec: &str) -> anyhow::Result<Vec<SliceInput>> {
    let repo = hub.hub.repo(spec)?;
    let snapshot =
        ferry_fetcher::origin::hub_origin::list(&repo, &hub.include, &hub.exclude).await?;
    Ok(snapshot
        .files
        .into_iter()
        .map(|f| SliceInput {
            path: f.path,
            size: f.size,
        })
        .collect())
}

fn slices(a: SlicesArgs, listed: Option<Vec<SliceInput>>) -> anyhow::Result<()> {
    if a.count == 0 {
        return Err(Error::CannotPlan {
            reason: "--count 0".into(),
            hint: "give the number of slices, at least 1".into(),
        }
        .into());
    }
    let files = match (listed, &a.source.files) {
        (Some(listed), _) => listed,
        (None, Some(p)) => read_file_list(p)?,
        (None, None) => match &a.source.dir {
            // A directory being fetched may lack headers yet: slices need sizes only.
            Some(dir) => {
                let mut v = Vec::new();
                for rel in ferry_sharder::verify::scan(dir)? {
                    let size = std::fs::metadata(dir.join(&rel))
                        .map_err(|e| Error::io(dir.join(&rel), e))?
                        .len();
                    v.push(SliceInput { path: rel, size });
                }
                v
            }
            None => layout_of(&a.source)?.files(),
        },
    };
    let plan = plan_slices(&files, a.count);
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    let total: u64 = plan.iter().map(|s| s.bytes).sum();
    let mean = total as f64 / f64::from(a.count);
    outln!(
        "{:>5}  {:>6}  {:>6}  {:>10}  {:>7}",
        "slice",
        "files",
        "split",
        "bytes",
        "share"
    );
    for s in &plan {
        let split = s
            .pieces
            .iter()
            .filter(|p| files.iter().any(|f| f.path == p.path && f.size != p.len))
            .count();
        outln!(
            "{:>5}  {:>6}  {:>6}  {:>10}  {:>6.2}%",
            s.index,
            s.pieces.len(),
            split,
            human(s.bytes),
            if total > 0 {
                s.bytes as f64 * 100.0 / total as f64
            } else {
                0.0
            }
        );
    }
    let max = plan.iter().map(|s| s.bytes).max().unwrap_or(0);
    outln!(
        "{} files, {} in {} slices; largest slice / mean = {:.4}",
        files.len(),
        human(total),
        a.count,
        if mean > 0.0 { max as f64 / mean } else { 1.0 }
    );
    Ok(())
}

fn warm(a: WarmArgs) -> anyhow::Result<()> {
    let layout = layout_of(&a.source)?;
    let plan = loader::plan_warm(
        &layout,
        Parallelism {
            engine: a.engine,
            nnodes: a.nnodes,
            gpus_per_node: a.gpus_per_node,
            tp: a.tp,
            pp: a.pp,
            ep: a.ep,
            mtp: a.mtp,
            read: a.read,
        },
    )?;
    if let Some(out) = &a.out {
        plan.write(out)?;
    }
    if a.json {
        outln!("{}", plan.to_json());
        return Ok(());
    }
    outln!(
        "{} on {} node(s) × {} GPU(s): tp {} pp {}; model {}",
        plan.engine,
        plan.nnodes,
        plan.gpus_per_node,
        plan.tp,
        plan.pp,
        human(plan.model_bytes)
    );
    outln!(
        "{:>4}  {:>9}  {:>6}  {:>7}  {:>10}  {:>7}",
        "node",
        "layers",
        "files",
        "ranges",
        "bytes",
        "of model"
    );
    for n in &plan.nodes {
        let mut files: Vec<&str> = n.ranges.iter().map(|r| r.path.as_str()).collect();
        files.dedup();
        let layers = n
            .layers
            .map(|[a, b]| format!("{a}-{b}"))
            .unwrap_or_else(|| "all".into());
        outln!(
            "{:>4}  {:>9}  {:>6}  {:>7}  {:>10}  {:>6.1}%",
            n.node_rank,
            layers,
            files.len(),
            n.ranges.len(),
            human(n.bytes),
            n.bytes as f64 * 100.0 / plan.model_bytes.max(1) as f64
        );
    }
    outln!("loader: {}", plan.loader);
    Ok(())
}
