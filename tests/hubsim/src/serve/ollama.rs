//! The Ollama registry (`registry.ollama.ai`, a Docker distribution v2 registry), as the Ollama
//! server's puller speaks it (read from ollama v0.33.0-rc2, server/images.go `pullModelManifest`,
//! server/download.go, types/model/name.go, manifest/):
//!
//! * `GET /v2/{ns}/{model}/manifests/{tag}` (Accept: the v2 manifest type): schemaVersion 2,
//!   `config` (`application/vnd.docker.container.image.v1+json`) and `layers` with
//!   `application/vnd.ollama.image.{model,template,params,system,license}`, each
//!   `{"mediaType","digest":"sha256:HEX","size"}`. Names default to `library/` and `:latest` on
//!   the client side (`deepseek-r1:7b` is `/v2/library/deepseek-r1/manifests/7b`).
//! * `HEAD|GET /v2/{ns}/{model}/blobs/sha256:HEX`: `307` to a signed URL on the other origin
//!   (the real registry hands out a CDN URL; the puller stops at the first redirect to another
//!   host and sends its ranged GETs there, a HEAD follows it for Content-Length).
//! * `HEAD|GET /_ollama_cdn/sha256:HEX?expires=&signature=`: the blob, ranges and body faults
//!   as for any file.
//!
//! On disk a tag is a directory `ROOT/.ollama/{ns}/{model}/{tag}/` holding `model` (the GGUF
//! weights; `*.gguf` too), and optionally `template`, `params`, `system`, `license`; the config
//! blob is made from it. [`write_model`] writes a small synthetic one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::download::{self, Download};
use super::hashes::FileHashes;
use super::reply::{self, set};
use super::repo::{FileEntry, Source};
use super::{cdn, AppState, Req};

/// Directory under the root holding the registry's models (hidden: never an HF/ModelScope repo).
pub const OLLAMA_DIR: &str = ".ollama";

pub const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";

/// Layer files of a tag, in manifest order, with their media types.
const LAYERS: &[(&str, &str)] = &[
    ("model", "application/vnd.ollama.image.model"),
    ("template", "application/vnd.ollama.image.template"),
    ("system", "application/vnd.ollama.image.system"),
    ("params", "application/vnd.ollama.image.params"),
    ("license", "application/vnd.ollama.image.license"),
];

/// One blob of a tag.
struct Blob {
    media_type: &'static str,
    entry: FileEntry,
}

fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    reply::json(
        status,
        &json!({"errors": [{"code": code, "message": message, "detail": null}]}),
    )
}

fn plain_segment(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\', '\0'])
}

fn tag_dir(app: &AppState, ns: &str, model: &str, tag: &str) -> Option<PathBuf> {
    if ![ns, model, tag].iter().all(|s| plain_segment(s)) {
        return None;
    }
    let dir = app
        .store
        .root()
        .join(OLLAMA_DIR)
        .join(ns)
        .join(model)
        .join(tag);
    dir.is_dir().then_some(dir)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The layers (from disk, hashed once like any file) and the config blob of one tag.
async fn blobs(app: &AppState, dir: &Path) -> std::io::Result<(Vec<Blob>, Blob)> {
    let mut layers = Vec::new();
    for (name, media_type) in LAYERS {
        let mut path = dir.join(name);
        if *name == "model" && !path.is_file() {
            path = match gguf_in(dir)? {
                Some(p) => p,
                None => continue,
            };
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let hashes = app
            .store
            .file_hashes(&path, meta.len(), meta.modified().ok())
            .await?;
        layers.push(Blob {
            media_type,
            entry: FileEntry {
                path: format!("sha256:{}", hashes.sha256),
                source: Source::Disk(path),
                size: meta.len(),
                lfs: true,
                hashes,
            },
        });
    }
    let diff_ids: Vec<String> = layers.iter().map(|b| b.entry.path.clone()).collect();
    let config = json!({
        "model_format": "gguf",
        "model_family": "qwen2",
        "model_families": ["qwen2"],
        "model_type": "7.6B",
        "file_type": "Q4_K_M",
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    let sha = sha256_hex(&config);
    let config = Blob {
        media_type: CONFIG_TYPE,
        entry: FileEntry {
            path: format!("sha256:{sha}"),
            size: config.len() as u64,
            source: Source::Bytes(Arc::from(config)),
            lfs: true,
            hashes: FileHashes {
                sha256: sha,
                git_oid: String::new(),
                pointer_size: 0,
            },
        },
    };
    Ok((layers, config))
}

fn gguf_in(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    found.sort();
    Ok(found.into_iter().next())
}

/// `GET|HEAD /v2/{ns}/{model}/manifests/{tag}`.
pub(crate) async fn manifest(
    app: &AppState,
    req: &Req,
    ns: &str,
    model: &str,
    tag: &str,
) -> Response {
    let Some(dir) = tag_dir(app, ns, model, tag) else {
        return registry_error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            &format!("manifest unknown: {ns}/{model}:{tag}"),
        );
    };
    let (layers, config) = match blobs(app, &dir).await {
        Ok(x) => x,
        Err(e) => return reply::plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let layer =
        |b: &Blob| json!({"mediaType": b.media_type, "digest": b.entry.path, "size": b.entry.size});
    let body = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": layer(&config),
        "layers": layers.iter().map(layer).collect::<Vec<_>>(),
    })
    .to_string();
    let digest = format!("sha256:{}", sha256_hex(body.as_bytes()));
    let len = body.len();
    let mut resp = Response::new(if req.is_head() {
        axum::body::Body::empty()
    } else {
        axum::body::Body::from(body)
    });
    let h = resp.headers_mut();
    set(h, header::CONTENT_TYPE, MANIFEST_TYPE);
    set(h, header::CONTENT_LENGTH, &len.to_string());
    set(h, HeaderName::from_static("docker-content-digest"), &digest);
    resp
}

async fn find_blob(app: &AppState, ns: &str, model: &str, digest: &str) -> Option<FileEntry> {
    let model_dir = app.store.root().join(OLLAMA_DIR).join(ns).join(model);
    if !plain_segment(ns) || !plain_segment(model) {
        return None;
    }
    for tag in std::fs::read_dir(&model_dir).ok()?.flatten() {
        let Ok((layers, config)) = blobs(app, &tag.path()).await else {
            continue;
        };
        if let Some(b) = layers
            .into_iter()
            .chain(std::iter::once(config))
            .find(|b| b.entry.path == digest)
        {
            return Some(b.entry);
        }
    }
    None
}

/// `HEAD|GET /v2/{ns}/{model}/blobs/sha256:HEX`: a 307 to the signed blob URL on the other origin.
pub(crate) async fn blob(
    app: &AppState,
    req: &Req,
    ns: &str,
    model: &str,
    digest: &str,
) -> Response {
    if find_blob(app, ns, model, digest).await.is_none() {
        return registry_error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        );
    }
    let origin = cdn::other_origin(req.host_header(), app.port);
    let path = format!("/_ollama_cdn/{ns}/{model}/{digest}");
    let location = app.cdn.url(&origin, &path, app.faults.cdn_expiry());
    let mut resp = reply::plain(StatusCode::TEMPORARY_REDIRECT, "");
    set(resp.headers_mut(), header::LOCATION, &location);
    resp
}

/// `HEAD|GET /_ollama_cdn/{ns}/{model}/sha256:HEX?expires=&signature=`.
pub(crate) async fn cdn_blob(
    app: &Arc<AppState>,
    req: &Req,
    ns: &str,
    model: &str,
    digest: &str,
) -> Response {
    if app.cdn.verify(&req.raw_path, req.query.as_deref()).is_err() {
        return reply::plain(
            StatusCode::FORBIDDEN,
            "Request has expired or is not signed",
        );
    }
    let Some(entry) = find_blob(app, ns, model, digest).await else {
        return registry_error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        );
    };
    let mut meta = HeaderMap::new();
    set(
        &mut meta,
        HeaderName::from_static("docker-content-digest"),
        digest,
    );
    set(&mut meta, header::ETAG, &format!("\"{digest}\""));
    download::respond(
        app,
        Download {
            entry: &entry,
            head: req.is_head(),
            meta,
            range: req.range(),
            stats_key: req.raw_path.clone(),
            fault_text: req.decoded.clone(),
        },
    )
    .await
}

/// Writes a small synthetic Ollama model `NS/MODEL:TAG` (`MODEL:TAG` means `library/`) under
/// `root/.ollama/`: a GGUF-headed `model` blob of `size` bytes (deterministic from `seed`), a
/// template, params and license. Returns the tag directory.
pub fn write_model(root: &Path, name: &str, size: usize, seed: u64) -> std::io::Result<PathBuf> {
    let (path, tag) = name.split_once(':').unwrap_or((name, "latest"));
    let (ns, model) = path.split_once('/').unwrap_or(("library", path));
    let dir = root.join(OLLAMA_DIR).join(ns).join(model).join(tag);
    std::fs::create_dir_all(&dir)?;
    // GGUF v3 header: magic, version, tensor count 0, metadata count 0; then pseudo-random bytes.
    let mut blob = Vec::with_capacity(size);
    blob.extend_from_slice(b"GGUF");
    blob.extend_from_slice(&3u32.to_le_bytes());
    blob.extend_from_slice(&0u64.to_le_bytes());
    blob.extend_from_slice(&0u64.to_le_bytes());
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    while blob.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blob.extend_from_slice(&x.to_le_bytes());
    }
    blob.truncate(size.max(24));
    std::fs::write(dir.join("model"), blob)?;
    std::fs::write(
        dir.join("template"),
        "{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}<｜Assistant｜>\n",
    )?;
    std::fs::write(
        dir.join("params"),
        r#"{"stop":["<｜begin▁of▁sentence｜>","<｜end▁of▁sentence｜>"]}"#,
    )?;
    std::fs::write(
        dir.join("license"),
        "MIT License (hubsim synthetic model)\n",
    )?;
    Ok(dir)
}
