//! After the gate opens: cheap re-checks that shut it again when the model changes under it.
//!
//! A shard deleted or truncated, or the manifest removed, after the engine was let in must not
//! leave `/readyz` at 200 for ever. [`Gate::recheck`] looks at what costs only metadata (the
//! manifest is still there and the same, every file it lists is visible with its size and, for
//! safetensors, a plausible header prefix); it runs on a timer and on `/readyz`, at most once
//! per [`MIN_GAP`], so a probe storm does not stat every file per request. When the model is
//! whole again, the quick check (headers included) runs before the gate reopens.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_sharder::Manifest;

use crate::gate::{Gate, Phase};

/// How often serve mode re-checks an open gate by default.
pub const EVERY: Duration = Duration::from_secs(30);

/// The shortest time between two re-checks, whoever asks.
pub const MIN_GAP: Duration = Duration::from_secs(1);

/// Why `dir` no longer matches the manifest the gate opened on, or `None` when it does.
pub fn problem(dir: &Path, opened: &Manifest) -> Option<String> {
    let path = ferry_sharder::layout::manifest_path(dir);
    match Manifest::read(dir) {
        Ok(Some(now)) if now == *opened => {}
        Ok(Some(now)) => {
            return Some(format!(
                "the completion manifest {} now names {} at {}, not the model the gate opened on \
                 ({} at {}): restart the pod to verify and load the new one",
                path.display(),
                now.repo,
                now.commit,
                opened.repo,
                opened.commit
            ))
        }
        Ok(None) => {
            return Some(format!(
                "the completion manifest {} is gone (was the model deleted or is a fetch \
                 replacing it?)",
                path.display()
            ))
        }
        Err(e) => return Some(e.to_string()),
    }
    opened.files.iter().find_map(|f| {
        ferry_sharder::visible::problem(dir, f)
            .map(|why| format!("{}: {why}", dir.join(&f.path).display()))
    })
}

impl Gate {
    /// Re-checks an open gate (or one this shut) unless another re-check ran less than `min_gap`
    /// ago or runs now; shuts the gate on a problem and reopens it once the model is whole and
    /// passes the quick check again. Blocking: call it off the async threads.
    pub fn recheck(&self, min_gap: Duration) {
        let Ok(mut last) = self.last_recheck.try_lock() else {
            return;
        };
        if last.is_some_and(|t: Instant| t.elapsed() < min_gap) {
            return;
        }
        *last = Some(Instant::now());
        let (phase, failing, manifest) = {
            let g = self.lock();
            (g.phase, g.recheck_failure.is_some(), g.manifest.clone())
        };
        let Some(m) = manifest else { return };
        if !(phase == Phase::Open || (phase == Phase::Failed && failing)) {
            return;
        }
        let dir = self.model_dir();
        let why = problem(dir, &m).or_else(|| {
            // Whole again after a shut: the full quick check (headers) before reopening.
            if failing {
                crate::model_check::check(dir, &m, false)
                    .err()
                    .map(|e| e.to_string())
            } else {
                None
            }
        });
        let mut g = self.lock();
        match why {
            Some(why) => {
                if g.phase == Phase::Open {
                    g.recheck_failures += 1;
                    tracing::error!("the model changed after the gate opened; shutting it: {why}");
                }
                g.phase = Phase::Failed;
                g.detail = format!(
                    "the model changed after the gate opened: {why}; shut until it is whole again"
                );
                g.recheck_failure = Some(why);
            }
            None if failing => {
                tracing::info!("the model is whole again; reopening the gate");
                g.phase = Phase::Open;
                g.detail = crate::model_check::open_detail(&m, dir);
                g.recheck_failure = None;
            }
            None => {}
        }
    }
}
