//! Draws what `ferry fetch` reports ([`ferry_fetcher::events`]): an indicatif bar on a
//! terminal, a log line every few seconds otherwise (a Kubernetes Job log stays readable), JSON
//! lines on stdout with `--json`, nothing with `--quiet`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_fetcher::events::{Event, Reporter, Stats};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::rate::{self, Window};
use crate::{format, output};

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
    /// Downloaded bytes over the last seconds, for the rate and the ETA.
    window: Window,
}

impl Render {
    pub fn new(mode: Mode) -> Render {
        Render {
            mode,
            bar: None,
            window: Window::new(rate::SPAN),
        }
    }

    fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }

    fn new_bar() -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    }

    fn progress(&mut self, s: &Stats) {
        self.window.push(Instant::now(), s.bytes_downloaded);
        let rate = self.window.rate();
        let eta = self.window.eta(s.bytes_total.saturating_sub(s.bytes_done));
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = self.bar() {
                    bar.set_length(s.bytes_total);
                    bar.set_position(s.bytes_done);
                    bar.set_message(format!("files {}/{}", s.files_done, s.files_total));
                }
            }
            Mode::Plain => {
                tracing::info!(
                    "progress: {} / {} ({:.1}%), {}, ETA {}, files {}/{}",
                    format::size(s.bytes_done),
                    format::size(s.bytes_total),
                    if s.bytes_total > 0 {
                        s.bytes_done as f64 * 100.0 / s.bytes_total as f64
                    } else {
                        100.0
                    },
                    format::rate(rate),
                    eta.map(format::duration).unwrap_or_else(|| "?".into()),
                    s.files_done,
                    s.files_total
                );
            }
            Mode::Json => output::emit("progress", progress_fields(s, rate, eta)),
        }
    }
}

/// A `--json` progress line's fields: `bytes_per_second` over the last seconds,
/// `average_bytes_per_second` since the transfer started, `eta_seconds` (null while unknown).
pub fn progress_fields(s: &Stats, rate: f64, eta: Option<Duration>) -> serde_json::Value {
    let elapsed = s.elapsed.as_secs_f64();
    serde_json::json!({
        "bytes_done": s.bytes_done,
        "bytes_total": s.bytes_total,
        "bytes_downloaded": s.bytes_downloaded,
        "bytes_per_second": rate as u64,
        "average_bytes_per_second": if elapsed > 0.0 { (s.bytes_downloaded as f64 / elapsed) as u64 } else { 0 },
        "eta_seconds": eta.map(|d| d.as_secs()),
        "files_done": s.files_done,
        "files_total": s.files_total,
        "retries": s.retries,
        "connections": s.connections,
        "elapsed_seconds": elapsed,
    })
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
                r.window.push(Instant::now(), s.bytes_downloaded);
                match r.mode {
                    Mode::Bar => r.bar = Some(Render::new_bar()),
                    Mode::Json => output::emit("started", progress_fields(&s, 0.0, None)),
                    Mode::Plain => {}
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
