//! What the renderer and the linter know about a model without downloading it: the attention
//! heads that tensor parallelism must divide, and the bytes a node loads. From the model's own
//! `config.json` when given, else from a small table of the models ferry's docs deploy.

use std::path::Path;

use crate::{Error, Result};

/// Facts about one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFacts {
    /// `num_attention_heads` of config.json: the tensor-parallel size must divide it.
    pub attention_heads: u64,
    /// Bytes of every weight file (what a full load reads).
    pub weight_bytes: u64,
}

/// The models of the docs, by repository name (case-insensitive). Heads from each model's
/// config.json; sizes are the safetensors totals on the hub.
const KNOWN: &[(&str, ModelFacts)] = &[
    ("DeepSeek-R1", facts(128, 642_000_000_000)),
    ("DeepSeek-R1-0528", facts(128, 642_000_000_000)),
    ("DeepSeek-V3", facts(128, 642_000_000_000)),
    ("DeepSeek-V3-0324", facts(128, 642_000_000_000)),
    ("DeepSeek-R1-Distill-Qwen-1.5B", facts(12, 3_550_000_000)),
    ("DeepSeek-R1-Distill-Qwen-7B", facts(28, 15_230_000_000)),
    ("DeepSeek-R1-Distill-Qwen-14B", facts(40, 29_540_000_000)),
    ("DeepSeek-R1-Distill-Qwen-32B", facts(40, 65_530_000_000)),
    ("DeepSeek-R1-Distill-Llama-8B", facts(32, 16_060_000_000)),
    ("DeepSeek-R1-Distill-Llama-70B", facts(64, 141_100_000_000)),
];

const fn facts(attention_heads: u64, weight_bytes: u64) -> ModelFacts {
    ModelFacts {
        attention_heads,
        weight_bytes,
    }
}

/// The facts of a known model, by hub id (`ORG/NAME`) or directory (`/models/NAME`).
pub fn known(model: &str) -> Option<ModelFacts> {
    let name = model.trim_end_matches('/').rsplit('/').next()?;
    KNOWN
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, f)| *f)
}

/// `num_attention_heads` from a config.json (also under `text_config` for multimodal models).
pub fn heads_from_config(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::Params(format!(
            "--model-config {}: not JSON ({e}); pass the model's config.json",
            path.display()
        ))
    })?;
    v["num_attention_heads"]
        .as_u64()
        .or_else(|| v["text_config"]["num_attention_heads"].as_u64())
        .filter(|h| *h > 0)
        .ok_or_else(|| {
            Error::Params(format!(
                "--model-config {}: no num_attention_heads in it; pass the model's config.json",
                path.display()
            ))
        })
}

/// Why a tensor-parallel size cannot shard a model with `heads` attention heads, if it cannot.
pub fn tp_problem(tp: u64, heads: u64) -> Option<String> {
    if tp == 0 || heads.is_multiple_of(tp) {
        return None;
    }
    let fits: Vec<String> = (1..=heads.min(64))
        .filter(|d| heads.is_multiple_of(*d))
        .map(|d| d.to_string())
        .collect();
    Some(format!(
        "tensor-parallel size {tp} does not divide the model's {heads} attention heads: the \
         engine refuses to start (sizes that fit: {})",
        fits.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_by_id_or_directory() {
        assert_eq!(
            known("deepseek-ai/DeepSeek-R1").map(|f| f.attention_heads),
            Some(128)
        );
        assert_eq!(
            known("/models/deepseek-r1-distill-qwen-32b/").map(|f| f.attention_heads),
            Some(40)
        );
        assert_eq!(known("org/unknown"), None);
    }

    #[test]
    fn tp_must_divide_heads() {
        assert!(tp_problem(16, 128).is_none());
        let msg = tp_problem(24, 128).expect("24 does not divide 128");
        assert!(
            msg.contains("128 attention heads") && msg.contains("16, 32, 64"),
            "{msg}"
        );
    }

    #[test]
    fn heads_come_from_config_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"num_attention_heads": 40}"#).expect("write");
        assert_eq!(heads_from_config(&p).expect("reads"), 40);
        std::fs::write(&p, r#"{"hidden_size": 1}"#).expect("write");
        assert!(heads_from_config(&p)
            .unwrap_err()
            .to_string()
            .contains("num_attention_heads"));
    }
}
