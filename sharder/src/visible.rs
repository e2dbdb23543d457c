//! Waiting out a stale view of a shared volume before judging a model directory.
//!
//! NFS clients cache attributes and directory entries (`actimeo`, `lookupcache`): a node can see
//! the manifest before the files it names, a renamed file late, or an old size. So before the
//! gate opens or `ferry verify` judges, every file the manifest names must be visible here with
//! its size (and, for safetensors, a plausible header prefix); while one is not, the check is
//! repeated for a short bounded while. Each round lists the files' directories, which makes an
//! NFS client revalidate them (close-to-open applies to directories too) instead of trusting a
//! cached "no such file". What is still wrong after the wait is left to the verification itself
//! to report.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::manifest::{Manifest, ManifestFile};

/// How long to wait for files to become visible: `FERRY_VISIBILITY_WAIT` (humantime), else
/// [`DEFAULT_PATIENCE`]. On NFS with default mount options raise it to `acdirmax` (60 s) or
/// mount with `lookupcache=positive`.
pub const PATIENCE_ENV: &str = "FERRY_VISIBILITY_WAIT";

/// Each round revalidates the directories, so a stale NFS view clears within a round or two;
/// healthy directories pay nothing, a truly damaged one is reported this much later.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(5);

const ROUND: Duration = Duration::from_millis(250);

/// The configured patience; an unparseable value falls back to the default with a warning.
pub fn patience() -> Duration {
    match std::env::var(PATIENCE_ENV) {
        Err(_) => DEFAULT_PATIENCE,
        Ok(v) => humantime::parse_duration(v.trim()).unwrap_or_else(|_| {
            tracing::warn!("{PATIENCE_ENV}={v:?} is not a duration; using {DEFAULT_PATIENCE:?}");
            DEFAULT_PATIENCE
        }),
    }
}

/// Why one file is not (yet) as the manifest says, from this node's view.
pub fn problem(dir: &Path, f: &ManifestFile) -> Option<String> {
    let path = dir.join(&f.path);
    let md = match std::fs::metadata(&path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("not visible".into()),
        Err(e) => return Some(format!("cannot stat: {e}")),
    };
    if !md.is_file() {
        return Some("not a regular file".into());
    }
    if md.len() != f.size {
        return Some(format!("{} bytes visible of {}", md.len(), f.size));
    }
    if f.path.ends_with(".safetensors") {
        return header_problem(&path, f.size);
    }
    None
}

/// A safetensors file starts with its header length (u64 LE) and a JSON object that fits.
fn header_problem(path: &Path, size: u64) -> Option<String> {
    let mut head = [0u8; 9];
    let read = std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut head));
    if let Err(e) = read {
        return Some(format!("cannot read the header: {e}"));
    }
    let len = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
    if head[8] != b'{' || len.saturating_add(8) > size {
        return Some("no safetensors header at the start (zeros or other data)".into());
    }
    None
}

/// Files that are not yet visible as the manifest says, with the reason.
pub fn check(dir: &Path, manifest: &Manifest) -> Vec<(String, String)> {
    manifest
        .files
        .iter()
        .filter_map(|f| problem(dir, f).map(|p| (f.path.clone(), p)))
        .collect()
}

/// Waits until every manifest file is visible with its size, at most `patience`. Returns what is
/// still wrong (empty: all visible); the caller's verification then reports it in full.
pub fn wait(dir: &Path, manifest: &Manifest, patience: Duration) -> Vec<(String, String)> {
    let start = Instant::now();
    let mut pending = check(dir, manifest);
    let mut logged = false;
    while !pending.is_empty() && start.elapsed() < patience {
        if !logged {
            tracing::info!(
                "{} file(s) named in the manifest are not visible here yet (first: {} {}); \
                 waiting up to {patience:?} for this node's view of the volume to catch up",
                pending.len(),
                pending[0].0,
                pending[0].1
            );
            logged = true;
        }
        std::thread::sleep(ROUND.min(patience.saturating_sub(start.elapsed())));
        // Listing the directories revalidates them on NFS (a cached negative lookup goes).
        let dirs: std::collections::BTreeSet<_> = pending
            .iter()
            .filter_map(|(p, _)| dir.join(p).parent().map(Path::to_path_buf))
            .collect();
        for d in dirs {
            let _ = std::fs::read_dir(d).map(|entries| entries.count());
        }
        let still: std::collections::HashSet<String> =
            pending.iter().map(|(p, _)| p.clone()).collect();
        pending = manifest
            .files
            .iter()
            .filter(|f| still.contains(&f.path))
            .filter_map(|f| problem(dir, f).map(|p| (f.path.clone(), p)))
            .collect();
    }
    if logged && pending.is_empty() {
        tracing::info!(
            "every file is visible after {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::FileHash;

    fn manifest(files: &[(&str, u64)]) -> Manifest {
        Manifest {
            selection: None,
            format: crate::manifest::FORMAT,
            repo: "o/m".into(),
            source: "hf".into(),
            revision: "main".into(),
            commit: "c".into(),
            ferry_version: "t".into(),
            completed_at: "now".into(),
            files: files
                .iter()
                .map(|(p, s)| ManifestFile {
                    path: p.to_string(),
                    size: *s,
                    hash: FileHash::GitSha1("0".repeat(40)),
                })
                .collect(),
        }
    }

    #[test]
    fn a_file_that_appears_during_the_wait_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(&[("config.json", 2), ("sub/a.bin", 4)]);
        std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
        let d = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/a.bin"), b"abcd").unwrap();
        });
        let left = wait(dir.path(), &m, Duration::from_secs(10));
        writer.join().unwrap();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn the_wait_is_bounded_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(&[("a.bin", 4), ("model.safetensors", 16)]);
        std::fs::write(dir.path().join("a.bin"), b"ab").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), [0u8; 16]).unwrap();
        let start = Instant::now();
        let left = wait(dir.path(), &m, Duration::from_millis(500));
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left[0].1.contains("2 bytes visible of 4"), "{left:?}");
        assert!(left[1].1.contains("safetensors header"), "{left:?}");
    }
}
