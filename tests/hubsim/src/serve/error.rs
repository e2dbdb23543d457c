//! Errors that stop `hubsim serve` from starting or running.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the server could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "repository root {path} is not a readable directory: {source}; pass an existing --root"
    )]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}; pick another --listen address (127.0.0.1:0 picks a free port)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "invalid fault configuration: {0}; see the `## serve` section of tests/hubsim/README.md"
    )]
    Faults(String),
    #[error("cannot hash the repos (--prehash): {0}")]
    Prehash(String),
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error(
        "cannot serve TLS: {0}; pass a PEM certificate chain (leaf first) and its PEM private key"
    )]
    Tls(String),
    #[error("server stopped with an I/O error: {0}")]
    Server(std::io::Error),
}
