//! The ModelScope protocol: `/api/v1/models/{repo}/revisions` to pin a branch or tag to a commit,
//! `/api/v1/models/{repo}/repo/files?Revision=..&Recursive=True` for files with sha256 and size,
//! `/api/v1/models/{repo}/repo?Revision=..&FilePath=..` for the bytes. Answers come in an envelope
//! `{"Code", "Data", "Message", "Success"}`; errors are told apart by HTTP status.

use ferry_sharder::FileHash;
use serde::Deserialize;
use url::Url;

use super::hub::{is_commit, Hub, Say};
use super::Refused;
use crate::error::{Error, Result};
use crate::http::display_url;
use crate::snapshot::{RemoteFile, Snapshot};

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "Data")]
    data: Option<T>,
    #[serde(rename = "Success", default = "yes")]
    success: bool,
    #[serde(rename = "Message", default)]
    message: String,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Files {
    #[serde(rename = "Files", default)]
    files: Vec<FileEntry>,
}

#[derive(Deserialize)]
struct FileEntry {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Size", default)]
    size: u64,
    #[serde(rename = "Sha256", default)]
    sha256: String,
}

#[derive(Deserialize)]
struct Revisions {
    #[serde(rename = "RevisionMap")]
    map: RevisionMap,
}

#[derive(Deserialize)]
struct RevisionMap {
    #[serde(rename = "Branches", default)]
    branches: Vec<RevisionRef>,
    #[serde(rename = "Tags", default)]
    tags: Vec<RevisionRef>,
}

#[derive(Deserialize)]
struct RevisionRef {
    #[serde(rename = "Revision")]
    revision: String,
    #[serde(rename = "CommitId", default)]
    commit: String,
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn resolve(src: &Hub, repo: &str, revision: &str) -> Result<Snapshot> {
    let commit = if is_commit(revision) {
        revision.to_ascii_lowercase()
    } else {
        pin(src, repo, revision).await?
    };
    let url = src.api_url(&format!(
        "api/v1/models/{repo}/repo/files?Revision={}&Recursive=True",
        q(&commit)
    ))?;
    let (env, _): (Envelope<Files>, _) = src.get_json(url.clone(), repo, revision).await?;
    if !env.success {
        // The modelscope client takes this as an empty repo; a silent empty download is worse
        // than an error.
        return Err(Error::BadResponse {
            url: display_url(&url),
            reason: format!("listing refused: {}", env.message),
        });
    }
    let mut files = Vec::new();
    for e in env.data.map(|d| d.files).unwrap_or_default() {
        if e.kind == "tree" {
            continue;
        }
        let Some(path) = e.path else { continue };
        if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::BadResponse {
                url: display_url(&url),
                reason: format!("{path:?} is listed without a sha256, so it cannot be verified"),
            });
        }
        files.push(RemoteFile {
            path,
            size: e.size,
            hash: FileHash::Sha256(e.sha256.to_ascii_lowercase()),
        });
    }
    Ok(Snapshot {
        repo: repo.to_string(),
        revision: revision.to_string(),
        commit,
        files,
    })
}

/// Pins a branch or tag to its commit, so every file comes from the same one.
async fn pin(src: &Hub, repo: &str, revision: &str) -> Result<String> {
    let url = src.api_url(&format!("api/v1/models/{repo}/revisions"))?;
    let (env, _): (Envelope<Revisions>, _) = src.get_json(url.clone(), repo, revision).await?;
    let map = env.data.map(|d| d.map).ok_or_else(|| Error::BadResponse {
        url: display_url(&url),
        reason: "no RevisionMap".into(),
    })?;
    map.branches
        .iter()
        .chain(map.tags.iter())
        .find(|r| r.revision == revision && is_commit(&r.commit))
        .map(|r| r.commit.to_ascii_lowercase())
        .ok_or_else(|| Error::RevisionNotFound {
            repo: repo.into(),
            revision: revision.into(),
        })
}

pub fn file_url(src: &Hub, repo: &str, commit: &str, path: &str) -> Url {
    src.endpoint
        .join(&format!(
            "api/v1/models/{repo}/repo?Revision={}&FilePath={}",
            q(commit),
            q(path)
        ))
        .unwrap_or_else(|_| src.endpoint.clone())
}

/// Explains a refusal of a request about `repo` at `revision`.
pub fn refusal(src: &Hub, repo: &str, revision: &str, r: &Refused<'_>) -> Error {
    let Refused {
        path,
        status,
        body,
        url,
        ..
    } = *r;
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["Message", "message", "msg", "error"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_string))
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    let lower = message.to_ascii_lowercase();
    let say = Say { hub: src, repo };
    match status {
        401 => say.token(message),
        403 => say.gated(message),
        404 if path.is_some() => say.file_not_found(path, revision),
        404 if lower.contains("revision") || lower.contains("branch") => {
            say.revision_not_found(revision)
        }
        404 => say.repo_not_found(),
        _ => Error::Http {
            url: display_url(url),
            status,
            message,
        },
    }
}
