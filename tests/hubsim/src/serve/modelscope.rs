//! The ModelScope API (`/api/v1/...`): file listing, file download (ranges, X-Linked-ETag),
//! revisions, repo info and the region probe. Errors use real HTTP statuses with the ModelScope
//! envelope (hub-protocols.md §2.5), never 200 + `Success:false`, which the client would take as
//! an empty repo.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::access::{self, Denied};
use super::download::{self, Download};
use super::faults::Target;
use super::quirks::{MsVariant, Quirks};
use super::reply::{self, set};
use super::repo::{LookupError, Repo, Snapshot};
use super::{cdn, hf, AppState, Req};

/// Fixed commit time (2024-05-01T12:00:00Z), older than any client release, so tag selection
/// rules never prefer a tag by date.
const COMMIT_TIME: u64 = 1_714_564_800;

fn envelope(data: Value) -> Response {
    reply::json(
        StatusCode::OK,
        &json!({
            "Code": 200,
            "Data": data,
            "Message": "success",
            "RequestId": request_id(),
            "Success": true,
        }),
    )
}

fn request_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn error(status: StatusCode, message: &str) -> Response {
    let code: u64 = if status == StatusCode::NOT_FOUND {
        10_010_205_001
    } else {
        u64::from(status.as_u16())
    };
    reply::json(
        status,
        &json!({
            "Code": code,
            "Message": message,
            "RequestId": request_id(),
            "Success": false,
        }),
    )
}

fn lookup_error(e: LookupError, ns: &str, name: &str) -> Response {
    match e {
        LookupError::RepoNotFound => error(
            StatusCode::NOT_FOUND,
            &format!("model {ns}/{name} not found"),
        ),
        LookupError::RevisionNotFound(rev) => error(
            StatusCode::NOT_FOUND,
            &format!("revision {rev} of model {ns}/{name} not found"),
        ),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
    }
}

fn denied(d: Denied, repo: &Repo) -> Response {
    match d {
        Denied::InvalidToken => error(StatusCode::UNAUTHORIZED, "Invalid access token"),
        Denied::Private { no_token: true } | Denied::Gated { no_token: true } => {
            error(StatusCode::UNAUTHORIZED, "user not logged in")
        }
        // A private repo is hidden from a token without access, as on the real hub.
        Denied::Private { no_token: false } => error(
            StatusCode::NOT_FOUND,
            &format!("model {} not found", repo.id),
        ),
        Denied::Gated { no_token: false } => error(
            StatusCode::FORBIDDEN,
            &format!("no permission to access model {}", repo.id),
        ),
    }
}

struct Query {
    revision: String,
    recursive: bool,
    root: String,
    file_path: Option<String>,
}

fn query(req: &Req) -> Query {
    let mut q = Query {
        revision: "master".into(),
        recursive: false,
        root: String::new(),
        file_path: None,
    };
    for (k, v) in req.query_pairs() {
        match k.as_str() {
            "Revision" | "revision" if !v.is_empty() => q.revision = v,
            "Recursive" | "recursive" => q.recursive = matches!(v.as_str(), "True" | "true" | "1"),
            "Root" | "root" => q.root = v.trim_matches('/').to_string(),
            "FilePath" | "filePath" => q.file_path = Some(v),
            _ => {}
        }
    }
    q
}

async fn open(
    app: &AppState,
    req: &Req,
    ns: &str,
    name: &str,
    rev: &str,
    file: bool,
) -> Result<(Repo, Arc<Snapshot>), Response> {
    let repo = app
        .store
        .repo(ns, name)
        .map_err(|e| lookup_error(e, ns, name))?;
    access::check(&repo.config, &app.tokens, req.token.as_deref(), file)
        .map_err(|d| denied(d, &repo))?;
    if app.faults.quirks().ms_revision_names_only && is_commit_id(rev) {
        return Err(lookup_error(
            LookupError::RevisionNotFound(rev.to_string()),
            ns,
            name,
        ));
    }
    let snap = app
        .store
        .resolve(&repo, rev)
        .await
        .map_err(|e| lookup_error(e, ns, name))?;
    Ok((repo, snap))
}

fn is_commit_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit that "last changed" a file, for `ms_per_file_revision`: stable per content.
fn file_revision(path: &str, sha256: &str) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(format!("hubsim-file-revision\0{path}\0{sha256}").as_bytes());
    hex::encode(h.finalize())
}

/// `GET /api/v1/models/{ns}/{name}/repo/files?Revision=&Recursive=&Root=`.
pub async fn files(app: &AppState, req: &Req, ns: &str, name: &str) -> Response {
    let q = query(req);
    let (repo, snap) = match open(app, req, ns, name, &q.revision, false).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    if app.faults.ms_listing_403() {
        app.stats.fault("ms_listing_403");
        return error(
            StatusCode::FORBIDDEN,
            &format!("no permission to access model {}", repo.id),
        );
    }
    let quirks = app.faults.quirks();
    if !q.root.is_empty() && !snap.dirs.iter().any(|(d, _)| *d == q.root) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("path {} not found in model {ns}/{name}", q.root),
        );
    }
    let wanted = |p: &str| -> bool {
        let rest = if q.root.is_empty() {
            Some(p)
        } else {
            p.strip_prefix(q.root.as_str())
                .and_then(|r| r.strip_prefix('/'))
        };
        rest.is_some_and(|r| q.recursive || !r.contains('/'))
    };
    let common = |path: &str, sha256: &str| {
        let rev = if quirks.ms_per_file_revision {
            file_revision(path, sha256)
        } else {
            snap.commit.clone()
        };
        json!({
            "Name": path.rsplit('/').next().unwrap_or(path),
            "Path": path,
            "Revision": rev,
            "CommitId": rev,
            "CommitMessage": "hubsim snapshot",
            "CommitterName": "hubsim",
            "CommittedDate": COMMIT_TIME,
            "InCheck": false,
        })
    };
    let mut entries: Vec<(String, Value)> = Vec::new();
    for (d, oid) in &snap.dirs {
        if wanted(d) {
            let mut e = common(d, oid);
            e["Type"] = json!("tree");
            e["Size"] = json!(0);
            e["Sha256"] = json!("");
            e["IsLFS"] = json!(false);
            e["Mode"] = json!("40000");
            entries.push((d.clone(), e));
        }
    }
    for f in &snap.files {
        if wanted(&f.path) {
            let mut e = common(&f.path, &f.hashes.sha256);
            e["Type"] = json!("blob");
            e["Size"] = json!(f.size);
            e["Sha256"] = json!(f.hashes.sha256);
            e["IsLFS"] = json!(f.lfs);
            e["Mode"] = json!("33188");
            entries.push((f.path.clone(), e));
        }
    }
    for p in app.faults.extra_listing_paths() {
        let mut e = common(&p, "");
        e["Type"] = json!("blob");
        e["Size"] = json!(1);
        e["Sha256"] = json!(hex::encode([0u8; 32]));
        e["IsLFS"] = json!(false);
        e["Mode"] = json!("33188");
        entries.push((p, e));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(cap) = quirks.ms_listing_cap {
        // Silently, like the real service: the client notices only by counting.
        entries.truncate(cap);
    }
    let files: Vec<Value> = entries
        .into_iter()
        .map(|(_, v)| variant(v, &quirks))
        .collect();
    if quirks.has(MsVariant::BareList) {
        return envelope(Value::Array(files));
    }
    envelope(json!({
        "Files": files,
        "IsVisual": 0,
        "LatestCommitter": {"CommitterName": "hubsim"},
    }))
}

/// Reshapes one listing entry as `ms_listing_variants` asks.
fn variant(mut e: Value, quirks: &Quirks) -> Value {
    let Some(obj) = e.as_object_mut() else {
        return e;
    };
    if quirks.has(MsVariant::EmptySha256) {
        obj.insert("Sha256".into(), json!(""));
    }
    if quirks.has(MsVariant::NameOnly) {
        if let Some(path) = obj.remove("Path") {
            obj.insert("Name".into(), path);
        }
    }
    if quirks.has(MsVariant::LowercaseKeys) {
        for key in ["Sha256", "Size", "Path", "Type"] {
            if let Some(v) = obj.remove(key) {
                obj.insert(key.to_ascii_lowercase(), v);
            }
        }
    }
    e
}

/// `GET|HEAD /api/v1/models/{ns}/{name}/repo?Revision=&FilePath=`.
pub async fn file(app: &Arc<AppState>, req: &Req, ns: &str, name: &str) -> Response {
    let q = query(req);
    let Some(path) = q.file_path.as_deref().map(|p| p.trim_start_matches('/')) else {
        return error(StatusCode::BAD_REQUEST, "FilePath is required");
    };
    let (repo, snap) = match open(app, req, ns, name, &q.revision, true).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let Some(entry) = snap.file(path) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("file {path} not found in model {ns}/{name}"),
        );
    };
    let quirks = app.faults.quirks();
    let mut meta = HeaderMap::new();
    let etag = format!("\"{}\"", entry.hashes.sha256);
    set(&mut meta, HeaderName::from_static("x-linked-etag"), &etag);
    set(&mut meta, header::ETAG, &etag);
    if !quirks.ms_no_commit_ids {
        set(
            &mut meta,
            HeaderName::from_static("x-repo-commit"),
            &snap.commit,
        );
    }
    let file_name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
    set(
        &mut meta,
        header::CONTENT_DISPOSITION,
        &format!("attachment; filename=\"{file_name}\""),
    );
    let target = Target {
        text: &req.decoded,
        file: true,
    };
    if app.faults.redirect(&target) {
        app.stats.fault("redirect");
        let cdn_path = hf::cdn_path(&repo.id, &snap.commit, &entry.path);
        let origin = cdn::other_origin(req.host_header(), app.port);
        let location = app.cdn.url(&origin, &cdn_path, app.faults.cdn_expiry());
        return hf::redirect(meta, &location);
    }
    download::respond(
        app,
        Download {
            entry,
            head: req.is_head(),
            meta,
            // The real service sends small files whole, whatever the Range.
            range: if quirks.ms_small_files_ignore_range && !entry.lfs {
                None
            } else {
                req.range()
            },
            stats_key: ms_stats_key(req, path),
            fault_text: req.decoded.clone(),
        },
    )
    .await
}

/// ModelScope file downloads all share one URL path; the stats key adds the file.
pub fn ms_stats_key(req: &Req, path: &str) -> String {
    format!("{}?FilePath={path}", req.raw_path)
}

/// `GET /api/v1/models/{ns}/{name}/revisions`: every ref as a branch, no tags, so clients that
/// pick "the newest tag" stay on master.
pub async fn revisions(app: &AppState, req: &Req, ns: &str, name: &str) -> Response {
    let (repo, _) = match open(app, req, ns, name, "master", false).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let no_ids = app.faults.quirks().ms_no_commit_ids;
    let mut branches = Vec::new();
    for r in app.store.ref_names(&repo) {
        let Ok(snap) = app.store.resolve(&repo, &r).await else {
            continue;
        };
        let name = if r == "main" { "master".to_string() } else { r };
        let mut b = json!({"Revision": name, "CreatedAt": COMMIT_TIME});
        if !no_ids {
            b["CommitId"] = json!(snap.commit);
        }
        branches.push(b);
    }
    envelope(json!({"RevisionMap": {"Branches": branches, "Tags": []}}))
}

/// `GET /api/v1/models/{ns}/{name}`.
pub async fn info(app: &AppState, req: &Req, ns: &str, name: &str) -> Response {
    let (repo, snap) = match open(app, req, ns, name, "master", false).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let mut body = json!({
        "Id": repo.id,
        "Name": name,
        "Path": ns,
        "ChineseName": name,
        "Visibility": if repo.config.private { 1 } else { 5 },
        "Revision": snap.commit,
        "Tags": [],
        "CreatedTime": COMMIT_TIME,
        "LastUpdatedTime": COMMIT_TIME,
    });
    if app.faults.quirks().ms_no_commit_ids {
        body["Revision"] = json!("master");
    }
    envelope(body)
}
