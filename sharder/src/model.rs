//! A model as the planners see it: its weight files with every tensor's byte range, its other
//! files, and the config facts that decide which node loads what.
//!
//! Built from a directory (headers, index, config.json: no tensor data read) or synthesized at
//! full scale by [`crate::sim`], so plans for a 642 GB model can be made without the bytes.

use std::path::Path;

use crate::error::{Error, Result};
use crate::header::TensorEntry;
use crate::index::{Index, INDEX_FILE};
use crate::slices::SliceInput;
use crate::validate;

/// One `*.safetensors` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightFile {
    pub path: String,
    pub size: u64,
    /// Where tensor data begins (`8 + header length`): the header is read by every loader.
    pub data_start: u64,
    pub tensors: Vec<TensorEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLayout {
    /// Weight files, sorted by path.
    pub weights: Vec<WeightFile>,
    /// Every other file of the model (config, tokenizer, index), sorted by path.
    pub others: Vec<SliceInput>,
    /// `num_hidden_layers` from config.json; decoder layers numbered at or above it (DeepSeek's
    /// multi-token-prediction layer 61) are extras that engines load only for speculative decoding.
    pub num_hidden_layers: Option<u32>,
    /// `tie_word_embeddings`: the last pipeline stage then needs the embedding too.
    pub tie_word_embeddings: bool,
}

impl ModelLayout {
    /// Every file with its size: the input of [`crate::slices::plan_slices`].
    pub fn files(&self) -> Vec<SliceInput> {
        let mut v: Vec<SliceInput> = self
            .weights
            .iter()
            .map(|w| SliceInput {
                path: w.path.clone(),
                size: w.size,
            })
            .chain(self.others.iter().cloned())
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    pub fn total_bytes(&self) -> u64 {
        self.weights.iter().map(|w| w.size).sum::<u64>()
            + self.others.iter().map(|o| o.size).sum::<u64>()
    }

    pub fn weight_bytes(&self) -> u64 {
        self.weights.iter().map(|w| w.size).sum()
    }

    /// Reads the layout of a model directory: the shards the index names (every `*.safetensors`
    /// when there is no index), their headers, and config.json. Fails when a header does not
    /// parse: a plan made from a broken checkpoint would be wrong.
    pub fn from_dir(dir: &Path) -> Result<ModelLayout> {
        let all = crate::verify::scan(dir)?;
        let shards: Vec<String> = if all.iter().any(|f| f == INDEX_FILE) {
            let index = Index::read(dir, INDEX_FILE).map_err(|f| Error::Invalid {
                dir: dir.to_path_buf(),
                findings: vec![f],
            })?;
            index
                .shards()
                .into_iter()
                .map(|s| index.shard_path(s))
                .collect()
        } else {
            all.iter()
                .filter(|f| validate::is_shard(f))
                .cloned()
                .collect()
        };
        if shards.is_empty() {
            return Err(Error::CannotPlan {
                reason: format!("{} holds no *.safetensors files", dir.display()),
                hint: "point --dir at a model directory (the one with config.json and the shards)"
                    .into(),
            });
        }
        let refs: Vec<&str> = shards.iter().map(String::as_str).collect();
        let (headers, findings) =
            validate::read_headers(dir, &refs, crate::parallel::default_jobs().min(16));
        if !findings.is_empty() {
            return Err(Error::Invalid {
                dir: dir.to_path_buf(),
                findings,
            });
        }
        let mut weights: Vec<WeightFile> = headers
            .into_iter()
            .map(|h| WeightFile {
                path: h.file,
                size: h.file_size,
                data_start: h.data_start,
                tensors: h.tensors,
            })
            .collect();
        weights.sort_by(|a, b| a.path.cmp(&b.path));
        let mut others = Vec::new();
        for rel in all.iter().filter(|f| !shards.contains(f)) {
            let size = std::fs::metadata(dir.join(rel))
                .map_err(|e| Error::io(dir.join(rel), e))?
                .len();
            others.push(SliceInput {
                path: rel.clone(),
                size,
            });
        }
        let (num_hidden_layers, tie_word_embeddings) = read_config(dir)?;
        Ok(ModelLayout {
            weights,
            others,
            num_hidden_layers,
            tie_word_embeddings,
        })
    }
}

fn read_config(dir: &Path) -> Result<(Option<u32>, bool)> {
    let path = dir.join("config.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, false)),
        Err(e) => return Err(Error::io(path, e)),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
        dir: dir.to_path_buf(),
        findings: vec![crate::Finding::error(
            "config.json",
            format!("does not parse as JSON: {e}"),
        )],
    })?;
    // Multimodal configs keep the language model's numbers under text_config.
    let get = |key: &str| {
        v.get(key)
            .or_else(|| v.get("text_config").and_then(|t| t.get(key)))
            .cloned()
    };
    let layers = get("num_hidden_layers")
        .and_then(|n| n.as_u64())
        .map(|n| n as u32);
    let tie = get("tie_word_embeddings")
        .and_then(|b| b.as_bool())
        .unwrap_or(false);
    Ok((layers, tie))
}

/// The decoder layer a tensor belongs to (`...layers.12.mlp...` → 12), if any.
pub fn layer_of(name: &str) -> Option<u32> {
    let mut parts = name.split('.');
    while let Some(p) = parts.next() {
        if p == "layers" || p == "h" || p == "blocks" {
            if let Some(n) = parts.clone().next().and_then(|n| n.parse().ok()) {
                return Some(n);
            }
        }
    }
    None
}

/// The routed expert a tensor belongs to (`...experts.17.down_proj...` → 17), if any.
pub fn expert_of(name: &str) -> Option<u32> {
    let mut parts = name.split('.');
    while let Some(p) = parts.next() {
        if p == "experts" {
            return parts.next().and_then(|n| n.parse().ok());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(layer_of("model.layers.12.mlp.gate.weight"), Some(12));
        assert_eq!(layer_of("model.embed_tokens.weight"), None);
        assert_eq!(
            expert_of("model.layers.3.mlp.experts.255.down_proj.weight_scale_inv"),
            Some(255)
        );
        assert_eq!(
            expert_of("model.layers.3.mlp.shared_experts.down_proj.weight"),
            None
        );
    }
}
