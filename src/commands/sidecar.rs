//! `ferry sidecar`: gate an engine pod on a complete, verified (and warmed) model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferry_sidecar::gate::{node_rank_from_env, GateConfig, OnBadModel, Poll, WarmSpec};
use ferry_sidecar::service::{self, Mode, SidecarConfig};
use ferry_sidecar::warm::WarmOptions;

/// Where serve mode listens unless told otherwise.
const DEFAULT_LISTEN: &str = "0.0.0.0:8090";

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// Init container: exit 0 once the gate opens; non-zero on timeout or a bad model.
    Init,
    /// Native sidecar: serve /healthz, /readyz (200 once open) and /metrics until SIGTERM.
    Serve,
}

#[derive(clap::Args)]
pub struct Args {
    /// The model directory on the shared volume.
    #[arg(long, env = "FERRY_MODEL_DIR")]
    pub model_dir: PathBuf,
    #[arg(long, value_enum, default_value = "serve")]
    pub mode: ModeArg,
    /// Warm the page cache before opening the gate (the whole model, or this node's plan).
    #[arg(long)]
    pub warm: bool,
    /// A warm plan from `ferry plan warm`: warm only this node's ranges (implies --warm).
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// This node's rank in the plan [default: $NODE_RANK, else $LWS_WORKER_INDEX].
    #[arg(long)]
    pub node_rank: Option<u32>,
    /// Parallel readers while warming.
    #[arg(long, default_value_t = WarmOptions::default().jobs)]
    pub jobs: usize,
    /// Address for /healthz, /readyz, /metrics [default: 0.0.0.0:8090 in serve mode, none in
    /// init mode].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Give up when the gate is still shut after this long (e.g. 2h) [default: wait for ever].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Re-hash every byte against the manifest instead of the quick check (names, sizes,
    /// headers).
    #[arg(long)]
    pub full: bool,
    /// Longest pause between two looks for the manifest.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll_max: Duration,
    /// How often to log what the gate still waits for.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub log_every: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mode = match args.mode {
        ModeArg::Init => Mode::Init,
        ModeArg::Serve => Mode::Serve,
    };
    let plan = match args.plan {
        Some(plan) => {
            let rank = args
                .node_rank
                .or_else(node_rank_from_env)
                .ok_or_else(|| ferry_sidecar::Error::NeedsRank { plan: plan.clone() })?;
            Some((plan, rank))
        }
        None => None,
    };
    let warm = (args.warm || plan.is_some()).then(|| WarmSpec {
        plan,
        options: WarmOptions {
            jobs: args.jobs.max(1),
            ..WarmOptions::default()
        },
    });
    let listen = match (args.listen, mode) {
        (Some(a), _) => Some(a),
        (None, Mode::Serve) => Some(DEFAULT_LISTEN.parse()?),
        (None, Mode::Init) => None,
    };
    let mut gate = GateConfig::new(args.model_dir);
    gate.timeout = args.timeout;
    gate.full = args.full;
    gate.warm = warm;
    gate.poll = Poll {
        max: args.poll_max,
        log_every: args.log_every,
        ..Poll::default()
    };
    gate.on_bad_model = match mode {
        Mode::Init => OnBadModel::Fail,
        Mode::Serve => OnBadModel::Retry,
    };
    service::run(SidecarConfig { gate, mode, listen }).await?;
    Ok(())
}
