//! Draws what `ferry fetch` reports ([`ferry_fetcher::events`]): an indicatif bar on a
//! terminal, a log line every few seconds otherwise (a Kubernetes Job log stays readable), JSON
//! lines on stdout with `--json`, nothing with `--quiet`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_fetcher::events::{Event, Reporter, Stats};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::format;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// indicatif bar on stderr.
    Bar,
    /// A log line every few seconds on stderr.
    Plain,
    /// JSON lines on stdout.
    Json,
}

impl Mode {
    /// A bar on a terminal, plain lines otherwise.
    pub fn auto() -> Mode {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Plain
        }
    }
}

/// A [`Reporter`] that renders in one [`Mode`].
pub struct Render {
    mode: Mode,
    bar: Option<ProgressBar>,
    /// When and at how many downloaded bytes the last line was printed, for its rate.
    last: Mutex<(Instant, u64)>,
}

impl Render {
    pub fn new(mode: Mode) -> Render {
        Render {
            mode,
            bar: None,
            last: Mutex::new((Instant::now(), 0)),
        }
    }

    fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }

    fn new_bar() -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    }

    /// Bytes per second downloaded since the last line.
    fn rate(&self, s: &Stats) -> f64 {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = s.bytes_downloaded.saturating_sub(last.1) as f64 / dt;
        *last = (now, s.bytes_downloaded);
        rate
    }

    fn progress(&self, s: &Stats) {
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = self.bar() {
                    bar.set_length(s.bytes_total);
                    bar.set_position(s.bytes_done);
                    bar.set_message(format!("files {}/{}", s.files_done, s.files_total));
                }
            }
            Mode::Plain => {
                let rate = self.rate(s);
                let eta = if rate > 0.0 {
                    let left = (s.bytes_total - s.bytes_done) as f64 / rate;
                    format::duration(Duration::from_secs_f64(left))
                } else {
                    "?".into()
                };
                tracing::info!(
                    "progress: {} / {} ({:.1}%), {}, ETA {eta}, files {}/{}",
                    format::size(s.bytes_done),
                    format::size(s.bytes_total),
                    if s.bytes_total > 0 {
                        s.bytes_done as f64 * 100.0 / s.bytes_total as f64
                    } else {
                        100.0
                    },
                    format::rate(rate),
                    s.files_done,
                    s.files_total
                );
            }
            Mode::Json => {
                let rate = self.rate(s);
                println!(
                    "{}",
                    serde_json::json!({
                        "event": "progress",
                        "bytes_done": s.bytes_done,
                        "bytes_total": s.bytes_total,
                        "bytes_per_second": rate as u64,
                        "files_done": s.files_done,
                        "files_total": s.files_total,
                        "retries": s.retries,
                        "elapsed_seconds": s.elapsed.as_secs_f64(),
                    })
                );
            }
        }
    }
}

/// The bar is made when the transfer starts, so nothing is drawn before there is work.
pub struct Reporting(Mutex<Render>);

impl Reporting {
    pub fn new(mode: Mode) -> Reporting {
        Reporting(Mutex::new(Render::new(mode)))
    }
}

impl Reporter for Reporting {
    fn interval(&self) -> Duration {
        let mode = self.0.lock().map(|r| r.mode).unwrap_or(Mode::Plain);
        match mode {
            Mode::Bar => Duration::from_millis(200),
            Mode::Json => Duration::from_secs(1),
            Mode::Plain => Duration::from_secs(10),
        }
    }

    fn event(&self, event: Event) {
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Started(s) => {
                *r.last.get_mut().unwrap_or_else(|p| p.into_inner()) =
                    (Instant::now(), s.bytes_downloaded);
                if r.mode == Mode::Bar {
                    r.bar = Some(Render::new_bar());
                }
            }
            Event::Progress(s) => r.progress(&s),
            Event::Finished(_) => {
                if let Some(bar) = r.bar.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }
}
