//! `ferry status`: a read-only view of a model directory, safe while fetches run.

use std::path::PathBuf;

use crate::format;
use crate::format::size as human;

#[derive(clap::Args)]
#[command(after_help = crate::help::STATUS)]
pub struct Args {
    /// The model directory.
    dir: PathBuf,
    /// The status as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Instead of the status: probe the volume under DIR for what ferry relies on (O_EXCL
    /// create, link(2), rename) and what it only uses when present (flock), and explain the
    /// mount's options. Exit 7 when a required primitive fails.
    #[arg(long)]
    check_volume: bool,
}

async fn check_volume(args: &Args) -> anyhow::Result<()> {
    let dir = args.dir.clone();
    let r =
        tokio::task::spawn_blocking(move || ferry_sharder::volume::check_volume(&dir)).await??;
    if args.json {
        crate::output::emit("check_volume", serde_json::to_value(&r)?);
    } else {
        outln!("{}", r.dir);
        if let (Some(t), Some(p)) = (&r.fs_type, &r.mount_point) {
            outln!(
                "  mount      {t} on {p} ({})",
                r.mount_options.as_deref().unwrap_or("")
            );
        }
        for c in &r.checks {
            let verdict = match (c.ok, c.required) {
                (true, _) => "ok",
                (false, true) => "FAILED",
                (false, false) => "absent",
            };
            outln!("  {:<12} {verdict}: {}", c.name, c.detail);
        }
        if let Some(ms) = r.clock_offset_ms {
            outln!("  clock      file server {ms:+} ms from this node");
        }
        for a in &r.advice {
            outln!("  note       {a}");
        }
    }
    if !r.ok() {
        let failed: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| c.required && !c.ok)
            .map(|c| c.name)
            .collect();
        return Err(ferry_sharder::Error::io(
            &args.dir,
            std::io::Error::other(format!(
                "this volume lacks {} that ferry needs for safe concurrent writers; use another volume or mount options",
                failed.join(", ")
            )),
        )
        .into());
    }
    Ok(())
}

impl Args {
    pub fn json(&self) -> bool {
        self.json
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.check_volume {
        return check_volume(&args).await;
    }
    let dir = args.dir.clone();
    let s = tokio::task::spawn_blocking(move || ferry_sharder::status::status(&dir)).await??;
    if args.json {
        crate::output::emit("status", serde_json::to_value(&s)?);
        return Ok(());
    }
    outln!("{}", s.dir);
    if let (Some(repo), Some(commit)) = (&s.repo, &s.commit) {
        let revision = s
            .progress
            .as_ref()
            .and_then(|p| p.revision.as_deref())
            .map(|r| format!("{r} = "))
            .unwrap_or_default();
        outln!(
            "  repo       {repo} at {revision}{}",
            crate::format::short_commit(commit)
        );
    }
    outln!(
        "  state      {}",
        if s.complete { "complete" } else { "incomplete" }
    );
    if let Some(at) = &s.completed_at {
        outln!("  completed  {at}");
    }
    let total = s
        .files_total
        .map(|t| t.to_string())
        .unwrap_or_else(|| "?".into());
    outln!("  files      {} / {total} done", s.files_done);
    if let Some(n) = s.missing_count {
        outln!("  missing    {n}");
    }
    if let Some(missing) = &s.missing {
        for m in missing.iter().take(10) {
            outln!("               {m}");
        }
        if missing.len() > 10 {
            outln!(
                "               ... and {} more (--json)",
                missing.len() - 10
            );
        }
    }
    let btotal = s.bytes_total.map(human).unwrap_or_else(|| "?".into());
    outln!("  bytes      {} / {btotal}", human(s.bytes_done));
    if !s.in_progress.is_empty() || s.partial_files > 0 {
        outln!(
            "  partial    {} file(s), {} under .ferry/partial",
            s.partial_files,
            human(s.partial_bytes)
        );
        for p in s.in_progress.iter().take(10) {
            outln!("               {p}");
        }
    }
    print_writers(&s);
    if let Some(age) = s.last_progress_seconds {
        outln!("  progress   last update {age}s ago");
    }
    outln!("  => {}", s.verdict);
    Ok(())
}

/// Who is writing, or left things behind: stray partial files, slices, their heartbeats, locks.
fn print_writers(s: &ferry_sharder::status::Status) {
    for st in &s.stray {
        outln!("  stray      {st} (partial file outside .ferry/: delete it)");
    }
    for sl in &s.slices {
        outln!(
            "  slices     {}/{} done; pending: {:?}",
            sl.done.len(),
            sl.count,
            sl.pending
        );
    }
    for sp in &s.slice_progress {
        outln!(
            "  slice      {}/{}: {} of {}{}{}",
            sp.index,
            sp.count,
            human(sp.bytes_done),
            human(sp.bytes_total),
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
    if let Some(c) = &s.claims {
        outln!(
            "  claims     {} pieces done, {} files published (dynamic Job)",
            c.pieces_done,
            c.files_done
        );
        for p in &c.pods {
            let held: Vec<String> = p
                .claims
                .iter()
                .map(|h| {
                    format!(
                        "{} [{}, {}) at {}",
                        h.path,
                        format::size(h.start),
                        format::size(h.end),
                        format::size(h.frontier)
                    )
                })
                .collect();
            outln!(
                "  pod        {} on {}: {}, {} downloaded, {} pieces done, {}s ago; {}",
                p.pod,
                p.host,
                format::rate(p.rate_bps as f64),
                format::size(p.bytes_downloaded),
                p.pieces_done,
                p.updated_seconds_ago,
                if held.is_empty() {
                    if p.idle { "idle" } else { "no claims" }.to_string()
                } else {
                    format!("holds {}", held.join("; "))
                }
            );
        }
    }
    for l in &s.lock {
        let beat = match (l.heartbeat_seconds_ago, l.timeout_seconds) {
            (Some(a), Some(t)) => format!(", heartbeat {a}s ago, timeout {t}s"),
            _ => String::new(),
        };
        outln!(
            "  lock       {}: {} (pid {}, host {}, since {}{beat})",
            l.file,
            l.state,
            l.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            l.host.as_deref().unwrap_or("?"),
            l.started_at.as_deref().unwrap_or("?")
        );
    }
}
