//! `hubsim generate`: synthetic model repositories in the real on-disk layout of a Hugging Face
//! model, with valid safetensors shards of deterministic pseudo-random data.
//!
//! Built in two steps so that simulations can skip the second: [`plan`] describes every file
//! (name, exact size, header, data stream) without touching disk, instantly even for the full
//! 642 GB DeepSeek-R1 layout; [`write_repo`] writes a plan out, dense or sparse.

mod deepseek;
mod error;
mod fit;
mod header;
mod plan;
mod qwen;
mod repo_files;
mod stream;
mod tensor;
mod virtual_repo;
mod write;

use std::fmt;
use std::path::PathBuf;

pub use deepseek::DeepseekDims;
pub use error::GenerateError;
pub use fit::Architecture;
pub use plan::{
    plan, plan_files, shard_names, PlannedContent, PlannedFile, RepoPlan, INDEX_FILE, SINGLE_FILE,
};
pub use qwen::QwenDims;
pub use virtual_repo::{
    load_virtual, write_virtual, LoadError, VirtualFile, VirtualRepo, VIRTUAL_FILE,
};
pub use write::{write_repo, WriteSummary};

/// Which real model's layout to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// deepseek-ai/DeepSeek-R1: 61 layers (3 dense, 58 MoE) + 1 MTP layer, FP8 experts with
    /// F32 block scales, BF16 embeddings and norms; shards model-00001-of-000163.safetensors...
    R1,
    /// deepseek-ai/DeepSeek-R1-Distill-Qwen-7B: a dense Qwen2 model, 28 layers, BF16;
    /// model.safetensors when --shards 1, else model-00001-of-0000N.safetensors + index.
    Distill,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::R1 => "r1",
            Layout::Distill => "distill",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Writes a synthetic model repository (config, tokenizer, model card, index and safetensors
/// shards) into a directory. Same flags, same bytes.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Directory to write the repository's files into (created if missing; files of the same
    /// names are overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Repository id, ORG/NAME: named in the model card and mixed into the data seed.
    #[arg(long, value_name = "ORG/NAME")]
    pub repo: String,

    /// Number of safetensors shards (the real DeepSeek-R1 has 163).
    #[arg(long, value_name = "N")]
    pub shards: u32,

    /// Approximate sum of the shard files' sizes, e.g. 400MiB, 2GiB, 642GB (the real R1's files
    /// add up to 688586727753 bytes). Widths and expert count are scaled to fit; layer counts
    /// stay real.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub total_size: u64,

    /// Model layout to imitate.
    #[arg(long, value_enum, default_value_t = Layout::R1)]
    pub layout: Layout,

    /// Seed of the pseudo-random tensor data.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Leave each shard's data region as a hole: full-size files with real headers that take
    /// almost no disk (a 642 GB layout fits anywhere). Their data reads as zeros, so their
    /// hashes are those of zeros.
    #[arg(long)]
    pub sparse: bool,
}

/// What to generate, without where to: the input of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub repo: String,
    pub layout: Layout,
    pub shards: u32,
    /// Target sum of the shard files' sizes, in bytes.
    pub total_size: u64,
    pub seed: u64,
}

impl ModelSpec {
    /// A spec with the default layout (r1) and seed (0).
    pub fn new(repo: impl Into<String>, shards: u32, total_size: u64) -> Self {
        ModelSpec {
            repo: repo.into(),
            layout: Layout::R1,
            shards,
            total_size,
            seed: 0,
        }
    }

    fn validate(&self) -> Result<(), GenerateError> {
        let valid_part = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match self.repo.split_once('/') {
            Some((org, name)) if valid_part(org) && valid_part(name) => {}
            _ => {
                return Err(GenerateError::InvalidRepo {
                    repo: self.repo.clone(),
                })
            }
        }
        if self.shards == 0 {
            return Err(GenerateError::NoShards);
        }
        Ok(())
    }
}

impl From<&GenerateArgs> for ModelSpec {
    fn from(args: &GenerateArgs) -> Self {
        ModelSpec {
            repo: args.repo.clone(),
            layout: args.layout,
            shards: args.shards,
            total_size: args.total_size,
            seed: args.seed,
        }
    }
}

/// `hubsim generate`: plans the repository and writes it into `args.out`.
pub fn run(args: &GenerateArgs) -> Result<WriteSummary, GenerateError> {
    let start = std::time::Instant::now();
    let plan = plan(&ModelSpec::from(args))?;
    let mut summary = write_repo(&plan, &args.out, args.sparse)?;
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// `hubsim generate --virtual`: plans the repository, hashes it, and writes only
/// `args.out/.hubsim-virtual.json` (`--sparse` does not apply).
pub fn run_virtual(args: &GenerateArgs) -> Result<WriteSummary, GenerateError> {
    write_virtual(&ModelSpec::from(args), &args.out)
}

/// Parses sizes like `400MiB`, `2GiB`, `642GB` or plain bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{e} (write sizes like 400MiB, 2GiB, 642GB or a byte count)"))
}
