//! Which bytes of the model this node warms: all of them, its node of a warm plan written by
//! `ferry plan warm`, or its node of a plan the gate computes itself from the deployment's
//! TP/PP, node count and its rank (what the rendered LWS gates do, so that each node of a group
//! warms only the part its engine ranks will read).

use std::path::{Path, PathBuf};

use ferry_sharder::loader::{self, Parallelism};
use ferry_sharder::model::ModelLayout;
use ferry_sharder::warm_plan::WarmPlan;

use crate::error::{Error, Result};
use crate::warm::{self, WarmTarget};

/// This node's part of the model.
#[derive(Debug, Clone, Default)]
pub enum WarmShare {
    /// Every file of the model.
    #[default]
    Whole,
    /// Node `rank` of a plan file.
    Plan { path: PathBuf, rank: u32 },
    /// Node `rank` of the plan for `parallelism`, made from the model's headers on the spot.
    Computed { parallelism: Parallelism, rank: u32 },
}

impl WarmShare {
    /// The byte ranges to warm under `dir` (blocking: reads the manifest, or the plan, or every
    /// shard header).
    pub fn targets(&self, dir: &Path) -> Result<Vec<WarmTarget>> {
        match self {
            WarmShare::Whole => warm::model_targets(dir),
            WarmShare::Plan { path, rank } => {
                node_targets(dir, &WarmPlan::read(path)?, *rank, path.clone())
            }
            WarmShare::Computed { parallelism, rank } => {
                let layout = ModelLayout::from_dir(dir)?;
                let plan = loader::plan_warm(&layout, parallelism.clone())?;
                let name = PathBuf::from(format!(
                    "(the plan for {} nodes × {} GPUs, tp {} pp {})",
                    parallelism.nnodes, parallelism.gpus_per_node, parallelism.tp, parallelism.pp
                ));
                node_targets(dir, &plan, *rank, name)
            }
        }
    }

    /// In words, for logs.
    pub fn describe(&self) -> String {
        match self {
            WarmShare::Whole => "the whole model".into(),
            WarmShare::Plan { path, rank } => format!("node {rank} of {}", path.display()),
            WarmShare::Computed {
                parallelism: p,
                rank,
            } => format!(
                "node {rank}'s share of {} nodes × {} GPUs (tp {}, pp {}, {})",
                p.nnodes, p.gpus_per_node, p.tp, p.pp, p.engine
            ),
        }
    }
}

/// Node `rank`'s ranges of `plan`, as targets under `dir`; `name` names the plan in errors.
pub fn node_targets(
    dir: &Path,
    plan: &WarmPlan,
    rank: u32,
    name: PathBuf,
) -> Result<Vec<WarmTarget>> {
    let node = plan.node(rank).ok_or(Error::NoSuchNode {
        plan: name,
        rank,
        nodes: plan.nodes.len(),
    })?;
    Ok(node
        .ranges
        .iter()
        .map(|r| WarmTarget {
            path: dir.join(&r.path),
            offset: r.offset,
            len: r.len,
        })
        .collect())
}
