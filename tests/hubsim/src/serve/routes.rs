//! Request routing for both hubs and the CDN, plus the per-request work every route shares:
//! stats, pre-header faults (latency, status, 429, stall).
//!
//! Routing is done on the raw (still percent-encoded) path, segment by segment, because HF
//! revisions arrive as one encoded segment (`refs%2Fpr%2F1`) and must not be split at `%2F`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use percent_encoding::percent_decode_str;

use super::cdn::CdnDenied;
use super::download::{self, Download};
use super::faults::{PreAction, Target};
use super::{access, hf, modelscope, reply, AppState};

/// What a handler needs from the request.
pub struct Req {
    pub method: Method,
    /// The path as sent (percent-encoded), without the query.
    pub raw_path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub token: Option<String>,
    /// Percent-decoded path and query, for `path_contains` fault filters.
    pub decoded: String,
    fallback_host: String,
}

impl Req {
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }

    pub fn host_header(&self) -> Option<&str> {
        self.headers.get(header::HOST)?.to_str().ok()
    }

    /// The origin the client used (`host:port`).
    pub fn host(&self) -> String {
        self.host_header()
            .map_or_else(|| self.fallback_host.clone(), str::to_string)
    }

    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    pub fn range(&self) -> Option<String> {
        self.headers
            .get(header::RANGE)?
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[derive(Clone)]
pub(crate) enum Route {
    HfInfo {
        ns: String,
        name: String,
        rev: String,
    },
    HfTree {
        ns: String,
        name: String,
        rev: String,
        path: String,
    },
    HfResolve {
        ns: String,
        name: String,
        rev: String,
        path: String,
    },
    HfResolveCache {
        ns: String,
        name: String,
        commit: String,
        path: String,
    },
    HfApiUnknown,
    MsFiles {
        ns: String,
        name: String,
    },
    MsFile {
        ns: String,
        name: String,
    },
    MsRevisions {
        ns: String,
        name: String,
    },
    MsInfo {
        ns: String,
        name: String,
    },
    MsProbe,
    Cdn {
        ns: String,
        name: String,
        commit: String,
        path: String,
    },
    OllamaManifest {
        ns: String,
        model: String,
        tag: String,
    },
    OllamaBlob {
        ns: String,
        model: String,
        digest: String,
    },
    OllamaCdn {
        ns: String,
        model: String,
        digest: String,
    },
    NotFound,
}

impl Route {
    fn parse(raw_path: &str) -> Route {
        let segs: Vec<&str> = raw_path.trim_start_matches('/').split('/').collect();
        let d = |i: usize| decode(segs[i]);
        let rest = |i: usize| {
            segs[i..]
                .iter()
                .map(|s| decode(s))
                .collect::<Vec<_>>()
                .join("/")
        };
        match segs.as_slice() {
            ["api", "v1", "repos", "internalAccelerationInfo"] => Route::MsProbe,
            ["v2", _, _, "manifests", _] => Route::OllamaManifest {
                ns: d(1),
                model: d(2),
                tag: d(4),
            },
            ["v2", _, _, "blobs", _] => Route::OllamaBlob {
                ns: d(1),
                model: d(2),
                digest: d(4),
            },
            ["_ollama_cdn", _, _, _] => Route::OllamaCdn {
                ns: d(1),
                model: d(2),
                digest: d(3),
            },
            ["api", "v1", "models", _, _] => Route::MsInfo {
                ns: d(3),
                name: d(4),
            },
            ["api", "v1", "models", _, _, "revisions"] => Route::MsRevisions {
                ns: d(3),
                name: d(4),
            },
            ["api", "v1", "models", _, _, "repo", "files"] => Route::MsFiles {
                ns: d(3),
                name: d(4),
            },
            ["api", "v1", "models", _, _, "repo"] => Route::MsFile {
                ns: d(3),
                name: d(4),
            },
            ["api", "v1", ..] => Route::NotFound,
            ["api", "models", _, _] => Route::HfInfo {
                ns: d(2),
                name: d(3),
                rev: "main".into(),
            },
            ["api", "models", _, _, "revision", _, ..] => Route::HfInfo {
                ns: d(2),
                name: d(3),
                rev: rest(5),
            },
            ["api", "models", _, _, "tree", _, ..] => Route::HfTree {
                ns: d(2),
                name: d(3),
                rev: d(5),
                path: rest(6),
            },
            ["api", "resolve-cache", "models", _, _, _, _, ..] => Route::HfResolveCache {
                ns: d(3),
                name: d(4),
                commit: d(5),
                path: rest(6),
            },
            ["api", ..] => Route::HfApiUnknown,
            ["_cdn", _, _, _, _, ..] => Route::Cdn {
                ns: d(1),
                name: d(2),
                commit: d(3),
                path: rest(4),
            },
            [_, _, "resolve", _, _, ..] => Route::HfResolve {
                ns: d(0),
                name: d(1),
                rev: d(3),
                path: rest(4),
            },
            _ => Route::NotFound,
        }
    }

    /// File requests are what faults hit by default (API calls only with `api: true`).
    fn is_file(&self) -> bool {
        matches!(
            self,
            Route::HfResolve { .. }
                | Route::HfResolveCache { .. }
                | Route::MsFile { .. }
                | Route::Cdn { .. }
                | Route::OllamaBlob { .. }
                | Route::OllamaCdn { .. }
        )
    }

    /// HF routes naming a repo: (ns, name, index of the ns segment in the path).
    pub(crate) fn hf_repo(&self) -> Option<(&str, &str, usize)> {
        match self {
            Route::HfInfo { ns, name, .. } | Route::HfTree { ns, name, .. } => Some((ns, name, 2)),
            Route::HfResolve { ns, name, .. } => Some((ns, name, 0)),
            _ => None,
        }
    }

    fn is_hf_api(&self) -> bool {
        matches!(self, Route::HfInfo { .. } | Route::HfTree { .. })
    }

    fn is_modelscope(&self) -> bool {
        matches!(
            self,
            Route::MsFiles { .. }
                | Route::MsFile { .. }
                | Route::MsRevisions { .. }
                | Route::MsInfo { .. }
                | Route::MsProbe
        )
    }
}

/// Entry point for every request outside `/_hubsim/`.
pub async fn dispatch(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let arrived = super::stats::Stats::now_ms();
    let (parts, _body) = request.into_parts();
    let raw_path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let decoded = match &query {
        Some(q) => format!("{}?{}", decode(&raw_path), decode(q)),
        None => decode(&raw_path),
    };
    let req = Req {
        method: parts.method,
        token: access::bearer(&parts.headers),
        headers: parts.headers,
        raw_path,
        query,
        decoded,
        fallback_host: format!("127.0.0.1:{}", app.port),
    };
    let route = Route::parse(&req.raw_path);
    let quirks = app.faults.quirks();

    let key = match &route {
        Route::MsFile { .. } => {
            let file = req
                .query_pairs()
                .into_iter()
                .find(|(k, _)| k == "FilePath")
                .map(|(_, v)| v)
                .unwrap_or_default();
            modelscope::ms_stats_key(&req, &file)
        }
        _ => req.raw_path.clone(),
    };
    let cdn_with_auth = matches!(route, Route::Cdn { .. } | Route::OllamaCdn { .. })
        && req.headers.contains_key(header::AUTHORIZATION);
    app.stats.request(&key, cdn_with_auth);

    let target = Target {
        text: &req.decoded,
        file: route.is_file(),
    };
    let (pre, fired) = app.faults.pre_header(&target);
    for name in fired {
        app.stats.fault(name);
    }
    if !pre.latency.is_zero() {
        tokio::time::sleep(pre.latency).await;
    }
    let redirect = super::realism::redirect_before(&app, &req, &route, &quirks);
    let mut resp = match pre.action {
        Some(PreAction::Status(status)) => reply::injected_status(status),
        Some(PreAction::RateLimit(secs)) => reply::rate_limited(secs),
        Some(PreAction::Stall(how_long)) => {
            tokio::time::sleep(how_long).await;
            reply::injected_status(504)
        }
        None => match redirect {
            Some(resp) => resp,
            None => match route
                .is_hf_api()
                .then(|| app.faults.hf_api_429(matches!(route, Route::HfTree { .. })))
                .flatten()
            {
                Some(secs) => {
                    app.stats.fault("hf_api_429");
                    reply::api_rate_limited(secs)
                }
                None => handle(&app, &req, route.clone()).await,
            },
        },
    };
    if quirks.hf_ratelimit_headers && !route.is_modelscope() {
        reply::informational_ratelimit(resp.headers_mut());
    }
    if quirks.gzip {
        resp = super::realism::gzip(&req, resp).await;
    }
    let status = resp.status().as_u16();
    app.stats.status(status);
    app.stats.log(super::RequestRecord {
        method: req.method.to_string(),
        host: req.host(),
        path: match &req.query {
            Some(q) => format!("{}?{q}", req.raw_path),
            None => req.raw_path.clone(),
        },
        authorization: req.headers.contains_key(header::AUTHORIZATION),
        accept_encoding: header_text(&req.headers, header::ACCEPT_ENCODING),
        accept: header_text(&req.headers, header::ACCEPT),
        range: req.range(),
        status,
        at_ms: arrived,
        content_encoding: header_text(resp.headers(), header::CONTENT_ENCODING),
    });
    resp
}

fn header_text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)?.to_str().ok().map(str::to_string)
}

async fn handle(app: &Arc<AppState>, req: &Req, route: Route) -> Response {
    // Everything hubsim serves outside /_hubsim is read-only.
    if req.method != Method::GET && req.method != Method::HEAD {
        return reply::plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    match route {
        Route::HfInfo { ns, name, rev } => hf::info(app, req, &ns, &name, &rev).await,
        Route::HfTree {
            ns,
            name,
            rev,
            path,
        } => hf::tree(app, req, &ns, &name, &rev, &path).await,
        Route::HfResolve {
            ns,
            name,
            rev,
            path,
        } => hf::resolve(app, req, &ns, &name, &rev, &path).await,
        Route::HfResolveCache {
            ns,
            name,
            commit,
            path,
        } => hf::resolve_cache(app, req, &ns, &name, &commit, &path).await,
        Route::HfApiUnknown => reply::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "hubsim does not implement this endpoint"}),
        ),
        Route::MsFiles { ns, name } => modelscope::files(app, req, &ns, &name).await,
        Route::MsFile { ns, name } => modelscope::file(app, req, &ns, &name).await,
        Route::MsRevisions { ns, name } => modelscope::revisions(app, req, &ns, &name).await,
        Route::MsInfo { ns, name } => modelscope::info(app, req, &ns, &name).await,
        // Answered at once: the client gives the probe only 0.2 s.
        Route::MsProbe => reply::plain(StatusCode::NOT_FOUND, "not found"),
        Route::Cdn {
            ns,
            name,
            commit,
            path,
        } => cdn(app, req, &ns, &name, &commit, &path).await,
        Route::OllamaManifest { ns, model, tag } => {
            super::ollama::manifest(app, req, &ns, &model, &tag).await
        }
        Route::OllamaBlob { ns, model, digest } => {
            super::ollama::blob(app, req, &ns, &model, &digest).await
        }
        Route::OllamaCdn { ns, model, digest } => {
            super::ollama::cdn_blob(app, req, &ns, &model, &digest).await
        }
        Route::NotFound => reply::plain(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `/_cdn/{ns}/{name}/{commit}/{path}?expires=&signature=`: the signature is the only auth.
async fn cdn(
    app: &Arc<AppState>,
    req: &Req,
    ns: &str,
    name: &str,
    commit: &str,
    path: &str,
) -> Response {
    match app.cdn.verify(&req.raw_path, req.query.as_deref()) {
        Ok(()) => {}
        Err(CdnDenied::Expired) => {
            return reply::plain(StatusCode::FORBIDDEN, "Request has expired")
        }
        Err(CdnDenied::BadSignature) => {
            return reply::plain(StatusCode::FORBIDDEN, "Invalid signature")
        }
    }
    let Ok(repo) = app.store.repo(ns, name) else {
        return reply::plain(StatusCode::NOT_FOUND, "not found");
    };
    let Ok(snap) = app.store.resolve(&repo, commit).await else {
        return reply::plain(StatusCode::NOT_FOUND, "not found");
    };
    let Some(entry) = snap.file(path) else {
        return reply::plain(StatusCode::NOT_FOUND, "not found");
    };
    download::respond(
        app,
        Download {
            entry,
            head: req.is_head(),
            meta: hf::metadata(&snap.commit, entry),
            range: req.range(),
            stats_key: req.raw_path.clone(),
            fault_text: req.decoded.clone(),
        },
    )
    .await
}
