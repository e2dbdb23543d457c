//! Kubernetes manifests for serving a model with ferry, and a linter for their known traps.
//!
//! - [`load`] reads manifests (multi-document YAML, directories, stdin, kustomizations);
//! - [`lint`] runs the trap rules over them and returns findings with a rule id, the object, the
//!   field and the fix;
//! - [`render`] produces a consistent set (PVC, download Job, LeaderWorkerSet or Deployment,
//!   Service, optional pre-warm DaemonSet) from a few parameters.
//!
//! The hand-written kustomize base and overlays live beside this crate in `deploy/base` and
//! `deploy/overlays`; CI validates them and every render against the Kubernetes and LWS schemas.

pub mod engine;
pub mod error;
pub mod lint;
pub mod load;
pub mod models;
pub mod objects;
pub mod render;

pub use error::{Error, Result};
