//! The Hugging Face Hub API: repo info, tree listing, `resolve` (HEAD/GET, ranges, redirects).
//! Status codes, `X-Error-Code` and bodies follow hub-protocols.md §1.5 so that huggingface_hub
//! raises its specific exceptions.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::access::{self, Denied};
use super::download::{self, Download};
use super::faults::Target;
use super::reply::{self, set};
use super::repo::{LookupError, Repo, Snapshot};
use super::{cdn, AppState, Req};

const FIXED_DATE: &str = "2024-05-01T12:00:00.000Z";

/// An HF error answer: always with `X-Error-Code` when there is one, since over http:// the client
/// maps nothing without it.
fn error(status: StatusCode, code: Option<&str>, message: &str) -> Response {
    let mut resp = reply::json(status, &json!({ "error": message }));
    let h = resp.headers_mut();
    if let Some(code) = code {
        set(h, HeaderName::from_static("x-error-code"), code);
    }
    set(h, HeaderName::from_static("x-error-message"), message);
    resp
}

fn repo_not_found(token: bool) -> Response {
    // Like the real hub: without a token a missing repo is indistinguishable from a private one.
    let status = if token {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::UNAUTHORIZED
    };
    error(status, Some("RepoNotFound"), "Repository not found")
}

fn lookup_error(e: LookupError, token: bool) -> Response {
    match e {
        LookupError::RepoNotFound => repo_not_found(token),
        LookupError::RevisionNotFound(rev) => error(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            &format!("Invalid rev id: {rev}"),
        ),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, None, &other.to_string()),
    }
}

fn denied(d: Denied, repo: &Repo) -> Response {
    let id = &repo.id;
    match d {
        Denied::InvalidToken => error(
            StatusCode::UNAUTHORIZED,
            None,
            "Invalid credentials in Authorization header",
        ),
        Denied::Private { no_token } => repo_not_found(!no_token),
        Denied::Gated { no_token: true } => error(
            StatusCode::UNAUTHORIZED,
            Some("GatedRepo"),
            &format!(
                "Access to model {id} is restricted. You must have access to it and be authenticated to access it. Please log in."
            ),
        ),
        Denied::Gated { no_token: false } => error(
            StatusCode::FORBIDDEN,
            Some("GatedRepo"),
            &format!(
                "Access to model {id} is restricted and you are not in the authorized list. Visit https://huggingface.co/{id} to ask for access."
            ),
        ),
    }
}

/// Repo lookup, access check and revision resolution shared by all HF endpoints.
async fn open(
    app: &AppState,
    req: &Req,
    ns: &str,
    name: &str,
    rev: &str,
    file: bool,
) -> Result<(Repo, Arc<Snapshot>), Response> {
    let token = req.token.as_deref();
    let repo = app
        .store
        .repo(ns, name)
        .map_err(|e| lookup_error(e, token.is_some()))?;
    access::check(&repo.config, &app.tokens, token, file).map_err(|d| denied(d, &repo))?;
    let snap = app
        .store
        .resolve(&repo, rev)
        .await
        .map_err(|e| lookup_error(e, token.is_some()))?;
    Ok((repo, snap))
}

/// `GET /api/models/{ns}/{name}[/revision/{rev}]`.
pub async fn info(app: &AppState, req: &Req, ns: &str, name: &str, rev: &str) -> Response {
    let (repo, snap) = match open(app, req, ns, name, rev, false).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let siblings: Vec<Value> = snap
        .files
        .iter()
        .map(|f| f.path.clone())
        .chain(app.faults.extra_listing_paths())
        .map(|p| json!({ "rfilename": p }))
        .collect();
    let object_id = &hex::encode(sha1_of(repo.id.as_bytes()))[..24];
    let body = json!({
        "_id": object_id,
        "id": repo.id,
        "modelId": repo.id,
        "author": ns,
        "sha": snap.commit,
        "lastModified": FIXED_DATE,
        "createdAt": FIXED_DATE,
        "private": repo.config.private,
        "gated": if repo.config.gated { json!("manual") } else { json!(false) },
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "library_name": "transformers",
        "tags": ["transformers", "safetensors"],
        "siblings": siblings,
        "usedStorage": snap.files.iter().map(|f| f.size).sum::<u64>(),
    });
    reply::json(StatusCode::OK, &body)
}

fn sha1_of(bytes: &[u8]) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    Sha1::digest(bytes).into()
}

/// `GET /api/models/{ns}/{name}/tree/{rev}[/{path}]?recursive=true[&cursor=N]`.
pub async fn tree(
    app: &AppState,
    req: &Req,
    ns: &str,
    name: &str,
    rev: &str,
    path: &str,
) -> Response {
    let (_, snap) = match open(app, req, ns, name, rev, false).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let mut recursive = false;
    let mut cursor = 0usize;
    for (k, v) in req.query_pairs() {
        match k.as_str() {
            "recursive" => recursive = matches!(v.as_str(), "true" | "True" | "1"),
            "cursor" => cursor = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    let prefix = path.trim_matches('/');
    if !prefix.is_empty() && !snap.dirs.iter().any(|(d, _)| d == prefix) {
        return error(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            "Entry not found",
        );
    }
    let wanted = |p: &str| -> bool {
        let rest = if prefix.is_empty() {
            Some(p)
        } else {
            p.strip_prefix(prefix).and_then(|r| r.strip_prefix('/'))
        };
        rest.is_some_and(|r| recursive || !r.contains('/'))
    };
    let mut entries: Vec<(String, Value)> = Vec::new();
    for (d, oid) in &snap.dirs {
        if wanted(d) {
            entries.push((
                d.clone(),
                json!({"type": "directory", "oid": oid, "size": 0, "path": d}),
            ));
        }
    }
    for f in &snap.files {
        if !wanted(&f.path) {
            continue;
        }
        let mut e =
            json!({"type": "file", "oid": f.hashes.git_oid, "size": f.size, "path": f.path});
        if f.lfs {
            e["lfs"] = json!({
                "oid": f.hashes.sha256,
                "size": f.size,
                "pointerSize": f.hashes.pointer_size,
            });
        }
        entries.push((f.path.clone(), e));
    }
    for p in app.faults.extra_listing_paths() {
        let oid = hex::encode(sha1_of(p.as_bytes()));
        entries.push((
            p.clone(),
            json!({"type": "file", "oid": oid, "size": 1, "path": p}),
        ));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let page = app.page_size.max(1);
    let end = (cursor + page).min(entries.len());
    let items: Vec<Value> = entries
        .get(cursor.min(entries.len())..end)
        .unwrap_or_default()
        .iter()
        .map(|(_, v)| v.clone())
        .collect();
    let mut resp = reply::json(StatusCode::OK, &Value::Array(items));
    if end < entries.len() {
        // The client requests the next link verbatim, so it must be absolute and complete.
        let mut query: Vec<String> = req
            .query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
            .map(str::to_string)
            .collect();
        query.push(format!("cursor={end}"));
        let link = format!(
            "<http://{}{}?{}>; rel=\"next\"",
            req.host(),
            req.raw_path,
            query.join("&")
        );
        set(resp.headers_mut(), header::LINK, &link);
    }
    resp
}

/// `HEAD|GET /{ns}/{name}/resolve/{rev}/{path}`.
pub async fn resolve(
    app: &Arc<AppState>,
    req: &Req,
    ns: &str,
    name: &str,
    rev: &str,
    path: &str,
) -> Response {
    let (repo, snap) = match open(app, req, ns, name, rev, true).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let Some(entry) = snap.file(path) else {
        let mut resp = error(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            "Entry not found",
        );
        set(
            resp.headers_mut(),
            HeaderName::from_static("x-repo-commit"),
            &snap.commit,
        );
        return resp;
    };
    let meta = metadata(&snap.commit, entry);
    let target = Target {
        text: &req.decoded,
        file: true,
    };
    let quirks = app.faults.quirks();
    if !entry.lfs && quirks.hf_resolve_cache_redirect {
        // Relative, like the hub's; the client follows it and reads the metadata there.
        let location = resolve_cache_path(&repo.id, &snap.commit, &entry.path);
        return redirect_status(meta, &location, StatusCode::TEMPORARY_REDIRECT);
    }
    if entry.lfs && (quirks.hf_lfs_cdn_redirect || app.faults.redirect(&target)) {
        app.stats.fault("redirect");
        let cdn_path = cdn_path(&repo.id, &snap.commit, &entry.path);
        let origin = cdn::other_origin(req.host_header(), app.port);
        let location = app.cdn.url(&origin, &cdn_path, app.faults.cdn_expiry());
        return redirect(meta, &location);
    }
    download::respond(
        app,
        Download {
            entry,
            head: req.is_head(),
            meta,
            range: req.range(),
            stats_key: req.raw_path.clone(),
            fault_text: req.decoded.clone(),
        },
    )
    .await
}

/// The headers huggingface_hub reads from a resolve answer (also put on a 302).
pub fn metadata(commit: &str, entry: &super::repo::FileEntry) -> HeaderMap {
    let mut h = HeaderMap::new();
    set(&mut h, HeaderName::from_static("x-repo-commit"), commit);
    if entry.lfs {
        let etag = format!("\"{}\"", entry.hashes.sha256);
        set(&mut h, HeaderName::from_static("x-linked-etag"), &etag);
        set(
            &mut h,
            HeaderName::from_static("x-linked-size"),
            &entry.size.to_string(),
        );
        set(&mut h, header::ETAG, &etag);
    } else {
        set(
            &mut h,
            header::ETAG,
            &format!("\"{}\"", entry.hashes.git_oid),
        );
    }
    h
}

/// A 302 carrying the metadata (the client reads it from the 302 itself on a cross-origin hop).
pub fn redirect(meta: HeaderMap, location: &str) -> Response {
    redirect_status(meta, location, StatusCode::FOUND)
}

fn redirect_status(mut meta: HeaderMap, location: &str, status: StatusCode) -> Response {
    set(&mut meta, header::LOCATION, location);
    set(&mut meta, header::CONTENT_LENGTH, "0");
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = status;
    *resp.headers_mut() = meta;
    resp
}

/// `/api/resolve-cache/models/{org}/{name}/{commit}/{path}`, path segments percent-encoded.
fn resolve_cache_path(repo_id: &str, commit: &str, path: &str) -> String {
    let encoded: Vec<String> = path
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, super::SEGMENT).to_string())
        .collect();
    format!(
        "/api/resolve-cache/models/{repo_id}/{commit}/{}",
        encoded.join("/")
    )
}

/// `HEAD|GET /api/resolve-cache/models/{ns}/{name}/{commit}/{path}`: where the hub sends small
/// files; access rules as for `resolve`.
pub async fn resolve_cache(
    app: &Arc<AppState>,
    req: &Req,
    ns: &str,
    name: &str,
    commit: &str,
    path: &str,
) -> Response {
    let (_, snap) = match open(app, req, ns, name, commit, true).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let Some(entry) = snap.file(path) else {
        return error(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            "Entry not found",
        );
    };
    download::respond(
        app,
        Download {
            entry,
            head: req.is_head(),
            meta: metadata(&snap.commit, entry),
            range: req.range(),
            stats_key: req.raw_path.clone(),
            fault_text: req.decoded.clone(),
        },
    )
    .await
}

/// `/_cdn/{org}/{name}/{commit}/{path}` with each path segment percent-encoded.
pub fn cdn_path(repo_id: &str, commit: &str, path: &str) -> String {
    let encoded: Vec<String> = path
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, super::SEGMENT).to_string())
        .collect();
    format!("/_cdn/{repo_id}/{commit}/{}", encoded.join("/"))
}
