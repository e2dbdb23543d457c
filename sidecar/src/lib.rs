//! Runs beside the inference engine on every GPU node.
//!
//! `ferry-sidecar` waits for a complete, verified model on the shared volume, warms the page
//! cache with what this node will read, and opens the gate the engine's startup waits on. It serves
//! `/healthz`, `/readyz` and Prometheus `/metrics` all the while.

pub mod error;

pub use error::{Error, Result};
