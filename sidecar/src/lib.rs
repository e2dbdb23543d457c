//! Runs beside the inference engine on every GPU node.
//!
//! `ferry-sidecar` waits for a complete, verified model on the shared volume, warms the page
//! cache with what this node will read, and opens the gate the engine's startup waits on. It serves
//! `/healthz`, `/readyz` and Prometheus `/metrics` all the while.
//!
//! - [`gate`]: the wait → verify → warm → open sequence as one library call, [`gate::run`];
//!   [`model_check`] the check and the words for what the directory holds; [`recheck`] re-checks
//!   an open gate in serve mode.
//! - [`share`]: which bytes this node warms (all, a plan file's node, or a plan it computes).
//! - [`warm`]: parallel sequential reads into the page cache, residency before and after;
//!   [`readers`] how many readers, from the storage.
//! - [`residency`]: `mincore` measurement and `fadvise` eviction.
//! - [`cgroup`]: the container's memory limit and the node's available memory.
//! - [`doctor`]: will the model run on these GPUs with this engine (`ferry doctor`, `--preflight`).
//! - [`server`], [`metrics`]: the HTTP endpoints and the Prometheus series; [`openmetrics`] what
//!   the sidecar's and `ferry fetch`'s exporters share (declaring a series, encoding it).
//! - [`service`]: init mode and serve mode, with graceful shutdown.

pub mod cgroup;
pub mod doctor;
pub mod error;
pub mod gate;
pub mod metrics;
pub mod model_check;
pub mod openmetrics;
pub mod readers;
pub mod recheck;
pub mod residency;
pub mod server;
pub mod service;
pub mod share;
pub mod warm;

pub use error::{Error, Result};
