//! Moving one byte range of one file: a ranged GET with retries, backoff, Retry-After,
//! stall detection, signed-URL re-resolution and resume from the last byte written.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{HeaderMap, CONTENT_RANGE, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use super::budget::Budget;
use super::job::FileJob;
use crate::error::{Error, Result};
use crate::http::display_url;
use crate::meter::Meter;
use crate::origin::{Ranges, Refused};

/// Bytes buffered before one positional write.
const WRITE_BUF: usize = 1 << 20;
/// An attempt that moved at least this much counts as progress and resets the backoff.
const PROGRESS_RESET: u64 = 1 << 20;

/// What every range transfer of one run shares.
pub struct RangeCtx {
    pub ranges: Arc<dyn Ranges>,
    pub meter: Arc<Meter>,
    pub budget: Budget,
    pub stall_timeout: Duration,
    pub retry_timeout: Duration,
}

enum Failure {
    Retry {
        reason: String,
        wait: Option<Duration>,
    },
    Final(Error),
}

fn retry(reason: impl Into<String>) -> Failure {
    Failure::Retry {
        reason: reason.into(),
        wait: None,
    }
}

/// Fetches `[start, end)` of `job` into its partial file. Returns once every byte is written (not
/// yet synced or journaled), or with the error that made it give up. `permit` is this range's
/// place in the connection budget; when the adaptive controller has lowered the budget, a range
/// waiting to retry gives its place up and queues for a new one, so the lower count holds at once
/// rather than when the range finally succeeds.
pub async fn fetch_range(
    eng: &RangeCtx,
    job: &FileJob,
    start: u64,
    end: u64,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<()> {
    let mut pos = start;
    let mut backoff = new_backoff();
    let mut failing_since: Option<Instant> = None;
    let mut attempts = 0u32;
    loop {
        let before = pos;
        let failure = match attempt(eng, job, &mut pos, end).await {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        let (reason, wait) = match failure {
            Failure::Final(e) => return Err(e),
            Failure::Retry { reason, wait } => (reason, wait),
        };
        attempts += 1;
        eng.meter.retried();
        if pos - before >= PROGRESS_RESET {
            backoff = new_backoff();
            failing_since = None;
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= eng.retry_timeout {
            return Err(Error::Network {
                url: display_url(&job.url),
                attempts,
                seconds: since.elapsed().as_secs(),
                message: reason,
            });
        }
        let delay = backoff
            .next()
            .unwrap_or(Duration::from_secs(30))
            .max(wait.unwrap_or_default());
        tracing::warn!(
            "{}: {reason}; retrying bytes {pos}-{} in {:.1} s",
            job.remote.path,
            end - 1,
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
        eng.budget.repay(permit).await?;
    }
}

fn new_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn attempt(
    eng: &RangeCtx,
    job: &FileJob,
    pos: &mut u64,
    end: u64,
) -> std::result::Result<(), Failure> {
    let _connection = eng.meter.connection();
    let cached = job.location.lock().ok().and_then(|l| l.clone());
    let url = cached.clone().unwrap_or_else(|| job.url.clone());
    let http = eng.ranges.http();
    let answer = http
        .send(Method::GET, url, Some((*pos, end - 1)), eng.stall_timeout)
        .await
        .map_err(|e| retry(format!("request failed: {e}")))?;
    let status = answer.response.status();
    let headers = answer.response.headers().clone();
    let off_hub = !http.is_hub_origin(&answer.url);
    if off_hub && status.is_success() && cached.is_none() {
        // Remember the CDN URL the hub redirected to, so later ranges skip the hub round trip.
        if let Ok(mut l) = job.location.lock() {
            *l = Some(answer.url.clone());
        }
    }
    match status {
        StatusCode::PARTIAL_CONTENT => check_content_range(&headers, *pos, job.remote.size)?,
        StatusCode::OK if *pos == 0 => {}
        StatusCode::OK => return Err(retry("server ignored the Range header")),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            eng.meter.throttled(status.as_u16());
            return Err(Failure::Retry {
                reason: format!("server answered {status} (rate limited)"),
                wait: retry_after(&headers),
            });
        }
        s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
            return Err(Failure::Retry {
                reason: format!("server answered {s}"),
                wait: retry_after(&headers),
            })
        }
        s if off_hub && s.is_client_error() => {
            // A signed CDN URL expired or was refused: forget it and go back to the hub for a
            // fresh redirect instead of failing.
            if let Ok(mut l) = job.location.lock() {
                *l = None;
            }
            return Err(retry(format!(
                "{} answered {s}; re-resolving through the hub",
                display_url(&answer.url)
            )));
        }
        s => {
            let body = answer.response.text().await.unwrap_or_default();
            return Err(Failure::Final(eng.ranges.refusal(&Refused {
                path: Some(&job.remote.path),
                status: s.as_u16(),
                headers: &headers,
                body: &body,
                url: &answer.url,
            })));
        }
    }

    receive(eng, job, pos, end, answer.response).await
}

/// Streams the body of a range answer into the partial file from `*pos` up to `end`.
async fn receive(
    eng: &RangeCtx,
    job: &FileJob,
    pos: &mut u64,
    end: u64,
    mut response: reqwest::Response,
) -> std::result::Result<(), Failure> {
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BUF);
    let stall = eng.stall_timeout;
    let outcome = loop {
        let want = end - *pos - buf.len() as u64;
        if want == 0 {
            break Ok(());
        }
        match tokio::time::timeout(stall, response.chunk()).await {
            Err(_) => {
                break Err(retry(format!(
                    "stalled: no bytes for {} s, reconnecting",
                    stall.as_secs()
                )))
            }
            Ok(Err(e)) => {
                break Err(retry(format!(
                    "connection broke: {}",
                    crate::http::describe_reqwest(&e.without_url())
                )))
            }
            Ok(Ok(None)) => {
                break Err(retry(format!(
                    "body ended early at byte {} of {end}",
                    *pos + buf.len() as u64
                )))
            }
            Ok(Ok(Some(bytes))) => {
                let take = (bytes.len() as u64).min(want) as usize;
                buf.extend_from_slice(&bytes[..take]);
                if buf.len() >= WRITE_BUF {
                    buf = flush(eng, job, pos, buf).await?;
                }
            }
        }
    };
    if !buf.is_empty() {
        flush(eng, job, pos, buf).await?;
    }
    outcome
}

/// Writes `buf` at `*pos` of the partial file, advances `pos`, and hands back the emptied buffer.
async fn flush(
    eng: &RangeCtx,
    job: &FileJob,
    pos: &mut u64,
    buf: Vec<u8>,
) -> std::result::Result<Vec<u8>, Failure> {
    let file = Arc::clone(&job.file);
    let at = *pos;
    let path = job.partial_path.clone();
    let len = buf.len() as u64;
    let mut buf = tokio::task::spawn_blocking(move || {
        file.write_all_at(&buf, at)
            .map(|()| buf)
            .map_err(|e| Error::io(&path, e))
    })
    .await
    .map_err(|e| {
        Failure::Final(Error::Task {
            task: "writer task",
            message: e.to_string(),
        })
    })?
    .map_err(Failure::Final)?;
    *pos += len;
    eng.meter.add_downloaded(len);
    buf.clear();
    Ok(buf)
}

fn check_content_range(
    headers: &HeaderMap,
    pos: u64,
    size: u64,
) -> std::result::Result<(), Failure> {
    let v = headers
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // "bytes a-b/total"
    let parsed = v.strip_prefix("bytes ").and_then(|r| {
        let (span, total) = r.split_once('/')?;
        let (a, _) = span.split_once('-')?;
        Some((a.parse::<u64>().ok()?, total.parse::<u64>().ok()))
    });
    match parsed {
        Some((a, total)) if a == pos && total.is_none_or(|t| t == size) => Ok(()),
        _ => Err(retry(format!(
            "206 with Content-Range {v:?} does not match the requested bytes {pos}- of a {size}-byte file"
        ))),
    }
}

/// How long the server asked us to wait: `Retry-After` (seconds), or the `t=` of a
/// `RateLimit: "name";r=0;t=87` header.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .or_else(|| {
            let rl = headers.get("ratelimit")?.to_str().ok()?;
            rl.split(';')
                .find_map(|p| p.trim().strip_prefix("t="))
                .and_then(|t| t.trim().parse::<u64>().ok())
        })?;
    // Never sleep for absurd amounts on a server's say-so; the retry budget still applies.
    Some(Duration::from_secs(secs.min(300)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_and_ratelimit() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            "ratelimit",
            HeaderValue::from_static("\"resolvers\";r=0;t=87"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(87)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }

    #[test]
    fn content_range_must_match() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 10-19/100"));
        assert!(check_content_range(&h, 10, 100).is_ok());
        assert!(check_content_range(&h, 0, 100).is_err());
        assert!(check_content_range(&h, 10, 99).is_err());
    }
}
