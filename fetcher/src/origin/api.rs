//! The hubs' JSON API calls (revision, tree, listing) with the retry rules real hubs need:
//! `429` and `5xx` retried after the wait the hub asks for (`Retry-After`, or a spent
//! `RateLimit: "api";r=0;t=N`) with backoff, all within `--retry-timeout`; failures to get any
//! answer classified ([`crate::net::diagnose`]) so that the ones waiting cannot heal (a name that
//! does not resolve, an untrusted CA, nothing listening) end within seconds with what to do.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{HeaderMap, CONTENT_ENCODING};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::hub::Hub;
use super::Refused;
use crate::error::{Error, Result};
use crate::http::{display_url, server_wait, SendError};
use crate::net::diagnose::{self, Class};

/// Most bytes an API answer may have (a 3000-entry listing is about 1.5 MB).
const MAX_BODY: usize = 256 << 20;
/// The pause before a quick retry of a refused connection.
const QUICK_RETRY: Duration = Duration::from_millis(300);

/// One attempt's failure.
enum Fail {
    /// An answer that ends the call: success is impossible.
    Final(Error),
    /// No answer at all.
    Unanswered(SendError),
    /// The connection broke while the body came.
    Body(String),
    /// A status worth retrying (408, 429, 5xx), with its headers.
    Status {
        status: StatusCode,
        headers: HeaderMap,
        message: String,
    },
}

impl Hub {
    /// GETs a JSON API document. Other statuses than the retried ones are the hub's refusal.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        repo: &str,
        revision: &str,
    ) -> Result<(T, HeaderMap)> {
        let started = Instant::now();
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build();
        let (mut attempts, mut quick) = (0u32, 0u32);
        loop {
            attempts += 1;
            let fail = match self.attempt::<T>(&url, repo, revision).await {
                Ok(v) => return Ok(v),
                Err(Fail::Final(e)) => return Err(e),
                Err(f) => f,
            };
            let spent = |started: Instant| {
                format!(
                    "; {attempts} attempt(s) over {:.0} s",
                    started.elapsed().as_secs_f64()
                )
            };
            let (reason, asked) = match &fail {
                Fail::Unanswered(e) => {
                    let class = diagnose::classify(e, self.http.proxy_for(&url).is_some());
                    if !class.heals() {
                        if quick < class.quick_retries() {
                            quick += 1;
                            tokio::time::sleep(QUICK_RETRY).await;
                            continue;
                        }
                        return Err(self.unreachable(&url, class, e, spent(started)));
                    }
                    (e.to_string(), None)
                }
                Fail::Body(m) => (m.clone(), None),
                Fail::Status {
                    status,
                    headers,
                    message,
                } => (
                    format!("server answered {status}: {message}"),
                    server_wait(*status, headers),
                ),
                Fail::Final(_) => unreachable!("returned above"),
            };
            let delay = backoff
                .next()
                .unwrap_or(Duration::from_secs(30))
                .max(asked.unwrap_or_default());
            if started.elapsed() + delay > self.retry_timeout {
                return Err(self.give_up(&url, fail, asked, spent(started), attempts, started));
            }
            tracing::warn!(
                "{}: {reason}; retrying in {:.1} s",
                display_url(&url),
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        url: &Url,
        repo: &str,
        revision: &str,
    ) -> std::result::Result<(T, HeaderMap), Fail> {
        let answer = self
            .http
            .send(Method::GET, url.clone(), None, self.stall_timeout)
            .await
            .map_err(Fail::Unanswered)?;
        let status = answer.response.status();
        let headers = answer.response.headers().clone();
        let body = tokio::time::timeout(self.stall_timeout, answer.response.bytes())
            .await
            .map_err(|_| {
                Fail::Body(format!(
                    "the body stalled for {} s",
                    self.stall_timeout.as_secs()
                ))
            })?
            .map_err(|e| Fail::Body(crate::http::describe_reqwest(&e.without_url())))?;
        let body = decode(&headers, body.to_vec()).map_err(|e| {
            Fail::Final(Error::BadResponse {
                url: display_url(&answer.url),
                reason: e,
            })
        })?;
        let text = || String::from_utf8_lossy(&body).into_owned();
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            let mut message = text();
            message.truncate(200);
            return Err(Fail::Status {
                status,
                headers,
                message,
            });
        }
        if !status.is_success() {
            return Err(Fail::Final(self.refusal(
                repo,
                revision,
                &Refused {
                    path: None,
                    status: status.as_u16(),
                    headers: &headers,
                    body: &text(),
                    url: &answer.url,
                },
            )));
        }
        let value = serde_json::from_slice::<T>(&body).map_err(|e| {
            Fail::Final(Error::BadResponse {
                url: display_url(&answer.url),
                reason: format!("not the JSON expected: {e}"),
            })
        })?;
        Ok((value, headers))
    }

    /// The error for a failure to get an answer from `url`.
    fn unreachable(&self, url: &Url, class: Class, e: &SendError, detail: String) -> Error {
        let proxy = self.http.proxy_for(url);
        let from = self.from.to_string();
        let hf = self.kind == super::HubKind::HuggingFace;
        let what = match class {
            Class::Other => format!("{}: {e}", class.what()),
            _ => class.what().to_string(),
        };
        tracing::debug!("{}: {e}", display_url(url));
        Error::Unreachable {
            endpoint: display_url(&self.endpoint),
            from: from.clone(),
            via: proxy
                .as_ref()
                .map(|(p, var)| format!(" through the proxy {p} (from {var})"))
                .unwrap_or_default(),
            what,
            detail,
            hint: diagnose::hint(class, &from, hf, proxy.as_ref().map(|(p, _)| p.as_str())),
            timeout: class.is_timeout(),
        }
    }

    /// The error once the retry budget cannot cover another wait.
    fn give_up(
        &self,
        url: &Url,
        fail: Fail,
        asked: Option<Duration>,
        detail: String,
        attempts: u32,
        started: Instant,
    ) -> Error {
        match fail {
            Fail::Unanswered(e) => {
                let class = diagnose::classify(&e, self.http.proxy_for(url).is_some());
                self.unreachable(url, class, &e, detail)
            }
            Fail::Status {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers,
                ..
            } => {
                let said = headers
                    .get("ratelimit")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| format!(" (RateLimit: {v})"))
                    .unwrap_or_default();
                let message = match asked {
                    Some(wait) => format!(
                        "429 Too Many Requests{said}; the hub asks to wait {} s, beyond what --retry-timeout ({} s) leaves{detail}",
                        wait.as_secs(),
                        self.retry_timeout.as_secs()
                    ),
                    None => format!("429 Too Many Requests{said}{detail}"),
                };
                Error::RateLimited {
                    url: display_url(url),
                    source_name: self.kind.display_name(),
                    message,
                }
            }
            Fail::Status {
                status, message, ..
            } => Error::Network {
                url: display_url(url),
                attempts,
                seconds: started.elapsed().as_secs(),
                message: format!("server answered {status}: {message}"),
            },
            Fail::Body(message) => Error::Network {
                url: display_url(url),
                attempts,
                seconds: started.elapsed().as_secs(),
                message,
            },
            Fail::Final(e) => e,
        }
    }
}

/// The body as sent: ferry asks for `identity`, but a proxy may gzip JSON anyway.
fn decode(headers: &HeaderMap, body: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let coding = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match coding.as_str() {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body.as_slice())
                .take(MAX_BODY as u64)
                .read_to_end(&mut out)
                .map_err(|e| format!("a gzip body that does not decode: {e}"))?;
            Ok(out)
        }
        other => Err(format!(
            "a body in the {other:?} encoding, asked for identity"
        )),
    }
}
