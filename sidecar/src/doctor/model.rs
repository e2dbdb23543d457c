//! Facts about the model: its `config.json` and the sizes of its weights (the completion
//! manifest's, else the `*.safetensors` files on disk).

use std::path::{Path, PathBuf};

use ferry_sharder::model_config::ModelConfig;
use ferry_sharder::Manifest;
use serde::Serialize;

use crate::error::{Error, Result};

/// What the checks know about the model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelFacts {
    pub dir: Option<PathBuf>,
    /// `None` when the directory has no config.json (yet).
    pub config: Option<ModelConfig>,
    /// Bytes of the weight files (`*.safetensors`, `*.bin`, `*.pt`, `*.gguf`).
    pub weight_bytes: Option<u64>,
    /// Where `weight_bytes` came from: `manifest`, `files` or `hub listing`.
    pub weight_source: Option<&'static str>,
    /// The completion manifest is there: the model is on disk in full.
    pub complete: bool,
    /// Bytes still to download, when known (0 once complete; a hub listing would tell it for a
    /// model not fetched yet).
    pub missing_bytes: Option<u64>,
}

/// Whether `path` names a weight file the engine loads.
pub fn is_weight(path: &str) -> bool {
    [".safetensors", ".bin", ".pt", ".gguf"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

impl ModelFacts {
    /// The facts of a model not fetched yet: `config_dir` holds its config.json (fetched alone),
    /// `weight_bytes` the sizes of the hub listing's weight files, all still to download.
    pub fn from_listing(config_dir: &Path, weight_bytes: u64) -> Result<ModelFacts> {
        Ok(ModelFacts {
            dir: None,
            config: ModelConfig::from_dir(config_dir)?,
            weight_bytes: Some(weight_bytes),
            weight_source: Some("hub listing"),
            complete: false,
            missing_bytes: Some(weight_bytes),
        })
    }

    /// Reads the facts of the model in `dir`. A missing directory or config gives empty facts
    /// (the checks that need them say so); an unreadable one is an error.
    pub fn from_dir(dir: &Path) -> Result<ModelFacts> {
        let mut facts = ModelFacts {
            dir: Some(dir.to_path_buf()),
            ..ModelFacts::default()
        };
        if !dir.exists() {
            return Ok(facts);
        }
        facts.config = ModelConfig::from_dir(dir)?;
        if let Some(m) = Manifest::read(dir)? {
            facts.complete = true;
            facts.missing_bytes = Some(0);
            facts.weight_bytes = Some(
                m.files
                    .iter()
                    .filter(|f| is_weight(&f.path))
                    .map(|f| f.size)
                    .sum(),
            );
            facts.weight_source = Some("manifest");
            return Ok(facts);
        }
        let mut total = 0u64;
        let mut any = false;
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_weight(&name) {
                if let Ok(md) = entry.metadata() {
                    total += md.len();
                    any = true;
                }
            }
        }
        if any {
            facts.weight_bytes = Some(total);
            facts.weight_source = Some("files");
        }
        Ok(facts)
    }
}
