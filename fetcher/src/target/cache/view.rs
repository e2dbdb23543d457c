//! A snapshot's view in a hub cache: the `snapshots/<name>/` folder the client opens, made of
//! links into the store. It is built whole in a staging folder under `.ferry/`, then moved into
//! place in one rename (or, where the client already has that folder, entry by entry, each
//! entry a rename of a complete verified file), and the Hugging Face ref is written after it:
//! a reader sees no snapshot, or one whose every file is complete.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ferry_sharder::manifest::{sync_dir, write_atomic};
use ferry_sharder::{layout, Manifest};

use super::layout::{relative_target, CacheLayout};
use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use crate::target::publish::sync_dirs;

/// The manifest's path inside a view.
const MANIFEST_REL: &str = ".ferry/manifest.json";

/// Builds the view of `snapshot` afresh in `staging`: one link per file into the store.
pub fn build(
    cache: CacheLayout,
    repo_dir: &Path,
    staging: &Path,
    snapshot: &Snapshot,
) -> Result<()> {
    remove_tree(staging)?;
    for f in &snapshot.files {
        let store_rel = cache.store_rel(&f.hash);
        let link = staging.join(&f.path);
        let parent = link.parent().unwrap_or(staging);
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        if cache.symlinks() {
            std::os::unix::fs::symlink(relative_target(&f.path, &store_rel), &link)
                .map_err(|e| Error::io(&link, e))?;
        } else {
            hard_link_or_copy(&repo_dir.join(store_rel), &link)?;
        }
    }
    Ok(())
}

/// A hard link of `from` at `to`, or a copy where the volume has no hard links.
fn hard_link_or_copy(from: &Path, to: &Path) -> Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::EMLINK | libc::ENOTSUP)
            ) =>
        {
            tracing::warn!(
                "{}: no hard links on this volume ({e}); copying, which takes the space twice",
                to.display()
            );
            std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
            Ok(())
        }
        Err(e) => Err(Error::io(to, e)),
    }
}

/// Moves the built view into `snapshots/`, with the manifest in its `.ferry/`, then writes the
/// ref: the commit point of the cache.
pub fn commit(
    cache: CacheLayout,
    repo_dir: &Path,
    staging: &Path,
    snapshot: &Snapshot,
    manifest: &Manifest,
) -> Result<PathBuf> {
    let view = view_dir(cache, repo_dir, snapshot);
    manifest.write_atomic(staging)?;
    let paths = snapshot.files.iter().map(|f| f.path.as_str());
    sync_dirs(staging, paths.chain([MANIFEST_REL]))?;
    sync_dir(&repo_dir.join(cache.store_dir_rel()))?;
    crate::lock::still_held(repo_dir)?;
    let snapshots = repo_dir.join("snapshots");
    std::fs::create_dir_all(&snapshots).map_err(|e| Error::io(&snapshots, e))?;
    if let Some(parent) = view.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    match std::fs::rename(staging, &view) {
        Ok(()) => {}
        // The client (or an earlier fetch of another selection) has this snapshot already.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty
            ) =>
        {
            merge(staging, &view, snapshot)?;
        }
        Err(e) => return Err(Error::io(&view, e)),
    }
    sync_dir(view.parent().unwrap_or(&snapshots))?;
    if let Some(r) = cache.ref_path(repo_dir, snapshot) {
        write_atomic(&r, snapshot.commit.as_bytes())?;
    }
    Ok(view)
}

/// The folder the client opens for `snapshot`.
pub fn view_dir(cache: CacheLayout, repo_dir: &Path, snapshot: &Snapshot) -> PathBuf {
    repo_dir.join("snapshots").join(cache.view_name(snapshot))
}

/// Moves each entry of `staging` over its name in the existing `view`. The old manifest goes
/// first (the folder's files are about to change), the new one last.
fn merge(staging: &Path, view: &Path, snapshot: &Snapshot) -> Result<()> {
    let old = layout::manifest_path(view);
    match std::fs::remove_file(&old) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&old, e)),
    }
    let entries = snapshot.files.iter().map(|f| f.path.as_str());
    for rel in entries.chain([MANIFEST_REL]) {
        let (from, to) = (staging.join(rel), view.join(rel));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // A file where the client's own download left a directory (or the reverse) is the
        // client's to sort out; rename reports it with the path.
        std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
    }
    let paths = snapshot.files.iter().map(|f| f.path.as_str());
    sync_dirs(view, paths.chain([MANIFEST_REL]))?;
    remove_tree(staging)
}

/// Removes a folder ferry built under `.ferry/`, if there.
pub fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Drops store entries no view links to any more (ModelScope's hard-linked store: a link count
/// of one), so the store never holds space the client's folders do not show.
pub fn prune_store(store: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(store) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry
            .metadata()
            .is_ok_and(|m| m.is_file() && m.nlink() == 1)
        {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}
