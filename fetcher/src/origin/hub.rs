//! A model hub, Hugging Face or ModelScope: what the two protocols ([`super::hf`],
//! [`super::modelscope`]) share: the kind, the `ORG/NAME[@REV]` spec, the API client with its
//! retries, and the errors that say what to do. The hub as an origin of a fetch, which picks the
//! protocol, is [`super::hub_origin`].

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::de::DeserializeOwned;
use url::Url;

use super::Refused;
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::http::{display_url, Http};

/// How long an API call may take to answer.
const API_TIMEOUT: Duration = Duration::from_secs(60);

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
        match self {
            HubKind::HuggingFace => std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "https://huggingface.co".into()),
            HubKind::ModelScope => std::env::var("MODELSCOPE_ENDPOINT")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    // The modelscope client prepends https:// to a bare host:port; so do we.
                    if s.contains("://") {
                        s
                    } else {
                        format!("https://{s}")
                    }
                })
                .unwrap_or_else(|| "https://www.modelscope.cn".into()),
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
        self.endpoint
            .clone()
            .unwrap_or_else(|| self.kind.default_endpoint())
    }

    /// The revision asked for, else the default branch.
    pub fn revision(&self) -> &str {
        self.revision
            .as_deref()
            .unwrap_or(self.kind.default_revision())
    }
}

/// A configured hub: kind, endpoint and an HTTP client that carries the token to it alone.
#[derive(Clone)]
pub struct Hub {
    pub kind: HubKind,
    pub endpoint: Url,
    pub http: Http,
}

impl Hub {
    pub fn new(kind: HubKind, endpoint: &str, token: Option<Secret>) -> Result<Self> {
        let cookie = match kind {
            HubKind::HuggingFace => None,
            HubKind::ModelScope => Some("m_session_id"),
        };
        let (endpoint, http) = Http::for_endpoint(endpoint, token, cookie)?;
        Ok(Hub {
            kind,
            endpoint,
            http,
        })
    }

    pub(crate) fn api_url(&self, path_and_query: &str) -> Result<Url> {
        self.endpoint
            .join(path_and_query.trim_start_matches('/'))
            .map_err(|e| Error::Usage(format!("cannot build a URL from {path_and_query:?}: {e}")))
    }

    /// GETs a JSON API document with a few retries on network errors, 429 and 5xx.
    /// Other statuses are returned as the hub's refusal.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        repo: &str,
        revision: &str,
    ) -> Result<(T, HeaderMap)> {
        use backon::{ExponentialBuilder, Retryable};
        let attempt = || async {
            let answer = self
                .http
                .send(Method::GET, url.clone(), None, API_TIMEOUT)
                .await
                .map_err(|e| Transient(e.to_string()))
                .map_err(ApiError::Transient)?;
            let status = answer.response.status();
            let headers = answer.response.headers().clone();
            let body = tokio::time::timeout(API_TIMEOUT, answer.response.bytes())
                .await
                .map_err(|_| ApiError::Transient(Transient("body timed out".into())))?
                .map_err(|e| {
                    ApiError::Transient(Transient(crate::http::describe_reqwest(&e.without_url())))
                })?;
            if status.as_u16() == 429 || status.is_server_error() {
                return Err(ApiError::Transient(Transient(format!(
                    "server answered {status}"
                ))));
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body).into_owned();
                return Err(ApiError::Final(self.refusal(
                    repo,
                    revision,
                    &Refused {
                        path: None,
                        status: status.as_u16(),
                        headers: &headers,
                        body: &text,
                        url: &answer.url,
                    },
                )));
            }
            let value = serde_json::from_slice::<T>(&body).map_err(|e| {
                ApiError::Final(Error::BadResponse {
                    url: display_url(&answer.url),
                    reason: format!("not the JSON expected: {e}"),
                })
            })?;
            Ok((value, headers))
        };
        let started = std::time::Instant::now();
        let mut attempts = 0u32;
        let result = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(8))
                    .with_max_times(5)
                    .with_jitter(),
            )
            .when(|e| matches!(e, ApiError::Transient(_)))
            .notify(|e, dur| {
                attempts += 1;
                tracing::warn!(
                    "{}: {e}; retrying in {:.1} s",
                    display_url(&url),
                    dur.as_secs_f64()
                );
            })
            .await;
        result.map_err(|e| match e {
            ApiError::Final(e) => e,
            ApiError::Transient(Transient(message)) => Error::Network {
                url: display_url(&url),
                attempts: attempts + 1,
                seconds: started.elapsed().as_secs(),
                message,
            },
        })
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

#[derive(Debug)]
struct Transient(String);

#[derive(Debug)]
enum ApiError {
    Transient(Transient),
    Final(Error),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Transient(Transient(m)) => f.write_str(m),
            ApiError::Final(e) => write!(f, "{e}"),
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
