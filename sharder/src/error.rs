use std::path::PathBuf;

/// Everything that can go wrong while reading, checking or writing a model directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid ferry manifest: {reason}\n  hint: delete it and re-run `ferry fetch`, which rewrites it after verifying every file")]
    BadManifest { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl Error {
    /// What kind of failure this is; the binary maps kinds to exit codes.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            _ => crate::ErrorKind::Other,
        }
    }
}

/// The kinds of failure every ferry crate sorts its errors into, so that the binary can give each
/// kind its own documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Missing or wrong credentials, gated repo without access.
    Auth,
    /// Repo, revision, file or bucket not found.
    NotFound,
    /// Bytes or checkpoint structure failed verification or validation.
    Verify,
    /// The network or the server failed after every retry.
    Network,
    /// Local storage: disk full, permissions, a directory locked by another ferry.
    Storage,
    /// A bounded wait ran out.
    Timeout,
    /// Anything else.
    Other,
}
