//! Which files of a snapshot to fetch: --include/--exclude globs, and refusal of hostile names.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::snapshot::RemoteFile;

/// Include/exclude patterns, matched like huggingface_hub's fnmatch patterns: `*` also matches `/`.
pub struct Selection {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Selection {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        Ok(Selection {
            include: build(include)?,
            exclude: build(exclude)?,
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(path))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(path))
    }

    /// Keeps the selected files; fails on a hostile name among them. A hostile name left out by
    /// --exclude is never written, so it does not stop the rest.
    pub fn apply(&self, repo: &str, files: Vec<RemoteFile>) -> Result<Vec<RemoteFile>> {
        let mut out = Vec::new();
        for f in files {
            if self.matches(&f.path) {
                check_path(repo, &f.path)?;
                out.push(f);
            }
        }
        if out.is_empty() {
            return Err(Error::NothingSelected {
                repo: repo.to_string(),
            });
        }
        Ok(out)
    }
}

fn build(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        // A directory name alone ("extra/") selects everything under it, as the hub CLIs do.
        let p = if p.ends_with('/') {
            format!("{p}*")
        } else {
            p.clone()
        };
        let glob = Glob::new(&p).map_err(|e| Error::Usage(format!("bad pattern {p:?}: {e}")))?;
        b.add(glob);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::Usage(format!("bad patterns: {e}")))
}

/// Logs the checkpoint findings of a fetch that goes on regardless. A partial selection
/// (`--include`/`--exclude`) leaves shards out on purpose, and the index then names a missing
/// shard for every one of them: one summary line says so instead of a warning per shard.
pub fn log_findings(findings: &[ferry_sharder::finding::Finding], filtered: bool) {
    const LISTED: usize = 3;
    if !filtered || findings.len() <= LISTED {
        for f in findings {
            tracing::warn!("checkpoint: {f}");
        }
        return;
    }
    let mut files: Vec<&str> = findings.iter().map(|f| f.file.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    tracing::warn!(
        "checkpoint: --include/--exclude selected part of the checkpoint: {} findings in {}          file(s) (first: {}); expected for a partial download, `ferry verify DIR` lists them",
        findings.len(),
        files.len(),
        findings[0]
    );
}

/// Refuses names that could escape the target directory or clobber ferry's own state: a hub is
/// not trusted to name files safely.
pub fn check_path(repo: &str, path: &str) -> Result<()> {
    let reason = if path.is_empty() {
        Some("empty name")
    } else if path.starts_with('/') || path.as_bytes().get(1) == Some(&b':') {
        Some("absolute path")
    } else if path.contains('\\') {
        Some("backslash in name")
    } else if path.contains('\0') {
        Some("NUL byte in name")
    } else if path
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
    {
        Some("`..`, `.` or empty path component")
    } else if ferry_sharder::layout::is_state_path(std::path::Path::new(path)) {
        Some("collides with ferry's or huggingface_hub's state directory")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::HostileName {
            repo: repo.to_string(),
            path: path.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "a//b",
            "./x",
            "C:\\x",
            "a\\b",
            ".ferry/manifest.json",
            ".cache/huggingface/x",
            "",
        ] {
            assert!(check_path("o/r", bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "config.json",
            "extra/adapter.safetensors",
            "a..b",
            ".gitattributes",
        ] {
            check_path("o/r", good).unwrap();
        }
    }

    #[test]
    fn globs_like_fnmatch() {
        let s = Selection::new(&["*.safetensors".into()], &["extra/*".into()]).unwrap();
        assert!(s.matches("model-00001-of-000163.safetensors"));
        assert!(!s.matches("extra/adapter.safetensors"));
        assert!(!s.matches("config.json"));
        let s = Selection::new(&["extra/".into()], &[]).unwrap();
        assert!(s.matches("extra/a/b.bin"));
        let all = Selection::new(&[], &[]).unwrap();
        assert!(all.matches("anything"));
    }
}
