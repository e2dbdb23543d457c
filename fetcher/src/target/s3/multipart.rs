//! One file's multipart upload: find or start the upload, fetch parts from the hub (several at
//! once), hash them in order, upload them with their sha256, checkpoint the running hash, and
//! complete the upload only when the whole-file hash is the hub's.
//!
//! Resume after kill -9: the open upload is found again (ListMultipartUploads for the key) with
//! its parts (ListParts). The checkpoint object `PREFIX/.ferry/uploads/<id>.json` holds the upload
//! id, the SHA-256 state ([`super::sha256`]) and the part checksums after the longest run of
//! parts confirmed uploaded, so hashing goes on without downloading that prefix again. Parts past
//! the checkpoint are fetched and hashed again, and kept when the server reports the same part
//! checksum (SeaweedFS does not report them; those go up again).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use ferry_sharder::FileHash;
use futures_util::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::budget::{Counts, PartBudget};
use super::checkpoint::{checkpoint_key, read_checkpoint, save_checkpoints};
use super::checkpoint::{Checkpoint, Event, Running};
use super::hub_range::HubReader;
use super::objects::{delete, mismatch, sha256_b64, Prefix, META_HASH};
use super::sha256::ResumableSha256;
use crate::error::{Error, Result};
use crate::meter::Meter;
use crate::snapshot::RemoteFile;

/// One fetched part, holding its share of the memory budget until uploaded.
struct Fetched {
    number: i32,
    bytes: Bytes,
    sha256_b64: String,
    permit: OwnedSemaphorePermit,
}

/// What a multipart upload needs: where it goes, where its bytes come from, the part budget it
/// shares with every other file, and the counters it reports into.
pub(super) struct Multipart {
    pub(super) prefix: Prefix,
    pub(super) hub: HubReader,
    pub(super) budget: PartBudget,
    pub(super) counts: Counts,
    pub(super) meter: Arc<Meter>,
}

impl Multipart {
    pub(super) async fn put_multipart(
        self: &Arc<Self>,
        f: &RemoteFile,
        part_size: u64,
    ) -> Result<()> {
        let key = self.prefix.dest.key(&f.path);
        let n_parts = f.size.div_ceil(part_size) as i32;
        let (upload_id, parts_done, running, on_server, part_sha256) =
            self.open_upload(f, part_size).await?;
        // Parts the checkpoint vouches for: not fetched, not hashed, not uploaded again.
        let (events, mut rx) = mpsc::unbounded_channel::<Event>();
        let mut kept_bytes = 0;
        for n in 1..=parts_done as i32 {
            if let Some(p) = on_server.get(&n) {
                kept_bytes += p.size;
                let _ = events.send(Event::Uploaded(p.completed.clone()));
            }
        }
        self.counts
            .kept
            .fetch_add(u64::from(parts_done), Ordering::Relaxed);
        self.meter.add_reused(kept_bytes);
        let saver = {
            let ctx = Arc::clone(self);
            let cp = Checkpoint {
                path: f.path.clone(),
                size: f.size,
                hash: f.hash.clone(),
                part_size,
                upload_id: upload_id.clone(),
                parts_done,
                sha256: running.save(),
                part_sha256,
            };
            tokio::spawn(async move { save_checkpoints(&ctx.prefix, cp, &mut rx).await })
        };

        let running = self
            .stream_parts(
                f,
                part_size,
                (&key, &upload_id),
                (parts_done, running),
                &on_server,
                &events,
            )
            .await?;
        drop(events);
        let parts = saver.await.map_err(|e| Error::Task {
            task: "checkpoint task",
            message: e.to_string(),
        })?;
        self.complete(f, &key, &upload_id, parts, running.finish(), n_parts)
            .await
    }

    /// Fetches parts `parts_done + 1..`, several at once, hashes them in order into `running`
    /// and uploads those the server does not have yet; returns the whole-file hash state.
    #[allow(clippy::too_many_arguments)]
    async fn stream_parts(
        self: &Arc<Self>,
        f: &RemoteFile,
        part_size: u64,
        (key, upload_id): (&str, &str),
        (parts_done, running): (u32, Running),
        on_server: &HashMap<i32, ServerPart>,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<Running> {
        let n_parts = f.size.div_ceil(part_size) as i32;
        let range = |n: i32| {
            let lo = (n as u64 - 1) * part_size;
            (lo, (lo + part_size).min(f.size))
        };
        let mut fetched = futures_util::stream::iter((parts_done as i32 + 1)..=n_parts)
            .map(|n| {
                let (lo, hi) = range(n);
                async move {
                    let permit = self.budget.permit().await?;
                    let bytes = self.hub.get(f, lo, hi).await?;
                    let sha256_b64 = sha256_b64(bytes.clone()).await?;
                    Ok::<_, Error>(Fetched {
                        number: n,
                        bytes,
                        sha256_b64,
                        permit,
                    })
                }
            })
            .buffered(self.budget.in_flight);
        let mut running = running;
        let mut uploads = tokio::task::JoinSet::new();
        while let Some(part) = fetched.next().await {
            let part = part?;
            // In order: the whole-file hash sees the bytes exactly as they are uploaded.
            let bytes = part.bytes.clone();
            running = tokio::task::spawn_blocking(move || {
                running.update(&bytes);
                running
            })
            .await
            .map_err(|e| Error::Task {
                task: "hash task",
                message: e.to_string(),
            })?;
            let _ = events.send(Event::Hashed(
                part.number,
                running.save(),
                part.sha256_b64.clone(),
            ));
            match on_server.get(&part.number) {
                Some(p)
                    if p.size == part.bytes.len() as u64
                        && p.sha256_b64.as_deref() == Some(part.sha256_b64.as_str()) =>
                {
                    // Uploaded by the run that was killed, after its last checkpoint.
                    self.counts.kept.fetch_add(1, Ordering::Relaxed);
                    let _ = events.send(Event::Uploaded(p.completed.clone()));
                }
                _ => {
                    let ctx = Arc::clone(self);
                    let (key, upload_id, events) =
                        (key.to_string(), upload_id.to_string(), events.clone());
                    uploads.spawn(async move {
                        let done = ctx.upload_part(&key, &upload_id, &part).await?;
                        drop(part.permit);
                        ctx.counts.uploaded.fetch_add(1, Ordering::Relaxed);
                        let _ = events.send(Event::Uploaded(done));
                        Ok::<_, Error>(())
                    });
                }
            }
            // Fail fast: an upload error stops fetching more of this file.
            while let Some(r) = uploads.try_join_next() {
                join(r)??;
            }
        }
        while let Some(r) = uploads.join_next().await {
            join(r)??;
        }
        Ok(running)
    }

    /// Completes the upload when the whole-file hash is the hub's; aborts it otherwise.
    async fn complete(
        &self,
        f: &RemoteFile,
        key: &str,
        upload_id: &str,
        parts: BTreeMap<i32, CompletedPart>,
        actual: FileHash,
        n_parts: i32,
    ) -> Result<()> {
        if actual != f.hash {
            // Never complete an object whose bytes differ from the hub's.
            self.abort(key, upload_id).await;
            let _ = delete(
                &self.prefix.s3,
                &self.prefix.dest.bucket,
                &checkpoint_key(&self.prefix.dest, &f.path),
            )
            .await;
            return Err(mismatch(f, &actual));
        }
        if parts.len() != n_parts as usize {
            return Err(Error::Task {
                task: "multipart upload",
                message: format!(
                    "{:?}: {} of {n_parts} parts recorded at completion",
                    f.path,
                    parts.len()
                ),
            });
        }
        self.prefix
            .s3
            .client
            .complete_multipart_upload()
            .bucket(&self.prefix.dest.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts.into_values().collect()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                self.prefix.s3.error(
                    "s3:PutObject (CompleteMultipartUpload)",
                    &self.prefix.dest.bucket,
                    key,
                    e,
                )
            })?;
        delete(
            &self.prefix.s3,
            &self.prefix.dest.bucket,
            &checkpoint_key(&self.prefix.dest, &f.path),
        )
        .await?;
        Ok(())
    }

    /// Finds the upload to continue (the checkpoint's, else the newest open one for the key) or
    /// starts one. Returns its id, the parts the checkpoint vouches for, the hash state after
    /// them, and the parts the server has.
    async fn open_upload(
        &self,
        f: &RemoteFile,
        part_size: u64,
    ) -> Result<(String, u32, Running, HashMap<i32, ServerPart>, Vec<String>)> {
        let key = self.prefix.dest.key(&f.path);
        let bucket = &self.prefix.dest.bucket;
        let open = self.open_uploads(&key).await?;
        let cp = read_checkpoint(&self.prefix, f, part_size).await;
        let mut chosen: Option<(String, u32, Running, Vec<String>)> = None;
        if let Some(cp) = cp.filter(|cp| open.iter().any(|(id, _)| *id == cp.upload_id)) {
            let running = match cp.sha256 {
                Some(s)
                    if matches!(f.hash, FileHash::Sha256(_))
                        && cp.part_sha256.len() == cp.parts_done as usize =>
                {
                    Some((
                        cp.parts_done,
                        Running::Sha(ResumableSha256::restore(s)),
                        cp.part_sha256,
                    ))
                }
                _ => None,
            };
            let (done, running, shas) =
                running.unwrap_or((0, Running::new(&f.hash, f.size), Vec::new()));
            chosen = Some((cp.upload_id, done, running, shas));
        } else if let Some((id, _)) = open.first() {
            chosen = Some((id.clone(), 0, Running::new(&f.hash, f.size), Vec::new()));
        }
        if let Some((id, done, running, shas)) = chosen {
            let on_server = self.list_parts(&key, &id).await?;
            // Parts must have this run's size, and the checkpoint's parts must all be there.
            let sizes_ok = on_server.iter().all(|(n, p)| {
                let lo = (*n as u64 - 1) * part_size;
                lo < f.size && p.size == part_size.min(f.size - lo)
            });
            let vouched = (1..=done as i32).all(|n| on_server.contains_key(&n));
            if sizes_ok && vouched {
                for (other, _) in open.iter().filter(|(o, _)| *o != id) {
                    tracing::info!("{key}: aborting stale multipart upload");
                    self.abort(&key, other).await;
                }
                tracing::info!(
                    "{}: resuming upload with {} parts on the server, {} hashed before",
                    f.path,
                    on_server.len(),
                    done
                );
                return Ok((id, done, running, on_server, shas));
            }
            tracing::warn!(
                "{}: the open upload does not fit this run; starting over",
                f.path
            );
        }
        for (other, _) in &open {
            tracing::info!("{key}: aborting stale multipart upload");
            self.abort(&key, other).await;
        }
        let created = self
            .prefix
            .s3
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .metadata(META_HASH, f.hash.to_string())
            .send()
            .await
            .map_err(|e| self.prefix.s3.error("s3:PutObject", bucket, &key, e))?;
        let id = created
            .upload_id()
            .ok_or_else(|| Error::S3 {
                op: "s3:PutObject",
                bucket: bucket.clone(),
                key: key.clone(),
                message: "CreateMultipartUpload returned no upload id".into(),
            })?
            .to_string();
        Ok((
            id,
            0,
            Running::new(&f.hash, f.size),
            HashMap::new(),
            Vec::new(),
        ))
    }

    /// The open multipart uploads of `key`, newest first.
    async fn open_uploads(&self, key: &str) -> Result<Vec<(String, i64)>> {
        let bucket = &self.prefix.dest.bucket;
        let open = self
            .prefix
            .s3
            .client
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(key)
            .send()
            .await
            .map_err(|e| {
                self.prefix
                    .s3
                    .error("s3:ListBucketMultipartUploads", bucket, key, e)
            })?;
        let mut open: Vec<(String, i64)> = open
            .uploads()
            .iter()
            .filter(|u| u.key() == Some(key))
            .filter_map(|u| {
                Some((
                    u.upload_id()?.to_string(),
                    u.initiated().map(|t| t.secs()).unwrap_or(0),
                ))
            })
            .collect();
        open.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        Ok(open)
    }

    /// Aborts an upload; failing to is harmless (a bucket lifecycle rule or the next run's
    /// stale-upload sweep removes it).
    async fn abort(&self, key: &str, upload_id: &str) {
        let _ = self
            .prefix
            .s3
            .client
            .abort_multipart_upload()
            .bucket(&self.prefix.dest.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<HashMap<i32, ServerPart>> {
        let bucket = &self.prefix.dest.bucket;
        let mut pages = self
            .prefix
            .s3
            .client
            .list_parts()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .into_paginator()
            .send();
        let mut out = HashMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                self.prefix
                    .s3
                    .error("s3:ListMultipartUploadParts", bucket, key, e)
            })?;
            for p in page.parts() {
                let Some(n) = p.part_number() else { continue };
                out.insert(
                    n,
                    ServerPart {
                        size: p.size().unwrap_or(0).max(0) as u64,
                        sha256_b64: p.checksum_sha256().map(str::to_string),
                        completed: CompletedPart::builder()
                            .part_number(n)
                            .set_e_tag(p.e_tag().map(str::to_string))
                            .set_checksum_sha256(p.checksum_sha256().map(str::to_string))
                            .build(),
                    },
                );
            }
        }
        Ok(out)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: &Fetched,
    ) -> Result<CompletedPart> {
        let bucket = &self.prefix.dest.bucket;
        let mut attempt = 0;
        loop {
            let sent = self
                .prefix
                .s3
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part.number)
                .content_length(part.bytes.len() as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&part.sha256_b64)
                .body(ByteStream::from(part.bytes.clone()))
                .send()
                .await;
            match sent {
                Ok(out) => {
                    return Ok(CompletedPart::builder()
                        .part_number(part.number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .checksum_sha256(&part.sha256_b64)
                        .build())
                }
                Err(e) => match self
                    .prefix
                    .s3
                    .error("s3:PutObject (UploadPart)", bucket, key, e)
                {
                    // Bytes changed between our hash and the server's: send them once more.
                    Error::S3ChecksumRejected {
                        bucket,
                        key,
                        code,
                        message,
                        ..
                    } => {
                        attempt += 1;
                        if attempt >= 2 {
                            return Err(Error::S3ChecksumRejected {
                                bucket,
                                key,
                                part: format!(" part {}", part.number),
                                code,
                                message,
                            });
                        }
                        tracing::warn!(
                            "{key}: the server rejected the checksum of part {}; sending it again",
                            part.number
                        );
                    }
                    other => return Err(other),
                },
            }
        }
    }
}

pub(super) struct ServerPart {
    pub(super) size: u64,
    pub(super) sha256_b64: Option<String>,
    pub(super) completed: CompletedPart,
}

fn join(r: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<Result<()>> {
    r.map_err(|e| Error::Task {
        task: "upload task",
        message: e.to_string(),
    })
}
