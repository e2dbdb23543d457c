//! `ferry warm`: load a model, or this node's part of it, into the page cache. Also the flags
//! that pick this node's part ([`ShareArgs`], [`TopologyArgs`]), which `ferry sidecar` shares.

use std::path::PathBuf;

use anyhow::Context as _;
use ferry_sharder::loader::{Parallelism, ReadMode};
use ferry_sharder::InferenceEngine;
use ferry_sidecar::share::WarmShare;
use ferry_sidecar::warm::{self, WarmControl, WarmOptions};

/// How the engine spreads over the group (a pod of an LWS group reads the node count from
/// LWS_GROUP_SIZE).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TopologyArgs {
    /// The serving engine (its loader decides which bytes each rank reads).
    #[arg(long, default_value_t = InferenceEngine::Sglang)]
    pub engine: InferenceEngine,
    /// Tensor-parallel size (the engine's --tp / --tensor-parallel-size).
    #[arg(long)]
    pub tp: Option<u32>,
    /// Pipeline-parallel size.
    #[arg(long)]
    pub pp: Option<u32>,
    /// Nodes in the group [default: $LWS_GROUP_SIZE, else 1].
    #[arg(long, env = "LWS_GROUP_SIZE")]
    pub nnodes: Option<u32>,
    /// GPUs the engine uses on each node [default: tp × pp / nnodes].
    #[arg(long)]
    pub gpus_per_node: Option<u32>,
}

impl TopologyArgs {
    /// Whether any topology flag (or LWS_GROUP_SIZE) was given.
    pub fn given(&self) -> bool {
        self.tp.is_some() || self.pp.is_some() || self.nnodes.is_some()
    }

    pub fn nnodes(&self) -> u32 {
        self.nnodes.unwrap_or(1).max(1)
    }

    /// The parallelism to plan this group's warm with.
    pub fn parallelism(&self) -> anyhow::Result<Parallelism> {
        let nnodes = self.nnodes();
        let ranks = self.tp.unwrap_or(0) * self.pp.unwrap_or(1).max(1);
        let gpus_per_node = match self.gpus_per_node {
            Some(g) => g,
            None if ranks > 0 && ranks.is_multiple_of(nnodes) => ranks / nnodes,
            None => anyhow::bail!(
                "cannot tell the GPUs per node from tp {:?} and {nnodes} nodes\n  hint: pass \
                 --gpus-per-node (and --tp)",
                self.tp
            ),
        };
        Ok(Parallelism {
            engine: self.engine,
            nnodes,
            gpus_per_node,
            tp: self.tp.unwrap_or(0),
            pp: self.pp.unwrap_or(1),
            ep: false,
            mtp: false,
            read: ReadMode::Tensors,
        })
    }
}

/// Which part of the model this node warms, and with how many readers.
#[derive(clap::Args, Clone, Debug)]
pub struct ShareArgs {
    /// A warm plan from `ferry plan warm`: warm only this node's byte ranges.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    #[command(flatten)]
    pub rank: crate::args::NodeRank,
    /// Parallel readers (default: from the storage: 8 on a local disk, 2 on a spinning one, 2 per
    /// core from 16 to 64 on network storage such as NFS, CFS or FUSE).
    #[arg(long, value_parser = crate::args::positive::<usize>)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub topology: TopologyArgs,
}

impl ShareArgs {
    /// A plan file's node; else, with --tp/--pp/--nnodes (or LWS_GROUP_SIZE), this node's part
    /// of the plan computed from the model; else the whole model.
    pub fn share(&self) -> anyhow::Result<WarmShare> {
        let rank = self.rank.get();
        if let Some(plan) = &self.plan {
            let rank =
                rank.ok_or_else(|| ferry_sidecar::Error::NeedsRank { plan: plan.clone() })?;
            return Ok(WarmShare::Plan {
                path: plan.clone(),
                rank,
            });
        }
        if !self.topology.given() {
            return Ok(WarmShare::Whole);
        }
        let t = &self.topology;
        if t.tp.is_none() && t.gpus_per_node.is_none() {
            // LWS_GROUP_SIZE alone (every LWS pod has it) does not say how ranks are spread.
            tracing::warn!(
                "{} nodes but no --tp or --gpus-per-node: warming the whole model (pass --tp to \
                 warm only this node's share)",
                t.nnodes()
            );
            return Ok(WarmShare::Whole);
        }
        let parallelism = self.topology.parallelism()?;
        let rank = match (rank, parallelism.nnodes) {
            (Some(r), _) => r,
            (None, 1) => 0,
            (None, n) => anyhow::bail!(
                "{n} nodes, but this node's rank is unknown\n  hint: pass --node-rank, or set \
                 NODE_RANK (LWS sets LWS_WORKER_INDEX on its pods)"
            ),
        };
        Ok(WarmShare::Computed { parallelism, rank })
    }

    pub fn options(&self) -> WarmOptions {
        WarmOptions {
            jobs: self.jobs,
            ..WarmOptions::default()
        }
    }
}

#[derive(clap::Args)]
#[command(after_help = crate::help::WARM)]
pub struct Args {
    /// The model directory (its manifest's files, or every file in it when there is none).
    pub dir: PathBuf,
    #[command(flatten)]
    pub share: ShareArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Read with pread into a buffer instead of sendfile into /dev/null (for benchmarks).
    #[arg(long, hide = true)]
    pub copy: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let share = args.share.share()?;
    let dir = args.dir.clone();
    let targets = tokio::task::spawn_blocking(move || share.targets(&dir))
        .await
        .context("the planning thread died")??;
    let opts = WarmOptions {
        zero_copy: !args.copy,
        ..args.share.options()
    };
    let report =
        tokio::task::spawn_blocking(move || warm::warm(&targets, &opts, &WarmControl::default()))
            .await
            .context("the warm thread died")??;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    outln!(
        "warmed {} ({}) in {:.2} s: {} with {} ({})",
        crate::format::size(report.bytes),
        crate::format::count(report.files as u64, "file"),
        report.seconds,
        crate::format::rate(report.bytes_per_second),
        crate::format::count(report.jobs as u64, "reader"),
        report.jobs_reason
    );
    outln!(
        "page cache residency: {:.1} % before, {:.1} % after",
        report.before.ratio() * 100.0,
        report.after.ratio() * 100.0
    );
    for w in &report.warnings {
        outln!("warning: {w}");
    }
    Ok(())
}
