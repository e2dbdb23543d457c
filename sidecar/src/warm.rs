//! Loads a model, or this node's part of it, into the kernel page cache.
//!
//! The work is cut into chunks of consecutive bytes, and `jobs` threads take chunks in file order,
//! so several sequential streams run at once (what network storage needs to reach its
//! bandwidth) while each stream stays sequential (what readahead needs: the files are advised
//! `POSIX_FADV_SEQUENTIAL`, which doubles the readahead window). Each chunk is read with
//! `sendfile` into /dev/null: the kernel brings the pages into the cache and drops nothing but
//! the pipe references, so no byte is copied to user space and ferry's own memory stays at a few
//! kilobytes per reader however large the model (`pread` into one reusable buffer per reader is
//! the fallback). A range that ends inside a file is announced with `POSIX_FADV_WILLNEED` first,
//! so readahead does not run on into bytes a warm plan gave to another node.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::cgroup::MemoryBudget;
use crate::error::{Error, Result};
use crate::residency::{self, Residency};

/// WILLNEED is issued in steps of this size (see [`reader`]).
const ADVISE_STEP: u64 = 1 << 20;

/// Bytes one sendfile (or pread) call asks for: large enough that syscalls cost nothing, small
/// enough that a cancel is seen within milliseconds.
const SEND_STEP: u64 = 8 << 20;

/// `len` bytes at `offset` of the file at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarmTarget {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// How to warm.
#[derive(Debug, Clone)]
pub struct WarmOptions {
    /// Parallel readers; None: chosen from the storage and the cores
    /// ([`readers`](crate::readers)).
    pub jobs: Option<usize>,
    /// Bytes one reader takes at a time (and announces with WILLNEED).
    pub chunk: u64,
    /// Each reader's buffer when it has to copy (no sendfile); ferry's own memory stays under
    /// `jobs × buffer`.
    pub buffer: usize,
    /// Read with sendfile into /dev/null (no copy) rather than pread into a buffer.
    pub zero_copy: bool,
}

impl Default for WarmOptions {
    fn default() -> Self {
        WarmOptions {
            jobs: None,
            chunk: 64 << 20,
            buffer: 1 << 20,
            zero_copy: true,
        }
    }
}

/// Shared with whoever watches a warm: bytes read so far, and a flag that stops it.
#[derive(Debug, Default)]
pub struct WarmControl {
    pub progress: AtomicU64,
    pub cancel: AtomicBool,
}

impl WarmControl {
    pub fn bytes_done(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Asks a running warm to stop after its current buffer.
    pub fn stop(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// What a warm did.
#[derive(Debug, Clone, Serialize)]
pub struct WarmReport {
    /// Distinct files touched.
    pub files: usize,
    /// Bytes the plan asked for.
    pub bytes: u64,
    pub jobs: usize,
    /// Why that many readers ("--jobs", or what the storage looked like).
    pub jobs_reason: String,
    /// Time spent reading (residency measurements excluded).
    pub seconds: f64,
    pub bytes_per_second: f64,
    /// Residency of the planned bytes before and after, from mincore.
    pub before: Residency,
    pub after: Residency,
    pub budget: MemoryBudget,
    /// Why the result may not last, or may read wrong (shown to the user as warnings).
    pub warnings: Vec<String>,
}

/// Every file of the model in `dir`: the manifest's list when there is one, otherwise every
/// regular file outside ferry's own state (so `ferry warm` also works on a directory another tool
/// wrote).
pub fn model_targets(dir: &Path) -> Result<Vec<WarmTarget>> {
    if let Some(m) = ferry_sharder::Manifest::read(dir)? {
        return Ok(m
            .files
            .iter()
            .map(|f| WarmTarget {
                path: dir.join(&f.path),
                offset: 0,
                len: f.size,
            })
            .collect());
    }
    if !dir.is_dir() {
        return Err(Error::NothingToWarm { dir: dir.into() });
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    if out.is_empty() {
        return Err(Error::NothingToWarm { dir: dir.into() });
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<WarmTarget>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        if ferry_sharder::layout::is_state_path(rel) {
            continue;
        }
        let ft = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_file() {
            let len = entry.metadata().map_err(|e| Error::io(&path, e))?.len();
            out.push(WarmTarget {
                path,
                offset: 0,
                len,
            });
        }
    }
    Ok(())
}

/// This node's ranges from a warm plan written by `ferry plan warm`, as targets under `dir`.
pub fn plan_targets(dir: &Path, plan: &Path, rank: u32) -> Result<Vec<WarmTarget>> {
    let p = ferry_sharder::warm_plan::WarmPlan::read(plan)?;
    crate::share::node_targets(dir, &p, rank, plan.into())
}

/// Residency of every target, summed.
pub fn residency(targets: &[WarmTarget]) -> Result<Residency> {
    let mut total = Residency::default();
    for t in targets {
        total.add(residency::measure(&t.path, t.offset, t.len)?);
    }
    Ok(total)
}

/// Reads every target into the page cache (blocking; run it on a blocking thread in async
/// code). Measures residency before and after, and says when the result cannot stay resident.
pub fn warm(targets: &[WarmTarget], opts: &WarmOptions, ctl: &WarmControl) -> Result<WarmReport> {
    let (jobs, jobs_reason) = match opts.jobs {
        Some(n) => (n.max(1), "--jobs".to_string()),
        None => targets.first().map_or((1, String::new()), |t| {
            crate::readers::default_readers(&t.path)
        }),
    };
    tracing::debug!("{jobs} readers ({jobs_reason})");
    let chunk = opts.chunk.max(1);
    let bytes: u64 = targets.iter().map(|t| t.len).sum();
    let budget = MemoryBudget::detect();
    let before = residency(targets)?;
    let mut warnings = Vec::new();
    if let Some(w) = budget.shortfall(bytes, before.resident_bytes) {
        tracing::warn!("{w}");
        warnings.push(w);
    }
    if let Some(t) = targets.iter().find(|t| !residency::trustworthy(&t.path)) {
        let w = format!(
            "{}: residency reads low for files this user neither owns nor may write (mincore \
             reports only this process's own mappings for them); the warm itself still works",
            t.path.display()
        );
        tracing::warn!("{w}");
        warnings.push(w);
    }

    let chunks: Vec<(usize, u64, u64)> = targets
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let end = t.offset + t.len;
            (t.offset..end)
                .step_by(chunk as usize)
                .map(move |off| (i, off, chunk.min(end - off)))
        })
        .collect();
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(chunks.len().max(1)) {
            s.spawn(|| {
                if let Err(e) = reader(targets, &chunks, &next, opts, ctl, &failed) {
                    // Stop the other readers too: the warm has failed either way.
                    ctl.stop();
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e);
                    }
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    if ctl.cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted {
            signal: "a shutdown request",
        });
    }
    let after = residency(targets)?;
    let mut files: Vec<&Path> = targets.iter().map(|t| t.path.as_path()).collect();
    files.sort();
    files.dedup();
    Ok(WarmReport {
        files: files.len(),
        bytes,
        jobs,
        jobs_reason,
        seconds,
        bytes_per_second: if seconds > 0.0 {
            bytes as f64 / seconds
        } else {
            0.0
        },
        before,
        after,
        budget,
        warnings,
    })
}

/// One reader thread: takes chunks until none are left, keeps the last file open.
fn reader(
    targets: &[WarmTarget],
    chunks: &[(usize, u64, u64)],
    next: &AtomicUsize,
    opts: &WarmOptions,
    ctl: &WarmControl,
    failed: &Mutex<Option<Error>>,
) -> Result<()> {
    // The sink for sendfile; without it (no /dev/null in a strange container) we copy.
    let null = if opts.zero_copy {
        File::options().write(true).open("/dev/null").ok()
    } else {
        None
    };
    let mut sink = Sink {
        null,
        buf: Vec::new(),
        buffer: opts.buffer.max(4096),
    };
    let mut open: Option<(usize, File, u64)> = None;
    loop {
        if ctl.cancel.load(Ordering::Relaxed) || failed.lock().map(|f| f.is_some()).unwrap_or(true)
        {
            return Ok(());
        }
        let Some(&(ti, offset, len)) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return Ok(());
        };
        let target = &targets[ti];
        let path = &target.path;
        let (file, size) = match &open {
            Some((i, f, size)) if *i == ti => (f, *size),
            _ => {
                let f = File::open(path).map_err(|e| Error::io(path, e))?;
                let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
                // Doubles the readahead window for the file: every reader goes forward.
                residency::advise(&f, path, 0, 0, libc::POSIX_FADV_SEQUENTIAL)?;
                let (_, f, size) = open.insert((ti, f, size));
                (&*f, *size)
            }
        };
        let end = offset + len;
        if end == target.offset + target.len && end < size {
            // The last chunk of a range that stops inside the file (a plan's range): readahead
            // would run on past its end into bytes this node does not need. Queue exactly the
            // chunk with WILLNEED first (which sets no readahead marks), so the read below finds
            // its pages present and triggers no more readahead. The kernel caps one WILLNEED at
            // the readahead size, hence the steps.
            let mut at = offset;
            while at < end {
                let step = ADVISE_STEP.min(end - at);
                residency::advise(file, path, at, step, libc::POSIX_FADV_WILLNEED)?;
                at += step;
            }
        }
        let mut pos = offset;
        while pos < end {
            if ctl.cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            let want = (end - pos).min(SEND_STEP);
            let n = match sink.read(file, pos, want) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(path, e)),
            };
            if n == 0 {
                return Err(Error::ShortFile {
                    path: path.clone(),
                    expected: end,
                    actual: pos,
                });
            }
            pos += n;
            ctl.progress.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Where a reader's bytes go: `sendfile` into /dev/null, which brings the pages into the cache
/// without copying them out (an order of magnitude less CPU than `pread`, measured in
/// docs/BENCHMARKS.md), or `pread` into a reusable buffer where sendfile is not supported.
struct Sink {
    null: Option<File>,
    buf: Vec<u8>,
    buffer: usize,
}

impl Sink {
    /// Reads up to `want` bytes at `pos` into the page cache; `Ok(0)` at end of file.
    fn read(&mut self, file: &File, pos: u64, want: u64) -> std::io::Result<u64> {
        if let Some(null) = &self.null {
            let mut off = pos as libc::off_t;
            // SAFETY: both descriptors are open for the duration of the call, and `off` is a
            // valid off_t the kernel updates; the file position is left untouched.
            let n = unsafe {
                libc::sendfile(null.as_raw_fd(), file.as_raw_fd(), &mut off, want as usize)
            };
            if n >= 0 {
                return Ok(n as u64);
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // A filesystem without splice support: copy from now on.
                Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
                    self.null = None;
                }
                _ => return Err(e),
            }
        }
        if self.buf.is_empty() {
            self.buf = vec![0u8; self.buffer];
        }
        let want = want.min(self.buf.len() as u64) as usize;
        file.read_at(&mut self.buf[..want], pos).map(|n| n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_model_files_but_not_ferry_state() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".ferry/partial")).unwrap();
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join(".ferry/partial/x"), b"zz").unwrap();
        std::fs::write(d.path().join("a.bin"), b"abc").unwrap();
        std::fs::write(d.path().join("sub/b.bin"), b"de").unwrap();
        let t = model_targets(d.path()).unwrap();
        let names: Vec<_> = t
            .iter()
            .map(|t| t.path.strip_prefix(d.path()).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            vec![PathBuf::from("a.bin"), PathBuf::from("sub/b.bin")]
        );
        assert_eq!(t[0].len, 3);
    }

    #[test]
    fn empty_dir_says_nothing_to_warm() {
        let d = tempfile::tempdir().unwrap();
        let e = model_targets(d.path()).unwrap_err();
        assert!(matches!(e, Error::NothingToWarm { .. }), "{e}");
    }

    #[test]
    fn short_file_is_an_error_not_a_hang() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        std::fs::write(&p, vec![1u8; 1000]).unwrap();
        let t = [WarmTarget {
            path: p,
            offset: 0,
            len: 5000,
        }];
        let e = warm(&t, &WarmOptions::default(), &WarmControl::default()).unwrap_err();
        assert!(matches!(e, Error::ShortFile { actual: 1000, .. }), "{e}");
    }

    #[test]
    fn reads_every_byte_once_across_chunks_and_jobs() {
        let d = tempfile::tempdir().unwrap();
        let mut targets = Vec::new();
        for i in 0..3 {
            let p = d.path().join(format!("f{i}"));
            std::fs::write(&p, vec![i as u8; 300_000 + i * 777]).unwrap();
            targets.push(WarmTarget {
                path: p,
                offset: 1000,
                len: 250_000 + i as u64,
            });
        }
        for zero_copy in [true, false] {
            let ctl = WarmControl::default();
            let opts = WarmOptions {
                jobs: Some(3),
                chunk: 65_536,
                buffer: 10_000,
                zero_copy,
            };
            let r = warm(&targets, &opts, &ctl).unwrap();
            assert_eq!(ctl.bytes_done(), 750_003);
            assert_eq!(r.bytes, 750_003);
            assert_eq!(r.files, 3);
            assert_eq!(r.after.total_bytes, 750_003);
        }
    }
}
