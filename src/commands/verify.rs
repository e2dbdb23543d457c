//! `ferry verify`: check a model directory against its completion manifest.

use std::path::PathBuf;

use anyhow::Context;
use ferry_sharder::verify::{self, Options};
use ferry_sharder::{Error, Manifest};

use crate::format;

#[derive(clap::Args)]
#[command(after_help = crate::help::VERIFY)]
pub struct Args {
    /// The model directory (the one `ferry fetch --to` wrote).
    dir: PathBuf,
    /// Also re-hash every byte and compare with the manifest (parallel over files).
    #[arg(long)]
    full: bool,
    /// The report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Hashing workers with --full (default: every core).
    #[arg(long, default_value_t = 0)]
    jobs: usize,
    /// For a directory without a ferry manifest (e.g. from huggingface_hub or modelscope): take
    /// the expected files and hashes from the hub instead, ORG/NAME or ORG/NAME@REVISION.
    #[arg(long, value_name = "ORG/NAME[@REV]")]
    against: Option<String>,
    /// With --against: which hub (--source, --endpoint).
    #[command(flatten)]
    hub: crate::args::Hub,
    /// With --against: only the files matching these globs (repeatable), as fetched.
    #[arg(long, requires = "against")]
    include: Vec<String>,
}

/// The manifest the hub implies for `spec` (ORG/NAME[@REV]): every file with its size and hash.
async fn manifest_from_hub(args: &Args, spec: &str) -> anyhow::Result<Manifest> {
    let repo = args.hub.repo(spec)?;
    let snapshot = ferry_fetcher::origin::hub_origin::list(&repo, &args.include, &[]).await?;
    Ok(snapshot.manifest(repo.kind.id()))
}

impl Args {
    pub fn json(&self) -> bool {
        self.json
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = args.dir.clone();
    let manifest = match &args.against {
        Some(spec) => manifest_from_hub(&args, spec).await?,
        None => Manifest::read(&dir)?.ok_or_else(|| Error::NoManifest { dir: dir.clone() })?,
    };
    let opts = Options {
        full: args.full,
        jobs: args.jobs,
    };
    let m = manifest.clone();
    let d = dir.clone();
    let report = tokio::task::spawn_blocking(move || {
        // A shared volume may show this node the manifest before its files: wait for them.
        ferry_sharder::visible::wait(&d, &m, ferry_sharder::visible::patience());
        verify::verify(&d, &m, &opts)
    })
    .await
    .context("the verification task failed")??;
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("dir".into(), dir.display().to_string().into());
            o.insert("ok".into(), report.ok().into());
            o.insert("repo".into(), manifest.repo.clone().into());
            o.insert("commit".into(), manifest.commit.clone().into());
        }
        crate::output::emit("verify", v);
    } else {
        outln!(
            "{}: {}, {} ({}@{})",
            dir.display(),
            format::count(report.files as u64, "file"),
            format::size(report.bytes),
            manifest.repo,
            format::short_commit(&manifest.commit)
        );
        if let Some(h) = &report.hashed {
            outln!(
                "re-hashed {}, {} in {:.1}s: {} ({})",
                format::count(h.files as u64, "file"),
                format::size(h.bytes),
                h.seconds,
                format::rate(h.gb_per_s * 1e9),
                format::count(h.jobs as u64, "worker")
            );
        }
        for w in report.warnings() {
            outln!("warning: {w}");
        }
        if report.ok() {
            outln!(
                "ok: complete and valid{}",
                if args.full {
                    ", every byte matches the manifest"
                } else {
                    " (sizes and headers; --full re-hashes)"
                }
            );
        }
    }
    report.into_result(&dir)?;
    Ok(())
}
