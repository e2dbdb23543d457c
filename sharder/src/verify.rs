//! Verification of a model directory against its completion manifest.
//!
//! The quick check (what the sidecar runs before opening its gate, and `ferry verify` without
//! `--full`) looks at names, sizes and headers only: every manifest file present with its size,
//! no partial downloads lying outside `.ferry/`, and the checkpoint valid ([`crate::validate`]).
//! `--full` also re-hashes every byte, one file per worker across all cores.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::hash::FileHash;
use crate::layout;
use crate::manifest::{Manifest, ManifestFile};
use crate::parallel;
use crate::validate;

/// Read buffer per hashing worker: large enough that syscalls cost nothing next to sha256, small
/// enough to stay in the core's L2 cache between the copy and the hash (measured: 1 MiB hashes
/// 7-15% faster than 8 MiB with 16 workers), and memory stays bounded (jobs × this).
pub const HASH_BUFFER: usize = 1 << 20;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Re-hash every file and compare with the manifest.
    pub full: bool,
    /// Hashing workers; 0 means every core.
    pub jobs: usize,
}

/// What a re-hash did, for the GB/s line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashStats {
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
    /// Decimal gigabytes (1e9 bytes) per second.
    pub gb_per_s: f64,
    pub jobs: usize,
}

/// Everything a verification found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Files the manifest lists.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Errors and warnings, errors first.
    pub findings: Vec<Finding>,
    /// Set when `--full` re-hashed the files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hashed: Option<HashStats>,
}

impl Report {
    pub fn ok(&self) -> bool {
        !self.findings.iter().any(Finding::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.is_error())
    }

    /// `Err(Error::Invalid)` with every error when the directory failed; warnings do not fail it.
    pub fn into_result(self, dir: &Path) -> Result<Report> {
        if self.ok() {
            Ok(self)
        } else {
            Err(Error::Invalid {
                dir: dir.to_path_buf(),
                findings: self.errors().cloned().collect(),
            })
        }
    }
}

/// The gate check: every manifest file present with its size, no stray partial files outside
/// `.ferry/`, headers and index valid. Reads no tensor data; seconds for a 642 GB model.
pub fn quick_check(dir: &Path, manifest: &Manifest) -> Result<()> {
    verify(dir, manifest, &Options::default())?
        .into_result(dir)
        .map(|_| ())
}

/// Checks `dir` against `manifest` and returns every finding (an `Err` only when the directory
/// itself cannot be read). Use [`Report::into_result`] to turn errors into an [`Error`].
pub fn verify(dir: &Path, manifest: &Manifest, opts: &Options) -> Result<Report> {
    let mut findings = Vec::new();
    let on_disk = scan(dir)?;
    let listed: std::collections::HashSet<&str> =
        manifest.files.iter().map(|f| f.path.as_str()).collect();
    for rel in &on_disk {
        // A listed file is the model's, whatever its name: only unlisted ones can be strays.
        if listed.contains(rel.as_str()) {
            continue;
        }
        if is_partial_name(rel) {
            findings.push(Finding::error(
                rel,
                "stray partial file outside .ferry/ (an interrupted download or copy): delete it",
            ));
        } else {
            findings.push(Finding::warning(rel, "not in the manifest (extra file)"));
        }
    }

    // Files with the right size are validated and hashed; the others are already findings.
    let mut sound = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        if let Some((link, to)) = crate::links::escapes(dir, &f.path) {
            findings.push(Finding::error(
                &f.path,
                format!(
                    "resolves outside the model directory through the symbolic link {} -> {}: ferry does not follow links out of the directory; remove the link and fetch again",
                    quoted(&link),
                    quoted(&to)
                ),
            ));
            continue;
        }
        match std::fs::metadata(dir.join(&f.path)) {
            Ok(m) if !m.is_file() => findings.push(Finding::error(&f.path, "not a regular file")),
            Ok(m) if m.len() != f.size => findings.push(Finding::error(
                &f.path,
                format!(
                    "is {} bytes, the manifest says {}{}",
                    m.len(),
                    f.size,
                    if m.len() < f.size { " (truncated)" } else { "" }
                ),
            )),
            Ok(_) => sound.push(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                findings.push(Finding::error(&f.path, "missing"))
            }
            Err(e) => findings.push(Finding::error(&f.path, format!("cannot stat: {e}"))),
        }
    }
    if let Some(why) = crate::selection::partial_reason(dir, manifest) {
        findings.push(Finding::warning(".ferry/manifest.json", why));
    }
    let sound_paths: Vec<&str> = sound.iter().map(|f| f.path.as_str()).collect();
    let checkpoint = validate::validate(dir, &sound_paths);
    if manifest.selection.is_some() {
        // A partial selection is not a whole checkpoint (an index naming shards left out): as
        // at fetch time its findings are warnings; whether an engine can load it is the
        // partial-selection finding above, which the gate acts on.
        findings.extend(checkpoint.into_iter().map(|mut f| {
            f.severity = f.severity.min(crate::finding::Severity::Warning);
            f
        }));
    } else {
        findings.extend(checkpoint);
    }

    let hashed = opts
        .full
        .then(|| hash_all(dir, &sound, opts.jobs, &mut findings));

    // Errors first, then by file, so the list reads as a to-do list.
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.file.cmp(&b.file))
    });
    Ok(Report {
        files: manifest.files.len(),
        bytes: manifest.total_bytes(),
        findings,
        hashed,
    })
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Hashes `files` in parallel (`jobs`, 0 = one per core) and reports each mismatch; returns the
/// hashing rate.
fn hash_all(
    dir: &Path,
    files: &[&ManifestFile],
    jobs: usize,
    findings: &mut Vec<Finding>,
) -> HashStats {
    let jobs = if jobs == 0 {
        parallel::default_jobs()
    } else {
        jobs
    };
    // Largest first, so the longest hash starts at once and the tail is short.
    let mut work = files.to_vec();
    work.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    let start = Instant::now();
    let results = parallel::map(&work, jobs, |f| {
        hash_file(&dir.join(&f.path), &f.hash, f.size)
    });
    let seconds = start.elapsed().as_secs_f64();
    let bytes: u64 = work.iter().map(|f| f.size).sum();
    for (f, r) in work.iter().zip(results) {
        match r {
            Ok(got) if got == f.hash => {}
            Ok(got) => findings.push(Finding::error(
                &f.path,
                format!(
                    "content does not match the manifest: {} is {}, expected {} (the file is damaged: delete it and re-fetch)",
                    f.hash.algorithm(),
                    got.hex(),
                    f.hash.hex()
                ),
            )),
            Err(e) => findings.push(Finding::error(&f.path, format!("cannot read: {e}"))),
        }
    }
    HashStats {
        files: work.len(),
        bytes,
        seconds,
        gb_per_s: if seconds > 0.0 {
            bytes as f64 / 1e9 / seconds
        } else {
            0.0
        },
        jobs: jobs.min(work.len().max(1)),
    }
}

/// Hashes the file at `path` with the algorithm of `expected` (sha256 or git blob sha1, whose
/// prefix needs the `size` the manifest promises).
pub fn hash_file(path: &Path, expected: &FileHash, size: u64) -> std::io::Result<FileHash> {
    let mut file = File::open(path)?;
    advise_sequential(&file);
    let mut hasher = expected.hasher(size);
    let mut buf = vec![0u8; HASH_BUFFER];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// Tells the kernel to read ahead aggressively: the whole file is read once, in order.
fn advise_sequential(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the advice is only a hint and its failure is harmless.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Names that an interrupted download or copy leaves behind: ours (`.partial`), write_atomic's
/// temp files, huggingface_hub's `.incomplete`, and the usual `.tmp`/`.part`/`.download`.
pub fn is_partial_name(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    const SUFFIXES: [&str; 6] = [
        ".partial",
        ".incomplete",
        ".tmp",
        ".part",
        ".download",
        ".crdownload",
    ];
    SUFFIXES.iter().any(|s| name.ends_with(s)) || name.contains(".tmp.")
}

/// Every regular file (or symlink to one) under `dir` outside ferry's state and tool caches,
/// relative and `/`-separated, sorted. Symlinked directories are not followed (no loops).
pub fn scan(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel_dir) = stack.pop() {
        let abs = if rel_dir.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&rel_dir)
        };
        let entries = std::fs::read_dir(&abs).map_err(|e| Error::io(&abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&abs, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            if layout::is_state_path(Path::new(&rel)) {
                continue;
            }
            // A file may vanish while a fetch runs beside us: skip it rather than fail.
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(rel);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}
