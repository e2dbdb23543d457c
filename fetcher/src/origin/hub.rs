//! A model hub, Hugging Face or ModelScope: what the two protocols ([`super::hf`],
//! [`super::modelscope`]) share: the kind, the `ORG/NAME[@REV]` spec, where the endpoint came
//! from, the configured client, and the errors that say what to do. The API calls with their
//! retries are in [`super::api`]; the hub as an origin of a fetch, which picks the protocol, is
//! [`super::hub_origin`].

use std::time::Duration;

use url::Url;

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::http::{display_url, Http};
use crate::net::{env, EndpointFrom};

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
pub(super) fn check_repo_id(repo: &str) -> Result<()> {
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
