//! Reporting while the transfer stage runs: progress events to the caller's [`Reporter`] at its
//! pace, and the heartbeat file `ferry status` reads every 2 s.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_sharder::state::Heartbeat;

use crate::events::{Event, Reporter};
use crate::meter::Meter;
use crate::snapshot::Snapshot;

/// How often the heartbeat is rewritten.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The heartbeat's fixed part: what is being fetched, by whom.
pub struct Beat {
    pub path: PathBuf,
    pub base: Heartbeat,
}

impl Beat {
    /// The heartbeat at `path` for fetching `snapshot` from `source`.
    pub fn new(
        path: PathBuf,
        snapshot: &Snapshot,
        source: &str,
        slice: Option<(u32, u32)>,
    ) -> Beat {
        Beat {
            path,
            base: Heartbeat {
                pid: Some(std::process::id()),
                host: Some(ferry_sharder::host::hostname()),
                repo: Some(snapshot.repo.clone()),
                source: Some(source.to_string()),
                revision: Some(snapshot.revision.clone()),
                commit: Some(snapshot.commit.clone()),
                slice: slice.map(|(i, n)| format!("{i}/{n}")),
                ..Heartbeat::default()
            },
        }
    }

    /// A slice's heartbeat also names the whole selection's totals.
    pub fn of_model(mut self, whole: &Snapshot) -> Beat {
        self.base.model_files_total = Some(whole.files.len() as u64);
        self.base.model_bytes_total = Some(whole.total_bytes());
        self
    }

    fn write(&self, meter: &Meter) {
        let s = meter.stats();
        let started = humantime::format_rfc3339_seconds(meter.started_wall).to_string();
        Heartbeat {
            started_at: Some(started),
            updated_at: Some(ferry_sharder::host::now_rfc3339()),
            bytes_done: Some(s.bytes_done),
            bytes_total: Some(s.bytes_total),
            files_done: Some(s.files_done),
            files_total: Some(s.files_total),
            in_progress: meter.in_progress(),
            ..self.base.clone()
        }
        .write(&self.path);
    }
}

/// Runs `work` while reporting `meter`: a started event and a heartbeat at once, progress
/// events and heartbeats on their timers, a finished event at the end (also on failure).
pub async fn reporting<T>(
    meter: &Arc<Meter>,
    reporter: &Arc<dyn Reporter>,
    beat: Option<Beat>,
    work: impl Future<Output = T>,
) -> T {
    reporter.event(Event::Started(meter.stats()));
    // The first heartbeat before any byte moves: `ferry status` sees the fetch at once.
    if let Some(b) = &beat {
        b.write(meter);
    }
    let ticker = {
        let (meter, reporter) = (Arc::clone(meter), Arc::clone(reporter));
        let every = reporter.interval();
        tokio::spawn(async move {
            let (mut shown, mut beaten) = (Instant::now(), Instant::now());
            let mut interval = tokio::time::interval(every.min(HEARTBEAT));
            interval.tick().await;
            loop {
                interval.tick().await;
                if shown.elapsed() >= every {
                    shown = Instant::now();
                    reporter.event(Event::Progress(meter.stats()));
                }
                if let Some(b) = beat.as_ref().filter(|_| beaten.elapsed() >= HEARTBEAT) {
                    beaten = Instant::now();
                    b.write(&meter);
                }
            }
        })
    };
    let out = work.await;
    ticker.abort();
    reporter.event(Event::Finished(meter.stats()));
    out
}
