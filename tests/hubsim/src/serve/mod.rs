//! `hubsim serve`: one HTTP server speaking the Hugging Face Hub and ModelScope download
//! protocols over every repo under a root directory, with fault injection and counters.
//!
//! Use it as a subprocess (`hubsim serve --root DIR --listen 127.0.0.1:0`, which prints
//! `hubsim listening on http://ADDR`) or in-process from Rust tests with [`start`].
//! The wire contract is documented in `tests/hubsim/README.md` (`## serve`).

mod access;
mod body;
mod cdn;
mod download;
mod error;
mod faults;
mod hashes;
mod hf;
mod modelscope;
pub mod ollama;
mod quirks;
mod range;
mod realism;
mod reply;
mod repo;
mod routes;
mod stats;
mod throttle;
pub mod tls;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

pub(crate) use routes::Req;

pub use error::ServeError;
pub use faults::{BodyLimit, FaultConfig, FaultKind, FaultRule, OverLimit};
pub use hashes::{git_blob_sha1, lfs_pointer};
pub use quirks::{ApiCalls, ApiRateLimit, Intermittent, MsVariant, Quirks};
pub use repo::{RepoConfig, CONFIG_FILE};
pub use stats::{PathStats, RequestRecord, StatsSnapshot};

/// Characters percent-encoded in one URL path segment we generate.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Default hash cache file name of the CLI, in the root (never served: hidden names are skipped).
pub const HASH_CACHE_FILE: &str = ".hubsim-hashes.json";

/// Default size from which a file is LFS even without a weight-file extension.
pub const DEFAULT_LFS_THRESHOLD: u64 = 10 * 1024 * 1024;

/// Command-line arguments of `hubsim serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Directory holding the repos as ORG/NAME/ subdirectories.
    #[arg(long)]
    pub root: PathBuf,
    /// Address to listen on; port 0 picks a free port (the real one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// A valid access token (repeatable); has access to every private/gated repo that does not
    /// list its own `authorized_tokens`.
    #[arg(long = "token", value_name = "TOKEN")]
    pub tokens: Vec<String>,
    /// Entries per page of the HF tree listing (Link rel="next" pagination).
    #[arg(long, default_value_t = 1000)]
    pub page_size: usize,
    /// Files at least this large are LFS (also every *.safetensors, *.bin, ... file).
    #[arg(long, default_value = "10MiB", value_parser = parse_size)]
    pub lfs_threshold: u64,
    /// Bandwidth cap on all file bodies together, per second (e.g. 100MiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub bandwidth_total: Option<u64>,
    /// Bandwidth cap on each file body, per second (e.g. 10MiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub bandwidth_per_body: Option<u64>,
    /// Milliseconds added before the response headers of every request.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// More file bodies than this streaming at once triggers --over-limit.
    #[arg(long)]
    pub max_bodies: Option<usize>,
    /// What happens over --max-bodies: `throttle` every body, or `reject` new ones with 429.
    #[arg(long, default_value = "throttle", value_parser = ["throttle", "reject"])]
    pub over_limit: String,
    /// Per-body rate while over --max-bodies in throttle mode (default 64KiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub over_limit_bps: Option<u64>,
    /// Redirect every LFS resolve (and ModelScope download) to the signed /_cdn origin.
    #[arg(long)]
    pub redirect: bool,
    /// Lifetime of signed /_cdn URLs in seconds (default 3600).
    #[arg(long)]
    pub cdn_expiry_secs: Option<u64>,
    /// A fault rule as JSON (repeatable), e.g. '{"kind":"reset","after_bytes":1048576,"count":1}'.
    #[arg(long = "fault", value_name = "JSON")]
    pub faults: Vec<String>,
    /// A whole fault set as JSON (the POST /_hubsim/faults format); the flags above add to it.
    #[arg(long, value_name = "PATH")]
    pub faults_file: Option<PathBuf>,
    /// Where to keep file hashes across restarts (default: ROOT/.hubsim-hashes.json).
    #[arg(long, value_name = "PATH", conflicts_with = "no_hash_cache")]
    pub hash_cache: Option<PathBuf>,
    /// Keep hashes in memory only.
    #[arg(long)]
    pub no_hash_cache: bool,
    /// Hash every repo and ref before printing the ready line, so no request waits for hashing.
    #[arg(long)]
    pub prehash: bool,
    /// Behave like the real hubs (every quirk of `Quirks::realistic`: ModelScope without commit
    /// ids, small files ignoring Range, a listing 403, the 3000-entry cap; HF RateLimit headers,
    /// an API 429, 307s to resolve-cache and canonical names, CDN redirects, gzip).
    #[arg(long)]
    pub realistic: bool,
    /// Quirks as JSON (the `quirks` object of the fault set), replacing --realistic's, e.g.
    /// '{"ms_listing_cap":3000,"ms_no_commit_ids":true}'.
    #[arg(long, value_name = "JSON")]
    pub quirks: Option<String>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size {s:?}: {e}"))
}

/// Everything a server needs; build with [`ServeConfig::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub tokens: Vec<String>,
    pub page_size: usize,
    pub lfs_threshold: u64,
    pub faults: FaultConfig,
    /// File that keeps hashes across restarts (None: memory only).
    pub hash_cache: Option<PathBuf>,
    /// Hash every repo before [`start`] returns.
    pub prehash: bool,
}

impl ServeConfig {
    /// Defaults: a free port on 127.0.0.1, no tokens, pages of 1000, no faults.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: Vec::new(),
            page_size: 1000,
            lfs_threshold: DEFAULT_LFS_THRESHOLD,
            faults: FaultConfig::default(),
            hash_cache: None,
            prehash: false,
        }
    }
}

impl TryFrom<ServeArgs> for ServeConfig {
    type Error = ServeError;

    fn try_from(a: ServeArgs) -> Result<Self, ServeError> {
        let mut faults = match &a.faults_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ServeError::Faults(format!("{}: {e}", p.display())))?;
                serde_json::from_str::<FaultConfig>(&text)
                    .map_err(|e| ServeError::Faults(format!("{}: {e}", p.display())))?
            }
            None => FaultConfig::default(),
        };
        if a.bandwidth_total.is_some() {
            faults.bandwidth_total_bps = a.bandwidth_total;
        }
        if a.bandwidth_per_body.is_some() {
            faults.bandwidth_per_body_bps = a.bandwidth_per_body;
        }
        if a.latency_ms > 0 {
            faults.latency_ms = a.latency_ms;
        }
        if let Some(max_bodies) = a.max_bodies {
            faults.body_limit = Some(BodyLimit {
                max_bodies,
                mode: if a.over_limit == "reject" {
                    OverLimit::Reject
                } else {
                    OverLimit::Throttle
                },
                throttle_bps: a.over_limit_bps,
                retry_after_secs: None,
            });
        }
        if a.cdn_expiry_secs.is_some() {
            faults.cdn_expiry_secs = a.cdn_expiry_secs;
        }
        if a.redirect {
            faults.rules.push(FaultRule {
                kind: FaultKind::Redirect,
                count: None,
                probability: None,
                path_contains: None,
                api: false,
                for_secs: None,
            });
        }
        if a.realistic {
            faults.quirks = Quirks::realistic();
        }
        if let Some(json) = &a.quirks {
            faults.quirks = serde_json::from_str(json)
                .map_err(|e| ServeError::Faults(format!("--quirks {json}: {e}")))?;
        }
        for json in &a.faults {
            let rule: FaultRule = serde_json::from_str(json)
                .map_err(|e| ServeError::Faults(format!("--fault {json}: {e}")))?;
            faults.rules.push(rule);
        }
        let hash_cache = if a.no_hash_cache {
            None
        } else {
            Some(a.hash_cache.unwrap_or_else(|| a.root.join(HASH_CACHE_FILE)))
        };
        Ok(ServeConfig {
            hash_cache,
            prehash: a.prehash,
            root: a.root,
            listen: a.listen,
            tokens: a.tokens,
            page_size: a.page_size,
            lfs_threshold: a.lfs_threshold,
            faults,
        })
    }
}

/// Shared server state.
pub(crate) struct AppState {
    store: repo::RepoStore,
    tokens: Vec<String>,
    faults: faults::Faults,
    stats: Arc<stats::Stats>,
    total_pacer: throttle::Pacer,
    cdn: cdn::CdnSigner,
    page_size: usize,
    port: u16,
}

/// A running server; dropping it stops accepting connections.
pub struct Handle {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    app: Arc<AppState>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Handle {
    /// `http://127.0.0.1:PORT`: the hub origin (HF_ENDPOINT / MODELSCOPE_ENDPOINT).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.app.stats.snapshot()
    }

    pub fn reset_stats(&self) {
        self.app.stats.reset();
    }

    /// The request log (oldest first, the last 10000), like `GET /_hubsim/requests`; cleared by
    /// [`Handle::reset_stats`].
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.app.stats.requests()
    }

    /// `http://localhost:PORT`: the same server under its other loopback name (another origin
    /// for clients), the target of `"origin_redirect": "other"` from [`Handle::url`].
    pub fn other_url(&self) -> String {
        format!("http://localhost:{}", self.addr.port())
    }

    pub fn faults(&self) -> FaultConfig {
        self.app.faults.get()
    }

    /// Replaces the whole fault set, like `POST /_hubsim/faults`.
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), ServeError> {
        faults.validate().map_err(ServeError::Faults)?;
        self.app.faults.set(faults);
        Ok(())
    }

    /// Runs until the server fails (it does not stop on its own).
    pub async fn wait(mut self) -> Result<(), ServeError> {
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(r) => r.map_err(ServeError::Server),
            Err(e) => Err(ServeError::Server(std::io::Error::other(e))),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Binds and spawns the server on the current tokio runtime.
pub async fn start(config: ServeConfig) -> Result<Handle, ServeError> {
    std::fs::read_dir(&config.root).map_err(|source| ServeError::Root {
        path: config.root.clone(),
        source,
    })?;
    config.faults.validate().map_err(ServeError::Faults)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let app = Arc::new(AppState {
        store: repo::RepoStore::new(
            config.root,
            repo::LfsRule {
                threshold: config.lfs_threshold,
            },
            config.hash_cache,
        ),
        tokens: config.tokens,
        faults: faults::Faults::new(config.faults),
        stats: Arc::default(),
        total_pacer: throttle::Pacer::default(),
        cdn: cdn::CdnSigner::default(),
        page_size: config.page_size,
        port: addr.port(),
    });
    if config.prehash {
        app.store
            .prehash()
            .await
            .map_err(|e| ServeError::Prehash(e.to_string()))?;
    }
    let router = Router::new()
        .route("/_hubsim/stats", get(get_stats))
        .route("/_hubsim/stats/reset", post(reset_stats))
        .route("/_hubsim/faults", get(get_faults).post(set_faults))
        .route("/_hubsim/requests", get(get_requests))
        .fallback(routes::dispatch)
        .with_state(app.clone());
    let task = tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(Handle {
        addr,
        app,
        task: Some(task),
    })
}

/// `hubsim serve`: starts the server, prints the listening line, runs until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    let config = ServeConfig::try_from(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let result = runtime.block_on(async {
        // Install the handlers before the ready line: a harness may signal right after reading it.
        let stop = shutdown_signal()?;
        let handle = start(config).await?;
        let mut out = std::io::stdout().lock();
        // Test harnesses wait for this exact line; flush so a pipe sees it at once.
        writeln!(out, "hubsim listening on {}", handle.url()).map_err(ServeError::Server)?;
        out.flush().map_err(ServeError::Server)?;
        drop(out);
        tokio::select! {
            r = handle.wait() => r,
            () = stop => Ok(()),
        }
    });
    // Do not wait for a hash of a huge file still running on a blocking thread.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// Resolves on SIGINT or SIGTERM; the handlers are registered when this is called.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Server)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Server)?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, ServeError> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

async fn get_stats(State(app): State<Arc<AppState>>) -> Response {
    reply::json(StatusCode::OK, &serde_json::json!(app.stats.snapshot()))
}

async fn reset_stats(State(app): State<Arc<AppState>>) -> Response {
    app.stats.reset();
    reply::json(StatusCode::OK, &serde_json::json!(app.stats.snapshot()))
}

async fn get_requests(State(app): State<Arc<AppState>>) -> Response {
    reply::json(StatusCode::OK, &serde_json::json!(app.stats.requests()))
}

async fn get_faults(State(app): State<Arc<AppState>>) -> Response {
    reply::json(StatusCode::OK, &serde_json::json!(app.faults.get()))
}

async fn set_faults(State(app): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(FaultConfig::default())
    } else {
        serde_json::from_slice::<FaultConfig>(&body).map_err(|e| e.to_string())
    };
    match parsed.and_then(|f| f.validate().map(|()| f)) {
        Ok(f) => {
            app.faults.set(f);
            reply::json(StatusCode::OK, &serde_json::json!(app.faults.get()))
        }
        Err(e) => reply::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": format!("invalid fault set: {e}") }),
        ),
    }
}
