//! What survives a crash of one file's multipart upload: the checkpoint object
//! `PREFIX/.ferry/uploads/<id>.json` (upload id, SHA-256 state after the longest run of parts
//! both hashed and uploaded, their checksums), and the task that rewrites it as parts land.

use std::collections::BTreeMap;

use aws_sdk_s3::types::CompletedPart;
use bytes::Bytes;
use ferry_sharder::{FileHash, Hasher};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::objects::{put, sha256_b64, Prefix};
use super::sha256::{ResumableSha256, Saved};
use crate::s3::S3Url;
use crate::snapshot::RemoteFile;

/// What survives a crash for one file's multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) path: String,
    pub(super) size: u64,
    pub(super) hash: FileHash,
    pub(super) part_size: u64,
    pub(super) upload_id: String,
    /// Parts 1..=parts_done are uploaded and hashed into `sha256`.
    pub(super) parts_done: u32,
    pub(super) sha256: Option<Saved>,
    /// The sha256 (base64) of parts 1..=parts_done: CompleteMultipartUpload needs every part's
    /// checksum, and not every server (SeaweedFS) reports them in ListParts.
    #[serde(default)]
    pub(super) part_sha256: Vec<String>,
}

/// The running hash of a file: resumable for sha256, plain (restarted on resume) otherwise.
pub(super) enum Running {
    Sha(ResumableSha256),
    Other(Hasher),
}

impl Running {
    pub(super) fn new(hash: &FileHash, size: u64) -> Running {
        match hash {
            FileHash::Sha256(_) => Running::Sha(ResumableSha256::new()),
            other => Running::Other(other.hasher(size)),
        }
    }

    pub(super) fn update(&mut self, data: &[u8]) {
        match self {
            Running::Sha(h) => h.update(data),
            Running::Other(h) => h.update(data),
        }
    }

    pub(super) fn save(&self) -> Option<Saved> {
        match self {
            Running::Sha(h) => h.save(),
            Running::Other(_) => None,
        }
    }

    pub(super) fn finish(self) -> FileHash {
        match self {
            Running::Sha(h) => FileHash::Sha256(h.finish()),
            Running::Other(h) => h.finish(),
        }
    }
}

pub(super) enum Event {
    /// Part `n` is hashed: the running state after it (when saveable), and its own sha256.
    Hashed(i32, Option<Saved>, String),
    /// Part `n` is on the server (uploaded now or kept).
    Uploaded(CompletedPart),
}

/// Consumes part events and rewrites the checkpoint whenever the run of parts that are both
/// hashed and uploaded grows; returns every part for CompleteMultipartUpload.
pub(super) async fn save_checkpoints(
    prefix: &Prefix,
    mut cp: Checkpoint,
    rx: &mut mpsc::UnboundedReceiver<Event>,
) -> BTreeMap<i32, CompletedPart> {
    let mut parts: BTreeMap<i32, CompletedPart> = BTreeMap::new();
    let mut states: BTreeMap<i32, Option<Saved>> = BTreeMap::new();
    let mut shas: BTreeMap<i32, String> = (1..).zip(cp.part_sha256.iter().cloned()).collect();
    let key = checkpoint_key(&prefix.dest, &cp.path);
    while let Some(ev) = rx.recv().await {
        let mut batch = vec![ev];
        // Coalesce: under load many parts finish between two checkpoint writes.
        while let Ok(ev) = rx.try_recv() {
            batch.push(ev);
        }
        for ev in batch {
            match ev {
                Event::Hashed(n, s, sha) => {
                    states.insert(n, s);
                    shas.insert(n, sha);
                }
                Event::Uploaded(p) => {
                    if let Some(n) = p.part_number() {
                        parts.insert(n, p);
                    }
                }
            }
        }
        let mut advanced = false;
        while let (Some(_), Some(state)) = (
            parts.get(&(cp.parts_done as i32 + 1)),
            states.get(&(cp.parts_done as i32 + 1)),
        ) {
            cp.parts_done += 1;
            cp.sha256 = *state;
            cp.part_sha256.push(
                shas.get(&(cp.parts_done as i32))
                    .cloned()
                    .unwrap_or_default(),
            );
            advanced = true;
        }
        states.retain(|n, _| *n > cp.parts_done as i32);
        if advanced && cp.sha256.is_some() {
            let json = serde_json::to_vec(&cp).unwrap_or_default();
            let sha = sha256_b64(Bytes::from(json.clone()))
                .await
                .unwrap_or_default();
            if let Err(e) = put(
                &prefix.s3,
                &prefix.dest.bucket,
                &key,
                Bytes::from(json),
                &sha,
                None,
            )
            .await
            {
                // Not fatal: a resume without it re-fetches the prefix for hashing.
                tracing::warn!("{}: cannot save the upload checkpoint: {e}", cp.path);
            }
        }
    }
    // Every part with its checksum, from the server's listing or from our own hashing.
    parts
        .into_iter()
        .map(|(n, p)| {
            let sha = p
                .checksum_sha256()
                .map(str::to_string)
                .or_else(|| shas.get(&n).cloned());
            let p = CompletedPart::builder()
                .part_number(n)
                .set_e_tag(p.e_tag().map(str::to_string))
                .set_checksum_sha256(sha)
                .build();
            (n, p)
        })
        .collect()
}

/// The checkpoint object of the file at `path`.
pub(super) fn checkpoint_key(dest: &S3Url, path: &str) -> String {
    use sha2::Digest;
    let id = hex::encode(&sha2::Sha256::digest(path.as_bytes())[..12]);
    dest.key(&format!("{}/uploads/{id}.json", crate::s3::STATE_DIR))
}

/// The checkpoint of `f`'s upload, when there is one for this file at this part size.
pub(super) async fn read_checkpoint(
    prefix: &Prefix,
    f: &RemoteFile,
    part_size: u64,
) -> Option<Checkpoint> {
    let out = prefix
        .s3
        .client
        .get_object()
        .bucket(&prefix.dest.bucket)
        .key(checkpoint_key(&prefix.dest, &f.path))
        .send()
        .await
        .ok()?;
    let bytes = out.body.collect().await.ok()?.into_bytes();
    let cp: Checkpoint = serde_json::from_slice(&bytes).ok()?;
    (cp.path == f.path && cp.size == f.size && cp.hash == f.hash && cp.part_size == part_size)
        .then_some(cp)
}
