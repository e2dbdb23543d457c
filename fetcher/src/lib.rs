//! Downloads one model snapshot onto disk, fast and safely.
//!
//! `ferry-fetcher` resolves a revision to a commit on a source ([`source`]: Hugging Face or
//! ModelScope), selects files ([`select`]), splits them into byte ranges and moves them over many
//! connections under one budget ([`engine`], [`transfer`]), journals finished ranges so any crash
//! resumes ([`journal`]), verifies every file against the source's hash and publishes it by rename
//! ([`publish`]). The completion manifest ([`ferry_sharder::Manifest`]) is written last.
//! The entry point is [`fetch::fetch`].

pub mod adapt;
pub mod auth;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod http;
pub mod journal;
pub mod lock;
pub mod progress;
pub mod publish;
pub mod s3;
pub mod select;
pub mod slice;
pub mod snapshot;
pub mod source;
pub mod space;
pub mod transfer;

pub use error::{Error, Result};
pub use fetch::{fetch, FetchOptions, Summary};
