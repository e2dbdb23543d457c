//! Stage 1, resolve: the origin's revision (or a pinned commit) to one commit and its files,
//! narrowed by `--include` / `--exclude`.

use std::sync::Arc;

use crate::error::Result;
use crate::origin::Origin;
use crate::select::Selection;
use crate::snapshot::Snapshot;

/// The snapshot to fetch from `origin`, at `pinned` when another process chose the commit.
pub async fn resolve<O: Origin>(
    origin: &O,
    pinned: Option<&str>,
    include: &[String],
    exclude: &[String],
) -> Result<Arc<Snapshot>> {
    let snapshot = origin.resolve(pinned).await?;
    let files = Selection::new(include, exclude)?.apply(&origin.repo(), snapshot.files.clone())?;
    tracing::info!(
        "{} {} at {} ({}): {} file{}, {}",
        origin.name(),
        snapshot.repo,
        snapshot.revision,
        &snapshot.commit[..12.min(snapshot.commit.len())],
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        // Decimal units, as the binary prints sizes everywhere.
        bytesize::ByteSize(files.iter().map(|f| f.size).sum())
            .display()
            .si()
    );
    Ok(Arc::new(Snapshot { files, ..snapshot }))
}
