//! How serving engines read a checkpoint at load time, and so which bytes each node needs warm.
//!
//! What the engines do (vLLM and SGLang share the loader SGLang forked from vLLM):
//! - The default loader (`--load-format auto`) opens every shard with safetensors'
//!   `safe_open`/`load_file`, which maps the file (`UntypedStorage.from_file`, a private mmap) and
//!   hands out zero-copy tensor views. A page is read from disk only when the model copies a
//!   tensor to its GPU. So a rank reads: the header of every shard; whole tensors it replicates;
//!   its rows of tensors split along dim 0 (column-parallel q/k/v/gate/up projections, vocab-
//!   parallel embedding and lm_head); every page of tensors split along dim 1 (row-parallel o/down
//!   projections: a rank's share of each row is smaller than a page); nothing of tensors it skips
//!   (layers of other pipeline stages, `PPMissingLayer`; DeepSeek's multi-token-prediction layer
//!   unless speculative decoding is on; with expert parallelism, other ranks' experts).
//!   Pipeline stages own layers as vLLM's `get_pp_indices` assigns them (SGLang uses the same):
//!   `L / pp` each, the remainder going one each to the stages before the last.
//! - Loaders that read whole files (SGLang `disable_mmap`, vLLM `safetensors_load_strategy=eager`,
//!   prefetching loaders, fastsafetensors, the Run:ai streamer) read every byte of every shard on
//!   every rank, whatever the parallelism: plan them with [`ReadMode::Full`].
//!
//! Global rank `g = pp_rank × tp + tp_rank` (tensor-parallel groups are consecutive ranks); node
//! `n` runs ranks `[n × G, (n + 1) × G)`. Page granularity and kernel read-ahead around each
//! touched range (128 KiB by default) are not modelled: ranges are exact tensor bytes.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::model::{expert_of, layer_of, ModelLayout, WeightFile};
use crate::range::{coalesce, FileRange};
use crate::warm_plan::{NodePlan, WarmPlan, FORMAT};
use crate::InferenceEngine;

/// How the engine's loader reads a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Lazy mmap (the default of both engines): only the tensors, and rows, a rank loads.
    #[default]
    Tensors,
    /// Whole files on every rank.
    Full,
}

impl std::str::FromStr for ReadMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tensors" | "mmap" | "lazy" => Ok(ReadMode::Tensors),
            "full" | "eager" => Ok(ReadMode::Full),
            _ => Err(format!("unknown read mode `{s}`: use tensors or full")),
        }
    }
}

/// The deployment a plan is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parallelism {
    pub engine: InferenceEngine,
    pub nnodes: u32,
    pub gpus_per_node: u32,
    pub tp: u32,
    pub pp: u32,
    /// Expert parallelism over the tensor-parallel group (SGLang `--ep-size` = tp, vLLM
    /// `--enable-expert-parallel`): each rank loads only its share of the routed experts.
    pub ep: bool,
    /// Multi-token-prediction (speculative decoding) layers are loaded too.
    pub mtp: bool,
    pub read: ReadMode,
}

impl Parallelism {
    /// `tp` or `pp` left at 0 are derived: pp defaults to 1, tp to the GPUs left per stage.
    pub fn resolve(mut self) -> Result<Parallelism> {
        let world = self.nnodes.saturating_mul(self.gpus_per_node);
        if world == 0 {
            return Err(Error::CannotPlan {
                reason: "--nnodes and --gpus-per-node must be at least 1".into(),
                hint: "give the deployment's node count and GPUs per node".into(),
            });
        }
        if self.pp == 0 {
            self.pp = 1;
        }
        if self.tp == 0 {
            self.tp = world / self.pp;
        }
        if self.tp.saturating_mul(self.pp) != world {
            return Err(Error::CannotPlan {
                reason: format!(
                    "tp {} × pp {} = {} ranks, but {} nodes × {} GPUs = {world}",
                    self.tp,
                    self.pp,
                    self.tp * self.pp,
                    self.nnodes,
                    self.gpus_per_node
                ),
                hint: "tp × pp must equal the number of GPUs (data parallelism replicates the plan: plan one replica)".into(),
            });
        }
        Ok(self)
    }
}

/// The layers `[start, end)` of pipeline stage `rank` of `size` (vLLM's `get_pp_indices`).
pub fn pp_layers(num_layers: u32, rank: u32, size: u32) -> (u32, u32) {
    let mut parts = vec![num_layers / size; size as usize];
    let rem = (num_layers % size) as usize;
    for i in 2..rem + 2 {
        let k = parts.len() - i;
        parts[k] += 1;
    }
    let start: u32 = parts[..rank as usize].iter().sum();
    (start, start + parts[rank as usize])
}

/// How a tensor is split over the tensor-parallel group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Replicated,
    Rows,
    Cols,
}

fn split_of(name: &str) -> Split {
    const ROWS: [&str; 11] = [
        "q_proj",
        "k_proj",
        "v_proj",
        "qkv_proj",
        "q_b_proj",
        "kv_b_proj",
        "gate_proj",
        "up_proj",
        "gate_up_proj",
        "embed_tokens",
        "lm_head",
    ];
    const COLS: [&str; 3] = ["o_proj", "down_proj", "dense"];
    let parts: Vec<&str> = name.split('.').collect();
    // The module is the component before `weight`/`bias`/`weight_scale_inv`/...
    let module = parts.len().checked_sub(2).map(|i| parts[i]).unwrap_or("");
    let module = if name == "lm_head.weight" {
        "lm_head"
    } else {
        module
    };
    if ROWS.contains(&module) || (name.contains("shared_head.head") && module == "head") {
        Split::Rows
    } else if COLS.contains(&module) {
        Split::Cols
    } else {
        Split::Replicated
    }
}

/// What one node needs, rank by rank: (pp stage, first tp rank, last tp rank) per stage it hosts.
fn stages_of_node(p: &Parallelism, node: u32) -> Vec<(u32, u32, u32)> {
    let first = node * p.gpus_per_node;
    let last = first + p.gpus_per_node - 1;
    let mut out = Vec::new();
    for stage in first / p.tp..=last / p.tp {
        let lo = first.max(stage * p.tp) - stage * p.tp;
        let hi = last.min(stage * p.tp + p.tp - 1) - stage * p.tp;
        out.push((stage, lo, hi));
    }
    out
}

/// Makes the warm plan of `layout` under `p` (see the module doc for the assumptions).
pub fn plan_warm(layout: &ModelLayout, p: Parallelism) -> Result<WarmPlan> {
    let p = p.resolve()?;
    let layers = layout.num_hidden_layers;
    if p.pp > 1 && p.read == ReadMode::Tensors && layers.is_none() {
        return Err(Error::CannotPlan {
            reason: "pipeline parallelism needs num_hidden_layers, and config.json has none".into(),
            hint: "check that --dir has the model's config.json, or plan with --read full".into(),
        });
    }
    let n_layers = layers.unwrap_or(0);
    if p.pp > n_layers.max(1) {
        return Err(Error::CannotPlan {
            reason: format!("pp {} is more than the model's {n_layers} layers", p.pp),
            hint: "use a smaller --pp".into(),
        });
    }
    let experts = layout
        .weights
        .iter()
        .flat_map(|w| w.tensors.iter())
        .filter_map(|t| expert_of(&t.name))
        .max()
        .map(|m| m + 1)
        .unwrap_or(0);
    let loader = describe(&p, layout);
    let mut nodes = Vec::with_capacity(p.nnodes as usize);
    for node in 0..p.nnodes {
        let stages = stages_of_node(&p, node);
        let mut ranges: Vec<FileRange> = layout
            .others
            .iter()
            .map(|o| FileRange::new(&o.path, 0, o.size))
            .collect();
        let mut owned: BTreeSet<u32> = BTreeSet::new();
        for w in &layout.weights {
            match p.read {
                ReadMode::Full => ranges.push(FileRange::new(&w.path, 0, w.size)),
                ReadMode::Tensors => {
                    ranges_of_file(w, &p, &stages, n_layers, experts, layout, &mut ranges);
                }
            }
        }
        if p.read == ReadMode::Tensors && p.pp > 1 {
            for &(stage, _, _) in &stages {
                let (s, e) = pp_layers(n_layers, stage, p.pp);
                owned.extend(s..e);
            }
        }
        let ranges = coalesce(ranges);
        nodes.push(NodePlan {
            node_rank: node,
            bytes: ranges.iter().map(|r| r.len).sum(),
            layers: match (owned.first(), owned.last()) {
                (Some(&a), Some(&b)) => Some([a, b]),
                _ => None,
            },
            ranges,
        });
    }
    Ok(WarmPlan {
        format: FORMAT,
        engine: p.engine,
        nnodes: p.nnodes,
        gpus_per_node: p.gpus_per_node,
        tp: p.tp,
        pp: p.pp,
        model_bytes: layout.total_bytes(),
        loader,
        nodes,
    })
}

fn ranges_of_file(
    w: &WeightFile,
    p: &Parallelism,
    stages: &[(u32, u32, u32)],
    n_layers: u32,
    experts: u32,
    layout: &ModelLayout,
    out: &mut Vec<FileRange>,
) {
    let before = out.len();
    for t in &w.tensors {
        // The TP ranks of this node that load the tensor, per stage it is in.
        let mut need: Option<(u32, u32)> = None; // union of tp rank ranges on this node
        for &(stage, lo, hi) in stages {
            let first = stage == 0;
            let last = stage + 1 == p.pp;
            let wanted = match layer_of(&t.name) {
                Some(l) if l >= n_layers && n_layers > 0 => p.mtp && last,
                Some(l) => {
                    let (s, e) = pp_layers(n_layers.max(1), stage, p.pp);
                    p.pp == 1 || (s..e).contains(&l)
                }
                None if t.name.contains("embed_tokens") => {
                    first || (last && layout.tie_word_embeddings)
                }
                None if t.name.starts_with("lm_head") || t.name.starts_with("model.norm.") => last,
                None => true,
            };
            if !wanted {
                continue;
            }
            let (mut lo, mut hi) = (lo, hi);
            if p.ep && experts > 0 {
                if let Some(e) = expert_of(&t.name) {
                    // Rank r owns experts [r × E / tp, (r + 1) × E / tp).
                    let owner = (u64::from(e) * u64::from(p.tp) / u64::from(experts)) as u32;
                    if owner < lo || owner > hi {
                        continue;
                    }
                    (lo, hi) = (0, p.tp - 1); // the whole expert
                }
            }
            need = Some(match need {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
        let Some((lo, hi)) = need else { continue };
        let whole = lo == 0 && hi + 1 == p.tp;
        let rows = t.shape.first().copied().unwrap_or(1);
        let tp = u64::from(p.tp);
        if !whole && split_of(&t.name) == Split::Rows && rows % tp == 0 && t.len() % rows == 0 {
            let row_bytes = t.len() / rows;
            let (a, b) = (u64::from(lo) * rows / tp, u64::from(hi + 1) * rows / tp);
            out.push(FileRange::new(
                &w.path,
                t.start + a * row_bytes,
                (b - a) * row_bytes,
            ));
        } else {
            out.push(FileRange::new(&w.path, t.start, t.len()));
        }
    }
    if out.len() > before {
        out.push(FileRange::new(&w.path, 0, w.data_start));
    }
}

fn describe(p: &Parallelism, layout: &ModelLayout) -> String {
    match p.read {
        ReadMode::Full => format!(
            "{}: whole-file loader (disable_mmap / eager / prefetch): every rank reads every shard in full, whatever tp and pp",
            p.engine
        ),
        ReadMode::Tensors => {
            let mut s = format!(
                "{}: default lazy-mmap loader: each node reads the shard headers and only the tensors its ranks load",
                p.engine
            );
            if p.pp > 1 {
                s.push_str(&format!(
                    "; pp {}: the layers of its stages (get_pp_indices over {} layers), embed_tokens on the first stage, norm and lm_head on the last",
                    p.pp,
                    layout.num_hidden_layers.unwrap_or(0)
                ));
            }
            if p.tp > p.gpus_per_node {
                s.push_str(&format!(
                    "; tp {} spans nodes: its rows of dim-0-split tensors (q/k/v/gate/up, embedding, lm_head), dim-1-split tensors (o/down) whole",
                    p.tp
                ));
            }
            if p.ep {
                s.push_str("; ep: only its ranks' routed experts");
            }
            if !p.mtp {
                s.push_str("; layers at or above num_hidden_layers (MTP) are not loaded");
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pp_layers_match_vllm_get_pp_indices() {
        // vLLM: partitions = [L // pp] * pp; partitions[-i] += 1 for i in 2..rem + 2.
        let parts = |l, pp| (0..pp).map(|r| pp_layers(l, r, pp)).collect::<Vec<_>>();
        assert_eq!(parts(61, 2), vec![(0, 31), (31, 61)]);
        assert_eq!(parts(61, 4), vec![(0, 15), (15, 30), (30, 46), (46, 61)]);
        assert_eq!(parts(80, 3), vec![(0, 27), (27, 54), (54, 80)]);
        assert_eq!(parts(7, 4), vec![(0, 2), (2, 4), (4, 6), (6, 7)]);
    }

    #[test]
    fn splits_by_module_name() {
        assert_eq!(
            split_of("model.layers.0.self_attn.q_b_proj.weight"),
            Split::Rows
        );
        assert_eq!(
            split_of("model.layers.3.mlp.experts.7.up_proj.weight_scale_inv"),
            Split::Rows
        );
        assert_eq!(split_of("lm_head.weight"), Split::Rows);
        assert_eq!(
            split_of("model.layers.0.self_attn.o_proj.weight"),
            Split::Cols
        );
        assert_eq!(
            split_of("model.layers.3.mlp.gate.weight"),
            Split::Replicated
        );
        assert_eq!(
            split_of("model.layers.0.self_attn.kv_a_proj_with_mqa.weight"),
            Split::Replicated
        );
    }

    #[test]
    fn nodes_map_to_stages_and_tp_ranks() {
        let p = Parallelism {
            engine: InferenceEngine::Vllm,
            nnodes: 2,
            gpus_per_node: 8,
            tp: 2,
            pp: 8,
            ep: false,
            mtp: false,
            read: ReadMode::Tensors,
        };
        assert_eq!(
            stages_of_node(&p, 1),
            vec![(4, 0, 1), (5, 0, 1), (6, 0, 1), (7, 0, 1)]
        );
        let p = Parallelism { tp: 16, pp: 1, ..p };
        assert_eq!(stages_of_node(&p, 1), vec![(0, 8, 15)]);
    }
}
