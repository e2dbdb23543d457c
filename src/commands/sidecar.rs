//! `ferry sidecar`: gate an engine pod on a complete, verified (and warmed) model, and, with
//! `--preflight`, on `ferry doctor`'s checks passing on this node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferry_sidecar::gate::{GateConfig, OnBadModel, Poll, WarmSpec};
use ferry_sidecar::service::{self, Mode, SidecarConfig};

use super::doctor::EngineArgs;
use super::warm::ShareArgs;

/// Where serve mode listens unless told otherwise: the port the rendered probes, the README and
/// the Dockerfile use.
const DEFAULT_LISTEN: &str = "0.0.0.0:8090";

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// Init container: exit 0 once the gate opens; non-zero on timeout or a bad model.
    Init,
    /// Native sidecar: serve /healthz, /readyz (200 once open) and /metrics until SIGTERM.
    Serve,
}

#[derive(clap::Args)]
#[command(after_help = crate::help::SIDECAR)]
pub struct Args {
    /// The model directory on the shared volume.
    #[arg(long, env = "FERRY_MODEL_DIR")]
    pub model_dir: PathBuf,
    #[arg(long, value_enum, default_value = "serve")]
    pub mode: ModeArg,
    /// Warm the page cache before opening the gate: the whole model, a --plan file's node, or,
    /// with --tp/--pp/--nnodes (or LWS_GROUP_SIZE), this node's share computed from the model.
    #[arg(long)]
    pub warm: bool,
    #[command(flatten)]
    pub share: ShareArgs,
    /// Run `ferry doctor`'s checks once the model is verified; a failing check keeps the gate
    /// shut with the finding and its fix on /readyz and /metrics.
    #[arg(long)]
    pub preflight: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
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
    /// Open on a model fetched with --include/--exclude patterns that left out files an engine
    /// loads (shards, config, tokenizer); without it such a manifest keeps the gate shut.
    #[arg(long)]
    pub allow_partial: bool,
    /// Longest pause between two looks for the manifest.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll_max: Duration,
    /// How often to log what the gate still waits for.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub log_every: Duration,
    /// Serve mode: how often to re-check an open gate (manifest there, every file with its
    /// size); `/readyz` also re-checks, at most once a second. A change shuts the gate.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub recheck_every: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mode = match args.mode {
        ModeArg::Init => Mode::Init,
        ModeArg::Serve => Mode::Serve,
    };
    let warm = (args.warm || args.share.plan.is_some())
        .then(|| {
            anyhow::Ok(WarmSpec {
                share: args.share.share()?,
                options: args.share.options(),
            })
        })
        .transpose()?;
    let listen = match (args.listen, mode) {
        (Some(a), _) => Some(a),
        (None, Mode::Serve) => Some(DEFAULT_LISTEN.parse()?),
        (None, Mode::Init) => None,
    };
    let mut gate = GateConfig::new(args.model_dir);
    gate.timeout = args.timeout;
    gate.full = args.full;
    gate.allow_partial = args.allow_partial;
    gate.warm = warm;
    gate.preflight = args
        .preflight
        .then(|| args.engine.deployment(&args.share.topology));
    gate.poll = Poll {
        max: args.poll_max,
        log_every: args.log_every,
        ..Poll::default()
    };
    gate.recheck_every = args.recheck_every.max(Duration::from_millis(100));
    gate.on_bad_model = match mode {
        Mode::Init => OnBadModel::Fail,
        Mode::Serve => OnBadModel::Retry,
    };
    service::run(SidecarConfig { gate, mode, listen }).await?;
    Ok(())
}
