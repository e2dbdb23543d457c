use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferry_sharder::ErrorKind;

/// Everything that can keep the gate closed or stop a warm.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sharder(#[from] ferry_sharder::Error),

    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        // Named `cause`, not `source`: the message shows it already, and `ferry` prints the
        // whole source chain, which would show it twice.
        cause: std::io::Error,
    },

    #[error(
        "gave up after {} waiting for a complete model in {dir}: {waiting_for}\n  \
         hint: check that the fetch job runs and writes to this volume (`ferry status {dir}`), \
         or raise --timeout",
        humantime::format_duration(std::time::Duration::from_millis(waited.as_millis() as u64 / 100 * 100))
    )]
    Timeout {
        dir: PathBuf,
        waited: Duration,
        /// What was still missing when the wait ran out.
        waiting_for: String,
    },

    /// The problem (sharder's error) carries its own hint.
    #[error("the model in {dir} failed validation: {cause}")]
    BadModel {
        dir: PathBuf,
        cause: ferry_sharder::Error,
    },

    #[error(
        "{path}: file ends at byte {actual}, but {expected} bytes should be there\n  hint: the \
         file changed since the manifest or plan was written; re-run `ferry verify` on the model"
    )]
    ShortFile {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error("{dir}: nothing to warm: no such directory, or no manifest and no model files in it\n  hint: point at the model directory, or wait for `ferry fetch` to finish")]
    NothingToWarm { dir: PathBuf },

    #[error(
        "warm plan {plan} has no node {rank} (it plans {nodes} nodes)\n  hint: check \
         --node-rank / NODE_RANK / LWS_WORKER_INDEX, or re-run `ferry plan warm` for this group size"
    )]
    NoSuchNode {
        plan: PathBuf,
        rank: u32,
        nodes: usize,
    },

    #[error(
        "--plan {plan} needs this node's rank\n  hint: pass --node-rank, or set NODE_RANK (LWS \
         sets LWS_WORKER_INDEX on its pods)"
    )]
    NeedsRank { plan: PathBuf },

    /// The doctor's checks found that the engine cannot run here; each finding carries its fix.
    #[error("preflight for {dir}: the engine will not run as configured:\n  {findings}")]
    Preflight { dir: PathBuf, findings: String },

    #[error("cannot listen on {addr}: {cause}\n  hint: another process may hold the port; pick another with --listen")]
    Listen {
        addr: SocketAddr,
        cause: std::io::Error,
    },

    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),

    #[error("stopped by {signal} before the gate opened")]
    Interrupted { signal: &'static str },

    #[error("a background task of the sidecar died: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    /// What kind of failure this is; the binary maps kinds to exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Sharder(e) => e.kind(),
            Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } => ErrorKind::Storage,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::BadModel { .. } | Error::ShortFile { .. } => ErrorKind::Verify,
            Error::NothingToWarm { .. } | Error::NoSuchNode { .. } => ErrorKind::NotFound,
            Error::NeedsRank { .. }
            | Error::Preflight { .. }
            | Error::Listen { .. }
            | Error::Serve(_)
            | Error::Interrupted { .. }
            | Error::Task(_) => ErrorKind::Other,
        }
    }
}
