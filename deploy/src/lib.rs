//! Kubernetes manifests for serving a model with ferry, and a linter for their known traps.
//!
//! - [`load`] reads manifests (multi-document YAML, directories, stdin, kustomizations);
//! - [`lint`] runs the trap rules over them and returns findings with a rule id, the object, the
//!   field and the fix;
//! - [`render`] produces a consistent set (Namespace, PVC or per-node download, download Job,
//!   PodGroup, LeaderWorkerSet or Deployment, Service, optional pre-warm DaemonSet) from a few
//!   parameters, refusing parallel sizes that cannot work;
//! - [`models`] knows the attention heads and sizes of the documented models (or reads
//!   config.json), for the TP checks of both;
//! - [`engine`] recognizes SGLang / vLLM ([`engine::InferenceEngine`], shared with sharder) and
//!   the ferry gate in containers.
//!
//! Errors carry a kind ([`Error::kind`]) that the binary maps to its exit codes.
//!
//! The hand-written kustomize bases, components and overlays live beside this crate in
//! `deploy/base`, `deploy/components` and `deploy/overlays`; CI validates them and every render
//! against the Kubernetes 1.33 schemas and the CRDs in `deploy/schemas` (LWS, Volcano PodGroup,
//! Gateway API HTTPRoute).

pub mod engine;
pub mod error;
pub mod lint;
pub mod load;
pub mod models;
pub mod objects;
pub mod render;

pub use error::{Error, Result};
