//! `ferry fetch`: download a model snapshot, verified and resumable.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_fetcher::events::{Reporter, Silent};
use ferry_fetcher::origin::OriginSpec;
use ferry_fetcher::target::TargetSpec;
use ferry_fetcher::transfer::{TransferOptions, DEFAULT_CHUNK, DEFAULT_JOBS};
use ferry_fetcher::{auth::Secret, FetchOptions, Summary};
use ferry_sharder::slices::SliceSpec;

use crate::format;
use crate::progress::{Mode, Reporting};

#[derive(clap::Args)]
#[command(after_help = crate::help::FETCH)]
pub struct Args {
    /// The repo, ORG/NAME or ORG/NAME@REV, or an S3 prefix s3://BUCKET/PREFIX to download from.
    repo: String,
    /// Only these files of the repo, by exact name (as `hf download ORG/NAME FILE...`); added to
    /// what --include selects.
    #[arg(value_name = "FILE")]
    files: Vec<String>,
    /// Target directory, created if missing, or an S3 prefix s3://BUCKET/PREFIX to upload to.
    /// Re-running resumes.
    #[arg(long, visible_alias = "local-dir")]
    to: String,
    #[command(flatten)]
    hub: crate::args::Hub,
    /// Branch, tag or commit (default: main on hf, master on modelscope; or the @REV of the
    /// repo). Resolved to one commit.
    #[arg(long)]
    revision: Option<String>,
    /// Only files matching this glob (repeatable), e.g. '*.safetensors'.
    #[arg(long)]
    include: Vec<String>,
    /// Skip files matching this glob (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    /// S3 endpoint for s3:// sources and targets, e.g. https://cos.ap-shanghai.myqcloud.com
    /// (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS). Credentials and region come
    /// from the AWS default chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, web identity; AWS_REGION).
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// Access token (default: from the environment; never printed).
    #[arg(long, hide_env_values = true)]
    token: Option<String>,
    /// Files downloaded at once.
    #[arg(long, visible_alias = "max-workers", default_value_t = DEFAULT_JOBS, value_parser = crate::args::positive::<usize>)]
    jobs: usize,
    /// Connections in all, across files and ranges (default: measured, from 8 up to 32: more
    /// while more pays, fewer when the server throttles).
    #[arg(long, value_parser = crate::args::positive::<usize>)]
    connections: Option<usize>,
    /// Size of one ranged request, e.g. 64MiB (at least 1MiB).
    #[arg(long, default_value_t = bytesize::ByteSize(DEFAULT_CHUNK), value_parser = crate::args::range_size)]
    chunk_size: bytesize::ByteSize,
    /// Make finished ranges durable (fsync + journal) per file every SIZE, and at least every
    /// chunk: the most a crash can lose per file in progress, beside the ranges in flight.
    #[arg(long, default_value_t = bytesize::ByteSize(DEFAULT_CHUNK))]
    sync_every: bytesize::ByteSize,
    /// Reconnect when a connection sends nothing for this long.
    #[arg(long, default_value = "30s", value_parser = crate::args::nonzero_duration)]
    stall_timeout: Duration,
    /// Give up when a range keeps failing for this long without progress.
    #[arg(long, default_value = "10m", value_parser = crate::args::nonzero_duration)]
    retry_timeout: Duration,
    /// Fetch only slice I of N (counted from 0) of an Indexed Job into a shared directory; the
    /// last slice to finish verifies the whole and commits the manifest.
    #[arg(long, value_name = "I/N", conflicts_with = "slices")]
    slice: Option<SliceSpec>,
    /// Like --slice, with I taken from JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job).
    #[arg(long, value_name = "N", value_parser = crate::args::positive::<u32>)]
    slices: Option<u32>,
    /// Machine-readable progress lines and a final summary on stdout.
    #[arg(long)]
    json: bool,
    /// Only errors.
    #[arg(long, short, conflicts_with = "json")]
    quiet: bool,
    /// Show what would be fetched and what reused, the disk it needs and the free space on the
    /// target's filesystem, then exit 0 without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// Serve Prometheus metrics of this fetch at http://ADDR/metrics while it runs, e.g.
    /// 0.0.0.0:9400.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

impl Args {
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// --include, plus the FILE names given after the repo as literal patterns.
    fn includes(&self) -> Vec<String> {
        let mut include = self.include.clone();
        include.extend(self.files.iter().map(|f| globset::escape(f)));
        include
    }
}

/// The origin, with `--revision` folded into `ORG/NAME[@REV]`.
fn origin(args: &Args) -> anyhow::Result<OriginSpec> {
    let mut origin = OriginSpec::parse(&args.repo, args.hub.source, args.hub.endpoint.clone())?;
    if let (OriginSpec::Hub(h), Some(rev)) = (&mut origin, &args.revision) {
        match &h.revision {
            Some(at) if at != rev => {
                return Err(crate::exit::Usage(format!(
                    "{} names revision {at} and --revision says {rev}; give one of them",
                    args.repo
                ))
                .into())
            }
            _ => h.revision = Some(rev.clone()),
        }
    }
    Ok(origin)
}

fn slice(args: &Args) -> anyhow::Result<Option<SliceSpec>> {
    Ok(match (args.slice, args.slices) {
        (Some(s), _) => Some(s),
        (None, Some(count)) => {
            let index = std::env::var("JOB_COMPLETION_INDEX").context(
                "--slices needs JOB_COMPLETION_INDEX (set by an Indexed Job); use --slice I/N outside one",
            )?;
            Some(
                format!("{index}/{count}")
                    .parse::<SliceSpec>()
                    .map_err(anyhow::Error::msg)?,
            )
        }
        (None, None) => None,
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let token = match &args.token {
        Some(t) => Secret::new(t.clone()),
        None => args.hub.source.token_from_env(),
    };
    let opts = FetchOptions {
        origin: origin(&args)?,
        target: TargetSpec::parse(&args.to)?,
        slice: slice(&args)?,
        include: args.includes(),
        exclude: args.exclude.clone(),
        transfer: TransferOptions {
            jobs: args.jobs.max(1),
            connections: args.connections.map(|c| c.max(1)),
            chunk_size: args.chunk_size.as_u64().max(1 << 20),
            sync_every: args.sync_every.as_u64(),
            stall_timeout: args.stall_timeout,
            retry_timeout: args.retry_timeout,
        },
        s3_endpoint: args.s3_endpoint.clone(),
    };
    if args.dry_run {
        return crate::dry_run::run(&opts, token, args.json).await;
    }
    let reporter: Arc<dyn Reporter> = if args.json {
        Arc::new(Reporting::new(Mode::Json))
    } else if args.quiet {
        Arc::new(Silent)
    } else {
        Arc::new(Reporting::new(Mode::auto()))
    };
    // Kept alive until the fetch returns: the server stops with it.
    let mut _exporter = None;
    let reporter = match args.metrics_listen {
        Some(addr) => {
            let labels = crate::fetch_metrics::Labels::new(&args.repo, opts.slice);
            let (tee, server) = crate::fetch_metrics::serve(addr, labels, reporter).await?;
            _exporter = Some(server);
            tee
        }
        None => reporter,
    };
    let summary = ferry_fetcher::fetch(opts, token, reporter)
        .await
        .with_context(|| format!("fetching {}", args.repo))?;
    if args.json {
        crate::output::emit("summary", serde_json::to_value(&summary)?);
    } else if !args.quiet {
        eprintln!("{}", summary_line(&summary));
    }
    Ok(())
}

fn summary_line(s: &Summary) -> String {
    let rate = s.bytes_downloaded as f64 / s.seconds.max(1e-3);
    format!(
        "fetched {} ({}) of {} at {} into {} in {:.1} s: {} downloaded ({}), {} reused, {}",
        format::count(s.files.len() as u64, "file"),
        format::size(s.bytes_total),
        s.repo,
        format::short_commit(&s.commit),
        s.dir.display(),
        s.seconds,
        format::size(s.bytes_downloaded),
        format::rate(rate),
        format::size(s.bytes_reused),
        format::count(s.retries, "retry"),
    )
}
