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
//! An Indexed Job's slice ([`slice`]) is a layer over the same stages for a directory; an
//! `ollama://` tag runs them into an Ollama models directory ([`crate::target::ollama`]); a hub
//! cache ([`crate::target::cache`]) runs the same stages under its repo folder's lock; a dynamic
//! Job's claims ([`claims`]) are a layer over the same stages for a directory.
//! [`preview`] is stage 1 and a read-only look at the target, for `--dry-run`.

pub mod claims;
pub mod offline;
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
use crate::origin::hub_origin::HubOrigin;
use crate::origin::ollama::{OllamaName, OllamaOrigin};
use crate::origin::s3::S3Origin;
use crate::origin::{Origin, OriginSpec};
use crate::target::cache::{CacheLayout, CacheTarget};
use crate::target::dir::DirTarget;
use crate::target::ollama::OllamaTarget;
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
    let hf =
        matches!(&opts.origin, OriginSpec::Hub(h) if h.kind == crate::origin::HubKind::HuggingFace);
    let offline = if opts.offline {
        Some("--offline")
    } else {
        crate::net::offline_from_env(hf)
    };
    if let Some(switch) = offline {
        let mut summary = offline::fetch(&opts, switch).await?;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let (stall, retry) = (opts.transfer.stall_timeout, opts.transfer.retry_timeout);
    let mut summary = match (&opts.origin, &opts.target) {
        (OriginSpec::Hub(repo), TargetSpec::Dir(dir)) => {
            let origin = HubOrigin::new(repo.clone(), token)?.with_timeouts(stall, retry);
            match opts.slice {
                None => into_dir(&run, &origin, dir.clone()).await?,
                Some(spec) if opts.dynamic => {
                    claims::fetch_claims(&run, &origin, dir.clone(), spec).await?
                }
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
            let origin = HubOrigin::new(repo.clone(), token)?.with_timeouts(stall, retry);
            let snapshot = resolve::resolve(&origin, None, &opts.include, &opts.exclude).await?;
            let target = S3Target::open(dest.clone(), s3_endpoint, opts.transfer.clone()).await?;
            run_stages(&run, &origin, &target, snapshot).await?
        }
        (OriginSpec::Ollama(name), TargetSpec::Dir(dir)) => {
            into_ollama_dir(&run, name, dir.clone(), token.is_some()).await?
        }
        (OriginSpec::Ollama(_), TargetSpec::S3(_)) => {
            return Err(Error::Usage(
                "an ollama:// model goes into an Ollama models directory, not s3://; fetch it with --to DIR (the OLLAMA_MODELS the server reads)".into(),
            ))
        }
        (OriginSpec::Hub(repo), TargetSpec::HubCache(root)) => {
            if opts.slice.is_some() {
                return Err(Error::Usage(
                    "--slice/--slices write a shared directory; fetch into a hub cache with one ferry (or slices into --to DIR)".into(),
                ));
            }
            let origin = HubOrigin::new(repo.clone(), token)?;
            into_cache(&run, &origin, CacheLayout::of(repo.kind), root).await?
        }
        (OriginSpec::Ollama(_), TargetSpec::HubCache(_)) => {
            return Err(Error::Usage(
                "an ollama:// model goes into an Ollama models directory, not a hub cache; fetch it with --to DIR".into(),
            ))
        }
        (OriginSpec::S3(url), TargetSpec::HubCache(_)) => {
            return Err(Error::Usage(format!(
                "{url} has no hub cache layout (those are named by hub repo); use --to DIR"
            )))
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

/// The whole snapshot into a hub cache, under the repo folder's lock; the summary names the
/// snapshot folder the client opens.
async fn into_cache<O: Origin>(
    run: &Run<'_>,
    origin: &O,
    cache: CacheLayout,
    root: &std::path::Path,
) -> Result<Summary> {
    let target = CacheTarget::new(cache, root, &origin.repo(), run.opts.transfer.clone())?;
    let _lock = crate::lock::acquire(target.repo_dir(), None)?;
    let snapshot = resolve::resolve(origin, None, &run.opts.include, &run.opts.exclude).await?;
    let mut summary = run_stages(run, origin, &target, snapshot).await?;
    summary.dir = target.view_of(&summary.revision, &summary.commit);
    Ok(summary)
}

/// The whole snapshot into a directory, under its lock.
async fn into_dir<O: Origin>(
    run: &Run<'_>,
    origin: &O,
    dir: std::path::PathBuf,
) -> Result<Summary> {
    let mut target = DirTarget::new(dir, run.opts.transfer.clone(), origin.hf_metadata(), None)?;
    let _lock = crate::lock::acquire(target.dir(), None)?;
    let (snapshot, selection) =
        resolve::resolve_selection(origin, None, &run.opts.include, &run.opts.exclude).await?;
    target.set_selection(selection);
    target.set_replace(run.opts.replace);
    target.settle_previous(&snapshot)?;
    run_stages(run, origin, &target, snapshot).await
}

/// One tag into an Ollama models directory, under the directory's lock. A tag is fetched whole:
/// the server would refuse a manifest whose blobs a selection left out.
async fn into_ollama_dir(
    run: &Run<'_>,
    name: &OllamaName,
    dir: std::path::PathBuf,
    token: bool,
) -> Result<Summary> {
    let opts = run.opts;
    if opts.slice.is_some() || opts.filtered() {
        return Err(Error::Usage(format!(
            "ollama://{name} is fetched whole by one process: --slice/--slices, --include and --exclude do not apply"
        )));
    }
    if token {
        tracing::warn!("ollama://{name}: the registry takes no bearer token; --token is not sent");
    }
    let origin = OllamaOrigin::new(name.clone())?;
    let dir_target = DirTarget::new(dir, opts.transfer.clone(), false, None)?;
    let _lock = crate::lock::acquire(dir_target.dir(), None)?;
    let snapshot = resolve::resolve(&origin, None, &[], &[]).await?;
    let pulled = origin.pulled().ok_or_else(|| Error::Task {
        task: "ollama resolve",
        message: "resolved without a manifest".into(),
    })?;
    let target = OllamaTarget::new(dir_target, &snapshot, &pulled)?;
    run_stages(run, &origin, &target, snapshot).await
}
