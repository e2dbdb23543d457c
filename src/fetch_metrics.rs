//! `ferry fetch --metrics-listen ADDR`: the running fetch's counters at `http://ADDR/metrics`
//! in the OpenMetrics text format, so a 16-hour download Job can be watched from Prometheus.
//!
//! It is fed from the fetcher's events like the progress display (the fetcher neither draws nor
//! serves): [`Exporter`] is a [`Reporter`] that updates the series and passes each event on to
//! the display at the display's own pace. The series are declared and encoded as the sidecar's
//! `/metrics` are ([`ferry_sidecar::openmetrics`], on `prometheus-client`) and served by axum.
//! Every series carries the repo and, for an Indexed-Job slice, `slice` (its index) and
//! `slices` (the count) as labels.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::header;
use axum::routing::get;
use ferry_fetcher::events::{Event, Reporter, Stats};
use ferry_sharder::slices::SliceSpec;
use ferry_sidecar::openmetrics::{self, series, CONTENT_TYPE};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::rate::{self, Window};

/// How often the series are refreshed from the fetch's counters.
const REFRESH: Duration = Duration::from_secs(1);

type FGauge = Gauge<f64, AtomicU64>;

/// The labels of every series: which fetch.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Labels {
    repo: String,
    /// The slice's index in an Indexed Job; empty for a whole fetch.
    slice: String,
    /// The Indexed Job's slice count; empty for a whole fetch.
    slices: String,
}

impl Labels {
    pub fn new(repo: &str, slice: Option<SliceSpec>) -> Labels {
        Labels {
            repo: repo.to_string(),
            slice: slice.map(|s| s.index.to_string()).unwrap_or_default(),
            slices: slice.map(|s| s.count.to_string()).unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    repo: String,
    slice: String,
    slices: String,
    cause: &'static str,
}

/// The series of one fetch.
struct Series {
    bytes_done: Family<Labels, Gauge>,
    bytes_total: Family<Labels, Gauge>,
    downloaded: Family<Labels, Counter>,
    files_done: Family<Labels, Gauge>,
    files_total: Family<Labels, Gauge>,
    rate: Family<Labels, FGauge>,
    average_rate: Family<Labels, FGauge>,
    eta: Family<Labels, FGauge>,
    elapsed: Family<Labels, FGauge>,
    connections: Family<Labels, Gauge>,
    retries: Family<Labels, Counter>,
    throttled: Family<CauseLabels, Counter>,
    transferring: Family<Labels, Gauge>,
}

impl Series {
    fn register(r: &mut Registry) -> Series {
        Series {
            bytes_done: series(
                r,
                "ferry_fetch_done",
                "Bytes in place: reused from the target plus downloaded in this run",
                Some(Unit::Bytes),
            ),
            bytes_total: series(
                r,
                "ferry_fetch_size",
                "Bytes of the selected files (of this slice, for a slice)",
                Some(Unit::Bytes),
            ),
            downloaded: series(
                r,
                "ferry_fetch_downloaded",
                "Bytes received over the network in this run, re-sent ranges included",
                Some(Unit::Bytes),
            ),
            files_done: series(r, "ferry_fetch_files_done", "Files in place and verified", None),
            files_total: series(
                r,
                "ferry_fetch_files",
                "Files selected (of this slice, for a slice)",
                None,
            ),
            rate: series(
                r,
                "ferry_fetch_bytes_per_second",
                "Download rate over the last 10 seconds",
                None,
            ),
            average_rate: series(
                r,
                "ferry_fetch_average_bytes_per_second",
                "Download rate averaged since the transfer started",
                None,
            ),
            eta: series(
                r,
                "ferry_fetch_eta",
                "Time left at the last 10 seconds' rate (NaN while nothing moves)",
                Some(Unit::Seconds),
            ),
            elapsed: series(
                r,
                "ferry_fetch_elapsed",
                "Time since the transfer started",
                Some(Unit::Seconds),
            ),
            connections: series(
                r,
                "ferry_fetch_connections",
                "Range requests in flight, one connection each",
                None,
            ),
            retries: series(
                r,
                "ferry_fetch_retries",
                "Range requests retried (network errors, stalls, server errors, throttling)",
                None,
            ),
            throttled: series(
                r,
                "ferry_fetch_throttled",
                "Throttle answers from the server, by cause (429 Too Many Requests, 503 Service Unavailable)",
                None,
            ),
            transferring: series(
                r,
                "ferry_fetch_transferring",
                "1 while the transfer stage runs, 0 before it starts and after it ends",
                None,
            ),
        }
    }
}

/// The counters last seen, so counters can be advanced by what changed.
#[derive(Default)]
struct Seen {
    downloaded: u64,
    retries: u64,
    throttled_429: u64,
    throttled_503: u64,
}

/// Advances `counter` to `now`; a smaller `now` means a new stage counting from 0 again.
fn advance(counter: &Counter, seen: &mut u64, now: u64) {
    let delta = if now >= *seen { now - *seen } else { now };
    counter.inc_by(delta);
    *seen = now;
}

struct State {
    window: Window,
    seen: Seen,
    /// When the display was last given a progress event.
    shown: Instant,
}

/// Updates the series from each event, then hands it to the display.
pub struct Exporter {
    labels: Labels,
    registry: Registry,
    series: Series,
    state: Mutex<State>,
    display: Arc<dyn Reporter>,
}

impl Exporter {
    fn new(labels: Labels, display: Arc<dyn Reporter>) -> Exporter {
        let mut registry = Registry::default();
        let series = Series::register(&mut registry);
        let exporter = Exporter {
            labels,
            registry,
            series,
            state: Mutex::new(State {
                window: Window::new(rate::SPAN),
                seen: Seen::default(),
                shown: Instant::now(),
            }),
            display,
        };
        // The series exist (at 0) from the first scrape, before the listing is resolved.
        exporter.update(&Stats::default(), false);
        exporter
    }

    fn cause(&self, cause: &'static str) -> CauseLabels {
        CauseLabels {
            repo: self.labels.repo.clone(),
            slice: self.labels.slice.clone(),
            slices: self.labels.slices.clone(),
            cause,
        }
    }

    fn update(&self, s: &Stats, transferring: bool) {
        let l = &self.labels;
        let m = &self.series;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.window.push(Instant::now(), s.bytes_downloaded);
        m.bytes_done.get_or_create(l).set(s.bytes_done as i64);
        m.bytes_total.get_or_create(l).set(s.bytes_total as i64);
        m.files_done.get_or_create(l).set(s.files_done as i64);
        m.files_total.get_or_create(l).set(s.files_total as i64);
        m.connections.get_or_create(l).set(s.connections as i64);
        m.transferring.get_or_create(l).set(i64::from(transferring));
        m.rate.get_or_create(l).set(st.window.rate());
        let elapsed = s.elapsed.as_secs_f64();
        let average = if elapsed > 0.0 {
            s.bytes_downloaded as f64 / elapsed
        } else {
            0.0
        };
        m.average_rate.get_or_create(l).set(average);
        let left = s.bytes_total.saturating_sub(s.bytes_done);
        let eta = match st.window.eta(left) {
            Some(d) => d.as_secs_f64(),
            None if left == 0 && s.bytes_total > 0 => 0.0,
            None => f64::NAN,
        };
        m.eta.get_or_create(l).set(eta);
        m.elapsed.get_or_create(l).set(elapsed);
        let seen = &mut st.seen;
        advance(
            &m.downloaded.get_or_create(l),
            &mut seen.downloaded,
            s.bytes_downloaded,
        );
        advance(&m.retries.get_or_create(l), &mut seen.retries, s.retries);
        advance(
            &m.throttled.get_or_create(&self.cause("429")),
            &mut seen.throttled_429,
            s.throttled_429,
        );
        advance(
            &m.throttled.get_or_create(&self.cause("503")),
            &mut seen.throttled_503,
            s.throttled_503,
        );
    }

    /// The OpenMetrics text of the series now.
    pub fn render(&self) -> String {
        openmetrics::encode(&self.registry)
    }

    /// Whether the display wants this progress event (it may want them less often than the
    /// series are refreshed).
    fn display_due(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.shown.elapsed() + Duration::from_millis(50) >= self.display.interval() {
            st.shown = Instant::now();
            true
        } else {
            false
        }
    }
}

impl Reporter for Exporter {
    fn interval(&self) -> Duration {
        self.display.interval().min(REFRESH)
    }

    fn event(&self, event: Event) {
        match event {
            Event::Started(s) => {
                self.update(&s, true);
                if let Ok(mut st) = self.state.lock() {
                    st.shown = Instant::now();
                }
                self.display.event(event);
            }
            Event::Progress(s) => {
                self.update(&s, true);
                if self.display_due() {
                    self.display.event(event);
                }
            }
            Event::Finished(s) => {
                self.update(&s, false);
                self.display.event(event);
            }
        }
    }
}

/// The server; dropping it stops serving.
pub struct Server(tokio::task::JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds `addr` and serves `/metrics` for the fetch reported to the returned reporter, which
/// passes events on to `display`.
pub async fn serve(
    addr: SocketAddr,
    labels: Labels,
    display: Arc<dyn Reporter>,
) -> anyhow::Result<(Arc<dyn Reporter>, Server)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| {
            ferry_fetcher::Error::Usage(format!(
                "--metrics-listen {addr}: cannot listen there: {e}; pick a free port (the deploy \
                 manifests use 9400)"
            ))
        })
        .context("starting the metrics server")?;
    let exporter = Arc::new(Exporter::new(labels, display));
    let scraped = Arc::clone(&exporter);
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let body = scraped.render();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], body) }
        }),
    );
    // The bound address: with port 0 the kernel chose it.
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!("metrics at http://{bound}/metrics");
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("metrics server stopped: {e}");
        }
    });
    Ok((exporter, Server(task)))
}
