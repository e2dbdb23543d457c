//! `ferry fetch`: download a model snapshot, verified and resumable.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_fetcher::events::{Reporter, Silent};
use ferry_fetcher::origin::OriginSpec;
use ferry_fetcher::target::{cache::default_dir, TargetSpec};
use ferry_fetcher::transfer::{TransferOptions, DEFAULT_CHUNK, DEFAULT_JOBS};
use ferry_fetcher::{auth::Secret, FetchOptions, Summary};
use ferry_sharder::slices::SliceSpec;

use crate::format;
use crate::progress::{Mode, Reporting};

#[derive(clap::Args)]
#[command(after_help = crate::help::FETCH)]
pub struct Args {
    /// The repo, ORG/NAME or ORG/NAME@REV, an S3 prefix s3://BUCKET/PREFIX, or an Ollama model
    /// ollama://[HOST/][NAMESPACE/]MODEL[:TAG] to download from.
    repo: String,
    /// Only these files of the repo, by exact name (as `hf download ORG/NAME FILE...`); added to
    /// what --include selects.
    #[arg(value_name = "FILE")]
    files: Vec<String>,
    /// Target directory, created if missing, or an S3 prefix s3://BUCKET/PREFIX to upload to.
    /// Re-running resumes. Without --to (and without --cache-dir), the hub's default cache.
    #[arg(long, visible_alias = "local-dir")]
    to: Option<String>,
    /// Write the hub client's own cache under DIR instead (Hugging Face: DIR/models--ORG--NAME
    /// with blobs, snapshots, refs; ModelScope: DIR/models/ORG--NAME/snapshots/REV), so
    /// engines find it offline. Default cache, when neither this nor --to is given:
    /// $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub; $MODELSCOPE_CACHE or
    /// ~/.cache/modelscope.
    #[arg(long, value_name = "DIR", conflicts_with = "to")]
    cache_dir: Option<std::path::PathBuf>,
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
    /// Files downloaded at once (1 to 256).
    #[arg(long, visible_alias = "max-workers", default_value_t = DEFAULT_JOBS, value_parser = in_range(1, 256))]
    jobs: usize,
    /// Connections in all, across files and ranges (default: measured, from 8 up to 128, fewer
    /// in a small memory limit: more while more pays, fewer when the server throttles).
    #[arg(long, value_parser = in_range(1, 1024))]
    connections: Option<usize>,
    /// Size of one ranged request, e.g. 64MiB (at least 1MiB).
    #[arg(long, default_value_t = bytesize::ByteSize(DEFAULT_CHUNK), value_parser = chunk_size)]
    chunk_size: bytesize::ByteSize,
    /// Make finished ranges durable (fsync + journal) per file every SIZE, and at least every
    /// chunk: the most a crash can lose per file in progress, beside the ranges in flight.
    #[arg(long, default_value_t = bytesize::ByteSize(DEFAULT_CHUNK))]
    sync_every: bytesize::ByteSize,
    /// Reconnect when a connection sends nothing for this long.
    #[arg(long, default_value = "30s", value_parser = nonzero_duration)]
    stall_timeout: Duration,
    /// Give up when a range keeps failing for this long without progress.
    #[arg(long, default_value = "10m", value_parser = nonzero_duration)]
    retry_timeout: Duration,
    /// Fetch only slice I of N (counted from 0) of an Indexed Job into a shared directory; the
    /// last slice to finish verifies the whole and commits the manifest.
    #[arg(long, value_name = "I/N", conflicts_with = "slices")]
    slice: Option<SliceSpec>,
    /// Like --slice, with I taken from JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job).
    #[arg(long, value_name = "N", value_parser = crate::args::positive::<u32>)]
    slices: Option<u32>,
    /// When --to holds another model (its manifest names another repo), remove that model's
    /// files and fetch this one instead of refusing.
    #[arg(long)]
    replace: bool,
    /// Use only what --to holds: no request at all; exit 0 when it holds the repo complete, else
    /// fail at once (also FERRY_OFFLINE=1, and HF_HUB_OFFLINE=1 for Hugging Face).
    #[arg(long)]
    offline: bool,
    /// With --slice/--slices: claim pieces from the shared directory as they go (files, and ranges
    /// of large files split while in flight) instead of a fixed slice each, so a fast pod takes
    /// over from a slow or dead one. All pods of the Job must pass it.
    #[arg(long)]
    dynamic: bool,
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

/// A whole number from `lo` to `hi`: 0 files or connections at once cannot fetch anything, and
/// clamping it silently hides the typo.
fn in_range(lo: u64, hi: u64) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s: &str| match s.trim().parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n as usize),
        _ => Err(format!("{s:?} is not a whole number from {lo} to {hi}")),
    }
}

/// A size of at least 1 MiB: smaller ranges cost more in request overhead than they save.
fn chunk_size(s: &str) -> Result<bytesize::ByteSize, String> {
    let size: bytesize::ByteSize = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if size.as_u64() < 1 << 20 {
        return Err(format!(
            "{s:?} is under 1MiB; use e.g. 16MiB or 64MiB (the default)"
        ));
    }
    Ok(size)
}

/// A duration above zero: a zero timeout makes every request fail at once, for minutes.
fn nonzero_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{s:?} is zero; use e.g. 30s or 2m")),
        Err(e) => Err(format!("{s:?}: {e}; use e.g. 30s or 2m")),
    }
}

/// The origin, with `--revision` folded into `ORG/NAME[@REV]`.
fn origin(args: &Args) -> anyhow::Result<OriginSpec> {
    let mut origin = OriginSpec::parse(&args.repo, args.hub.source, args.hub.endpoint.clone())?;
    if let (OriginSpec::Ollama(n), Some(rev)) = (&origin, &args.revision) {
        return Err(ferry_fetcher::Error::BadOllamaName {
            name: args.repo.clone(),
            reason: format!(
                "--revision {rev} does not apply; name the tag: ollama://{}:{rev}",
                n.model
            ),
        }
        .into());
    }
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

/// `--to`, else `--cache-dir`, else the hub's default cache (where `hf download` writes).
fn target(args: &Args, origin: &OriginSpec) -> anyhow::Result<TargetSpec> {
    Ok(match (&args.to, &args.cache_dir, origin) {
        (Some(to), _, _) => TargetSpec::parse(to)?,
        (None, Some(dir), _) => TargetSpec::HubCache(dir.clone()),
        (None, None, OriginSpec::Hub(h)) => TargetSpec::HubCache(default_dir(h.kind)?),
        (None, None, OriginSpec::S3(url)) => {
            anyhow::bail!(
                "{url}: give --to DIR or --to s3://BUCKET/PREFIX; hub caches hold hub repos only"
            )
        }
        (None, None, OriginSpec::Ollama(_)) => {
            return Err(ferry_fetcher::Error::Usage(
                "an ollama:// model needs --to DIR (the OLLAMA_MODELS directory the server reads)"
                    .into(),
            )
            .into())
        }
    })
}

fn slice(args: &Args) -> anyhow::Result<Option<SliceSpec>> {
    if args.dynamic && args.slice.is_none() && args.slices.is_none() {
        return Err(ferry_fetcher::Error::Usage(
            "--dynamic claims pieces among the pods of a Job: give --slices N (index from \
             JOB_COMPLETION_INDEX) or --slice I/N"
                .into(),
        )
        .into());
    }
    Ok(match (args.slice, args.slices) {
        (Some(s), _) => Some(s),
        (None, Some(count)) => {
            // Usage errors (exit 2): a Job's podFailurePolicy must not take them for transient.
            let index = std::env::var("JOB_COMPLETION_INDEX").map_err(|_| {
                ferry_fetcher::Error::Usage(
                    "--slices needs JOB_COMPLETION_INDEX (set by an Indexed Job); use --slice I/N outside one".into(),
                )
            })?;
            Some(
                format!("{index}/{count}")
                    .parse::<SliceSpec>()
                    .map_err(|e| {
                        ferry_fetcher::Error::Usage(format!(
                            "JOB_COMPLETION_INDEX={index:?} with --slices {count}: {e}"
                        ))
                    })?,
            )
        }
        (None, None) => None,
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let origin = origin(&args)?;
    let token = match &args.token {
        Some(t) => Secret::new(t.clone()),
        // A hub token from the environment is the hub's: never offered to an Ollama registry.
        None if matches!(origin, OriginSpec::Ollama(_)) => None,
        None => args.hub.source.token_from_env(),
    };
    let opts = FetchOptions {
        target: target(&args, &origin)?,
        origin,
        slice: slice(&args)?,
        dynamic: args.dynamic,
        include: args.includes(),
        exclude: args.exclude.clone(),
        transfer: TransferOptions {
            jobs: args.jobs,
            connections: args.connections,
            chunk_size: args.chunk_size.as_u64(),
            sync_every: args.sync_every.as_u64(),
            stall_timeout: args.stall_timeout,
            retry_timeout: args.retry_timeout,
        },
        s3_endpoint: args.s3_endpoint.clone(),
        replace: args.replace,
        offline: args.offline,
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
