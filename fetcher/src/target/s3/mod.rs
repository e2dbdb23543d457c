//! `ferry fetch ORG/NAME --to s3://BUCKET/PREFIX`: an S3 prefix as a [`Target`], hub bytes
//! streamed straight into it.
//!
//! No local copy: each file is cut into parts; parts are fetched from the hub with ranged GETs
//! (several at once), hashed in order, and uploaded as multipart parts with their sha256 sent as
//! `x-amz-checksum-sha256` so the server checks every part too. Memory is bounded by the number
//! of parts in flight (one semaphore for all files) times the part size. The upload is completed
//! only when the whole-file hash equals the hub's; otherwise it is aborted. The ferry manifest
//! object `PREFIX/.ferry/manifest.json` is written last: readers trust a prefix once it exists.
//!
//! Resume after kill -9: objects already in place are kept (their verified hub hash is in the
//! `ferry-hash` user metadata); an open multipart upload is continued ([`multipart`], [`checkpoint`]).

mod budget;
mod checkpoint;
mod hub_range;
mod multipart;
mod objects;
pub mod sha256;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ferry_sharder::Manifest;
use futures_util::{StreamExt, TryStreamExt};

use super::Target;
use crate::error::{Error, Result};
use crate::meter::Meter;
use crate::origin::s3::{list, read_manifest, Listed};
use crate::origin::Ranges;
use crate::s3::{S3Url, MANIFEST, S3};
use crate::snapshot::{RemoteFile, Snapshot};
use crate::transfer::TransferOptions;
use budget::{Counts, PartBudget};
use hub_range::HubReader;
use multipart::Multipart;
use objects::{delete, mismatch, put, sha256_b64, Prefix, META_HASH};

/// S3's limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000 per upload.
const MIN_PART: u64 = 5 << 20;
const MAX_PART: u64 = 5 << 30;
const MAX_PARTS: u64 = 10_000;
/// Default memory for part buffers when `--connections` is not given: 512 MiB, i.e. 8 parts of
/// the default 64 MiB in flight across all files.
const MEMORY_BUDGET: u64 = 512 << 20;

/// An S3 prefix to upload to, connected, with what it held when the fetch started.
pub struct S3Target {
    s3: S3,
    dest: S3Url,
    opts: TransferOptions,
    listed: HashMap<String, Listed>,
    in_flight: usize,
    /// A manifest was there when the fetch started (and must be withdrawn before changes).
    had_manifest: AtomicBool,
}

impl S3Target {
    /// Connects (credentials, endpoint), checks the bucket and lists the prefix.
    pub async fn open(dest: S3Url, endpoint: Option<&str>, opts: TransferOptions) -> Result<Self> {
        let part_size = part_size_for(opts.chunk_size, 0);
        let in_flight = opts
            .connections
            .unwrap_or_else(|| (MEMORY_BUDGET / part_size).max(4) as usize)
            .max(1);
        let s3 = crate::s3::connect(endpoint, in_flight + 8).await?;
        s3.check_bucket(&dest.bucket).await?;
        let listed = list(&s3, &dest)
            .await?
            .into_iter()
            .map(|o| (o.path.clone(), o))
            .collect();
        Ok(S3Target {
            s3,
            dest,
            opts,
            listed,
            in_flight,
            had_manifest: AtomicBool::new(false),
        })
    }
}

impl Target for S3Target {
    fn location(&self) -> PathBuf {
        PathBuf::from(self.dest.to_string())
    }

    fn heartbeat(&self) -> Option<PathBuf> {
        None
    }

    async fn is_complete(&self, snapshot: &Snapshot, source: &str) -> Result<bool> {
        let old = read_manifest(&self.s3, &self.dest).await.unwrap_or(None);
        self.had_manifest.store(old.is_some(), Ordering::Relaxed);
        Ok(old.is_some_and(|m| manifest_covers(&m, snapshot, source, &self.listed)))
    }

    async fn withdraw(&self) -> Result<()> {
        if !self.had_manifest.load(Ordering::Relaxed) {
            return Ok(());
        }
        delete(&self.s3, &self.dest.bucket, &self.dest.key(MANIFEST)).await
    }

    async fn reuse(
        &self,
        _snapshot: &Snapshot,
        files: &[RemoteFile],
    ) -> Result<(Vec<RemoteFile>, Vec<RemoteFile>)> {
        find_reusable(&self.s3, &self.dest, files, &self.listed).await
    }

    async fn transfer(
        &self,
        ranges: Arc<dyn Ranges>,
        _snapshot: &Arc<Snapshot>,
        mut todo: Vec<RemoteFile>,
        meter: &Arc<Meter>,
    ) -> Result<()> {
        let part_size = part_size_for(self.opts.chunk_size, 0);
        todo.sort_by_key(|f| (f.size > part_size, f.path.clone()));
        let up = Arc::new(Multipart {
            prefix: Prefix {
                s3: self.s3.clone(),
                dest: self.dest.clone(),
            },
            hub: HubReader {
                ranges,
                meter: Arc::clone(meter),
                retry_timeout: self.opts.retry_timeout,
                stall_timeout: self.opts.stall_timeout,
            },
            budget: PartBudget::new(self.in_flight),
            counts: Counts::default(),
            meter: Arc::clone(meter),
        });
        let chunk_size = self.opts.chunk_size;
        futures_util::stream::iter(todo.into_iter().map(|f| {
            let up = Arc::clone(&up);
            async move { upload_file(&up, chunk_size, &f).await }
        }))
        .buffer_unordered(self.opts.jobs.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        tracing::info!(
            "s3 sink: {} parts uploaded, {} parts kept from an earlier run, {} bytes from the hub",
            up.counts.uploaded.load(Ordering::Relaxed),
            up.counts.kept.load(Ordering::Relaxed),
            meter.downloaded()
        );
        Ok(())
    }

    /// Objects are not read back; every part and file hash was checked on the way up.
    async fn validate(&self, _snapshot: &Snapshot, _filtered: bool) -> Result<()> {
        Ok(())
    }

    /// The commit point: the same manifest a directory gets, as an object written last.
    async fn commit(&self, snapshot: &Snapshot, source: &str) -> Result<()> {
        let manifest = snapshot.manifest(source);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Task {
            task: "manifest encoder",
            message: e.to_string(),
        })?;
        let json = Bytes::from(json);
        let sha = sha256_b64(json.clone()).await?;
        put(
            &self.s3,
            &self.dest.bucket,
            &self.dest.key(MANIFEST),
            json,
            &sha,
            None,
        )
        .await
    }
}

/// The part size for a file: `--chunk-size` within S3's limits, whole MiB (so every part boundary
/// is a SHA-256 block boundary), and large enough for at most 10,000 parts.
pub fn part_size_for(chunk: u64, file_size: u64) -> u64 {
    let mib = 1u64 << 20;
    let want = chunk.clamp(MIN_PART, MAX_PART);
    let needed = file_size.div_ceil(MAX_PARTS);
    want.max(needed).div_ceil(mib) * mib
}

/// Uploads one file: in one PutObject when it fits a part, else as a multipart upload (tried a
/// second time when the whole-file hash does not match).
async fn upload_file(up: &Arc<Multipart>, chunk_size: u64, f: &RemoteFile) -> Result<()> {
    up.meter.file_started(&f.path);
    let part_size = part_size_for(chunk_size, f.size);
    let result = if f.size <= part_size {
        put_small(up, f).await
    } else {
        match up.put_multipart(f, part_size).await {
            // The aborted upload is gone: like the hub flow, try the whole file once more.
            Err(Error::HashMismatch { .. }) => {
                tracing::warn!(
                    "{}: {} mismatch after streaming it from the hub; uploading it again",
                    f.path,
                    f.hash.algorithm()
                );
                up.put_multipart(f, part_size).await
            }
            other => other,
        }
    };
    up.meter.file_ended(&f.path, result.is_ok());
    result
}

/// A file of one part: fetched whole, verified, then one PutObject with its checksum. Uses the
/// multipart upload's prefix, hub reader, part budget and counters.
async fn put_small(up: &Multipart, f: &RemoteFile) -> Result<()> {
    let key = up.prefix.dest.key(&f.path);
    let _permit = up.budget.permit().await?;
    let mut attempt = 0;
    let bytes = loop {
        let bytes = if f.size == 0 {
            Bytes::new()
        } else {
            up.hub.get(f, 0, f.size).await?
        };
        let (expected, size) = (f.hash.clone(), f.size);
        let (actual, bytes) = tokio::task::spawn_blocking(move || {
            let mut h = expected.hasher(size);
            h.update(&bytes);
            (h.finish(), bytes)
        })
        .await
        .map_err(|e| Error::Task {
            task: "hash task",
            message: e.to_string(),
        })?;
        if actual == f.hash {
            break bytes;
        }
        attempt += 1;
        if attempt >= 2 {
            return Err(mismatch(f, &actual));
        }
        tracing::warn!(
            "{}: {} mismatch from the hub; fetching it again",
            f.path,
            f.hash.algorithm()
        );
    };
    let sha = sha256_b64(bytes.clone()).await?;
    put(
        &up.prefix.s3,
        &up.prefix.dest.bucket,
        &key,
        bytes,
        &sha,
        Some(&f.hash),
    )
    .await?;
    up.counts.uploaded.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// An existing manifest for the same commit whose files are all listed at their sizes.
fn manifest_covers(
    m: &Manifest,
    snapshot: &Snapshot,
    source: &str,
    listed: &HashMap<String, Listed>,
) -> bool {
    m.commit == snapshot.commit
        && m.source == source
        && snapshot.files.iter().all(|f| {
            m.files
                .iter()
                .any(|mf| mf.path == f.path && mf.size == f.size && mf.hash == f.hash)
                && listed.get(&f.path).is_some_and(|o| o.size == f.size)
        })
}

/// Splits files into objects already in place (same size, and the hub hash ferry recorded when
/// it verified them) and files to upload.
async fn find_reusable(
    s3: &S3,
    dest: &S3Url,
    files: &[RemoteFile],
    listed: &HashMap<String, Listed>,
) -> Result<(Vec<RemoteFile>, Vec<RemoteFile>)> {
    let checked = futures_util::stream::iter(files.iter().cloned().map(|f| async move {
        if listed.get(&f.path).is_none_or(|o| o.size != f.size) {
            return Ok::<_, Error>((f, false));
        }
        let key = dest.key(&f.path);
        let head = s3
            .client
            .head_object()
            .bucket(&dest.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| s3.error("s3:GetObject", &dest.bucket, &key, e))?;
        let same = head
            .metadata()
            .and_then(|m| m.get(META_HASH))
            .is_some_and(|h| *h == f.hash.to_string());
        Ok((f, same))
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<_>>()
    .await?;
    let (reused, todo): (Vec<_>, Vec<_>) = checked.into_iter().partition(|(_, same)| *same);
    Ok((
        reused.into_iter().map(|(f, _)| f).collect(),
        todo.into_iter().map(|(f, _)| f).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_respect_s3_limits() {
        let mib = 1u64 << 20;
        assert_eq!(part_size_for(64 * mib, 10 * mib), 64 * mib);
        assert_eq!(part_size_for(1, 10 * mib), 5 * mib);
        // 642 GB in 64 MiB parts would need 9,569 parts: fine; 1 TB would not.
        let tb = 1u64 << 40;
        let p = part_size_for(64 * mib, tb);
        assert!(tb.div_ceil(p) <= MAX_PARTS);
        assert_eq!(p % mib, 0);
        assert_eq!(part_size_for(u64::MAX / 2, 1), MAX_PART);
    }
}
