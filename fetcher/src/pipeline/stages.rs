//! Stages 2 to 5 of a fetch for one resolved snapshot, in order: completeness check, reuse,
//! transfer (with reporting), validation, manifest. Called by [`super::fetch`] and, for the
//! slice that finalizes an Indexed Job, by [`super::slice`].

use std::sync::Arc;

use super::options::FetchOptions;
use super::report::{reporting, Beat};
use super::summary::Summary;
use crate::error::Result;
use crate::events::Reporter;
use crate::meter::Meter;
use crate::origin::Origin;
use crate::target::Target;

/// What a run needs besides the origin and target.
pub struct Run<'a> {
    pub opts: &'a FetchOptions,
    pub reporter: Arc<dyn Reporter>,
}

/// Stages 2 to 5 for `snapshot`: the one place they are called in order. The caller holds
/// whatever lock the target needs.
pub async fn run_stages<O: Origin, T: Target>(
    run: &Run<'_>,
    origin: &O,
    target: &T,
    snapshot: Arc<crate::snapshot::Snapshot>,
) -> Result<Summary> {
    let location = target.location();
    if target.is_complete(&snapshot, origin.id()).await? {
        tracing::info!(
            "{} is already complete: its manifest names this commit and every file is in place at its size (not re-hashed now: `ferry verify --full` does that); nothing to do",
            location.display()
        );
        return Ok(Summary::complete(&snapshot, origin.id(), &location));
    }
    target.withdraw().await?;
    let meter = Arc::new(Meter::new(&snapshot));
    let (reused, todo) = target.reuse(&snapshot, &snapshot.files).await?;
    meter.reused_files(&reused);

    let ranges = origin.open(&snapshot).await?;
    let beat = target.heartbeat().map(|path| {
        Beat::new(
            path,
            &snapshot,
            origin.id(),
            run.opts.slice.map(|s| (s.index, s.count)),
        )
    });
    let moving = todo.clone();
    reporting(
        &meter,
        &run.reporter,
        beat,
        target.transfer(ranges, &snapshot, moving, &meter),
    )
    .await?;

    target.validate(&snapshot, run.opts.filtered()).await?;
    target.commit(&snapshot, origin.id()).await?;
    Ok(Summary::of(
        &snapshot,
        origin.id(),
        &location,
        (&reused, &todo),
        &meter,
    ))
}
