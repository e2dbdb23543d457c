//! `model.safetensors.index.json`: which shard holds each tensor.

use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::finding::Finding;

/// The default name transformers and both hubs use.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// A parsed index. The weight_map keeps every entry as written, duplicates included, so that
/// validation can report a tensor listed twice (a JSON map would silently keep the last).
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub file: String,
    /// `metadata.total_size`: bytes of tensor data over all shards.
    pub total_size: Option<u64>,
    /// (tensor name, shard path) in file order.
    pub weight_map: Vec<(String, String)>,
}

struct Entries(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of tensor name to shard file")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<String, String>()? {
                    v.push(e);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    weight_map: Entries,
}

impl Index {
    /// Reads and parses `dir/rel`; any failure is one finding naming the file.
    pub fn read(dir: &Path, rel: &str) -> Result<Index, Finding> {
        let bytes = std::fs::read(dir.join(rel))
            .map_err(|e| Finding::error(rel, format!("cannot read: {e}")))?;
        let raw: RawIndex = serde_json::from_slice(&bytes)
            .map_err(|e| Finding::error(rel, format!("not a valid safetensors index: {e}")))?;
        // Some exporters write total_size as a float; accept any whole number.
        let total_size = raw
            .metadata
            .as_ref()
            .and_then(|m| m.get("total_size"))
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)));
        Ok(Index {
            file: rel.to_string(),
            total_size,
            weight_map: raw.weight_map.0,
        })
    }

    /// The shard files the index names, sorted, each once.
    pub fn shards(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.weight_map.iter().map(|(_, s)| s.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The shard path relative to the model directory: weight_map names are relative to the
    /// index's own directory.
    pub fn shard_path(&self, shard: &str) -> String {
        match self.file.rsplit_once('/') {
            Some((parent, _)) => format!("{parent}/{shard}"),
            None => shard.to_string(),
        }
    }
}
