//! Where a snapshot comes from. Hugging Face and ModelScope differ only in how they resolve a
//! revision to a commit and file list, how they name a file's bytes, and how they say no;
//! everything after the [`Snapshot`](crate::snapshot::Snapshot) is shared.

pub mod hf;
pub mod modelscope;

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::de::DeserializeOwned;
use url::Url;

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::http::{display_url, Http};
use crate::snapshot::{RemoteFile, Snapshot};

/// How long an API call may take to answer.
const API_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    HuggingFace,
    ModelScope,
    /// An `s3://BUCKET/PREFIX` source ([`crate::s3`]); files are fetched through presigned URLs.
    S3,
}

impl SourceKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hf" | "huggingface" => Some(SourceKind::HuggingFace),
            "modelscope" | "ms" => Some(SourceKind::ModelScope),
            _ => None,
        }
    }

    /// Short name recorded in the manifest.
    pub fn id(self) -> &'static str {
        match self {
            SourceKind::HuggingFace => "hf",
            SourceKind::ModelScope => "modelscope",
            SourceKind::S3 => "s3",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            SourceKind::HuggingFace => "Hugging Face",
            SourceKind::ModelScope => "ModelScope",
            SourceKind::S3 => "S3",
        }
    }

    pub fn token_env(self) -> &'static str {
        match self {
            SourceKind::HuggingFace => "HF_TOKEN",
            SourceKind::ModelScope => "MODELSCOPE_API_TOKEN",
            SourceKind::S3 => "AWS_ACCESS_KEY_ID",
        }
    }

    /// The endpoint from the ecosystem's own variable, else the public hub.
    pub fn default_endpoint(self) -> String {
        match self {
            SourceKind::HuggingFace => std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "https://huggingface.co".into()),
            SourceKind::ModelScope => std::env::var("MODELSCOPE_ENDPOINT")
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
            SourceKind::S3 => crate::s3::endpoint_from_env(None)
                .unwrap_or_else(|| "https://s3.amazonaws.com".into()),
        }
    }

    pub fn token_from_env(self) -> Option<Secret> {
        match self {
            SourceKind::HuggingFace => crate::auth::hf_token_from_env(),
            SourceKind::ModelScope => crate::auth::modelscope_token_from_env(),
            // S3 credentials come from the AWS default chain, never through here.
            SourceKind::S3 => None,
        }
    }
}

/// A configured hub: kind, endpoint and an HTTP client that carries the token to it alone.
#[derive(Clone)]
pub struct Source {
    pub kind: SourceKind,
    pub endpoint: Url,
    pub http: Http,
    /// For [`SourceKind::S3`]: each file's presigned GET URL, by path (empty for hubs).
    pub s3_urls: std::sync::Arc<std::collections::HashMap<String, Url>>,
}

impl Source {
    pub fn new(kind: SourceKind, endpoint: &str, token: Option<Secret>) -> Result<Self> {
        let trimmed = endpoint.trim_end_matches('/');
        let endpoint = Url::parse(&format!("{trimmed}/"))
            .map_err(|e| Error::Usage(format!("bad endpoint {endpoint:?}: {e}")))?;
        let cookie = match kind {
            SourceKind::HuggingFace | SourceKind::S3 => None,
            SourceKind::ModelScope => Some("m_session_id"),
        };
        let http = Http::new(&endpoint, token, cookie).map_err(|e| {
            Error::Usage(format!(
                "cannot build the HTTP client: {}",
                crate::http::describe_reqwest(&e)
            ))
        })?;
        Ok(Source {
            kind,
            endpoint,
            http,
            s3_urls: Default::default(),
        })
    }

    /// Resolves `revision` (default: the hub's default branch) to a commit and its file list.
    pub async fn resolve(&self, repo: &str, revision: Option<&str>) -> Result<Snapshot> {
        check_repo_id(repo)?;
        match self.kind {
            SourceKind::HuggingFace => hf::resolve(self, repo, revision.unwrap_or("main")).await,
            SourceKind::ModelScope => {
                modelscope::resolve(self, repo, revision.unwrap_or("master")).await
            }
            SourceKind::S3 => Err(Error::Usage(format!(
                "{repo}: an s3:// source is listed by ferry_fetcher::s3, not resolved as a hub repo"
            ))),
        }
    }

    /// What `ferry fetch` would take for `spec` (`ORG/NAME` or `ORG/NAME@REV`) from hub `kind`
    /// at `endpoint` (None: the environment's or the public hub), with the environment's token,
    /// after --include/--exclude: for commands that plan or check against a repo without
    /// fetching it.
    pub async fn list_repo(
        kind: SourceKind,
        endpoint: Option<&str>,
        spec: &str,
        include: &[String],
        exclude: &[String],
    ) -> Result<Snapshot> {
        let (repo, rev) = match spec.split_once('@') {
            Some((r, v)) => (r, Some(v)),
            None => (spec, None),
        };
        let endpoint = endpoint
            .map(str::to_string)
            .unwrap_or_else(|| kind.default_endpoint());
        let source = Source::new(kind, &endpoint, kind.token_from_env())?;
        let snapshot = source.resolve(repo, rev).await?;
        let selection = crate::select::Selection::new(include, exclude)?;
        let files = selection.apply(repo, snapshot.files.clone())?;
        Ok(Snapshot { files, ..snapshot })
    }

    /// The URL whose body is the file's bytes at the snapshot's commit.
    pub fn file_url(&self, snapshot: &Snapshot, file: &RemoteFile) -> Url {
        match self.kind {
            SourceKind::HuggingFace => {
                hf::file_url(self, &snapshot.repo, &snapshot.commit, &file.path)
            }
            SourceKind::ModelScope => {
                modelscope::file_url(self, &snapshot.repo, &snapshot.commit, &file.path)
            }
            SourceKind::S3 => self
                .s3_urls
                .get(&file.path)
                .cloned()
                .unwrap_or_else(|| self.endpoint.clone()),
        }
    }

    /// Turns a refusal from the hub into the error that says what to do.
    pub fn refusal(&self, r: &Refusal<'_>) -> Error {
        match self.kind {
            SourceKind::HuggingFace => hf::refusal(self, r),
            SourceKind::ModelScope => modelscope::refusal(self, r),
            SourceKind::S3 => crate::s3::source::refusal(r),
        }
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
                return Err(ApiError::Final(self.refusal(&Refusal {
                    repo,
                    revision,
                    path: None,
                    status: status.as_u16(),
                    headers: &headers,
                    body: &text,
                    url: &answer.url,
                })));
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

/// A non-success answer from the hub, with what is needed to explain it.
pub struct Refusal<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    /// The file asked for, when the request was for a file's bytes.
    pub path: Option<&'a str>,
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a str,
    pub url: &'a Url,
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
