//! `ferry status`: a read-only view of a model directory, safe while fetches run.

use std::path::PathBuf;

use crate::format::size as human;

#[derive(clap::Args)]
pub struct Args {
    /// The model directory.
    dir: PathBuf,
    /// The status as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = args.dir.clone();
    let s = tokio::task::spawn_blocking(move || ferry_sharder::status::status(&dir)).await??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("{}", s.dir);
    if let (Some(repo), Some(commit)) = (&s.repo, &s.commit) {
        println!("  repo       {repo} @ {commit}");
    }
    println!(
        "  state      {}",
        if s.complete { "complete" } else { "incomplete" }
    );
    if let Some(at) = &s.completed_at {
        println!("  completed  {at}");
    }
    let total = s
        .files_total
        .map(|t| t.to_string())
        .unwrap_or_else(|| "?".into());
    println!("  files      {} / {total} done", s.files_done);
    if let Some(n) = s.missing_count {
        println!("  missing    {n}");
    }
    if let Some(missing) = &s.missing {
        for m in missing.iter().take(10) {
            println!("               {m}");
        }
        if missing.len() > 10 {
            println!(
                "               ... and {} more (--json)",
                missing.len() - 10
            );
        }
    }
    let btotal = s.bytes_total.map(human).unwrap_or_else(|| "?".into());
    println!("  bytes      {} / {btotal}", human(s.bytes_done));
    if !s.in_progress.is_empty() || s.partial_files > 0 {
        println!(
            "  partial    {} file(s), {} under .ferry/partial",
            s.partial_files,
            human(s.partial_bytes)
        );
        for p in s.in_progress.iter().take(10) {
            println!("               {p}");
        }
    }
    for st in &s.stray {
        println!("  stray      {st} (partial file outside .ferry/: delete it)");
    }
    for sl in &s.slices {
        println!(
            "  slices     {}/{} done (of {}); pending: {:?}",
            sl.done.len(),
            sl.count,
            sl.count,
            sl.pending
        );
    }
    for sp in &s.slice_progress {
        println!(
            "  slice      {}/{}: {} of {} bytes{}{}",
            sp.index,
            sp.count,
            sp.bytes_done,
            sp.bytes_total,
            sp.host
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(|h| format!(" on {h}"))
                .unwrap_or_default(),
            sp.updated_seconds_ago
                .map(|a| format!(", heartbeat {a}s ago"))
                .unwrap_or_default()
        );
    }
    for l in &s.lock {
        println!(
            "  lock       {}: {} (pid {}, host {}, since {})",
            l.file,
            l.state,
            l.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            l.host.as_deref().unwrap_or("?"),
            l.started_at.as_deref().unwrap_or("?")
        );
    }
    if let Some(age) = s.last_progress_seconds {
        println!("  progress   last update {age}s ago");
    }
    println!("  => {}", s.verdict);
    Ok(())
}
