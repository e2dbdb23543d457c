//! The two ways to run the sidecar: an init container that exits when the gate opens, and a
//! native sidecar that serves the gate's state over HTTP for the life of the pod.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gate::{self, Gate, GateConfig};
use crate::metrics::Metrics;
use crate::server;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exit 0 when the gate opens, non-zero on timeout or a bad model.
    Init,
    /// Serve `/healthz`, `/readyz`, `/metrics` until SIGTERM; `/readyz` turns 200 when the gate
    /// opens.
    Serve,
}

#[derive(Debug, Clone)]
pub struct SidecarConfig {
    pub gate: GateConfig,
    pub mode: Mode,
    /// Where to serve HTTP; `None` serves nothing (an init container needs no probes).
    pub listen: Option<SocketAddr>,
}

/// Runs the sidecar until the gate opens (init) or until SIGTERM/SIGINT (serve).
pub async fn run(cfg: SidecarConfig) -> Result<()> {
    let gate = Arc::new(Gate::new(&cfg.gate.model_dir));
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = match cfg.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen {
                    addr,
                    cause: source,
                })?;
            let local = listener.local_addr().map_err(|source| Error::Listen {
                addr,
                cause: source,
            })?;
            tracing::info!("serving /healthz /readyz /metrics on http://{local}");
            let shutdown = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            let router = server::router(gate.clone(), metrics);
            Some(tokio::spawn(server::serve(listener, router, shutdown)))
        }
        None => None,
    };

    let mut gate_task = tokio::spawn(gate::run(cfg.gate.clone(), gate.clone()));
    let signal = server::shutdown_signal();
    tokio::pin!(signal);
    let outcome: Result<()> = tokio::select! {
        r = &mut gate_task => match r {
            Ok(Ok(())) if cfg.mode == Mode::Serve => {
                let sig = recheck_until(&gate, cfg.gate.recheck_every, signal).await;
                tracing::info!("{sig}: shutting down");
                Ok(())
            }
            Ok(r) => r,
            Err(e) => Err(Error::Task(e.to_string())),
        },
        sig = &mut signal => {
            tracing::info!("{sig}: shutting down before the gate opened");
            // Stop a running warm at its next buffer, so the blocking thread ends too.
            gate.warm.stop();
            gate_task.abort();
            match cfg.mode {
                Mode::Init => Err(Error::Interrupted { signal: sig }),
                Mode::Serve => Ok(()),
            }
        }
    };
    let _ = stop_tx.send(true);
    if let Some(server) = server {
        match server.await {
            Ok(r) => r?,
            Err(e) => return Err(Error::Task(e.to_string())),
        }
    }
    outcome
}

/// Re-checks the open gate every `every` until `signal` completes, and returns the signal.
async fn recheck_until(
    gate: &Arc<Gate>,
    every: std::time::Duration,
    signal: impl std::future::Future<Output = &'static str>,
) -> &'static str {
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            sig = &mut signal => return sig,
            _ = tick.tick() => {
                let g = gate.clone();
                // Half the period: a timer tick is never skipped for a probe's recent check.
                let gap = every / 2;
                let _ = tokio::task::spawn_blocking(move || g.recheck(gap)).await;
            }
        }
    }
}
