//! The one error type of ferry-deploy, with the kind the binary turns into an exit code.

use std::path::PathBuf;

pub use ferry_sharder::ErrorKind;

/// Everything that can go wrong while rendering or linting manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path; the I/O error follows in the chain (`error: PATH: No such file or directory`).
    #[error("{path}")]
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

impl Error {
    /// The kind of failure, which the binary maps to its documented exit code: a missing input
    /// is "not found" (4), other I/O "storage" (7), render parameters that cannot work "usage"
    /// (2), a manifest that is not YAML or a failing `kubectl kustomize` "other" (1, as lint
    /// findings are).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } => ErrorKind::Storage,
            Error::Params(_) => ErrorKind::Usage,
            Error::Yaml { .. } | Error::Kustomize { .. } => ErrorKind::Other,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
