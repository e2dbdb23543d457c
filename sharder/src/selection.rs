//! A fetch of part of a snapshot (`--include` / `--exclude`), as the manifest records it, and
//! whether what it left out is something an inference engine loads. A manifest without a
//! selection means the whole snapshot; one with a selection that left out weights, the config
//! or the tokenizer is complete as fetched but not a model an engine can start on, and the gate
//! says so instead of opening.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::index::Index;
use crate::manifest::Manifest;
use crate::validate::{is_index, is_shard};

/// What a partial fetch asked for and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Files of the snapshot the patterns left out, sorted.
    pub left_out: Vec<String>,
}

impl Selection {
    /// The patterns as they were given on the command line.
    pub fn patterns(&self) -> String {
        let inc = self.include.iter().map(|p| format!("--include {p:?}"));
        let exc = self.exclude.iter().map(|p| format!("--exclude {p:?}"));
        inc.chain(exc).collect::<Vec<_>>().join(" ")
    }
}

/// Top-level files engines (vLLM, SGLang, transformers) read besides the weights: the configs,
/// the tokenizer and remote code.
fn engine_reads(path: &str) -> bool {
    !path.contains('/')
        && (matches!(
            path,
            "config.json"
                | "generation_config.json"
                | "special_tokens_map.json"
                | "preprocessor_config.json"
                | "chat_template.jinja"
                | "chat_template.json"
        ) || path.starts_with("tokenizer")
            || path.ends_with(".tiktoken")
            || path.ends_with(".py"))
}

/// The files left out by `m`'s selection that an engine loading `dir` would need: the configs
/// and tokenizer, the index, and every shard the index names (every top-level shard when there
/// is no index). Empty for a whole snapshot, and for a selection that left out only what
/// engines do not read (READMEs, `original/`, a consolidated copy the index does not name).
pub fn missing_for_engine(dir: &Path, m: &Manifest) -> Vec<String> {
    let Some(sel) = &m.selection else {
        return Vec::new();
    };
    let named: BTreeSet<String> = m
        .files
        .iter()
        .filter(|f| is_index(&f.path) && !f.path.contains('/'))
        .filter_map(|f| Index::read(dir, &f.path).ok())
        .flat_map(|ix| {
            ix.weight_map
                .iter()
                .map(|(_, s)| ix.shard_path(s))
                .collect::<Vec<_>>()
        })
        .collect();
    sel.left_out
        .iter()
        .filter(|p| {
            let top = !p.contains('/');
            let weight = if named.is_empty() {
                top && (is_shard(p) || is_index(p))
            } else {
                named.contains(p.as_str())
            };
            weight || engine_reads(p)
        })
        .cloned()
        .collect()
}

/// Why the gate must not open on `dir` for an engine: a partial selection that left out what
/// the engine loads. None when the model is whole for the engine.
pub fn partial_reason(dir: &Path, m: &Manifest) -> Option<String> {
    let missing = missing_for_engine(dir, m);
    let sel = m.selection.as_ref()?;
    if missing.is_empty() {
        return None;
    }
    let shown: Vec<String> = missing.iter().take(5).map(|p| format!("{p:?}")).collect();
    let more = missing.len().saturating_sub(shown.len());
    Some(format!(
        "partial selection: the fetch ({}) left out {} file(s) an engine loads: {}{}; fetch again without the patterns (or with ones that keep these files), or start the gate with --allow-partial if a partial model is intended",
        sel.patterns(),
        missing.len(),
        shown.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestFile;
    use crate::FileHash;

    fn manifest(kept: &[&str], left_out: &[&str]) -> Manifest {
        Manifest {
            format: crate::manifest::FORMAT,
            repo: "o/r".into(),
            source: "hf".into(),
            revision: "main".into(),
            commit: "0".repeat(40),
            ferry_version: "test".into(),
            completed_at: "2026-01-01T00:00:00Z".into(),
            files: kept
                .iter()
                .map(|p| ManifestFile {
                    path: p.to_string(),
                    size: 1,
                    hash: FileHash::Sha256("0".repeat(64)),
                })
                .collect(),
            selection: Some(Selection {
                include: vec!["*.json".into()],
                exclude: vec![],
                left_out: left_out.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }

    #[test]
    fn only_what_engines_load_makes_a_selection_partial() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // No index: every top-level shard counts.
        let m = manifest(&["config.json"], &["model.safetensors", "README.md"]);
        assert_eq!(missing_for_engine(d, &m), vec!["model.safetensors"]);
        let why = partial_reason(d, &m).unwrap();
        assert!(why.contains("partial selection") && why.contains("--include \"*.json\""));
        // Docs and a subdirectory left out: whole for an engine.
        let m = manifest(
            &["config.json", "model.safetensors", "tokenizer.json"],
            &["README.md", "original/consolidated.pth"],
        );
        assert!(partial_reason(d, &m).is_none());
        // The tokenizer is needed.
        let m = manifest(&["config.json", "model.safetensors"], &["tokenizer.json"]);
        assert!(partial_reason(d, &m).is_some());
        // With an index, only the shards it names are needed.
        std::fs::write(
            d.join("model.safetensors.index.json"),
            r#"{"metadata":{},"weight_map":{"a":"model-1.safetensors"}}"#,
        )
        .unwrap();
        let m = manifest(
            &[
                "config.json",
                "model.safetensors.index.json",
                "model-1.safetensors",
            ],
            &["consolidated.safetensors"],
        );
        assert!(partial_reason(d, &m).is_none());
        let m = manifest(
            &["config.json", "model.safetensors.index.json"],
            &["model-1.safetensors"],
        );
        assert_eq!(missing_for_engine(d, &m), vec!["model-1.safetensors"]);
        // No selection: whole.
        let mut m = manifest(&["config.json"], &[]);
        m.selection = None;
        assert!(partial_reason(d, &m).is_none());
    }
}
