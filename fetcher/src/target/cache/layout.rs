//! Where each hub client looks for a model in its cache, as the pinned clients read it
//! offline (huggingface_hub 2.4 `file_download.py` / `_snapshot_download.py`; modelscope-hub 0.5
//! `_download.py`, which modelscope 1.40 delegates to):
//!
//! - Hugging Face: `CACHE/models--ORG--NAME/` with `blobs/<etag>` (the sha256 of an LFS file, the
//!   git blob sha1 of a regular one), `snapshots/<commit>/<path>` a relative symlink
//!   `../../blobs/<etag>` (one more `../` per directory level of `<path>`), and `refs/<revision>`
//!   holding the commit (no newline). Offline, a branch or tag is looked up in `refs/` first, so
//!   the ref is the commit point; a commit is looked up in `snapshots/` directly.
//! - ModelScope: `CACHE/models/ORG--NAME/snapshots/<revision>/<path>`, regular files; offline the
//!   client returns that directory as soon as it has an entry (no marker file; the `.mdl`/`.msc`
//!   files and `._____temp` of the pre-1.38 SDK are no longer read), so the directory appearing
//!   is the commit point. ferry keeps the file contents in `.ferry/blobs/<sha256>` too, hard-linked
//!   (no extra space), so another revision shares them.
//!
//! ferry's own state lives in the repo folder's `.ferry/` (lock, partial files, journals, the
//! publish log, the view being built); the manifest sits in the snapshot's `.ferry/`, so
//! `ferry verify SNAPSHOT_DIR` works on it.

use std::path::{Path, PathBuf};

use ferry_sharder::{layout, FileHash};

use crate::origin::HubKind;
use crate::snapshot::Snapshot;

/// The cache layout of one hub client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLayout {
    HuggingFace,
    ModelScope,
}

impl CacheLayout {
    /// The layout of `kind`'s own client.
    pub fn of(kind: HubKind) -> CacheLayout {
        match kind {
            HubKind::HuggingFace => CacheLayout::HuggingFace,
            HubKind::ModelScope => CacheLayout::ModelScope,
        }
    }

    /// The folder of `repo` (`ORG/NAME`) in the cache at `cache`.
    pub fn repo_dir(self, cache: &Path, repo: &str) -> PathBuf {
        match self {
            CacheLayout::HuggingFace => cache.join(format!("models--{}", repo.replace('/', "--"))),
            CacheLayout::ModelScope => cache.join("models").join(repo.replace('/', "--")),
        }
    }

    /// Where a file with `hash` is kept, relative to the repo folder.
    pub fn store_rel(self, hash: &FileHash) -> String {
        match self {
            CacheLayout::HuggingFace => format!("blobs/{}", hash.hex()),
            CacheLayout::ModelScope => format!("{}/blobs/{}", layout::STATE_DIR, hash.hex()),
        }
    }

    /// The store folder, relative to the repo folder.
    pub fn store_dir_rel(self) -> &'static str {
        match self {
            CacheLayout::HuggingFace => "blobs",
            CacheLayout::ModelScope => ".ferry/blobs",
        }
    }

    /// The name of the snapshot's folder under `snapshots/`: the commit on Hugging Face, the
    /// revision asked for on ModelScope (its client names folders so).
    pub fn view_name(self, snapshot: &Snapshot) -> &str {
        match self {
            CacheLayout::HuggingFace => &snapshot.commit,
            CacheLayout::ModelScope => &snapshot.revision,
        }
    }

    /// Whether the view's entries are symlinks into the store (else hard links).
    pub fn symlinks(self) -> bool {
        self == CacheLayout::HuggingFace
    }

    /// The `refs/` entry to write last: Hugging Face records a branch or tag, never a commit.
    pub fn ref_path(self, repo_dir: &Path, snapshot: &Snapshot) -> Option<PathBuf> {
        (self == CacheLayout::HuggingFace && snapshot.revision != snapshot.commit)
            .then(|| repo_dir.join("refs").join(&snapshot.revision))
    }

    pub fn client(self) -> &'static str {
        match self {
            CacheLayout::HuggingFace => "huggingface_hub",
            CacheLayout::ModelScope => "modelscope",
        }
    }
}

/// The symlink target of `path` in a view two levels below the repo folder
/// (`snapshots/<commit>/` or `.ferry/view-…/`) that points at `store_rel`.
pub fn relative_target(path: &str, store_rel: &str) -> PathBuf {
    let depth = path.matches('/').count() + 2;
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.join(store_rel)
}

/// The folder a view is built in before it is moved into `snapshots/`: at the same depth, so
/// relative symlinks resolve the same from both.
pub fn staging_dir(repo_dir: &Path, view_name: &str) -> PathBuf {
    let safe: String = view_name
        .chars()
        .map(|c| if c == '/' { '%' } else { c })
        .collect();
    repo_dir
        .join(layout::STATE_DIR)
        .join(format!("view-{safe}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_climb_one_level_per_directory() {
        assert_eq!(
            relative_target("config.json", "blobs/ab"),
            PathBuf::from("../../blobs/ab")
        );
        assert_eq!(
            relative_target("extra/deep/notes.txt", "blobs/ab"),
            PathBuf::from("../../../../blobs/ab")
        );
    }

    #[test]
    fn repo_folders_are_named_as_the_clients_name_them() {
        let c = Path::new("/c");
        assert_eq!(
            CacheLayout::HuggingFace.repo_dir(c, "org/m"),
            PathBuf::from("/c/models--org--m")
        );
        assert_eq!(
            CacheLayout::ModelScope.repo_dir(c, "org/m.v2"),
            PathBuf::from("/c/models/org--m.v2")
        );
    }
}
