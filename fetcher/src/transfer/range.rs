//! Moving one byte range of one file: a ranged GET with retries, backoff, Retry-After,
//! stall detection, signed-URL re-resolution and resume from the last byte written.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{HeaderMap, CONTENT_RANGE};
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
        let failure = match attempt(eng, job, start, &mut pos, end).await {
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
    start: u64,
    pos: &mut u64,
    end: u64,
) -> std::result::Result<(), Failure> {
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
        StatusCode::OK => {
            // The server ignored the Range header and sent the whole file from byte 0 (ModelScope
            // does so for small files). Take the body for what it is: skip to this range's start
            // and write from there, so a body that starts at byte 0 is never appended at `pos`.
            whole_file(&headers, job.remote.size)?;
            if *pos != start {
                tracing::debug!(
                    "{}: the server ignored Range; taking bytes {start}- again from a whole-file answer",
                    job.remote.path
                );
            }
            *pos = start;
            return receive(eng, job, pos, end, answer.response, start).await;
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            eng.meter.throttled();
            return Err(Failure::Retry {
                reason: format!("server answered {status} (rate limited)"),
                wait: crate::http::server_wait(status, &headers),
            });
        }
        s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
            return Err(Failure::Retry {
                reason: format!("server answered {s}"),
                wait: crate::http::server_wait(s, &headers),
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

    receive(eng, job, pos, end, answer.response, 0).await
}

/// A `200` must be the whole file: its `Content-Length`, when given, is the file's size.
fn whole_file(headers: &HeaderMap, size: u64) -> std::result::Result<(), Failure> {
    let length = headers
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) if n != size => Err(retry(format!(
            "200 with {n} bytes to a Range request for a {size}-byte file"
        ))),
        _ => Ok(()),
    }
}

/// Streams the body of a range answer into the partial file from `*pos` up to `end`, after
/// dropping its first `skip` bytes (a whole-file answer to a request for a later range).
async fn receive(
    eng: &RangeCtx,
    job: &FileJob,
    pos: &mut u64,
    end: u64,
    mut response: reqwest::Response,
    mut skip: u64,
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
            Ok(Ok(Some(mut bytes))) => {
                if skip > 0 {
                    let n = skip.min(bytes.len() as u64);
                    bytes = bytes.slice(n as usize..);
                    skip -= n;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn content_range_must_match() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 10-19/100"));
        assert!(check_content_range(&h, 10, 100).is_ok());
        assert!(check_content_range(&h, 0, 100).is_err());
        assert!(check_content_range(&h, 10, 99).is_err());
    }
}
