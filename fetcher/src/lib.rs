//! Downloads one model snapshot onto disk, fast and safely.
//!
//! `ferry-fetcher` resolves a revision to a commit on a source (Hugging Face, ModelScope, S3),
//! plans the files into byte ranges, moves them over many connections under one budget, journals
//! finished ranges so that any crash resumes, verifies every file against the source's hash, and
//! publishes it by rename. The completion manifest ([`ferry_sharder::Manifest`]) is written last.

pub mod error;

pub use error::{Error, Result};
