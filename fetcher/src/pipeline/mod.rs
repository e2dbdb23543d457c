//! `ferry fetch`, top to bottom: the origin and target the command line named, and the stages
//! between them, called in order from [`fetch`] and [`stages::run_stages`]:
//!
//! 1. [`resolve`]: revision → commit and files (after `--include` / `--exclude`);
//! 2. plan and reuse ([`stages`] from here on): [`Target::is_complete`], then [`Target::reuse`] sorts out what is in place;
//! 3. transfer, verify and publish: [`Target::transfer`] (for a directory: the
//!    [`crate::transfer`] scheduler), reported through [`report`];
//! 4. validate: [`Target::validate`] (safetensors headers, index);
//! 5. manifest: [`Target::commit`], last.
//!
//! An Indexed Job's slice ([`slice`]) is a layer over the same stages for a directory;
//! [`preview`] is stage 1 and a read-only look at the target, for `--dry-run`.

pub mod options;
pub mod preview;
pub mod report;
pub mod resolve;
pub mod slice;
pub mod stages;
pub mod summary;

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::events::Reporter;
use crate::origin::hub::HubOrigin;
use crate::origin::s3::S3Origin;
use crate::origin::{Origin, OriginSpec};
use crate::target::dir::DirTarget;
use crate::target::s3::S3Target;
use crate::target::TargetSpec;
pub use options::FetchOptions;
use stages::{run_stages, Run};
use summary::Summary;

/// Fetches `opts.origin` into `opts.target`. The token, if any, is given separately so that
/// options can be logged; progress goes to `reporter`.
pub async fn fetch(
    opts: FetchOptions,
    token: Option<Secret>,
    reporter: Arc<dyn Reporter>,
) -> Result<Summary> {
    let started = Instant::now();
    let run = Run {
        opts: &opts,
        reporter,
    };
    let s3_endpoint = opts.s3_endpoint.as_deref();
    let mut summary = match (&opts.origin, &opts.target) {
        (OriginSpec::Hub(repo), TargetSpec::Dir(dir)) => {
            let origin = HubOrigin::new(repo.clone(), token)?;
            match opts.slice {
                None => into_dir(&run, &origin, dir.clone()).await?,
                Some(spec) => slice::fetch_slice(&run, &origin, dir.clone(), spec).await?,
            }
        }
        (OriginSpec::S3(url), TargetSpec::Dir(dir)) => {
            if opts.slice.is_some() {
                return Err(Error::Usage(
                    "--slice/--slices work with hub sources only; an s3:// source is fetched by one process (in-region S3 is rarely the bottleneck)".into(),
                ));
            }
            let max = opts.transfer.max_connections();
            let origin = S3Origin::connect(url.clone(), s3_endpoint, max).await?;
            into_dir(&run, &origin, dir.clone()).await?
        }
        (OriginSpec::Hub(repo), TargetSpec::S3(dest)) => {
            if opts.slice.is_some() {
                return Err(Error::Usage(
                    "--slice/--slices write into a shared directory; with --to s3:// run one ferry per prefix".into(),
                ));
            }
            let origin = HubOrigin::new(repo.clone(), token)?;
            let snapshot = resolve::resolve(&origin, None, &opts.include, &opts.exclude).await?;
            let target = S3Target::open(dest.clone(), s3_endpoint, opts.transfer.clone()).await?;
            run_stages(&run, &origin, &target, snapshot).await?
        }
        (OriginSpec::S3(_), TargetSpec::S3(_)) => {
            return Err(Error::Usage(
                "s3:// to s3:// is a copy between buckets, not a fetch; use `aws s3 sync` (or fetch from the hub into the prefix)".into(),
            ))
        }
    };
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The whole snapshot into a directory, under its lock.
async fn into_dir<O: Origin>(
    run: &Run<'_>,
    origin: &O,
    dir: std::path::PathBuf,
) -> Result<Summary> {
    let target = DirTarget::new(dir, run.opts.transfer.clone(), origin.hf_metadata(), None)?;
    let _lock = crate::lock::acquire(target.dir(), None)?;
    let snapshot = resolve::resolve(origin, None, &run.opts.include, &run.opts.exclude).await?;
    run_stages(run, origin, &target, snapshot).await
}
