//! The checkpoint on disk.
//!
//! `ferry-sharder` owns everything that describes a model directory once bytes are on it:
//! where ferry keeps its own state ([`layout`]), the completion manifest that marks a directory
//! as complete and verified ([`manifest`]), the file hashes both hubs use ([`hash`]).
//! The fetcher writes the manifest; `ferry verify`, `ferry status` and the sidecar read it.

pub mod error;
pub mod hash;
pub mod layout;
pub mod manifest;

pub use error::{Error, ErrorKind, Result};
pub use hash::{FileHash, Hasher};
pub use manifest::{Manifest, ManifestFile};
