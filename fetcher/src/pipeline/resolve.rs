//! Stage 1, resolve: the origin's revision (or a pinned commit) to one commit and its files,
//! narrowed by `--include` / `--exclude`.

use std::collections::HashSet;
use std::sync::Arc;

use ferry_sharder::selection::Selection as ManifestSelection;

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
    Ok(resolve_selection(origin, pinned, include, exclude).await?.0)
}

/// Like [`resolve`], with what the patterns left out of the snapshot, for the manifest to
/// record (None when they left nothing out).
pub async fn resolve_selection<O: Origin>(
    origin: &O,
    pinned: Option<&str>,
    include: &[String],
    exclude: &[String],
) -> Result<(Arc<Snapshot>, Option<ManifestSelection>)> {
    let snapshot = origin.resolve(pinned).await?;
    let files = Selection::new(include, exclude)?.apply(&origin.repo(), snapshot.files.clone())?;
    let kept: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let mut left_out: Vec<String> = snapshot
        .files
        .iter()
        .filter(|f| !kept.contains(f.path.as_str()))
        .map(|f| f.path.clone())
        .collect();
    left_out.sort();
    let selection = (!left_out.is_empty()).then(|| ManifestSelection {
        include: include.to_vec(),
        exclude: exclude.to_vec(),
        left_out,
    });
    let snapshot = origin.complete(Snapshot { files, ..snapshot }).await?;
    let files = &snapshot.files;
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
    Ok((Arc::new(snapshot), selection))
}
