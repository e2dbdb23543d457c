//! Symbolic links inside a model directory. A link planted at `DIR/sub -> /elsewhere` must
//! never make ferry write a hub file outside `DIR` (publishing refuses any link on the way), nor
//! vouch for a file outside `DIR` (verification refuses a path that resolves out of it).

use std::path::{Path, PathBuf};

/// The first of the directories between `dir` and `rel` (and `rel` itself, with `with_file`)
/// that is a symbolic link, with where it points. Components that do not exist yet end the
/// walk: what is created later is a real directory.
pub fn first_link(
    dir: &Path,
    rel: &str,
    with_file: bool,
) -> std::io::Result<Option<(PathBuf, PathBuf)>> {
    let parts: Vec<&str> = rel.split('/').collect();
    let upto = if with_file {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    let mut at = dir.to_path_buf();
    for part in &parts[..upto] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(md) if md.file_type().is_symlink() => {
                let to = std::fs::read_link(&at).unwrap_or_default();
                return Ok(Some((at, to)));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// When `rel` resolves to a place outside `dir` (through a link on its way or a link in its
/// place): the link and where it points. A missing file is not an escape (it is reported as
/// missing elsewhere); links that stay inside `dir` are allowed.
pub fn escapes(dir: &Path, rel: &str) -> Option<(PathBuf, PathBuf)> {
    let root = dir.canonicalize().ok()?;
    let real = dir.join(rel).canonicalize().ok()?;
    if real.starts_with(&root) || hf_cache_blobs(&root).is_some_and(|b| real.starts_with(b)) {
        return None;
    }
    let link = first_link(dir, rel, true).ok().flatten();
    Some(link.unwrap_or((dir.join(rel), real)))
}

/// A Hugging Face cache snapshot (`…/models--ORG--NAME/snapshots/COMMIT`) links each file to
/// its repo folder's `blobs/`: that is the layout huggingface_hub reads, not an escape.
fn hf_cache_blobs(root: &Path) -> Option<PathBuf> {
    let snapshots = root.parent()?;
    let repo = snapshots.parent()?;
    let is_repo = repo
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("models--") || n.starts_with("datasets--"));
    (snapshots.file_name()? == "snapshots" && is_repo).then(|| repo.join("blobs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_on_the_way_are_found_and_escapes_told_apart() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("model");
        let elsewhere = outer.path().join("elsewhere");
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("x"), b"x").unwrap();
        std::fs::write(dir.join("real/y"), b"y").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("sub")).unwrap();
        std::os::unix::fs::symlink("real", dir.join("inside")).unwrap();

        let (link, to) = first_link(&dir, "sub/x", false).unwrap().unwrap();
        assert_eq!((link, to), (dir.join("sub"), elsewhere.clone()));
        assert!(first_link(&dir, "real/y", true).unwrap().is_none());
        assert!(first_link(&dir, "new/deeper/z", false).unwrap().is_none());
        assert!(escapes(&dir, "sub/x").is_some());
        assert!(escapes(&dir, "inside/y").is_none());
        assert!(escapes(&dir, "real/y").is_none());
        assert!(escapes(&dir, "missing").is_none());
    }
}
