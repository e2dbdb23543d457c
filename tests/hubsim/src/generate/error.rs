//! What can go wrong when generating a synthetic repository, with what to do about it.

use std::path::PathBuf;

use bytesize::ByteSize;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("--repo {repo:?} is not of the form ORG/NAME (e.g. deepseek-ai/DeepSeek-R1)")]
    InvalidRepo { repo: String },

    #[error("--shards must be at least 1")]
    NoShards,

    #[error(
        "--total-size {} is below the smallest {layout} model with {shards} shard(s), {}: \
         ask for at least that much",
        ByteSize(*requested),
        ByteSize(*minimum)
    )]
    TooSmall {
        layout: &'static str,
        shards: u32,
        requested: u64,
        minimum: u64,
    },

    #[error(
        "--total-size {} is more than this generator scales to (1024x the real model): ask for less",
        ByteSize(*requested)
    )]
    TooLarge { requested: u64 },

    #[error(
        "--shards {shards} is more than the {tensors} tensors of this {layout} model: \
         every shard needs at least one tensor; ask for fewer shards or a larger --total-size"
    )]
    TooManyShards {
        layout: &'static str,
        shards: u32,
        tensors: usize,
    },

    #[error(
        "{} already holds weight files that this run would not write ({}): \
         they would mix with the new repository; remove them or choose an empty --out directory",
        dir.display(),
        files.join(", ")
    )]
    StaleFiles { dir: PathBuf, files: Vec<String> },

    #[error("could not {action} {}: {source}; check the path and free space", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GenerateError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| GenerateError::Io {
            action,
            path,
            source,
        }
    }
}
