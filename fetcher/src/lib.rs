//! Downloads one model snapshot to where it is needed, fast and safely.
//!
//! `ferry-fetcher` takes an origin and a target, both typed values the command line parses
//! ([`origin::OriginSpec`]: a Hugging Face or ModelScope repo, an S3 prefix;
//! [`target::TargetSpec`]: a directory, an S3 prefix), and runs the stages of [`pipeline`] in
//! order: resolve the revision to one commit and its files ([`origin`], narrowed by
//! [`select`]), sort out what the target holds already, move the rest in byte ranges over many
//! connections under one budget ([`transfer`]: scheduler, connection controller, range
//! transfer, journal), verify every file against the origin's hash and publish it under its
//! final name ([`target`]), validate the checkpoint, and commit the manifest
//! ([`ferry_sharder::Manifest`]) last. Progress goes out as [`events`] for the caller to render;
//! the counters behind them are one [`meter::Meter`]. A directory target is held by a lease
//! ([`lock`], safe on shared volumes); [`s3`] is the one S3 client of the S3 origin and target;
//! [`http`] and [`auth`] keep tokens to the hub that issued them.
//!
//! The entry point is [`fetch`]; commands that only list a repo use [`origin::hub_origin::list`].

// `Error::Unreachable` carries the endpoint, its source, the proxy and a hint (what a user
// needs to act); errors are the cold path, so their size costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod error;
pub mod events;
pub mod http;
pub mod lock;
pub mod meter;
pub mod net;
pub mod origin;
pub mod pipeline;
pub mod s3;
pub mod select;
pub mod snapshot;
pub mod space;
pub mod target;
pub mod transfer;

pub use error::{Error, Result};
pub use pipeline::summary::{FileOutcome, FileResult, Summary};
pub use pipeline::{fetch, FetchOptions};
