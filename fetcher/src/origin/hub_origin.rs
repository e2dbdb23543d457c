//! A repo on a hub as the [`Origin`] of a fetch: picks the protocol of its kind ([`super::hf`] or
//! [`super::modelscope`]) to resolve a revision, name a file's bytes and read a refusal, over
//! the shared client of [`super::hub`].

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::hub::{check_repo_id, Hub, HubKind, HubRepo};
use super::{hf, modelscope, Origin, Ranges, Refused};
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::http::Http;
use crate::select::Selection;
use crate::snapshot::{RemoteFile, Snapshot};

impl Hub {
    /// Resolves `revision` to a commit and its file list; `pinned`: what another process (or an
    /// earlier run) resolved it to, which must still hold.
    pub async fn resolve(
        &self,
        repo: &str,
        revision: &str,
        pinned: Option<&str>,
    ) -> Result<Snapshot> {
        check_repo_id(repo)?;
        match self.kind {
            HubKind::HuggingFace => hf::resolve(self, repo, pinned.unwrap_or(revision)).await,
            HubKind::ModelScope => modelscope::resolve(self, repo, revision, pinned).await,
        }
    }

    /// The URL whose body is the file's bytes in `snapshot`.
    pub fn file_url(&self, repo: &str, commit: &str, revision: &str, path: &str) -> Url {
        match self.kind {
            HubKind::HuggingFace => hf::file_url(self, repo, commit, path),
            HubKind::ModelScope => modelscope::file_url(self, repo, commit, revision, path),
        }
    }

    /// Turns a refusal from the hub into the error that says what to do.
    pub fn refusal(&self, repo: &str, revision: &str, r: &Refused<'_>) -> Error {
        match self.kind {
            HubKind::HuggingFace => hf::refusal(self, repo, revision, r),
            HubKind::ModelScope => modelscope::refusal(self, repo, revision, r),
        }
    }
}

/// A repo on a hub as the origin of a fetch.
pub struct HubOrigin {
    pub hub: Hub,
    pub repo: HubRepo,
}

impl HubOrigin {
    pub fn new(repo: HubRepo, token: Option<Secret>) -> Result<HubOrigin> {
        let hub = Hub::new(repo.kind, repo.endpoint_spec(), token)?;
        Ok(HubOrigin { hub, repo })
    }

    /// API calls wait `stall` for an answer and retry for `retry` at most (`--stall-timeout`,
    /// `--retry-timeout`).
    pub fn with_timeouts(mut self, stall: Duration, retry: Duration) -> HubOrigin {
        self.hub.stall_timeout = stall;
        self.hub.retry_timeout = retry;
        self
    }
}

impl Origin for HubOrigin {
    fn id(&self) -> &'static str {
        self.repo.kind.id()
    }

    fn name(&self) -> &'static str {
        self.repo.kind.display_name()
    }

    fn repo(&self) -> String {
        self.repo.repo.clone()
    }

    fn revision(&self) -> Option<&str> {
        self.repo.revision.as_deref()
    }

    fn hf_metadata(&self) -> bool {
        self.repo.kind == HubKind::HuggingFace
    }

    async fn resolve(&self, pinned: Option<&str>) -> Result<Snapshot> {
        let revision = self.repo.revision();
        let snapshot = self.hub.resolve(&self.repo.repo, revision, pinned).await?;
        // The revision asked for is what the manifest records, also when a pin was fetched.
        Ok(Snapshot {
            revision: revision.to_string(),
            ..snapshot
        })
    }

    async fn complete(&self, snapshot: Snapshot) -> Result<Snapshot> {
        if self.repo.kind != HubKind::ModelScope
            || snapshot.files.iter().all(|f| !f.hash.hex().is_empty())
        {
            return Ok(snapshot);
        }
        let files = modelscope::complete_hashes(&self.hub, &snapshot).await?;
        Ok(Snapshot { files, ..snapshot })
    }

    async fn open(&self, snapshot: &Snapshot) -> Result<Arc<dyn Ranges>> {
        Ok(Arc::new(HubRanges {
            hub: self.hub.clone(),
            repo: snapshot.repo.clone(),
            commit: snapshot.commit.clone(),
            revision: snapshot.revision.clone(),
        }))
    }
}

/// The bytes of one commit's files on a hub.
struct HubRanges {
    hub: Hub,
    repo: String,
    commit: String,
    /// The branch or tag, for hubs that pin without a commit id (ModelScope).
    revision: String,
}

impl Ranges for HubRanges {
    fn http(&self) -> &Http {
        &self.hub.http
    }

    fn file_url(&self, file: &RemoteFile) -> Url {
        self.hub
            .file_url(&self.repo, &self.commit, &self.revision, &file.path)
    }

    fn refusal(&self, r: &Refused<'_>) -> Error {
        self.hub.refusal(&self.repo, &self.commit, r)
    }
}

/// What `ferry fetch` would take for `repo` (with the environment's token), after
/// --include/--exclude: for commands that plan or check against a repo without fetching it.
pub async fn list(repo: &HubRepo, include: &[String], exclude: &[String]) -> Result<Snapshot> {
    let hub = Hub::new(repo.kind, repo.endpoint_spec(), repo.kind.token_from_env())?;
    let snapshot = hub.resolve(&repo.repo, repo.revision(), None).await?;
    let files = Selection::new(include, exclude)?.apply(&repo.repo, snapshot.files.clone())?;
    Ok(Snapshot { files, ..snapshot })
}
