//! The checkpoint on disk.
//!
//! `ferry-sharder` owns everything that describes a model directory once bytes are on it:
//! where ferry keeps its own state ([`layout`]), the completion manifest that marks a directory
//! as complete and verified ([`manifest`]), the file hashes both hubs use ([`hash`]), checkpoint
//! validation from safetensors headers and the index ([`validate`]), verification against the
//! manifest ([`verify`]), the typed `.ferry/` files a running fetch writes ([`state`]), download slices for Indexed Jobs ([`slices`]) and their dynamic claims ([`claims`]), per-node warm plans
//! ([`warm_plan`], made by [`loader`]) and the read-only directory status ([`status`]). The lease
//! file ([`lease`]) and this process's identity ([`host`]: host name, boot id, pid namespace,
//! the one place that reads them) are shared by everything that writes markers.
//! The fetcher writes the manifest; `ferry verify`, `ferry status` and the sidecar read it.

pub mod claims;
pub mod error;
pub mod finding;
pub mod hash;
pub mod header;
pub mod host;
pub mod index;
pub mod inference_engine;
pub mod layout;
pub mod lease;
pub mod links;
pub mod loader;
pub mod manifest;
pub mod model;
pub mod model_config;
pub mod parallel;
pub mod range;
pub mod selection;
pub mod sim;
pub mod slices;
pub mod state;
pub mod status;
pub mod validate;
pub mod verify;
pub mod visible;
pub mod volume;
pub mod warm_plan;

pub use error::{Error, ErrorKind, Result};
pub use finding::{Finding, Severity};
pub use hash::{FileHash, Hasher};
pub use inference_engine::InferenceEngine;
pub use manifest::{Manifest, ManifestFile};
pub use range::FileRange;
