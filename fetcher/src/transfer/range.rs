//! Moving one byte range of one file: a ranged GET with retries, backoff, Retry-After,
//! stall detection, signed-URL re-resolution and resume from the last byte written.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, CONTENT_RANGE};
use reqwest::{Method, StatusCode};

use super::backoff::Backoff;
use super::budget::Budget;
use super::buffers::BufferPool;
use super::job::FileJob;
use crate::error::{Error, Result};
use crate::http::display_url;
use crate::meter::Meter;
use crate::origin::{Ranges, Refused};

/// Bytes buffered before one positional write: a syscall per 256 KiB costs nothing measurable,
/// and at the controller's ceiling of 128 connections the write buffers hold 32 MiB.
pub(crate) const WRITE_BUF: usize = 256 << 10;
/// An attempt that moved at least this much counts as progress and resets the backoff.
const PROGRESS_RESET: u64 = 1 << 20;

/// What every range transfer of one run shares.
pub struct RangeCtx {
    pub ranges: Arc<dyn Ranges>,
    pub meter: Arc<Meter>,
    pub budget: Budget,
    /// Write buffers ([`WRITE_BUF`] of capacity, empty), reused across ranges.
    pub write_buffers: BufferPool,
    pub stall_timeout: Duration,
    pub retry_timeout: Duration,
}

enum Failure {
    Retry {
        reason: String,
        wait: Option<Duration>,
    },
    /// A 206 shorter than asked, its bytes written: not a failure, the rest is asked for next.
    Short {
        served: String,
    },
    Final(Error),
}

/// Short answers in a row one range accepts before calling the server broken: a server that
/// sends a little less than asked (hubsim's `short_partial`, some proxies) needs two per range.
const MAX_SHORT_ANSWERS: u32 = 16;

fn retry(reason: impl Into<String>) -> Failure {
    Failure::Retry {
        reason: reason.into(),
        wait: None,
    }
}

/// Fetches `[start, end)` of `job` into its partial file. Returns once every byte is written (not
/// yet synced or journaled), or with the error that made it give up. `permit` is this range's
/// place in the connection budget; a range waiting to retry gives its place up while it sleeps
/// and queues for a new one after, so sleeping ranges never hold connections other ranges could
/// use, and a lower count from the adaptive controller holds at once.
pub async fn fetch_range(
    eng: &RangeCtx,
    job: &FileJob,
    start: u64,
    end: u64,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<()> {
    let mut pos = start;
    let mut backoff = Backoff::new();
    let mut failing_since: Option<Instant> = None;
    let mut attempts = 0u32;
    let mut short_answers = 0u32;
    loop {
        let before = pos;
        let failure = match attempt(eng, job, start, &mut pos, end).await {
            Ok(()) => {
                eng.budget.answered_well();
                return Ok(());
            }
            Err(f) => f,
        };
        let (reason, wait) = match failure {
            Failure::Final(e) => return Err(e),
            Failure::Short { served } => {
                short_answers += 1;
                if short_answers >= MAX_SHORT_ANSWERS {
                    return Err(Error::BadResponse {
                        url: display_url(&job.url),
                        reason: format!(
                            "{:?}: {short_answers} answers in a row sent fewer bytes than asked (last: {served} of bytes {before}-{}); a server or proxy that cuts every range short cannot be fetched from at a useful speed\n  hint: check for a proxy between here and the endpoint; re-running resumes from byte {pos}",
                            job.remote.path,
                            end - 1
                        ),
                    });
                }
                tracing::debug!(
                    "{:?}: server sent {served}, less than asked; asking for bytes {pos}-{}",
                    job.remote.path,
                    end - 1
                );
                continue;
            }
            Failure::Retry { reason, wait } => (reason, wait),
        };
        attempts += 1;
        eng.meter.retried();
        if pos - before >= PROGRESS_RESET {
            eng.budget.answered_well();
            backoff = Backoff::new();
            failing_since = None;
        } else {
            eng.budget.answered_badly();
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
        let delay = backoff.next_delay(wait);
        tracing::warn!(
            "{:?}: {reason}; retrying bytes {pos}-{} in {:.1} s",
            job.remote.path,
            end - 1,
            delay.as_secs_f64()
        );
        if eng.budget.sleep_without_slot(permit, delay).await? {
            // The server answers again: start over as if this range had not failed.
            backoff = Backoff::new();
        }
    }
}

async fn attempt(
    eng: &RangeCtx,
    job: &FileJob,
    start: u64,
    pos: &mut u64,
    end: u64,
) -> std::result::Result<(), Failure> {
    let _connection = eng.meter.connection();
    let cached = job.location.lock().ok().and_then(|l| l.clone());
    let served_to;
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
        StatusCode::PARTIAL_CONTENT => {
            served_to = content_range(&headers, *pos, end, job, &answer.url).map_err(|f| *f)?
        }
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
            eng.meter.throttled(status.as_u16());
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

    let asked_from = *pos;
    receive(eng, job, pos, served_to, answer.response, 0).await?;
    if served_to < end {
        return Err(Failure::Short {
            served: format!("bytes {asked_from}-{}", served_to - 1),
        });
    }
    Ok(())
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
    let mut buf = eng.write_buffers.take();
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
                // In pieces that fit: the buffer never grows past its pooled capacity.
                let mut rest = &bytes[..take];
                while !rest.is_empty() {
                    let n = rest.len().min(WRITE_BUF - buf.len());
                    buf.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if buf.len() >= WRITE_BUF {
                        buf = flush(eng, job, pos, buf).await?;
                    }
                }
            }
        }
    };
    if !buf.is_empty() {
        buf = flush(eng, job, pos, buf).await?;
    }
    eng.write_buffers.give(buf);
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

/// Checks a 206's `Content-Range: bytes a-b/total` against the request (bytes `pos..end` of
/// the listed file) and returns where the answer's bytes end (`b + 1`, at most `end`). A total
/// that disagrees with the listing cannot heal by retrying: the source serves another file than
/// the one listed, and the fetch stops at once.
fn content_range(
    headers: &HeaderMap,
    pos: u64,
    end: u64,
    job: &FileJob,
    url: &url::Url,
) -> std::result::Result<u64, Box<Failure>> {
    let v = headers
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let size = job.remote.size;
    match parse_content_range(v) {
        Some((_, _, Some(total))) if total != size => Err(Box::new(Failure::Final(Error::SizeMismatch {
            path: job.remote.path.clone(),
            url: display_url(url),
            listed: size,
            served: total,
        }))),
        Some((a, b, _)) if a == pos && b >= a => Ok((b + 1).min(end)),
        _ => Err(Box::new(retry(format!(
            "206 with Content-Range {v:?} does not match the requested bytes {pos}-{} of a {size}-byte file",
            end - 1
        )))),
    }
}

/// `bytes a-b/total` (total `*` is None).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let r = v.trim().strip_prefix("bytes ")?;
    let (span, total) = r.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 10-19/100"),
            Some((10, 19, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0, None)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("10-19/100"), None);
    }
}
