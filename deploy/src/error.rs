use std::path::PathBuf;

/// Everything that can go wrong while rendering or linting manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A document that is not valid YAML, or not a mapping where a Kubernetes object belongs.
    #[error(
        "{source_name}: document {index}: {message} (hint: check indentation and `---` separators)"
    )]
    Yaml {
        source_name: String,
        index: usize,
        message: String,
    },
    /// A directory holding a kustomization.yaml could not be built.
    #[error(
        "{dir}: kubectl kustomize failed: {message} \
         (hint: run `kubectl kustomize {dir}` to see why, or pipe its output into `ferry lint -`)"
    )]
    Kustomize { dir: PathBuf, message: String },
    /// `ferry deploy render` parameters that cannot make a working deployment.
    #[error("invalid render parameters: {0}")]
    Params(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
