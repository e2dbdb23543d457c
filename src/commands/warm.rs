//! `ferry warm`: load a model, or this node's part of it, into the page cache.

use std::path::PathBuf;

use anyhow::Context as _;
use ferry_sidecar::warm::{self, WarmControl, WarmOptions};

#[derive(clap::Args)]
pub struct Args {
    /// The model directory (its manifest's files, or every file in it when there is none).
    pub dir: PathBuf,
    /// A warm plan from `ferry plan warm`: warm only this node's byte ranges.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    #[command(flatten)]
    pub rank: crate::args::NodeRank,
    /// Parallel readers (reads wait on storage, not CPU: network storage wants several).
    #[arg(long, default_value_t = WarmOptions::default().jobs)]
    pub jobs: usize,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Read with pread into a buffer instead of sendfile into /dev/null (for benchmarks).
    #[arg(long, hide = true)]
    pub copy: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let targets = match &args.plan {
        Some(plan) => {
            let rank = args
                .rank
                .get()
                .ok_or_else(|| ferry_sidecar::Error::NeedsRank { plan: plan.clone() })?;
            warm::plan_targets(&args.dir, plan, rank)?
        }
        None => warm::model_targets(&args.dir)?,
    };
    let opts = WarmOptions {
        jobs: args.jobs.max(1),
        zero_copy: !args.copy,
        ..WarmOptions::default()
    };
    let report =
        tokio::task::spawn_blocking(move || warm::warm(&targets, &opts, &WarmControl::default()))
            .await
            .context("the warm thread died")??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "warmed {:.2} GB ({} files) in {:.2} s: {:.2} GB/s with {} readers",
        report.bytes as f64 / 1e9,
        report.files,
        report.seconds,
        report.bytes_per_second / 1e9,
        report.jobs
    );
    println!(
        "page cache residency: {:.1} % before, {:.1} % after",
        report.before.ratio() * 100.0,
        report.after.ratio() * 100.0
    );
    for w in &report.warnings {
        println!("warning: {w}");
    }
    Ok(())
}
