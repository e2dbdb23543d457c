//! `ferry fetch --dry-run`: prints what the fetch would fetch and reuse, the disk it needs and
//! the free space, from [`ferry_fetcher::pipeline::preview`]; writes nothing and exits 0.

use ferry_fetcher::pipeline::preview::{self, Action, Preview};
use ferry_fetcher::FetchOptions;

use crate::format;

/// How many file names are listed per action before "and N more".
const SHOWN: usize = 10;

pub async fn run(
    opts: &FetchOptions,
    token: Option<ferry_fetcher::auth::Secret>,
    json: bool,
) -> anyhow::Result<()> {
    let p = preview::preview(opts, token).await?;
    if json {
        crate::output::emit("dry_run", serde_json::to_value(&p)?);
    } else {
        print(&p);
    }
    Ok(())
}

fn print(p: &Preview) {
    outln!(
        "dry run: {} ({}) at {} into {}",
        p.repo,
        p.source,
        format::short_commit(&p.commit),
        p.dir.display()
    );
    for (action, what) in [
        (Action::Reuse, "reuse (verified)"),
        (Action::Check, "reuse if the hash matches"),
        (Action::Resume, "resume"),
        (Action::Fetch, "fetch"),
    ] {
        let files: Vec<_> = p.files.iter().filter(|f| f.action == action).collect();
        if files.is_empty() {
            continue;
        }
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        outln!(
            "  {what}: {}, {}",
            format::count(files.len() as u64, "file"),
            format::size(bytes)
        );
        for f in files.iter().take(SHOWN) {
            outln!("    {} ({})", f.path, format::size(f.size));
        }
        if files.len() > SHOWN {
            outln!(
                "    ... and {} more (--json lists all)",
                files.len() - SHOWN
            );
        }
    }
    let free = p
        .disk_free
        .map(format::size)
        .unwrap_or_else(|| "unknown".into());
    outln!(
        "  disk: {} needed, {free} free on the target's filesystem{}",
        format::size(p.disk_needed),
        if p.enough_space() {
            ""
        } else {
            ": NOT ENOUGH, the fetch would stop with exit 7"
        }
    );
    if p.complete {
        outln!("  => complete already: the fetch would do nothing");
    } else {
        outln!(
            "  => would download {} of {} (nothing written: --dry-run)",
            format::size(p.bytes_to_fetch),
            format::size(p.bytes_total)
        );
    }
}
