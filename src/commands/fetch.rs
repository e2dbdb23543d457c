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
#[command(
    after_help = "Environment: HF_ENDPOINT, HF_TOKEN (or the token file `hf auth login` writes), \
MODELSCOPE_ENDPOINT, MODELSCOPE_API_TOKEN. Flags override them."
)]
pub struct Args {
    /// The repo, ORG/NAME or ORG/NAME@REV, or an S3 prefix s3://BUCKET/PREFIX to download from.
    repo: String,
    /// Target directory, created if missing, or an S3 prefix s3://BUCKET/PREFIX to upload to.
    /// Re-running resumes.
    #[arg(long)]
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
    #[arg(long, default_value_t = DEFAULT_JOBS)]
    jobs: usize,
    /// Connections in all, across files and ranges (default: measured, from 8 up to 32: more
    /// while more pays, fewer when the server throttles).
    #[arg(long)]
    connections: Option<usize>,
    /// Size of one ranged request, e.g. 64MiB.
    #[arg(long, default_value_t = bytesize::ByteSize(DEFAULT_CHUNK))]
    chunk_size: bytesize::ByteSize,
    /// Make finished ranges durable (fsync + journal) per file every SIZE, and at least every
    /// chunk: the most a crash can lose per file in progress, beside the ranges in flight.
    #[arg(long, default_value_t = bytesize::ByteSize(DEFAULT_CHUNK))]
    sync_every: bytesize::ByteSize,
    /// Reconnect when a connection sends nothing for this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    stall_timeout: Duration,
    /// Give up when a range keeps failing for this long without progress.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    retry_timeout: Duration,
    /// Fetch only slice I of N (counted from 0) of an Indexed Job into a shared directory; the
    /// last slice to finish verifies the whole and commits the manifest.
    #[arg(long, value_name = "I/N", conflicts_with = "slices")]
    slice: Option<SliceSpec>,
    /// Like --slice, with I taken from JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job).
    #[arg(long, value_name = "N")]
    slices: Option<u32>,
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
}

impl Args {
    pub fn quiet(&self) -> bool {
        self.quiet
    }
}

/// The origin, with `--revision` folded into `ORG/NAME[@REV]`.
fn origin(args: &Args) -> anyhow::Result<OriginSpec> {
    let mut origin = OriginSpec::parse(&args.repo, args.hub.source, args.hub.endpoint.clone())?;
    if let (OriginSpec::Hub(h), Some(rev)) = (&mut origin, &args.revision) {
        match &h.revision {
            Some(at) if at != rev => anyhow::bail!(
                "{} names revision {at} and --revision says {rev}; give one of them",
                args.repo
            ),
            _ => h.revision = Some(rev.clone()),
        }
    }
    Ok(origin)
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
    let reporter: Arc<dyn Reporter> = if args.json {
        Arc::new(Reporting::new(Mode::Json))
    } else if args.quiet {
        Arc::new(Silent)
    } else {
        Arc::new(Reporting::new(Mode::auto()))
    };
    let opts = FetchOptions {
        origin: origin(&args)?,
        target: TargetSpec::parse(&args.to)?,
        slice: slice(&args)?,
        dynamic: args.dynamic,
        include: args.include.clone(),
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
    let summary = ferry_fetcher::fetch(opts, token, reporter)
        .await
        .with_context(|| format!("fetching {}", args.repo))?;
    if args.json {
        let mut v = serde_json::to_value(&summary)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("event".into(), "summary".into());
        }
        println!("{v}");
    } else if !args.quiet {
        eprintln!("{}", summary_line(&summary));
    }
    Ok(())
}

fn summary_line(s: &Summary) -> String {
    let rate = s.bytes_downloaded as f64 / s.seconds.max(1e-3);
    format!(
        "fetched {} files ({}) of {} at {} into {} in {:.1} s: {} downloaded ({}), {} reused, {} retries",
        s.files.len(),
        format::size(s.bytes_total),
        s.repo,
        format::short_commit(&s.commit),
        s.dir.display(),
        s.seconds,
        format::size(s.bytes_downloaded),
        format::rate(rate),
        format::size(s.bytes_reused),
        s.retries,
    )
}
