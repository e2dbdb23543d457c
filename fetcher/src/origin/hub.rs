//! A model hub, Hugging Face or ModelScope: the two differ only in how they resolve a revision
//! to a commit and file list, how they name a file's bytes, and how they say no ([`super::hf`],
//! [`super::modelscope`]); this module holds what they share (the kind, the `ORG/NAME[@REV]`
//! spec, where the endpoint came from, the configured client) and the hub [`Origin`]. The API
//! calls with their retries are in [`super::api`].

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::{hf, modelscope, Origin, Ranges, Refused};
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::http::{display_url, Http};
use crate::net::{env, EndpointFrom};
use crate::select::Selection;
use crate::snapshot::{RemoteFile, Snapshot};

/// How long an API call may wait for an answer by default (`--stall-timeout` sets it for fetch).
const API_STALL: Duration = Duration::from_secs(30);
/// How long API calls keep retrying by default (`--retry-timeout` sets it for fetch).
const API_RETRY: Duration = Duration::from_secs(600);

/// Which hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubKind {
    HuggingFace,
    ModelScope,
}

impl HubKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hf" | "huggingface" => Some(HubKind::HuggingFace),
            "modelscope" | "ms" => Some(HubKind::ModelScope),
            _ => None,
        }
    }

    /// Short name recorded in the manifest.
    pub fn id(self) -> &'static str {
        match self {
            HubKind::HuggingFace => "hf",
            HubKind::ModelScope => "modelscope",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            HubKind::HuggingFace => "Hugging Face",
            HubKind::ModelScope => "ModelScope",
        }
    }

    pub fn token_env(self) -> &'static str {
        match self {
            HubKind::HuggingFace => "HF_TOKEN",
            HubKind::ModelScope => "MODELSCOPE_API_TOKEN",
        }
    }

    /// The endpoint from the ecosystem's own variable, else the public hub.
    pub fn default_endpoint(self) -> String {
        self.endpoint_from_env().0
    }

    /// The endpoint from the ecosystem's own variable (`HF_ENDPOINT`; `MODELSCOPE_ENDPOINT`, then
    /// the older `MODELSCOPE_DOMAIN`), else the public hub, and which it was.
    pub fn endpoint_from_env(self) -> (String, EndpointFrom) {
        match self {
            HubKind::HuggingFace => match env::get(env::HF_ENDPOINT) {
                Some(v) => (v, EndpointFrom::Env(env::HF_ENDPOINT)),
                None => ("https://huggingface.co".into(), EndpointFrom::Default),
            },
            HubKind::ModelScope => {
                let var = [env::MODELSCOPE_ENDPOINT, env::MODELSCOPE_DOMAIN]
                    .into_iter()
                    .find_map(|name| env::get(name).map(|v| (v, name)));
                match var {
                    // The modelscope client prepends https:// to a bare host:port; so do we.
                    Some((v, name)) if v.contains("://") => (v, EndpointFrom::Env(name)),
                    Some((v, name)) => (format!("https://{v}"), EndpointFrom::Env(name)),
                    None => ("https://www.modelscope.cn".into(), EndpointFrom::Default),
                }
            }
        }
    }

    /// Other origins of the same hub that may see the token, as huggingface_hub allows:
    /// `huggingface.co` and `hf.co` are one hub; nothing else is.
    pub fn token_aliases(self) -> &'static [&'static str] {
        match self {
            HubKind::HuggingFace => &["https://huggingface.co", "https://hf.co"],
            HubKind::ModelScope => &[],
        }
    }

    /// The branch a repo is fetched at when no revision is given.
    pub fn default_revision(self) -> &'static str {
        match self {
            HubKind::HuggingFace => "main",
            HubKind::ModelScope => "master",
        }
    }

    pub fn token_from_env(self) -> Option<Secret> {
        match self {
            HubKind::HuggingFace => crate::auth::hf_token_from_env(),
            HubKind::ModelScope => crate::auth::modelscope_token_from_env(),
        }
    }
}

/// `ORG/NAME` on a hub, at a revision: what the command line names as the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRepo {
    pub kind: HubKind,
    /// `ORG/NAME`.
    pub repo: String,
    /// Branch, tag or commit; None: the hub's default branch.
    pub revision: Option<String>,
    /// The hub URL; None: the environment's, else the public hub.
    pub endpoint: Option<String>,
}

impl HubRepo {
    /// `ORG/NAME` or `ORG/NAME@REV` on hub `kind`.
    pub fn parse(spec: &str, kind: HubKind, endpoint: Option<String>) -> Result<HubRepo> {
        let (repo, revision) = match spec.split_once('@') {
            Some((r, v)) if !v.is_empty() => (r, Some(v.to_string())),
            Some((r, _)) => (r, None),
            None => (spec, None),
        };
        check_repo_id(repo)?;
        Ok(HubRepo {
            kind,
            repo: repo.to_string(),
            revision,
            endpoint,
        })
    }

    pub fn endpoint(&self) -> String {
        self.endpoint_spec().0
    }

    /// The hub URL and where it came from.
    pub fn endpoint_spec(&self) -> (String, EndpointFrom) {
        match &self.endpoint {
            Some(e) => (e.clone(), EndpointFrom::Flag),
            None => self.kind.endpoint_from_env(),
        }
    }

    /// The revision asked for, else the default branch.
    pub fn revision(&self) -> &str {
        self.revision
            .as_deref()
            .unwrap_or(self.kind.default_revision())
    }
}

/// A configured hub: kind, endpoint (and where it came from), an HTTP client that carries the
/// token to the hub alone, and the API calls' time limits.
#[derive(Clone)]
pub struct Hub {
    pub kind: HubKind,
    pub endpoint: Url,
    pub from: EndpointFrom,
    pub http: Http,
    /// How long an API call waits for an answer.
    pub stall_timeout: Duration,
    /// How long API calls keep retrying.
    pub retry_timeout: Duration,
}

impl Hub {
    pub fn new(
        kind: HubKind,
        (endpoint, from): (String, EndpointFrom),
        token: Option<Secret>,
    ) -> Result<Self> {
        let cookie = match kind {
            HubKind::HuggingFace => None,
            HubKind::ModelScope => Some("m_session_id"),
        };
        let endpoint = crate::http::parse_endpoint(&endpoint).map_err(|e| match e {
            Error::Usage(m) => Error::Usage(format!("{m} (from {from})")),
            e => e,
        })?;
        let http = Http::new(&endpoint, kind.token_aliases(), token, cookie)?;
        Ok(Hub {
            kind,
            endpoint,
            from,
            http,
            stall_timeout: API_STALL,
            retry_timeout: API_RETRY,
        })
    }

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

    pub(crate) fn api_url(&self, path_and_query: &str) -> Result<Url> {
        self.endpoint
            .join(path_and_query.trim_start_matches('/'))
            .map_err(|e| Error::Usage(format!("cannot build a URL from {path_and_query:?}: {e}")))
    }
}

/// The errors both hubs give for the same reasons, worded once.
pub(super) struct Say<'a> {
    pub hub: &'a Hub,
    pub repo: &'a str,
}

impl Say<'_> {
    /// A 401: no token, or one the hub does not accept.
    pub fn token(&self, message: String) -> Error {
        let (source_name, repo, token_env) = (
            self.hub.kind.display_name(),
            self.repo.to_string(),
            self.hub.kind.token_env(),
        );
        if self.hub.http.has_token() {
            Error::BadToken {
                source_name,
                repo,
                message,
                token_env,
            }
        } else {
            Error::NeedsToken {
                source_name,
                repo,
                message,
                token_env,
            }
        }
    }

    pub fn gated(&self, message: String) -> Error {
        Error::Gated {
            source_name: self.hub.kind.display_name(),
            repo: self.repo.into(),
            message,
        }
    }

    pub fn repo_not_found(&self) -> Error {
        Error::RepoNotFound {
            source_name: self.hub.kind.display_name(),
            repo: self.repo.into(),
            endpoint: display_url(&self.hub.endpoint),
        }
    }

    pub fn revision_not_found(&self, revision: &str) -> Error {
        Error::RevisionNotFound {
            repo: self.repo.into(),
            revision: revision.into(),
        }
    }

    pub fn file_not_found(&self, path: Option<&str>, commit: &str) -> Error {
        Error::FileNotFound {
            repo: self.repo.into(),
            path: path.unwrap_or("?").into(),
            commit: commit.into(),
        }
    }
}

/// `ORG/NAME` with no path tricks: the repo id becomes part of URLs.
fn check_repo_id(repo: &str) -> Result<()> {
    let parts: Vec<&str> = repo.split('/').collect();
    let ok = parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{repo:?} is not a repo id; expected ORG/NAME, e.g. deepseek-ai/DeepSeek-R1"
        )))
    }
}

/// A 40-hex commit id.
pub fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
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
