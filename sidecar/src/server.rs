//! The HTTP side: `/healthz`, `/readyz`, `/metrics`, and graceful shutdown on SIGTERM/SIGINT.
//!
//! `/readyz` is what the engine waits on: a native sidecar's startupProbe holds the engine
//! container until it answers 200, so it answers 503 with what the gate waits for until then.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::metrics::{self, Metrics};

#[derive(Clone)]
struct AppState {
    gate: Arc<Gate>,
    metrics: Arc<Metrics>,
}

/// The routes, over a gate someone else drives.
pub fn router(gate: Arc<Gate>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(AppState { gate, metrics })
}

/// The process is alive and serving: always 200, so a liveness probe never kills a sidecar that
/// is only waiting.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    // An open gate is re-checked first (at most once per MIN_GAP, whoever probes).
    let g = s.gate.clone();
    let _ = tokio::task::spawn_blocking(move || g.recheck(crate::recheck::MIN_GAP)).await;
    let snap = s.gate.snapshot();
    let code = if snap.phase == crate::gate::Phase::Open {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}: {}\n", snap.phase.as_str(), snap.detail))
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    let snap = s.gate.snapshot();
    // While the manifest is missing, the download's progress is read from the directory (the
    // same read-only view as `ferry status`), off the async threads: a shared volume can be slow.
    let download = if snap.phase == crate::gate::Phase::Waiting {
        let dir = s.gate.model_dir().to_path_buf();
        tokio::task::spawn_blocking(move || ferry_sharder::status::status(&dir).ok())
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let body = s.metrics.render(&snap, download.as_ref());
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body)
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests in
/// flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

/// Completes on SIGTERM (what the kubelet sends) or SIGINT, and names the signal.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        // Without signal handlers the default actions still end the process; wait for ever.
        _ => std::future::pending().await,
    }
}
