//! Checkpoint validation: the safetensors headers, the index and config.json agree with each other
//! and with the files on disk. Reads headers only, never tensor data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::finding::Finding;
use crate::header::{self, ShardHeader};
use crate::index::Index;
use crate::parallel;

/// True for the files validation looks at as shards.
pub fn is_shard(rel: &str) -> bool {
    rel.ends_with(".safetensors")
}

/// True for safetensors index files (`model.safetensors.index.json` and variants).
pub fn is_index(rel: &str) -> bool {
    rel.ends_with(".safetensors.index.json")
}

/// Reads the headers of `shards` in parallel. Unreadable headers become findings.
pub fn read_headers(dir: &Path, shards: &[&str], jobs: usize) -> (Vec<ShardHeader>, Vec<Finding>) {
    let mut headers = Vec::new();
    let mut findings = Vec::new();
    for r in parallel::map(shards, jobs, |rel| header::read_header(dir, rel)) {
        match r {
            Ok((h, f)) => {
                headers.push(h);
                findings.extend(f);
            }
            Err(f) => findings.push(f),
        }
    }
    (headers, findings)
}

/// Validates the checkpoint made of `files` (paths relative to `dir`): every `*.safetensors`
/// header, every `*.safetensors.index.json` against those headers, and `config.json`. Returns
/// every problem found; empty means valid.
pub fn validate(dir: &Path, files: &[&str]) -> Vec<Finding> {
    let shards: Vec<&str> = files.iter().copied().filter(|f| is_shard(f)).collect();
    let (headers, mut findings) = read_headers(dir, &shards, parallel::default_jobs().min(16));
    for h in &headers {
        findings.extend(header::check(h));
    }
    let present: BTreeSet<&str> = files.iter().copied().collect();
    for rel in files.iter().copied().filter(|f| is_index(f)) {
        match Index::read(dir, rel) {
            Ok(index) => findings.extend(check_index(&index, &headers, &present)),
            Err(f) => findings.push(f),
        }
    }
    for rel in files
        .iter()
        .copied()
        .filter(|f| f.rsplit('/').next() == Some("config.json"))
    {
        findings.extend(check_config(dir, rel));
    }
    findings
}

/// The index names only shards that exist, lists every tensor of every shard it covers exactly
/// once and in the right shard, and its total_size matches the headers.
pub fn check_index(
    index: &Index,
    headers: &[ShardHeader],
    present: &BTreeSet<&str>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let indexed: BTreeSet<String> = index
        .weight_map
        .iter()
        .map(|(_, s)| index.shard_path(s))
        .collect();
    let located = locate_tensors(headers, &indexed, &mut out);
    let listed = check_weight_map(index, headers, present, &located, &mut out);
    check_coverage(index, headers, &indexed, &listed, &mut out);
    check_total_size(index, headers, &indexed, &mut out);
    out
}

/// Where each tensor really is, from the headers of the shards the index names; a tensor in two
/// of them is an error. Shards it does not name (Mistral's consolidated.safetensors beside the
/// sharded copy) are ignored by the engines, which load what the index names, so their tensors
/// may repeat.
fn locate_tensors<'h>(
    headers: &'h [ShardHeader],
    indexed: &BTreeSet<String>,
    out: &mut Vec<Finding>,
) -> HashMap<&'h str, &'h str> {
    let mut located: HashMap<&str, &str> = HashMap::new();
    for h in headers.iter().filter(|h| indexed.contains(&h.file)) {
        for t in &h.tensors {
            if let Some(other) = located.insert(&t.name, &h.file) {
                out.push(Finding::tensor_error(
                    &h.file,
                    &t.name,
                    format!("also stored in {other}: a tensor must live in exactly one shard"),
                ));
            }
        }
    }
    located
}

/// Each weight_map entry is listed once and points at an existing shard that holds the tensor.
/// Returns the entries (tensor -> shard) for the coverage check.
fn check_weight_map<'i>(
    index: &'i Index,
    headers: &[ShardHeader],
    present: &BTreeSet<&str>,
    located: &HashMap<&str, &str>,
    out: &mut Vec<Finding>,
) -> HashMap<&'i str, &'i str> {
    let rel = index.file.as_str();
    let by_file: BTreeMap<&str, &ShardHeader> =
        headers.iter().map(|h| (h.file.as_str(), h)).collect();
    let mut listed: HashMap<&str, &str> = HashMap::new();
    let mut missing_shards: BTreeMap<String, usize> = BTreeMap::new();
    for (tensor, shard) in &index.weight_map {
        let path = index.shard_path(shard);
        if let Some(prev) = listed.insert(tensor, shard) {
            out.push(Finding::tensor_error(
                rel,
                tensor,
                format!("listed more than once in the weight_map ({prev} and {shard})"),
            ));
            continue;
        }
        if !present.contains(path.as_str()) {
            *missing_shards.entry(path).or_default() += 1;
            continue;
        }
        let Some(h) = by_file.get(path.as_str()) else {
            continue; // present but its header did not parse: already reported
        };
        if !h.tensors.iter().any(|t| &t.name == tensor) {
            let real = located
                .get(tensor.as_str())
                .map(|f| format!(" (it is in {f})"))
                .unwrap_or_else(|| " (no shard has it)".to_string());
            out.push(Finding::tensor_error(
                rel,
                tensor,
                format!("the weight_map puts it in {shard}, which has no such tensor{real}"),
            ));
        }
    }
    for (shard, n) in missing_shards {
        out.push(Finding::error(
            rel,
            format!("names shard {shard} (for {n} tensor(s)), which does not exist"),
        ));
    }
    listed
}

/// Shards the index covers (those in the index's directory) must have all their tensors listed;
/// a shard there that the index does not name is a warning.
fn check_coverage(
    index: &Index,
    headers: &[ShardHeader],
    indexed: &BTreeSet<String>,
    listed: &HashMap<&str, &str>,
    out: &mut Vec<Finding>,
) {
    let rel = index.file.as_str();
    let prefix = index.file.rsplit_once('/').map(|(p, _)| format!("{p}/"));
    for h in headers {
        let covered = match &prefix {
            Some(p) => h.file.starts_with(p.as_str()) && !h.file[p.len()..].contains('/'),
            None => !h.file.contains('/'),
        };
        if !covered {
            continue;
        }
        if !indexed.contains(&h.file) {
            out.push(Finding::warning(
                &h.file,
                format!(
                    "not named by {rel}: engines that load through the index ignore its {} tensor(s)",
                    h.tensors.len()
                ),
            ));
            continue;
        }
        for t in h
            .tensors
            .iter()
            .filter(|t| !listed.contains_key(t.name.as_str()))
        {
            out.push(Finding::tensor_error(
                rel,
                &t.name,
                format!("stored in {} but missing from the weight_map", h.file),
            ));
        }
    }
}

/// metadata.total_size, when present, matches the shards' tensor bytes (or file sizes).
fn check_total_size(
    index: &Index,
    headers: &[ShardHeader],
    indexed: &BTreeSet<String>,
    out: &mut Vec<Finding>,
) {
    let Some(total) = index.total_size else {
        return;
    };
    let covered: Vec<&ShardHeader> = headers
        .iter()
        .filter(|h| indexed.contains(&h.file))
        .collect();
    // Only comparable when every shard the index names could be read.
    if covered.len() != indexed.len() {
        return;
    }
    let tensor_bytes: u64 = covered.iter().map(|h| h.tensor_bytes()).sum();
    let file_bytes: u64 = covered.iter().map(|h| h.file_size).sum();
    // transformers writes the tensor bytes; a few exporters write the file sizes.
    if total != tensor_bytes && total != file_bytes {
        out.push(Finding::error(
            index.file.as_str(),
            format!(
                "metadata.total_size is {total} but the shards hold {tensor_bytes} bytes of tensors ({file_bytes} bytes of files)"
            ),
        ));
    }
}

/// config.json must be a JSON object; `num_hidden_layers`, when present, a whole number.
pub fn check_config(dir: &Path, rel: &str) -> Vec<Finding> {
    let bytes = match std::fs::read(dir.join(rel)) {
        Ok(b) => b,
        Err(e) => return vec![Finding::error(rel, format!("cannot read: {e}"))],
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(m)) => match m.get("num_hidden_layers") {
            Some(v) if v.as_u64().is_none() => vec![Finding::error(
                rel,
                format!("num_hidden_layers is {v}, not a whole number"),
            )],
            _ => Vec::new(),
        },
        Ok(_) => vec![Finding::error(rel, "not a JSON object")],
        Err(e) => vec![Finding::error(rel, format!("does not parse as JSON: {e}"))],
    }
}
