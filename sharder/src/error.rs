use std::path::PathBuf;

use crate::finding::Finding;

/// Everything that can go wrong while reading, checking or writing a model directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Named `cause`, not `source`: the message shows it already, and `ferry` prints the whole
    // source chain, which would show it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a valid ferry manifest: {reason}\n  hint: delete it and re-run `ferry fetch`, which rewrites it after verifying every file")]
    BadManifest { path: PathBuf, reason: String },
    /// The directory has no completion manifest, so there is nothing to verify against.
    #[error("{dir}: no completion manifest (.ferry/manifest.json): the model is not completely fetched\n  hint: run `ferry status {dir}` to see what is missing, then finish it with `ferry fetch`")]
    NoManifest { dir: PathBuf },
    /// The directory or checkpoint failed verification or validation; every problem is listed.
    #[error("{dir}: {} problem(s) found:\n{}\n  hint: re-fetch the files named above with `ferry fetch` (delete a damaged file first), then run `ferry verify` again", findings.len(), crate::finding::bullet_list(findings))]
    Invalid {
        dir: PathBuf,
        findings: Vec<Finding>,
    },
    /// A warm plan or slice marker that cannot be read.
    #[error("{path}: not a valid {what}: {reason}\n  hint: regenerate it with `ferry plan`")]
    BadPlan {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    /// A `.ferry/` state file another process wrote that cannot be read (see [`crate::state`]).
    #[error("{path}: unreadable {what} ({reason})\n  hint: delete it to start the Job over")]
    BadState {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    /// Inputs a plan cannot be made from (no files, zero slices, a model without an index, ...).
    #[error("cannot plan: {reason}\n  hint: {hint}")]
    CannotPlan { reason: String, hint: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }
}

impl Error {
    /// What kind of failure this is; the binary maps kinds to exit codes.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind;
        match self {
            Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } => ErrorKind::Storage,
            Error::BadManifest { .. } | Error::NoManifest { .. } | Error::Invalid { .. } => {
                ErrorKind::Verify
            }
            Error::BadPlan { .. } | Error::BadState { .. } | Error::CannotPlan { .. } => {
                ErrorKind::Other
            }
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
    /// Parameters that cannot work together (bad flags, a render that cannot be made).
    Usage,
    /// Anything else.
    Other,
}
