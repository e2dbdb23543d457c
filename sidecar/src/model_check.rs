//! What the model directory says, read without the gate's state: the check that decides it is
//! sound (quick, or a full re-hash) and the words `/readyz` and the log use for a model that is
//! missing, in progress or open. The gate and the periodic re-check both use it.

use std::path::Path;

use ferry_sharder::Manifest;

use crate::warm;

/// The `/readyz` detail while no manifest is there.
pub(crate) fn waiting_detail(dir: &Path) -> String {
    format!(
        "no completion manifest at {} yet (ferry fetch writes it once every file is verified)",
        ferry_sharder::layout::manifest_path(dir).display()
    )
}

/// What `/readyz` says after "open: " (it prefixes the phase itself).
pub(crate) fn open_detail(m: &Manifest, dir: &Path) -> String {
    format!(
        "{} at {} ({} files, {:.2} GB) in {}",
        m.repo,
        m.commit,
        m.files.len(),
        m.total_bytes() as f64 / 1e9,
        dir.display()
    )
}

/// The quick check, or the full re-hash with `full`.
pub(crate) fn check(dir: &Path, m: &Manifest, full: bool) -> ferry_sharder::Result<()> {
    // On a shared volume this node may see the manifest before the files: wait for them first.
    ferry_sharder::visible::wait(dir, m, ferry_sharder::visible::patience());
    if full {
        let opts = ferry_sharder::verify::Options {
            full: true,
            jobs: 0,
        };
        ferry_sharder::verify::verify(dir, m, &opts)?
            .into_result(dir)
            .map(|_| ())
    } else {
        ferry_sharder::verify::quick_check(dir, m)
    }
}

/// What a directory without a manifest still lacks, in words, from what is on disk.
pub fn describe_missing(dir: &Path) -> String {
    let manifest = ferry_sharder::layout::manifest_path(dir);
    if !dir.exists() {
        return format!(
            "{} does not exist (is the volume mounted, and does the fetch job write to it?); \
             the gate opens once {} is there",
            dir.display(),
            manifest.display()
        );
    }
    let (mut files, mut bytes) = (0u64, 0u64);
    if let Ok(targets) = warm::model_targets(dir) {
        for t in targets {
            files += 1;
            bytes += t.len;
        }
    }
    let partial = ferry_sharder::layout::partial_dir(dir);
    let partials = std::fs::read_dir(&partial).map(|d| d.count()).unwrap_or(0);
    let mut s = format!(
        "no completion manifest ({}) yet; {files} model files ({:.2} GB) present",
        manifest.display(),
        bytes as f64 / 1e9
    );
    if partials > 0 {
        s.push_str(&format!(
            ", {partials} downloads in progress in {}",
            partial.display()
        ));
    } else if files == 0 {
        s.push_str(": no fetch has started writing here");
    }
    s
}
