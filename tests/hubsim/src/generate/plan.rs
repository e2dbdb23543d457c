//! The repository as a list of files with exact sizes and contents described, not written: what
//! `write` puts on disk, and what a simulation at full scale (163 shards, 642 GB) can enumerate in
//! well under a second.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::error::GenerateError;
use super::fit::{fit, Architecture};
use super::header::HeaderBuilder;
use super::repo_files;
use super::stream;
use super::tensor::{tensor_bytes, Dtype, TensorName, TensorSink};
use super::{Layout, ModelSpec};

/// Name of the sharded checkpoint's index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

/// A whole synthetic repository.
#[derive(Debug, Clone)]
pub struct RepoPlan {
    pub repo: String,
    pub layout: Layout,
    /// Every file, sorted by path.
    pub files: Vec<PlannedFile>,
    /// Tensor name to shard file name, as in the index (also for a single-file checkpoint,
    /// which has no index).
    pub weight_map: BTreeMap<String, String>,
    /// Sum of tensor data bytes: the index's `metadata.total_size`.
    pub tensor_bytes: u64,
    /// The widths chosen to fit the requested size.
    pub architecture: Architecture,
}

impl RepoPlan {
    /// The safetensors files.
    pub fn shards(&self) -> impl Iterator<Item = &PlannedFile> {
        self.files.iter().filter(|f| f.is_shard())
    }

    /// Sum of all file sizes.
    pub fn total_file_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Looks a file up by path.
    pub fn file(&self, path: &str) -> Option<&PlannedFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// One file of the repository.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    /// Path relative to the repository root (`/`-separated).
    pub path: String,
    /// Exact size in bytes.
    pub size: u64,
    pub content: PlannedContent,
}

/// How a file's bytes are made.
#[derive(Debug, Clone)]
pub enum PlannedContent {
    /// Small files (JSON, README), held whole.
    Bytes(Vec<u8>),
    /// A safetensors file: this header, then `data_len` bytes of the pseudo-random stream `key`.
    Safetensors {
        header: Vec<u8>,
        data_len: u64,
        key: u64,
    },
}

impl PlannedFile {
    pub fn is_shard(&self) -> bool {
        matches!(self.content, PlannedContent::Safetensors { .. })
    }

    /// Fills `buf` with the file's bytes from `offset` on (the data region dense, as `write`
    /// writes it without `--sparse`); returns how many bytes were filled, 0 at or past the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let n = self.size.saturating_sub(offset).min(buf.len() as u64) as usize;
        if n == 0 {
            return 0;
        }
        let buf = &mut buf[..n];
        match &self.content {
            PlannedContent::Bytes(bytes) => {
                let start = offset as usize;
                buf.copy_from_slice(&bytes[start..start + n]);
            }
            PlannedContent::Safetensors { header, key, .. } => {
                let header_len = header.len() as u64;
                let in_header = header_len.saturating_sub(offset).min(n as u64) as usize;
                if in_header > 0 {
                    let start = offset as usize;
                    buf[..in_header].copy_from_slice(&header[start..start + in_header]);
                }
                if in_header < n {
                    let data_offset = offset + in_header as u64 - header_len;
                    stream::fill(*key, data_offset, &mut buf[in_header..]);
                }
            }
        }
        n
    }
}

/// Plans the repository `spec` describes.
pub fn plan(spec: &ModelSpec) -> Result<RepoPlan, GenerateError> {
    spec.validate()?;
    let architecture = fit(spec.layout, spec.total_size, spec.shards)?;

    let mut tensors = Collect::default();
    architecture.visit(&mut tensors);
    let tensor_bytes: u64 = tensors.0.iter().map(|t| t.bytes).sum();
    let assignment = assign_shards(&tensors.0, spec.shards, tensor_bytes);

    let mut files = Vec::new();
    let mut weight_map = BTreeMap::new();
    let names = shard_names(spec.layout, spec.shards);
    let mut next = 0;
    for (shard, name) in names.iter().enumerate() {
        let end = assignment[shard];
        let mut header = HeaderBuilder::new();
        let mut offset = 0;
        for t in &tensors.0[next..end] {
            header.push_entry(&t.name, t.dtype, &t.shape, offset, offset + t.bytes);
            offset += t.bytes;
            weight_map.insert(t.name.clone(), name.clone());
        }
        next = end;
        let header = header.finish();
        files.push(PlannedFile {
            path: name.clone(),
            size: header.len() as u64 + offset,
            content: PlannedContent::Safetensors {
                header,
                data_len: offset,
                key: stream::file_key(spec.seed, &spec.repo, name),
            },
        });
    }

    let config = architecture.config();
    let mut small = vec![
        ("config.json", json_file(&config)),
        (
            "generation_config.json",
            json_file(&repo_files::generation_config()),
        ),
        ("tokenizer.json", json_file(&repo_files::tokenizer())),
        (
            "tokenizer_config.json",
            json_file(&repo_files::tokenizer_config()),
        ),
        (
            "README.md",
            repo_files::readme(
                &spec.repo,
                spec.layout,
                spec.seed,
                spec.shards,
                tensor_bytes,
                &config,
            )
            .into_bytes(),
        ),
    ];
    if names.len() > 1 || spec.layout == Layout::R1 {
        small.push((INDEX_FILE, index_file(tensor_bytes, &weight_map)));
    }
    for (path, bytes) in small {
        files.push(PlannedFile {
            path: path.to_owned(),
            size: bytes.len() as u64,
            content: PlannedContent::Bytes(bytes),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));

    Ok(RepoPlan {
        repo: spec.repo.clone(),
        layout: spec.layout,
        files,
        weight_map,
        tensor_bytes,
        architecture,
    })
}

/// The sizes of every file of `spec`'s repository, without writing anything.
pub fn plan_files(spec: &ModelSpec) -> Result<Vec<PlannedFile>, GenerateError> {
    Ok(plan(spec)?.files)
}

/// Shard file names: DeepSeek's `model-00001-of-000163.safetensors` (5-digit index, 6-digit
/// total) for r1; the usual `model-00001-of-00002.safetensors`, or `model.safetensors` alone,
/// for distill.
pub fn shard_names(layout: Layout, shards: u32) -> Vec<String> {
    match layout {
        Layout::Distill if shards == 1 => vec![SINGLE_FILE.to_owned()],
        Layout::Distill => (1..=shards)
            .map(|i| format!("model-{i:05}-of-{shards:05}.safetensors"))
            .collect(),
        Layout::R1 => (1..=shards)
            .map(|i| format!("model-{i:05}-of-{shards:06}.safetensors"))
            .collect(),
    }
}

/// A tensor with its name rendered, ready for a header.
struct PlannedTensor {
    name: String,
    dtype: Dtype,
    shape: Vec<u64>,
    bytes: u64,
}

#[derive(Default)]
struct Collect(Vec<PlannedTensor>);

impl TensorSink for Collect {
    fn tensor(&mut self, name: TensorName, dtype: Dtype, shape: &[u64]) {
        self.0.push(PlannedTensor {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            bytes: tensor_bytes(dtype, shape),
        });
    }
}

/// Splits the tensors, in order, into `shards` runs of about equal bytes, as the real
/// checkpoint's layers run in order across its shards. Returns each shard's end index.
/// Every shard gets at least one tensor (the caller checked there are enough).
///
/// Each shard aims at an equal part of the bytes not yet placed, so a tensor larger than a
/// shard makes one large shard and the following shards stay even, instead of a run of
/// one-tensor shards catching up with a fixed schedule.
fn assign_shards(tensors: &[PlannedTensor], shards: u32, total: u64) -> Vec<usize> {
    let shards = shards as usize;
    let mut ends = Vec::with_capacity(shards);
    let mut placed = 0; // bytes in finished shards
    let mut current = 0; // bytes in the shard being filled
    for (i, t) in tensors.iter().enumerate() {
        current += t.bytes;
        let shard = ends.len();
        if shard + 1 == shards {
            break;
        }
        let shards_left = shards - shard;
        let tensors_left = tensors.len() - i - 1;
        let goal = (total - placed).div_ceil(shards_left as u64);
        // Close the shard at its goal; or, once half full, when the next tensor would overshoot
        // the goal by more than stopping short misses it; or when every remaining shard needs
        // one of the remaining tensors.
        let next = tensors.get(i + 1).map_or(0, |t| t.bytes);
        let overshoot = (current + next).saturating_sub(goal);
        let short = goal.saturating_sub(current);
        if current >= goal
            || (overshoot > short && 2 * current >= goal)
            || tensors_left == shards_left - 1
        {
            ends.push(i + 1);
            placed += current;
            current = 0;
        }
    }
    ends.push(tensors.len());
    ends
}

/// Pretty JSON with a trailing newline, as `save_pretrained` writes it.
fn json_file(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// model.safetensors.index.json: keys sorted, 2-space indent, as transformers writes it.
fn index_file(total_size: u64, weight_map: &BTreeMap<String, String>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Metadata {
        total_size: u64,
    }
    #[derive(Serialize)]
    struct Index<'a> {
        metadata: Metadata,
        weight_map: &'a BTreeMap<String, String>,
    }
    let index = Index {
        metadata: Metadata { total_size },
        weight_map,
    };
    let mut bytes = serde_json::to_vec_pretty(&index).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(sizes: &[u64]) -> Vec<PlannedTensor> {
        sizes
            .iter()
            .map(|&bytes| PlannedTensor {
                name: String::new(),
                dtype: Dtype::F8E4M3,
                shape: vec![bytes],
                bytes,
            })
            .collect()
    }

    #[test]
    fn shards_are_balanced_and_never_empty() {
        let t = tensors(&[10; 100]);
        let ends = assign_shards(&t, 10, 1000);
        assert_eq!(ends, (1..=10).map(|i| i * 10).collect::<Vec<_>>());

        // One huge tensor first: the shards after it share the rest evenly.
        let mut sizes = vec![1000];
        sizes.extend([1; 40]);
        let ends = assign_shards(&tensors(&sizes), 5, 1040);
        assert_eq!(ends, vec![1, 11, 21, 31, 41]);

        // As many tensors as shards: one each, whatever the sizes.
        let ends = assign_shards(&tensors(&[1000, 1, 1, 1, 1]), 5, 1004);
        assert_eq!(ends, vec![1, 2, 3, 4, 5]);

        let t = tensors(&[5, 5, 5]);
        assert_eq!(assign_shards(&t, 1, 15), vec![3]);
    }

    #[test]
    fn shard_names_follow_each_layout() {
        assert_eq!(
            shard_names(Layout::R1, 163)[0],
            "model-00001-of-000163.safetensors"
        );
        assert_eq!(shard_names(Layout::Distill, 1), vec!["model.safetensors"]);
        assert_eq!(
            shard_names(Layout::Distill, 2)[1],
            "model-00002-of-00002.safetensors"
        );
    }
}
