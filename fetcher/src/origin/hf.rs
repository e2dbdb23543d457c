//! The Hugging Face Hub protocol: `/api/models/{repo}/revision/{rev}` for the commit,
//! `/api/models/{repo}/tree/{commit}?recursive=true` (paged by `Link: rel="next"`) for the files,
//! `/{repo}/resolve/{commit}/{path}` for the bytes. Errors are told apart by `X-Error-Code`.

use ferry_sharder::FileHash;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use url::Url;

use super::hub::{is_commit, Hub, Say};
use super::Refused;
use crate::error::{Error, Result};
use crate::http::display_url;
use crate::snapshot::{RemoteFile, Snapshot};

/// Path segments keep `/` between them but escape everything else a URL would misread.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Deserialize)]
struct RepoInfo {
    sha: Option<String>,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: String,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    oid: String,
    size: u64,
}

pub async fn resolve(src: &Hub, repo: &str, revision: &str) -> Result<Snapshot> {
    let commit = if is_commit(revision) {
        revision.to_ascii_lowercase()
    } else {
        let rev = utf8_percent_encode(revision, NON_ALPHANUMERIC);
        let url = src.api_url(&format!("api/models/{repo}/revision/{rev}"))?;
        let (info, _): (RepoInfo, _) = src.get_json(url.clone(), repo, revision).await?;
        info.sha
            .filter(|s| is_commit(s))
            .ok_or_else(|| Error::BadResponse {
                url: display_url(&url),
                reason: "repo info has no 40-hex `sha`".into(),
            })?
    };

    let mut files = Vec::new();
    let mut next = Some(src.api_url(&format!(
        "api/models/{repo}/tree/{commit}?recursive=true&expand=false"
    ))?);
    while let Some(url) = next.take() {
        let (page, headers): (Vec<TreeEntry>, HeaderMap) =
            src.get_json(url.clone(), repo, revision).await?;
        for e in page.into_iter().filter(|e| e.kind == "file") {
            let (size, hash) = match e.lfs {
                Some(lfs) => (lfs.size, FileHash::Sha256(lfs.oid.to_ascii_lowercase())),
                None => (e.size, FileHash::GitSha1(e.oid.to_ascii_lowercase())),
            };
            if !is_hex(
                hash.hex(),
                if matches!(hash, FileHash::Sha256(_)) {
                    64
                } else {
                    40
                },
            ) {
                return Err(Error::BadResponse {
                    url: display_url(&url),
                    reason: format!("{:?} has no usable hash ({hash})", e.path),
                });
            }
            files.push(RemoteFile {
                path: e.path,
                size,
                hash,
            });
        }
        next = next_link(&headers, &url);
    }
    Ok(Snapshot {
        repo: repo.to_string(),
        revision: revision.to_string(),
        commit,
        files,
    })
}

pub fn file_url(src: &Hub, repo: &str, commit: &str, path: &str) -> Url {
    let path = utf8_percent_encode(path, PATH);
    // The repo id and commit were checked; the path is percent-encoded: joining cannot fail in
    // practice, and the endpoint itself is the fallback that makes the failure visible.
    src.endpoint
        .join(&format!("{repo}/resolve/{commit}/{path}"))
        .unwrap_or_else(|_| src.endpoint.clone())
}

/// The `Link: <url>; rel="next"` of a paged listing.
fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
            return None;
        }
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        base.join(target).ok()
    })
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Explains a refusal of a request about `repo` at `revision`.
pub fn refusal(src: &Hub, repo: &str, revision: &str, r: &Refused<'_>) -> Error {
    let Refused {
        path,
        status,
        headers,
        body,
        url,
    } = *r;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let code = header("x-error-code");
    let mut message = header("x-error-message");
    if message.is_empty() {
        message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {status}"));
    }
    let say = Say { hub: src, repo };
    // huggingface_hub's reading: the hub answers 401 for a missing repo and for a private one
    // alike (with or without `X-Error-Code: RepoNotFound`), so both are "not found" with a hint
    // about tokens; only a token the hub calls invalid is an authentication failure.
    let bad_credentials = message == "Invalid credentials in Authorization header";
    match code.as_str() {
        "GatedRepo" => say.gated(message),
        "RepoNotFound" => say.repo_not_found(),
        "RevisionNotFound" => say.revision_not_found(revision),
        "EntryNotFound" => say.file_not_found(path, revision),
        _ if status == 401 && (bad_credentials || src.http.has_token()) => say.token(message),
        _ if status == 401 => say.repo_not_found(),
        _ => Error::Http {
            url: display_url(url),
            status,
            message,
        },
    }
}
