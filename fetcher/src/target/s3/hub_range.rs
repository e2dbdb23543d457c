//! Byte ranges of a hub file into memory for the S3 sink: the hub's own client (token only to
//! the hub origin, redirects by hand), retries with backoff while the range keeps failing for
//! less than `--retry-timeout`, and a stall timer on the body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::{Method, StatusCode};

use crate::error::{Error, Result};
use crate::http::display_url;
use crate::meter::Meter;
use crate::origin::{Ranges, Refused};
use crate::snapshot::RemoteFile;

/// What reading hub ranges needs: the origin's ranged access, the meter it counts into, and the
/// retry and stall limits of `--retry-timeout` / `--stall-timeout`.
pub(super) struct HubReader {
    pub(super) ranges: Arc<dyn Ranges>,
    pub(super) meter: Arc<Meter>,
    pub(super) retry_timeout: Duration,
    pub(super) stall_timeout: Duration,
}

impl HubReader {
    /// `[lo, hi)` of a hub file into memory, with retries, backoff and a stall timer.
    pub(super) async fn get(&self, f: &RemoteFile, lo: u64, hi: u64) -> Result<Bytes> {
        let url = self.ranges.file_url(f);
        let mut delay = Duration::from_millis(200);
        let mut failing_since: Option<Instant> = None;
        let mut attempts = 0u32;
        loop {
            let reason = match self.attempt(f, &url, lo, hi).await {
                Ok(b) => {
                    self.meter.add_downloaded(b.len() as u64);
                    return Ok(b);
                }
                Err(HubFailure::Final(e)) => return Err(e),
                Err(HubFailure::Retry(reason)) => reason,
            };
            attempts += 1;
            self.meter.retried();
            let since = *failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.retry_timeout {
                return Err(Error::Network {
                    url: display_url(&url),
                    attempts,
                    seconds: since.elapsed().as_secs(),
                    message: reason,
                });
            }
            tracing::warn!(
                "{}: {reason}; retrying bytes {lo}-{} in {:.1} s",
                f.path,
                hi - 1,
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    async fn attempt(
        &self,
        f: &RemoteFile,
        url: &url::Url,
        lo: u64,
        hi: u64,
    ) -> std::result::Result<Bytes, HubFailure> {
        let http = self.ranges.http();
        let stall = self.stall_timeout;
        let answer = http
            .send(Method::GET, url.clone(), Some((lo, hi - 1)), stall)
            .await
            .map_err(|e| HubFailure::Retry(format!("request failed: {e}")))?;
        let status = answer.response.status();
        let ok = status == StatusCode::PARTIAL_CONTENT
            || (status == StatusCode::OK && lo == 0 && hi == f.size);
        if !ok {
            if status.is_success() {
                return Err(HubFailure::Retry(format!(
                    "server answered {status} to a range request"
                )));
            }
            if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
            {
                return Err(HubFailure::Retry(format!("server answered {status}")));
            }
            if !http.is_hub_origin(&answer.url) {
                // An expired or refused CDN URL: the next attempt starts at the hub again.
                return Err(HubFailure::Retry(format!("CDN answered {status}")));
            }
            let headers = answer.response.headers().clone();
            let body = answer.response.text().await.unwrap_or_default();
            return Err(HubFailure::Final(self.ranges.refusal(&Refused {
                path: Some(&f.path),
                status: status.as_u16(),
                headers: &headers,
                body: &body,
                url: &answer.url,
            })));
        }
        let want = (hi - lo) as usize;
        let mut buf = BytesMut::with_capacity(want);
        let mut response = answer.response;
        loop {
            let chunk = tokio::time::timeout(stall, response.chunk())
                .await
                .map_err(|_| HubFailure::Retry(format!("no data for {} s", stall.as_secs())))?
                .map_err(|e| HubFailure::Retry(crate::http::describe_reqwest(&e.without_url())))?;
            let Some(chunk) = chunk else { break };
            if buf.len() + chunk.len() > want {
                return Err(HubFailure::Retry(
                    "server sent more bytes than asked for".into(),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.len() != want {
            return Err(HubFailure::Retry(format!(
                "body ended after {} of {want} bytes",
                buf.len()
            )));
        }
        Ok(buf.freeze())
    }
}

enum HubFailure {
    Retry(String),
    Final(Error),
}
