//! `ferry fetch ORG/NAME --to s3://BUCKET/PREFIX`: hub bytes streamed straight into S3.
//!
//! No local copy: each file is cut into parts; parts are fetched from the hub with ranged GETs
//! (several at once), hashed in order, and uploaded as multipart parts with their sha256 sent as
//! `x-amz-checksum-sha256` so the server checks every part too. Memory is bounded by the number
//! of parts in flight (one semaphore for all files) times the part size. The upload is completed
//! only when the whole-file hash equals the hub's; otherwise it is aborted. The ferry manifest
//! object `PREFIX/.ferry/manifest.json` is written last: readers trust a prefix once it exists.
//!
//! Resume after kill -9: objects already in place are kept (their verified hub hash is in the
//! `ferry-hash` user metadata); an open multipart upload is continued ([`super::multipart`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use bytes::Bytes;
use ferry_sharder::{FileHash, Manifest};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{S3Url, MANIFEST, S3};
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::fetch::{FetchOptions, FileOutcome, FileResult, Summary};
use crate::progress::{Progress, ProgressMode};
use crate::snapshot::{RemoteFile, Snapshot};
use crate::source::Source;

/// S3's limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000 per upload.
const MIN_PART: u64 = 5 << 20;
const MAX_PART: u64 = 5 << 30;
const MAX_PARTS: u64 = 10_000;
/// Default memory for part buffers when `--connections` is not given: 512 MiB, i.e. 8 parts of
/// the default 64 MiB in flight across all files.
const MEMORY_BUDGET: u64 = 512 << 20;
/// User metadata on every object ferry writes: the hub hash it was verified against.
pub(super) const META_HASH: &str = "ferry-hash";

/// Uploads `opts.repo` from its hub to `dest`.
pub async fn fetch(opts: FetchOptions, token: Option<Secret>, dest: S3Url) -> Result<Summary> {
    let started = Instant::now();
    if opts.slice.is_some() {
        return Err(Error::Usage(
            "--slice/--slices write into a shared directory; with --to s3:// run one ferry per prefix".into(),
        ));
    }
    let source = Source::new(opts.kind, &opts.endpoint, token)?;
    let snapshot = crate::fetch::resolve(&opts, &source, None).await?;
    let part_size = part_size_for(opts.chunk_size, 0);
    let in_flight = opts
        .connections
        .unwrap_or_else(|| (MEMORY_BUDGET / part_size).max(4) as usize)
        .max(1);
    let s3 = super::connect(opts.s3_endpoint.as_deref(), in_flight + 8).await?;
    s3.check_bucket(&dest.bucket).await?;

    let listed: HashMap<String, super::source::Listed> = super::source::list(&s3, &dest)
        .await?
        .into_iter()
        .map(|o| (o.path.clone(), o))
        .collect();
    let old = super::source::read_manifest(&s3, &dest)
        .await
        .unwrap_or(None);
    if let Some(m) = &old {
        if manifest_covers(m, &snapshot, opts.kind.id(), &listed) {
            tracing::info!("{dest} is already complete and verified; nothing to do");
            return Ok(summary(
                &opts,
                &snapshot,
                reused_outcomes(&snapshot.files),
                0,
                started,
                0,
            ));
        }
        // From here on objects may change: readers must not trust the old manifest meanwhile.
        delete(&s3, &dest.bucket, &dest.key(MANIFEST)).await?;
    }

    let progress = Arc::new(Progress::new(opts.progress, None));
    progress
        .bytes_total
        .store(snapshot.total_bytes(), Ordering::Relaxed);
    progress
        .files_total
        .store(snapshot.files.len() as u64, Ordering::Relaxed);

    // Objects already in place: same size and the hub hash ferry verified them against.
    let (reused, mut todo) = find_reusable(&s3, &dest, &snapshot.files, &listed).await?;
    progress
        .bytes_reused
        .fetch_add(reused.iter().map(|f| f.size).sum(), Ordering::Relaxed);
    progress
        .files_done
        .fetch_add(reused.len() as u64, Ordering::Relaxed);
    todo.sort_by_key(|f| (f.size > part_size, f.path.clone()));

    let ctx = Arc::new(Ctx {
        s3,
        dest: dest.clone(),
        source,
        snapshot: Arc::clone(&snapshot),
        opts: opts.clone(),
        progress: Arc::clone(&progress),
        parts: Arc::new(Semaphore::new(in_flight)),
        in_flight,
        counts: Counts::default(),
    });
    let ticker = spawn_ticker(&progress, opts.progress);
    let result = futures_util::stream::iter(todo.clone().into_iter().map(|f| {
        let ctx = Arc::clone(&ctx);
        async move { ctx.upload_file(&f).await }
    }))
    .buffer_unordered(opts.jobs.max(1))
    .try_collect::<Vec<()>>()
    .await;
    ticker.abort();
    progress.finish();
    result?;

    let uploaded = ctx.counts.uploaded.load(Ordering::Relaxed);
    let kept = ctx.counts.kept.load(Ordering::Relaxed);
    tracing::info!(
        "s3 sink: {uploaded} parts uploaded, {kept} parts kept from an earlier run, {} bytes from the hub",
        progress.bytes_downloaded.load(Ordering::Relaxed)
    );
    commit_manifest(&ctx.s3, &dest, &snapshot, opts.kind.id()).await?;
    let mut outcomes = reused_outcomes(&reused);
    outcomes.extend(crate::fetch::outcomes(&todo, FileResult::Downloaded));
    outcomes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(summary(
        &opts,
        &snapshot,
        outcomes,
        progress.bytes_downloaded.load(Ordering::Relaxed),
        started,
        progress.retries.load(Ordering::Relaxed),
    ))
}

/// The part size for a file: `--chunk-size` within S3's limits, whole MiB (so every part boundary
/// is a SHA-256 block boundary), and large enough for at most 10,000 parts.
pub fn part_size_for(chunk: u64, file_size: u64) -> u64 {
    let mib = 1u64 << 20;
    let want = chunk.clamp(MIN_PART, MAX_PART);
    let needed = file_size.div_ceil(MAX_PARTS);
    want.max(needed).div_ceil(mib) * mib
}

pub(super) struct Ctx {
    pub(super) s3: S3,
    pub(super) dest: S3Url,
    pub(super) source: Source,
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) opts: FetchOptions,
    pub(super) progress: Arc<Progress>,
    /// Part buffers in flight, across all files: the memory bound.
    pub(super) parts: Arc<Semaphore>,
    pub(super) in_flight: usize,
    pub(super) counts: Counts,
}

#[derive(Default)]
pub(super) struct Counts {
    pub(super) uploaded: std::sync::atomic::AtomicU64,
    pub(super) kept: std::sync::atomic::AtomicU64,
}

impl Ctx {
    async fn upload_file(self: &Arc<Self>, f: &RemoteFile) -> Result<()> {
        if let Ok(mut ip) = self.progress.in_progress.lock() {
            ip.push(f.path.clone());
        }
        let part_size = part_size_for(self.opts.chunk_size, f.size);
        let result = if f.size <= part_size {
            self.put_small(f).await
        } else {
            match self.put_multipart(f, part_size).await {
                // The aborted upload is gone: like the hub flow, try the whole file once more.
                Err(Error::HashMismatch { .. }) => {
                    tracing::warn!(
                        "{}: {} mismatch after streaming it from the hub; uploading it again",
                        f.path,
                        f.hash.algorithm()
                    );
                    self.put_multipart(f, part_size).await
                }
                other => other,
            }
        };
        if let Ok(mut ip) = self.progress.in_progress.lock() {
            ip.retain(|p| p != &f.path);
        }
        if result.is_ok() {
            self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// A file of one part: fetched whole, verified, then one PutObject with its checksum.
    async fn put_small(&self, f: &RemoteFile) -> Result<()> {
        let key = self.dest.key(&f.path);
        let _permit = self.permit().await?;
        let mut attempt = 0;
        let bytes = loop {
            let bytes = if f.size == 0 {
                Bytes::new()
            } else {
                self.hub_get(f, 0, f.size).await?
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
            &self.s3,
            &self.dest.bucket,
            &key,
            bytes,
            &sha,
            Some(&f.hash),
        )
        .await?;
        self.counts.uploaded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(super) async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        Arc::clone(&self.parts)
            .acquire_owned()
            .await
            .map_err(|_| Error::Usage("part budget closed".into()))
    }
}

pub(super) fn mismatch(f: &RemoteFile, actual: &FileHash) -> Error {
    Error::HashMismatch {
        path: f.path.clone(),
        algorithm: f.hash.algorithm(),
        expected: f.hash.hex().to_string(),
        actual: actual.hex().to_string(),
    }
}

pub(super) async fn sha256_b64(bytes: Bytes) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        super::b64_encode(&sha2::Sha256::digest(&bytes))
    })
    .await
    .map_err(|e| Error::Task {
        task: "hash task",
        message: e.to_string(),
    })
}

pub(super) async fn put(
    s3: &S3,
    bucket: &str,
    key: &str,
    bytes: Bytes,
    sha_b64: &str,
    hash: Option<&FileHash>,
) -> Result<()> {
    let mut req = s3
        .client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_length(bytes.len() as i64)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(sha_b64)
        .body(ByteStream::from(bytes));
    if let Some(h) = hash {
        req = req.metadata(META_HASH, h.to_string());
    }
    req.send()
        .await
        .map(|_| ())
        .map_err(|e| s3.error("s3:PutObject", bucket, key, e))
}

pub(super) async fn delete(s3: &S3, bucket: &str, key: &str) -> Result<()> {
    match s3
        .client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match s3.error("s3:DeleteObject", bucket, key, e) {
            Error::S3NoSuchKey { .. } => Ok(()),
            e => Err(e),
        },
    }
}

/// An existing manifest for the same commit whose files are all listed at their sizes.
fn manifest_covers(
    m: &Manifest,
    snapshot: &Snapshot,
    source: &str,
    listed: &HashMap<String, super::source::Listed>,
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
    listed: &HashMap<String, super::source::Listed>,
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

/// The commit point: the same manifest a directory gets, as an object written last.
async fn commit_manifest(s3: &S3, dest: &S3Url, snapshot: &Snapshot, source: &str) -> Result<()> {
    let manifest = snapshot.manifest(source);
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Usage(format!("manifest: {e}")))?;
    let json = Bytes::from(json);
    let sha = sha256_b64(json.clone()).await?;
    put(s3, &dest.bucket, &dest.key(MANIFEST), json, &sha, None).await
}

fn reused_outcomes(files: &[RemoteFile]) -> Vec<FileOutcome> {
    crate::fetch::outcomes(files, FileResult::Reused)
}

fn summary(
    opts: &FetchOptions,
    snapshot: &Snapshot,
    files: Vec<FileOutcome>,
    downloaded: u64,
    started: Instant,
    retries: u64,
) -> Summary {
    let reused = files
        .iter()
        .filter(|f| f.result == FileResult::Reused)
        .map(|f| f.size)
        .sum();
    Summary {
        repo: snapshot.repo.clone(),
        source: opts.kind.id(),
        revision: snapshot.revision.clone(),
        commit: snapshot.commit.clone(),
        dir: opts.dir.clone(),
        files,
        bytes_total: snapshot.total_bytes(),
        bytes_downloaded: downloaded,
        bytes_reused: reused,
        seconds: started.elapsed().as_secs_f64(),
        retries,
    }
}

fn spawn_ticker(progress: &Arc<Progress>, mode: ProgressMode) -> tokio::task::JoinHandle<()> {
    let progress = Arc::clone(progress);
    let every = match mode {
        ProgressMode::Bar => Duration::from_millis(200),
        ProgressMode::Json => Duration::from_secs(1),
        ProgressMode::Plain | ProgressMode::Quiet => Duration::from_secs(10),
    };
    tokio::spawn(async move {
        let mut last = (Instant::now(), 0u64);
        let mut interval = tokio::time::interval(every);
        interval.tick().await;
        loop {
            interval.tick().await;
            progress.tick(&mut last);
        }
    })
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
