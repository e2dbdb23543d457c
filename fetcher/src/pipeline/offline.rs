//! Offline mode (`--offline`, `FERRY_OFFLINE=1`, or `HF_HUB_OFFLINE=1` for Hugging Face): the
//! fetch is answered from the target directory alone, without a single request. A directory
//! whose committed manifest names the repo (and the revision, if one was asked) with every file
//! in place is complete, exit 0; anything else fails at once and says what is missing.

use ferry_sharder::Manifest;

use super::options::FetchOptions;
use super::summary::Summary;
use crate::error::{Error, Result};
use crate::origin::OriginSpec;
use crate::select::Selection;
use crate::snapshot::{RemoteFile, Snapshot};
use crate::target::dir::DirTarget;
use crate::target::{Target, TargetSpec};

/// The fetch `opts` asks for, from what `--to` holds; `switch` names what turned offline on.
pub async fn fetch(opts: &FetchOptions, switch: &'static str) -> Result<Summary> {
    let TargetSpec::Dir(dir) = &opts.target else {
        return Err(Error::Usage(format!(
            "offline ({switch}) works with a --to directory only; an s3:// target or a hub cache (--cache-dir, or no --to) needs the network, or fetch it once online"
        )));
    };
    let (repo, source, revision) = match &opts.origin {
        OriginSpec::Hub(h) => (h.repo.clone(), h.kind.id(), h.revision.clone()),
        OriginSpec::S3(u) => (u.to_string(), "s3", None),
        OriginSpec::Ollama(n) => (n.to_string(), "ollama", None),
    };
    let offline = |what: String, hint: &str| Error::Offline {
        switch,
        what,
        hint: hint.to_string(),
    };
    let online = format!(
        "run the same fetch once where the hub is reachable (without {switch}), or copy in a directory ferry completed"
    );
    let Some(m) = Manifest::read(dir)? else {
        return Err(offline(
            format!(
                "{} holds no completed fetch (no .ferry/manifest.json), and nothing may be downloaded",
                dir.display()
            ),
            &online,
        ));
    };
    if m.repo != repo || m.source != source {
        return Err(offline(
            format!(
                "{} holds {} from {}, not {repo} from {source}",
                dir.display(),
                m.repo,
                m.source
            ),
            &online,
        ));
    }
    if let Some(rev) = revision.filter(|r| *r != m.revision && !r.eq_ignore_ascii_case(&m.commit)) {
        return Err(offline(
            format!(
                "{} holds {repo} at {} ({}), not at {rev}",
                dir.display(),
                m.revision,
                m.commit
            ),
            &online,
        ));
    }
    let snapshot = snapshot_of(&m, opts)?;
    let target = DirTarget::new(dir.clone(), opts.transfer.clone(), false, None)?;
    if !target.is_complete(&snapshot, source).await? {
        return Err(offline(
            format!(
                "{} is incomplete: a file the manifest lists is missing or has another size",
                dir.display()
            ),
            &format!("`ferry verify {}` names it; {online}", dir.display()),
        ));
    }
    tracing::info!(
        "offline ({switch}): {} holds {repo} at {} complete; no request made",
        dir.display(),
        m.revision
    );
    Ok(Summary::complete(&snapshot, source, dir))
}

/// The manifest as a snapshot, narrowed by `--include` / `--exclude`.
fn snapshot_of(m: &Manifest, opts: &FetchOptions) -> Result<Snapshot> {
    let files: Vec<RemoteFile> = m
        .files
        .iter()
        .map(|f| RemoteFile {
            path: f.path.clone(),
            size: f.size,
            hash: f.hash.clone(),
        })
        .collect();
    let files = Selection::new(&opts.include, &opts.exclude)?.apply(&m.repo, files)?;
    Ok(Snapshot {
        repo: m.repo.clone(),
        revision: m.revision.clone(),
        commit: m.commit.clone(),
        files,
    })
}
