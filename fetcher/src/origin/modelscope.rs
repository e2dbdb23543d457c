//! The ModelScope protocol: `/api/v1/models/{repo}/repo/files?Revision=..&Recursive=True` for
//! files with sha256 and size, `/api/v1/models/{repo}/repo?Revision=..&FilePath=..` for the
//! bytes. Answers come in an envelope `{"Code", "Data", "Message", "Success"}`; errors are told
//! apart by HTTP status.
//!
//! What the real service does, and what ferry does about it (hub-protocols.md §2.8):
//! - no commit id to rely on (`/revisions` names branches and tags only, the listing's
//!   `Revision` is per file) and only names accepted as `Revision=`: a branch or tag is pinned
//!   *by listing*: the snapshot's commit is `listing:<sha256 of the sorted path, size, sha256
//!   lines>`, every file is fetched by the revision name and verified against the sha256 of that
//!   one listing, and a later run or slice whose listing differs stops ([`Error::PinMoved`]);
//! - a listing stops silently at 3000 entries: a listing of exactly that many is re-walked per
//!   directory (`Root=`), and one that cannot be proven complete is an error;
//! - a listing answers `403` now and then: retried a few times before it is believed;
//! - field variants (`sha256`, `path`, `Name`, `Data` as a bare list) are accepted, and an empty
//!   `Sha256` is taken from the download's `X-Linked-ETag` ([`complete_hashes`]).

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_sharder::FileHash;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use super::hub::{is_commit, Hub, Say};
use super::Refused;
use crate::error::{Error, Result};
use crate::http::display_url;
use crate::snapshot::{RemoteFile, Snapshot};

/// Entries at which `repo/files` stops without saying so (directories count).
pub const LISTING_CAP: usize = 3000;
/// The prefix of a pin by listing in the manifest's `commit`.
pub const LISTING_PIN: &str = "listing:";
/// Listing 403s retried before one is believed, and the pause between.
const LISTING_403_TRIES: u32 = 3;
const LISTING_403_PAUSE: Duration = Duration::from_secs(1);
/// X-Linked-ETag look-ups at once, for listings without sha256.
const ETAG_LOOKUPS: usize = 8;

/// One listing entry, whichever field names the service used.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    dir: bool,
    size: u64,
    sha256: String,
}

impl Entry {
    fn from_json(v: &Value) -> Option<Entry> {
        let field = |names: &[&str]| names.iter().find_map(|n| v.get(*n));
        let text = |names: &[&str]| {
            field(names)
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_default()
        };
        // `Name` is only the base name when `Path` is present; alone it holds the path.
        let path = text(&["Path", "path", "Name", "name"]);
        if path.is_empty() {
            return None;
        }
        let kind = text(&["Type", "type"]);
        Some(Entry {
            path: path.trim_matches('/').to_string(),
            dir: kind == "tree",
            size: field(&["Size", "size"])
                .and_then(Value::as_u64)
                .unwrap_or(0),
            sha256: text(&["Sha256", "sha256"]).to_ascii_lowercase(),
        })
    }
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn resolve(
    src: &Hub,
    repo: &str,
    revision: &str,
    pinned: Option<&str>,
) -> Result<Snapshot> {
    // A 40-hex revision is sent as given: the hub may or may not accept one (only names are
    // known to work), and its refusal says so.
    let entries = list_all(src, repo, revision).await?;
    let mut files = Vec::new();
    for e in entries.into_values().filter(|e| !e.dir) {
        if !e.sha256.is_empty()
            && (e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(Error::BadResponse {
                url: display_url(&src.endpoint),
                reason: format!(
                    "{:?} is listed with a malformed sha256 {:?}",
                    e.path, e.sha256
                ),
            });
        }
        files.push(RemoteFile {
            path: e.path,
            size: e.size,
            hash: FileHash::Sha256(e.sha256),
        });
    }
    let commit = if is_commit(revision) {
        revision.to_ascii_lowercase()
    } else {
        let pin = listing_pin(&files);
        tracing::info!(
            "ModelScope names no commit for {repo}@{revision}: pinned by listing ({pin}); every file is verified against that listing"
        );
        pin
    };
    if let Some(p) = pinned.filter(|p| *p != commit) {
        return Err(Error::PinMoved {
            repo: repo.into(),
            revision: revision.into(),
            pinned: p.into(),
            now: commit,
        });
    }
    Ok(Snapshot {
        repo: repo.to_string(),
        revision: revision.to_string(),
        commit,
        files,
    })
}

/// `listing:` + the sha256 of one `path\tsize\tsha256\n` line per file, sorted by path: the
/// content of the revision, which is what a repeatable pin has to name.
fn listing_pin(files: &[RemoteFile]) -> String {
    let mut sorted: Vec<&RemoteFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for f in sorted {
        h.update(format!("{}\t{}\t{}\n", f.path, f.size, f.hash.hex()).as_bytes());
    }
    format!("{LISTING_PIN}{}", hex::encode(h.finalize()))
}

/// Every entry of the repo at `revision`, proven complete despite the listing cap: a listing
/// that comes back with [`LISTING_CAP`] entries may be truncated, so that subtree is listed one
/// level (`Recursive=False`) and each of its directories walked again; a one-level listing at
/// the cap cannot be split further and is an error.
async fn list_all(src: &Hub, repo: &str, revision: &str) -> Result<BTreeMap<String, Entry>> {
    let mut all = BTreeMap::new();
    let mut todo: Vec<Option<String>> = vec![None];
    while let Some(root) = todo.pop() {
        let entries = list(src, repo, revision, root.as_deref(), true).await?;
        if entries.len() < LISTING_CAP {
            absorb(&mut all, entries);
            continue;
        }
        tracing::info!(
            "{repo}: the listing of {} came back at ModelScope's cap of {LISTING_CAP} entries; listing it per directory",
            root.as_deref().unwrap_or("/")
        );
        let level = list(src, repo, revision, root.as_deref(), false).await?;
        if level.len() >= LISTING_CAP {
            return Err(Error::ListingTruncated {
                repo: repo.into(),
                revision: revision.into(),
                root: root.unwrap_or_else(|| "/".into()),
                cap: LISTING_CAP,
            });
        }
        todo.extend(
            level
                .iter()
                .filter(|e| e.dir && Some(&e.path) != root.as_ref())
                .map(|e| Some(e.path.clone())),
        );
        absorb(&mut all, level);
    }
    Ok(all)
}

fn absorb(all: &mut BTreeMap<String, Entry>, entries: Vec<Entry>) {
    for e in entries {
        all.entry(e.path.clone()).or_insert(e);
    }
}

/// One `repo/files` call; a 403 is retried a few times first (the service answers one now and
/// then for a repo it served a moment ago).
async fn list(
    src: &Hub,
    repo: &str,
    revision: &str,
    root: Option<&str>,
    recursive: bool,
) -> Result<Vec<Entry>> {
    let mut url = format!(
        "api/v1/models/{repo}/repo/files?Revision={}&Recursive={}",
        q(revision),
        if recursive { "True" } else { "False" }
    );
    if let Some(r) = root {
        url.push_str(&format!("&Root={}", q(r)));
    }
    let url = src.api_url(&url)?;
    let mut tries = 0;
    let body: Value = loop {
        tries += 1;
        match src.get_json::<Value>(url.clone(), repo, revision).await {
            Ok((v, _)) => break v,
            Err(Error::Gated { .. }) if tries < LISTING_403_TRIES => {
                tracing::warn!(
                    "{}: 403 on a listing; ModelScope answers one now and then, retrying",
                    display_url(&url)
                );
                tokio::time::sleep(LISTING_403_PAUSE * tries).await;
            }
            Err(e) => return Err(e),
        }
    };
    if body.get("Success").and_then(Value::as_bool) == Some(false) {
        // The modelscope client takes this as an empty repo; a silent empty download is worse
        // than an error.
        let message = body.get("Message").and_then(Value::as_str).unwrap_or("");
        return Err(Error::BadResponse {
            url: display_url(&url),
            reason: format!("listing refused: {message}"),
        });
    }
    let data = body.get("Data").unwrap_or(&body);
    let items = match data {
        Value::Array(a) => a.as_slice(),
        Value::Object(_) => data
            .get("Files")
            .or_else(|| data.get("files"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default(),
        _ => &[],
    };
    Ok(items.iter().filter_map(Entry::from_json).collect())
}

/// Fills in the sha256 of files the listing gave none for, from their download's
/// `X-Linked-ETag` (as the modelscope client does); a file with neither cannot be verified and
/// is refused.
pub async fn complete_hashes(src: &Hub, snapshot: &Snapshot) -> Result<Vec<RemoteFile>> {
    let revision = download_revision(&snapshot.commit, &snapshot.revision);
    futures_util::stream::iter(snapshot.files.iter().cloned().map(|mut f| async move {
        if !f.hash.hex().is_empty() {
            return Ok(f);
        }
        let url = file_url(src, &snapshot.repo, &snapshot.commit, &snapshot.revision, &f.path);
        let answer = src
            .http
            .send(Method::GET, url.clone(), Some((0, 0)), src.stall_timeout)
            .await
            .map_err(|e| Error::BadResponse {
                url: display_url(&url),
                reason: format!("cannot read X-Linked-ETag: {e}"),
            })?;
        let etag = answer
            .response
            .headers()
            .get("x-linked-etag")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().trim_start_matches("W/").trim_matches('"').to_ascii_lowercase())
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
        match etag {
            Some(sha) => {
                f.hash = FileHash::Sha256(sha);
                Ok(f)
            }
            None => Err(Error::BadResponse {
                url: display_url(&url),
                reason: format!(
                    "{:?} is listed without a sha256 at {revision} and its download names none (X-Linked-ETag), so it cannot be verified",
                    f.path
                ),
            }),
        }
    }))
    .buffered(ETAG_LOOKUPS)
    .try_collect()
    .await
}

/// The `Revision=` files are downloaded at: the commit when the hub named one, else the branch or
/// tag the listing was pinned at.
fn download_revision<'a>(commit: &'a str, revision: &'a str) -> &'a str {
    if is_commit(commit) {
        commit
    } else {
        revision
    }
}

pub fn file_url(src: &Hub, repo: &str, commit: &str, revision: &str, path: &str) -> Url {
    src.endpoint
        .join(&format!(
            "api/v1/models/{repo}/repo?Revision={}&FilePath={}",
            q(download_revision(commit, revision)),
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
    let message = serde_json::from_str::<Value>(body)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_in_every_shape_the_client_accepts() {
        let full = json!({"Name": "a.json", "Path": "d/a.json", "Type": "blob", "Size": 3, "Sha256": "AB"});
        let e = Entry::from_json(&full).unwrap();
        assert_eq!(
            (e.path.as_str(), e.size, e.sha256.as_str(), e.dir),
            ("d/a.json", 3, "ab", false)
        );
        let lower = json!({"path": "x", "type": "tree", "size": 0, "sha256": ""});
        let e = Entry::from_json(&lower).unwrap();
        assert!(e.dir);
        let name_only = json!({"Name": "d/b.bin", "Size": 9});
        assert_eq!(Entry::from_json(&name_only).unwrap().path, "d/b.bin");
        assert!(Entry::from_json(&json!({"Size": 1})).is_none());
    }

    #[test]
    fn the_pin_names_the_content_not_the_order() {
        let f = |p: &str, sha: &str| RemoteFile {
            path: p.into(),
            size: 1,
            hash: FileHash::Sha256(sha.into()),
        };
        let a = listing_pin(&[f("a", "1"), f("b", "2")]);
        assert_eq!(a, listing_pin(&[f("b", "2"), f("a", "1")]));
        assert_ne!(a, listing_pin(&[f("a", "1"), f("b", "3")]));
        assert!(a.starts_with(LISTING_PIN) && a.len() == LISTING_PIN.len() + 64);
    }
}
