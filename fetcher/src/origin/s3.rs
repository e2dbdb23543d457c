//! `ferry fetch s3://BUCKET/PREFIX --to DIR`: an S3 prefix as an [`Origin`].
//!
//! The prefix is listed (ListObjectsV2, paginated) into a [`Snapshot`]; each file gets a
//! presigned GET URL ([`Ranges`]), and from there the shared pipeline does what it does for a hub: parallel
//! ranged GETs, journal and resume, in-order hashing, atomic publish, completion manifest.
//!
//! What a file is verified against, best first:
//! 1. the ferry manifest object `PREFIX/.ferry/manifest.json` (written last by the S3 sink, so
//!    its presence means the prefix is complete): the hub's own sha256 / git-sha1;
//! 2. the object's S3 sha256 checksum (HeadObject with checksum mode), when it is a full-object
//!    checksum (a multipart "composite" checksum is a hash of part hashes, not of the bytes);
//! 3. the ETag, when it is the MD5 of the bytes ([`FileHash::Md5`]): a single-part upload that is
//!    not encrypted with KMS or a customer key (AWS documents those ETags as not MD5);
//! 4. the size alone, with the ETag recorded ([`FileHash::S3Etag`]), and a warning that says so
//!    (multipart ETags are an MD5 of part MD5s, unverifiable without the part size).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType, ServerSideEncryption};
use ferry_sharder::{FileHash, Manifest};
use futures_util::{StreamExt, TryStreamExt};
use url::Url;

use super::{FileUrls, Origin, Ranges, Refused};
use crate::error::{Error, Result};
use crate::http::{display_url, Http};
use crate::s3::{S3Url, MANIFEST, S3, STATE_DIR};
use crate::snapshot::{RemoteFile, Snapshot};

/// Presigned URLs live as long as SigV4 allows (7 days), so a slow 642 GB download never sees
/// one expire. Temporary credentials (web identity, STS) cap this at their own expiry; a refused
/// URL fails with a hint to re-run, which resumes with fresh URLs.
const PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// HeadObject calls at once while looking for checksums.
const HEAD_CONCURRENCY: usize = 16;

/// An S3 prefix as the origin of a fetch.
pub struct S3Origin {
    s3: S3,
    url: S3Url,
}

impl S3Origin {
    /// Connects (credentials, endpoint) and checks the bucket, so a typo fails at once.
    pub async fn connect(
        url: S3Url,
        endpoint: Option<&str>,
        max_connections: usize,
    ) -> Result<S3Origin> {
        let s3 = crate::s3::connect(endpoint, max_connections).await?;
        s3.check_bucket(&url.bucket).await?;
        Ok(S3Origin { s3, url })
    }
}

impl Origin for S3Origin {
    fn id(&self) -> &'static str {
        "s3"
    }

    fn name(&self) -> &'static str {
        "S3"
    }

    fn repo(&self) -> String {
        self.url.to_string()
    }

    fn revision(&self) -> Option<&str> {
        None
    }

    async fn resolve(&self, _pinned: Option<&str>) -> Result<Snapshot> {
        resolve(&self.s3, &self.url).await
    }

    async fn open(&self, snapshot: &Snapshot) -> Result<Arc<dyn Ranges>> {
        Ok(Arc::new(presign(&self.s3, &self.url, snapshot).await?))
    }
}

/// Lists the prefix and works out each file's hash (manifest, S3 checksum, or size + ETag).
pub async fn resolve(s3: &S3, url: &S3Url) -> Result<Snapshot> {
    let listed = list(s3, url).await?;
    if listed.is_empty() {
        return Err(Error::S3EmptyPrefix {
            url: url.to_string(),
        });
    }
    if let Some(m) = read_manifest(s3, url).await? {
        return from_manifest(url, m, &listed);
    }
    let mut files = futures_util::stream::iter(listed.into_iter().map(|o| async move {
        let hash = server_hash(s3, url, &o.path, &o.etag).await?;
        Ok::<_, Error>((o, hash))
    }))
    .buffer_unordered(HEAD_CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    files.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let etag_only: Vec<&str> = files
        .iter()
        .filter(|(_, h)| matches!(h, FileHash::S3Etag(_)))
        .map(|(o, _)| o.path.as_str())
        .collect();
    if !etag_only.is_empty() {
        tracing::warn!(
            "{url}: no ferry manifest, and {} of {} objects carry no S3 sha256 checksum ({}{}): \
             those are checked by size only (their ETags are recorded, but a multipart or \
             KMS-encrypted ETag is not a hash ferry can recompute), so bytes changed on the server \
             at the same size would go unnoticed; upload with `ferry fetch ORG/NAME --to {url}` to \
             get a verified manifest",
            etag_only.len(),
            files.len(),
            etag_only[..etag_only.len().min(3)].join(", "),
            if etag_only.len() > 3 { ", …" } else { "" }
        );
    }
    // No commit to pin: name the listing itself, so a prefix that changes between two runs is a
    // different "commit" and a complete directory of the old listing is not taken as current.
    let commit = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for (o, hash) in &files {
            h.update(format!("{}\t{}\t{}\n", o.path, o.size, hash).as_bytes());
        }
        hex::encode(h.finalize())[..40].to_string()
    };
    Ok(Snapshot {
        repo: url.to_string(),
        revision: "latest".into(),
        commit,
        files: files
            .into_iter()
            .map(|(o, hash)| RemoteFile {
                path: o.path,
                size: o.size,
                hash,
            })
            .collect(),
    })
}

/// One listed object, by its path under the prefix.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub etag: String,
}

/// Every object under the prefix except ferry's own state and folder markers.
pub async fn list(s3: &S3, url: &S3Url) -> Result<Vec<Listed>> {
    let prefix = url.list_prefix();
    let mut pages = s3
        .client
        .list_objects_v2()
        .bucket(&url.bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| s3.error("s3:ListBucket", &url.bucket, &prefix, e))?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            let path = key.strip_prefix(&prefix).unwrap_or(key);
            if path.is_empty() || path.ends_with('/') || path.starts_with(&format!("{STATE_DIR}/"))
            {
                continue;
            }
            out.push(Listed {
                path: path.to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
                etag: normalize_etag(o.e_tag().unwrap_or("")),
            });
        }
    }
    Ok(out)
}

/// ETags come quoted; the engine names partial files by the first 16 characters of a hash, so a
/// short ETag from an odd server is padded.
fn normalize_etag(etag: &str) -> String {
    let e = etag.trim_matches('"').to_ascii_lowercase();
    format!("{e:0>16}")
}

/// The ferry manifest object, if the prefix has one.
pub async fn read_manifest(s3: &S3, url: &S3Url) -> Result<Option<Manifest>> {
    let key = url.key(MANIFEST);
    let out = match s3
        .client
        .get_object()
        .bucket(&url.bucket)
        .key(&key)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) => {
            return match s3.error("s3:GetObject", &url.bucket, &key, e) {
                Error::S3NoSuchKey { .. } => Ok(None),
                e => Err(e),
            }
        }
    };
    let bytes = out.body.collect().await.map_err(|e| Error::S3 {
        op: "s3:GetObject",
        bucket: url.bucket.clone(),
        key: key.clone(),
        message: e.to_string(),
    })?;
    let m: Manifest =
        serde_json::from_slice(&bytes.into_bytes()).map_err(|e| Error::S3ManifestMismatch {
            url: url.to_string(),
            reason: format!("{key} is not a ferry manifest: {e}"),
        })?;
    if m.format != ferry_sharder::manifest::FORMAT {
        return Err(Error::S3ManifestMismatch {
            url: url.to_string(),
            reason: format!(
                "manifest format {} is not the one this ferry reads",
                m.format
            ),
        });
    }
    Ok(Some(m))
}

/// The manifest names the files and their hub hashes; the listing must agree on sizes.
fn from_manifest(url: &S3Url, m: Manifest, listed: &[Listed]) -> Result<Snapshot> {
    let sizes: HashMap<&str, u64> = listed.iter().map(|o| (o.path.as_str(), o.size)).collect();
    for f in &m.files {
        match sizes.get(f.path.as_str()) {
            Some(&s) if s == f.size => {}
            Some(&s) => {
                return Err(Error::S3ManifestMismatch {
                    url: url.to_string(),
                    reason: format!("{} is {s} bytes, the manifest says {}", f.path, f.size),
                })
            }
            None => {
                return Err(Error::S3ManifestMismatch {
                    url: url.to_string(),
                    reason: format!("{} is in the manifest but not in the bucket", f.path),
                })
            }
        }
    }
    tracing::info!(
        "{url}: ferry manifest of {} at {} ({} files): verifying against the hub's hashes",
        m.repo,
        &m.commit[..12.min(m.commit.len())],
        m.files.len()
    );
    Ok(Snapshot {
        repo: url.to_string(),
        revision: m.revision,
        commit: m.commit,
        files: m
            .files
            .into_iter()
            .map(|f| RemoteFile {
                path: f.path,
                size: f.size,
                hash: f.hash,
            })
            .collect(),
    })
}

/// The object's full-object sha256 checksum as hex, when S3 has one.
/// What the server can vouch for about one object's bytes: its full-object sha256 checksum, else
/// its ETag when that is plainly the MD5 of the bytes, else the ETag as a label only.
async fn server_hash(s3: &S3, url: &S3Url, path: &str, etag: &str) -> Result<FileHash> {
    let key = url.key(path);
    let head = s3
        .client
        .head_object()
        .bucket(&url.bucket)
        .key(&key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|e| s3.error("s3:GetObject", &url.bucket, &key, e))?;
    let composite = head.checksum_type() == Some(&ChecksumType::Composite);
    let sha = head
        .checksum_sha256()
        .filter(|c| !composite && !c.contains('-'))
        .and_then(crate::s3::b64_decode)
        .filter(|d| d.len() == 32)
        .map(hex::encode);
    if let Some(sha) = sha {
        return Ok(FileHash::Sha256(sha));
    }
    let kms = matches!(
        head.server_side_encryption(),
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    );
    let customer_key = head.sse_customer_algorithm().is_some();
    Ok(if etag_is_md5(etag) && !kms && !customer_key {
        FileHash::Md5(etag.to_ascii_lowercase())
    } else {
        FileHash::S3Etag(etag.to_string())
    })
}

/// A single-part ETag is 32 hex digits; a multipart one has a `-N` suffix.
fn etag_is_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Presigned GETs of a snapshot's objects.
struct S3Ranges {
    url: S3Url,
    http: Http,
    urls: FileUrls,
}

impl Ranges for S3Ranges {
    fn http(&self) -> &Http {
        &self.http
    }

    fn file_url(&self, file: &RemoteFile) -> Url {
        self.urls.get(file)
    }

    fn refusal(&self, r: &Refused<'_>) -> Error {
        refusal(&self.url, r)
    }
}

async fn presign(s3: &S3, url: &S3Url, snapshot: &Snapshot) -> Result<S3Ranges> {
    let config = PresigningConfig::expires_in(PRESIGN_EXPIRY)
        .map_err(|e| Error::Usage(format!("presigning: {e}")))?;
    let mut urls = HashMap::new();
    for f in &snapshot.files {
        let key = url.key(&f.path);
        let req = s3
            .client
            .get_object()
            .bucket(&url.bucket)
            .key(&key)
            .presigned(config.clone())
            .await
            .map_err(|e| s3.error("s3:GetObject", &url.bucket, &key, e))?;
        let u = Url::parse(req.uri()).map_err(|e| Error::BadResponse {
            url: key.clone(),
            reason: format!("the SDK presigned an unparsable URL: {e}"),
        })?;
        urls.insert(f.path.clone(), u);
    }
    // The transfer's client must see the objects' host as its own origin, so a refusal is
    // explained by `refusal` below instead of being retried as an expired CDN redirect.
    let origin = urls
        .values()
        .next()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| s3.endpoint.clone());
    let (fallback, http) = Http::for_endpoint(&origin, &[], None, None)?;
    Ok(S3Ranges {
        url: url.clone(),
        http,
        urls: FileUrls::new(urls, fallback),
    })
}

/// Explains a refused presigned GET.
fn refusal(url: &S3Url, r: &Refused<'_>) -> Error {
    let code = between(r.body, "<Code>", "</Code>").unwrap_or_default();
    let message = between(r.body, "<Message>", "</Message>").unwrap_or_default();
    let (bucket, key) = (url.bucket.clone(), url.key(r.path.unwrap_or("")));
    match (r.status, code.as_str()) {
        (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken") => {
            Error::S3BadCredentials {
                endpoint: r.url.origin().ascii_serialization(),
                bucket,
                code,
                message,
            }
        }
        (403, _) => Error::S3AccessDenied {
            op: "s3:GetObject",
            bucket,
            key,
            message: format!(
                "{code}: {message} (a presigned URL; if it expired with temporary credentials, re-run to resume with fresh ones)"
            ),
        },
        (404, _) => Error::S3NoSuchKey { bucket, key },
        (status, _) => Error::Http {
            url: display_url(r.url),
            status,
            message: format!("{code}: {message}"),
        },
    }
}

fn between(s: &str, open: &str, close: &str) -> Option<String> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(s[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_normalized() {
        assert_eq!(
            normalize_etag("\"9B2CF535F27731C974343645A3985328\""),
            "9b2cf535f27731c974343645a3985328"
        );
        assert_eq!(normalize_etag("\"abc\""), "0000000000000abc");
    }
}
