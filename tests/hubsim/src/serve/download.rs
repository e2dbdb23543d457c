//! Answers one file request (HF resolve, ModelScope file GET, CDN): ranges, HEAD, the
//! over-limit guard and body faults, then the streamed body.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::io::AsyncSeekExt;

use super::body::{self, BodySpec, Reader};
use super::faults::{OverLimit, Target};
use super::range::{self, RangeReq};
use super::realism::Compressible;
use super::reply;
use super::repo::{FileEntry, Source};
use super::AppState;

/// A file request after routing and access checks.
pub struct Download<'a> {
    pub entry: &'a FileEntry,
    pub head: bool,
    /// Hub-specific metadata headers (X-Repo-Commit, ETag, X-Linked-*).
    pub meta: HeaderMap,
    pub range: Option<String>,
    pub stats_key: String,
    /// Percent-decoded path+query, matched by `path_contains`.
    pub fault_text: String,
}

pub async fn respond(app: &Arc<AppState>, d: Download<'_>) -> Response {
    let total = d.entry.size;
    let target = Target {
        text: &d.fault_text,
        file: true,
    };
    let parsed = range::parse(d.range.as_deref(), total);
    let (shape, fired) = match parsed {
        RangeReq::Partial { start, end } if !d.head => {
            app.faults.shape(&target, true, end + 1 - start)
        }
        _ => Default::default(),
    };
    for name in fired {
        app.stats.fault(name);
    }
    let parsed = if shape.ignore_range {
        RangeReq::Full
    } else {
        parsed
    };
    let (status, start, end) = match parsed {
        RangeReq::Full => (StatusCode::OK, 0, total),
        RangeReq::Partial { start, end } => {
            let end = end + 1 - shape.short_by.unwrap_or(0);
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
        RangeReq::Unsatisfiable => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let h = resp.headers_mut();
            h.extend(d.meta);
            reply::set(h, header::CONTENT_RANGE, &format!("bytes */{total}"));
            reply::set(h, header::CONTENT_LENGTH, "0");
            return resp;
        }
    };

    let mut headers = d.meta;
    reply::set(
        &mut headers,
        header::CONTENT_LENGTH,
        &(end - start).to_string(),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let claimed = total.saturating_add_signed(shape.total_delta.unwrap_or(0));
        let value = format!("bytes {start}-{}/{claimed}", end - 1);
        reply::set(&mut headers, header::CONTENT_RANGE, &value);
    }

    if d.head {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        return resp;
    }

    if let Some(limit) = app.faults.body_limit() {
        if limit.mode == OverLimit::Reject && app.stats.active_bodies() >= limit.max_bodies {
            app.stats.fault("over_limit_reject");
            return reply::rate_limited(limit.retry_after_secs.unwrap_or(1));
        }
    }

    let (faults, fired) = app.faults.body(&target, start, end);
    for name in fired {
        app.stats.fault(name);
    }

    let reader = match &d.entry.source {
        Source::Disk(abs) => match open_at(abs, start).await {
            Ok(f) => Reader::Disk(f),
            Err(e) => {
                return reply::plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("hubsim: cannot read {}: {e}", d.entry.path),
                )
            }
        },
        Source::Planned(plan, index) => Reader::Planned(plan.clone(), *index),
        Source::Bytes(bytes) => Reader::Bytes(bytes.clone()),
    };
    let spec = BodySpec {
        reader,
        start,
        len: end - start,
        faults,
        stats_key: d.stats_key,
    };
    let mut resp = Response::new(body::stream(spec, app.clone()));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    if !d.entry.lfs {
        resp.extensions_mut().insert(Compressible);
    }
    resp
}

async fn open_at(path: &std::path::Path, offset: u64) -> std::io::Result<tokio::fs::File> {
    let mut f = tokio::fs::File::open(path).await?;
    if offset > 0 {
        f.seek(std::io::SeekFrom::Start(offset)).await?;
    }
    Ok(f)
}
