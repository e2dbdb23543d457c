//! Warm plans: which bytes of the model each node reads when the engine loads it, so that
//! `ferry warm --plan FILE --node-rank R` pre-loads into the page cache exactly that and no more.
//!
//! Made by [`crate::loader::plan_warm`] from the index's weight_map, the shard headers and the
//! parallelism; written as JSON by `ferry plan warm --json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::inference_engine::InferenceEngine;
pub use crate::range::FileRange;

/// Version of the warm-plan format; bumped on incompatible changes.
pub const FORMAT: u32 = 1;

/// The whole plan: one entry per node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmPlan {
    pub format: u32,
    pub engine: InferenceEngine,
    pub nnodes: u32,
    pub gpus_per_node: u32,
    /// Tensor-parallel degree (ranks sharing one layer).
    pub tp: u32,
    /// Pipeline-parallel degree (groups of consecutive layers).
    pub pp: u32,
    /// Bytes of every weight file of the model.
    pub model_bytes: u64,
    /// How the engine's loader reads the files under this parallelism: the assumption the plan
    /// rests on, in words.
    #[serde(default)]
    pub loader: String,
    pub nodes: Vec<NodePlan>,
}

/// What one node reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// 0-based, the engine's `--node-rank`.
    pub node_rank: u32,
    /// Sum of the ranges' lengths.
    pub bytes: u64,
    /// Decoder layers whose weights this node holds, `[first, last]` inclusive; absent when the
    /// node holds every layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<[u32; 2]>,
    /// Byte ranges to read, sorted by path and offset, merged where they touch.
    pub ranges: Vec<FileRange>,
}

impl WarmPlan {
    /// Reads a plan written by `ferry plan warm --json`.
    pub fn read(path: &Path) -> Result<WarmPlan> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(path, &bytes)
    }

    /// Parses a plan; `path` only names it in errors.
    pub fn from_json(path: &Path, bytes: &[u8]) -> Result<WarmPlan> {
        let bad = |reason: String| Error::BadPlan {
            path: path.to_path_buf(),
            what: "warm plan",
            reason,
        };
        let plan: WarmPlan = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if plan.format != FORMAT {
            return Err(bad(format!(
                "format {} is not the {FORMAT} this ferry understands",
                plan.format
            )));
        }
        Ok(plan)
    }

    /// Writes the plan as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::manifest::write_atomic(path, self.to_json().as_bytes())
    }

    pub fn to_json(&self) -> String {
        // A plan is plain data (strings and integers): serializing it cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The plan of node `rank`, if the plan has that many nodes.
    pub fn node(&self, rank: u32) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.node_rank == rank)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_node_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plan.json");
        let plan = WarmPlan {
            format: FORMAT,
            engine: InferenceEngine::Vllm,
            nnodes: 2,
            gpus_per_node: 8,
            tp: 8,
            pp: 2,
            model_bytes: 30,
            loader: "test".into(),
            nodes: vec![
                NodePlan {
                    node_rank: 0,
                    bytes: 10,
                    layers: Some([0, 1]),
                    ranges: vec![FileRange::new("a.safetensors", 0, 10)],
                },
                NodePlan {
                    node_rank: 1,
                    bytes: 20,
                    layers: None,
                    ranges: vec![FileRange::new("b.safetensors", 5, 20)],
                },
            ],
        };
        plan.write(&p).unwrap();
        let back = WarmPlan::read(&p).unwrap();
        assert_eq!(back, plan);
        assert_eq!(back.node(1).unwrap().bytes, 20);
        assert!(back.node(2).is_none());
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains("\"engine\": \"vllm\""), "{s}");
    }

    #[test]
    fn garbage_names_the_file() {
        let err = WarmPlan::from_json(Path::new("/x/plan.json"), b"{}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/x/plan.json") && err.contains("warm plan"),
            "{err}"
        );
    }
}
