//! What a fetch tells the person or program watching it: a progress bar on a terminal, plain log
//! lines when stderr is not a TTY (a Kubernetes Job log stays readable), JSON lines with --json,
//! and a heartbeat file `DIR/.ferry/progress.json` for `ferry status`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// indicatif bar on stderr.
    Bar,
    /// A log line every few seconds on stderr.
    Plain,
    /// JSON lines on stdout.
    Json,
    /// Nothing but errors.
    Quiet,
}

impl ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    pub fn auto() -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Plain
        }
    }
}

/// Counters shared by every transfer task.
pub struct Progress {
    pub mode: ProgressMode,
    pub bytes_total: AtomicU64,
    /// Bytes that were already on disk (reused files, journaled ranges).
    pub bytes_reused: AtomicU64,
    /// Bytes received over the network in this run (including re-sent ranges).
    pub bytes_downloaded: AtomicU64,
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub retries: AtomicU64,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub in_progress: Mutex<Vec<String>>,
    bar: Option<ProgressBar>,
    heartbeat: Option<(PathBuf, serde_json::Value)>,
}

impl Progress {
    pub fn new(mode: ProgressMode, heartbeat: Option<(PathBuf, serde_json::Value)>) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            mode,
            bytes_total: AtomicU64::new(0),
            bytes_reused: AtomicU64::new(0),
            bytes_downloaded: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            in_progress: Mutex::new(Vec::new()),
            bar,
            heartbeat,
        }
    }

    pub fn add_downloaded(&self, n: u64) {
        self.bytes_downloaded.fetch_add(n, Ordering::Relaxed);
    }

    fn done_bytes(&self) -> u64 {
        self.bytes_reused.load(Ordering::Relaxed) + self.bytes_downloaded.load(Ordering::Relaxed)
    }

    /// Draws or prints the current state; called on a timer.
    pub fn tick(&self, last: &mut (Instant, u64)) {
        let total = self.bytes_total.load(Ordering::Relaxed);
        let done = self.done_bytes().min(total);
        let files = (
            self.files_done.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed),
        );
        let now = Instant::now();
        let downloaded = self.bytes_downloaded.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = (downloaded.saturating_sub(last.1)) as f64 / dt;
        *last = (now, downloaded);
        match self.mode {
            ProgressMode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(format!("files {}/{}", files.0, files.1));
                }
            }
            ProgressMode::Plain => {
                let eta = if rate > 0.0 {
                    humantime::format_duration(Duration::from_secs(
                        ((total - done) as f64 / rate) as u64,
                    ))
                    .to_string()
                } else {
                    "?".into()
                };
                tracing::info!(
                    "progress: {} / {} ({:.1}%), {}/s, ETA {eta}, files {}/{}",
                    bytesize::ByteSize(done),
                    bytesize::ByteSize(total),
                    if total > 0 {
                        done as f64 * 100.0 / total as f64
                    } else {
                        100.0
                    },
                    bytesize::ByteSize(rate as u64),
                    files.0,
                    files.1
                );
            }
            ProgressMode::Json => {
                println!(
                    "{}",
                    serde_json::json!({
                        "event": "progress",
                        "bytes_done": done,
                        "bytes_total": total,
                        "bytes_per_second": rate as u64,
                        "files_done": files.0,
                        "files_total": files.1,
                        "retries": self.retries.load(Ordering::Relaxed),
                        "elapsed_seconds": self.started.elapsed().as_secs_f64(),
                    })
                );
            }
            ProgressMode::Quiet => {}
        }
    }

    /// Writes the heartbeat file `ferry status` reads.
    pub fn heartbeat(&self) {
        let total = self.bytes_total.load(Ordering::Relaxed);
        let files = (
            self.files_done.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed),
        );
        self.write_heartbeat(self.done_bytes().min(total), total, files);
    }

    fn write_heartbeat(&self, done: u64, total: u64, files: (u64, u64)) {
        let Some((path, base)) = &self.heartbeat else {
            return;
        };
        let mut v = base.clone();
        let in_progress = self
            .in_progress
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("pid".into(), std::process::id().into());
            o.insert(
                "started_at".into(),
                humantime::format_rfc3339_seconds(self.started_wall)
                    .to_string()
                    .into(),
            );
            o.insert(
                "updated_at".into(),
                humantime::format_rfc3339_seconds(SystemTime::now())
                    .to_string()
                    .into(),
            );
            o.insert("bytes_done".into(), done.into());
            o.insert("bytes_total".into(), total.into());
            o.insert("files_done".into(), files.0.into());
            o.insert("files_total".into(), files.1.into());
            o.insert("in_progress".into(), in_progress.into());
        }
        // A heartbeat need not survive a crash: a plain rename keeps readers from seeing half of it.
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        if std::fs::write(&tmp, v.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Prints a line without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}
