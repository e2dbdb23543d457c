//! Which files of a snapshot to fetch: --include/--exclude globs, and refusal of hostile names
//! and of listings no directory can hold (a path twice, a path that is a file and a directory).

use std::collections::{BTreeSet, HashSet};

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
        check_listing(repo, &out)?;
        Ok(out)
    }
}

/// Refuses a listing that cannot be laid out as files: the same path twice, or a path that is
/// both a file and the directory of another (`a` and `a/b`). Such a run would otherwise end
/// half-way in "No such file" or "Is a directory", after downloading.
pub fn check_listing(repo: &str, files: &[RemoteFile]) -> Result<()> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(files.len());
    let mut dirs: BTreeSet<&str> = BTreeSet::new();
    for f in files {
        if !seen.insert(f.path.as_str()) {
            return Err(bad_listing(repo, &f.path, "listed more than once".into()));
        }
        let mut at = 0;
        while let Some(i) = f.path[at..].find('/') {
            dirs.insert(&f.path[..at + i]);
            at += i + 1;
        }
    }
    for f in files {
        if dirs.contains(f.path.as_str()) {
            let under = files
                .iter()
                .find(|o| {
                    o.path.len() > f.path.len()
                        && o.path.starts_with(f.path.as_str())
                        && o.path.as_bytes()[f.path.len()] == b'/'
                })
                .map(|o| o.path.as_str())
                .unwrap_or("");
            return Err(bad_listing(
                repo,
                &f.path,
                format!("listed as a file and also as the directory of {under:?}"),
            ));
        }
    }
    Ok(())
}

fn bad_listing(repo: &str, path: &str, reason: String) -> Error {
    Error::BadListing {
        repo: repo.to_string(),
        path: path.to_string(),
        reason,
    }
}

/// Longest name of one path component that Linux filesystems (ext4, xfs, NFS) accept.
pub const NAME_MAX: usize = 255;

/// Characters that must never reach a file name or a terminal: C0/C1 controls (newline, CR,
/// ESC, BEL...), DEL, and the Unicode bidirectional overrides and isolates that make a name
/// display as another (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C).
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
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
    } else if path.chars().any(is_unsafe_char) {
        Some("control character (newline, escape sequence, bidi override...) in name")
    } else if path.split('/').any(|c| c.len() > NAME_MAX) {
        Some("a path component longer than 255 bytes, more than Linux filesystems allow")
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
    fn control_characters_and_long_components_are_refused() {
        let long = "x".repeat(256);
        for bad in [
            "a\nb.json",
            "a\rb",
            "\u{1b}]0;pwned\u{7}x",
            "\u{1b}[2Jclear",
            "bell\u{7}",
            "evil\u{202E}nosj.txt",
            "iso\u{2066}late",
            "del\u{7f}",
            "c1\u{9b}31m",
            long.as_str(),
        ] {
            let err = check_path("o/r", bad).expect_err(bad).to_string();
            // The name is quoted and escaped in the message, never echoed raw.
            assert!(bad == long || !err.contains(bad), "{err}");
            assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
        }
        // 255 bytes is legal (in multi-byte characters too).
        check_path("o/r", &"y".repeat(255)).unwrap();
        check_path("o/r", &format!("d/{}", "é".repeat(127))).unwrap();
        check_path("o/r", "模型/权重.safetensors").unwrap();
    }

    fn file(path: &str) -> RemoteFile {
        RemoteFile {
            path: path.into(),
            size: 1,
            hash: ferry_sharder::FileHash::Sha256("0".repeat(64)),
        }
    }

    #[test]
    fn duplicates_and_file_directory_clashes_are_refused() {
        let dup = [file("a.json"), file("b"), file("a.json")];
        let e = check_listing("o/r", &dup).unwrap_err().to_string();
        assert!(
            e.contains("\"a.json\"") && e.contains("more than once"),
            "{e}"
        );
        let clash = [file("x/y/z.bin"), file("x/y"), file("w")];
        let e = check_listing("o/r", &clash).unwrap_err().to_string();
        assert!(e.contains("\"x/y\"") && e.contains("x/y/z.bin"), "{e}");
        check_listing("o/r", &[file("a"), file("ab/c"), file("a.b/c")]).unwrap();
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
