//! The quirks that act on a whole request rather than on one hub's answer: redirects to another
//! origin or to a repo's canonical name, and gzip (see quirks.rs for the knobs).

use std::io::Write;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::cdn::other_origin;
use super::quirks::{accepts_gzip, Quirks};
use super::routes::Route;
use super::{reply, AppState, Req};

/// Bodies larger than this are never gzipped (they are streamed, and real CDNs do not either).
const GZIP_MAX: usize = 32 << 20;

/// Marks a response whose body may be gzipped although it is not JSON (a non-LFS file).
#[derive(Clone, Copy)]
pub struct Compressible;

/// A 307 answered before the route runs: `origin_redirect`, or (HF) a renamed or mis-cased repo.
pub fn redirect_before(
    app: &AppState,
    req: &Req,
    route: &Route,
    quirks: &Quirks,
) -> Option<Response> {
    if let Some(target) = &quirks.origin_redirect {
        let target = if target == "other" {
            other_origin(Some("127.0.0.1"), app.port)
        } else {
            target.clone()
        };
        if !req.host().eq_ignore_ascii_case(&target) {
            let location = format!("http://{target}{}", path_and_query(req, &req.raw_path));
            return Some(temporary_redirect(&location));
        }
    }
    let (ns, name, at) = route.hf_repo()?;
    let id = format!("{ns}/{name}");
    let canonical = match quirks.hf_renamed.get(&id) {
        Some(new) => new.clone(),
        None if quirks.hf_case_redirect && app.store.repo(ns, name).is_err() => {
            app.store.canonical_id(ns, name)?
        }
        None => return None,
    };
    let (new_ns, new_name) = canonical.split_once('/')?;
    let mut segs: Vec<String> = req
        .raw_path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    segs[at] = encode(new_ns);
    segs[at + 1] = encode(new_name);
    let path = format!("/{}", segs.join("/"));
    // Relative, like the hub: the client resolves it against the URL it asked.
    Some(temporary_redirect(&path_and_query(req, &path)))
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, super::SEGMENT).to_string()
}

fn path_and_query(req: &Req, path: &str) -> String {
    match &req.query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

fn temporary_redirect(location: &str) -> Response {
    let mut resp = reply::json(
        StatusCode::TEMPORARY_REDIRECT,
        &serde_json::json!({"message": "Temporary Redirect", "url": location}),
    );
    reply::set(resp.headers_mut(), header::LOCATION, location);
    resp
}

/// gzips a whole `200` JSON or non-LFS body for a GET that accepts gzip.
pub async fn gzip(req: &Req, resp: Response) -> Response {
    let accepts = accepts_gzip(
        req.headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let eligible = is_json || resp.extensions().get::<Compressible>().is_some();
    if !accepts
        || req.is_head()
        || resp.status() != StatusCode::OK
        || !eligible
        || resp.headers().contains_key(header::CONTENT_ENCODING)
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, GZIP_MAX).await {
        Ok(b) => b,
        Err(e) => {
            return reply::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("hubsim: cannot read a body to gzip: {e}"),
            )
        }
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let packed = match enc.write_all(&bytes).and_then(|()| enc.finish()) {
        Ok(p) => p,
        Err(e) => {
            return reply::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("hubsim: gzip failed: {e}"),
            )
        }
    };
    let h = &mut parts.headers;
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    reply::set(h, header::CONTENT_LENGTH, &packed.len().to_string());
    Response::from_parts(parts, Body::from(packed))
}
