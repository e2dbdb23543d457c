//! Kubernetes manifests for serving a model with ferry, and a linter for their known traps.

pub mod error;

pub use error::{Error, Result};
