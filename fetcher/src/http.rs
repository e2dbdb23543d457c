//! One HTTP client for a fetch: connection pool, user agent, and redirects handled by hand so the
//! token goes only to the hub's own origin.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, COOKIE, LOCATION, RANGE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::auth::Secret;

const MAX_REDIRECTS: usize = 5;

/// A client bound to one hub origin and its credentials.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    origin: url::Origin,
    token: Option<Secret>,
    /// ModelScope also sends the token as this session cookie.
    token_cookie: Option<&'static str>,
}

/// A response together with the URL that produced it after redirects.
pub struct Answer {
    pub response: Response,
    pub url: Url,
}

impl Http {
    pub fn new(
        endpoint: &Url,
        token: Option<Secret>,
        token_cookie: Option<&'static str>,
    ) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            // Model bytes must arrive exactly as stored: no transparent decompression.
            .no_gzip()
            .build()?;
        Ok(Http {
            client,
            origin: endpoint.origin(),
            token,
            token_cookie,
        })
    }

    /// A client for `endpoint` (a base URL, given a trailing slash), with the errors that say
    /// what is wrong with it; returns the parsed base too.
    pub fn for_endpoint(
        endpoint: &str,
        token: Option<Secret>,
        token_cookie: Option<&'static str>,
    ) -> crate::Result<(Url, Http)> {
        use crate::Error;
        let trimmed = endpoint.trim_end_matches('/');
        let base = Url::parse(&format!("{trimmed}/"))
            .map_err(|e| Error::Usage(format!("bad endpoint {endpoint:?}: {e}")))?;
        // Any other scheme would fail every request, and be retried as a network error.
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Usage(format!("bad endpoint {endpoint:?}: scheme {:?} is not one ferry speaks\n  hint: use an http:// or https:// URL (--endpoint, HF_ENDPOINT or MODELSCOPE_ENDPOINT)", base.scheme())));
        }
        let http = Http::new(&base, token, token_cookie).map_err(|e| {
            Error::Usage(format!(
                "cannot build the HTTP client: {}",
                describe_reqwest(&e)
            ))
        })?;
        Ok((base, http))
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// True when `url` is on the hub's own origin, the only place the token may go.
    pub fn is_hub_origin(&self, url: &Url) -> bool {
        url.origin() == self.origin
    }

    /// Sends a request, following redirects by hand. The token is attached only while the URL
    /// stays on the hub origin, so a redirect to a CDN or any other host never carries it.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        range: Option<(u64, u64)>,
        header_timeout: Duration,
    ) -> Result<Answer, SendError> {
        self.send_with(method, url, range, &HeaderMap::new(), header_timeout)
            .await
    }

    /// [`Http::send`] with `extra` headers on every hop (e.g. the `Accept` a registry needs).
    pub async fn send_with(
        &self,
        method: Method,
        url: Url,
        range: Option<(u64, u64)>,
        extra: &HeaderMap,
        header_timeout: Duration,
    ) -> Result<Answer, SendError> {
        let mut url = url;
        let mut hops = 0;
        loop {
            let mut headers = extra.clone();
            if let Some((start, end)) = range {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes={start}-{end}")) {
                    headers.insert(RANGE, v);
                }
            }
            if self.is_hub_origin(&url) {
                if let Some(tok) = &self.token {
                    if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", tok.expose())) {
                        v.set_sensitive(true);
                        headers.insert(AUTHORIZATION, v);
                    }
                    if let Some(name) = self.token_cookie {
                        if let Ok(mut v) =
                            HeaderValue::from_str(&format!("{name}={}", tok.expose()))
                        {
                            v.set_sensitive(true);
                            headers.insert(COOKIE, v);
                        }
                    }
                }
            }
            // Only the wait for headers is bounded here; bodies are guarded by a stall timer
            // while they stream, since a 50 GB body has no sensible total timeout.
            let request = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers)
                .send();
            let response = tokio::time::timeout(header_timeout, request)
                .await
                .map_err(|_| SendError::Timeout(header_timeout))?
                .map_err(|e| SendError::Http(e.without_url()))?;
            let status = response.status();
            if status.is_redirection() && hops < MAX_REDIRECTS {
                let next = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| url.join(loc).ok());
                if let Some(next) = next {
                    if status != StatusCode::NOT_MODIFIED {
                        url = next;
                        hops += 1;
                        continue;
                    }
                }
            }
            return Ok(Answer { response, url });
        }
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    Http(reqwest::Error),
    Timeout(Duration),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Http(e) => write!(f, "{}", describe_reqwest(e)),
            SendError::Timeout(d) => write!(f, "no response headers within {} s", d.as_secs()),
        }
    }
}

/// A reqwest error with its causes, for errors whose URL was removed (`without_url`) because a
/// signed URL's query is a credential.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// A URL fit for logs and errors: no query string (signed URLs carry credentials there) and no
/// user info.
pub fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}
