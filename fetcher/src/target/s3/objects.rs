//! Single S3 object operations the uploads share: the destination [`Prefix`], a PutObject with
//! its sha256, a delete that treats "already gone" as done, and the errors for a hash that does
//! not match.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use bytes::Bytes;
use ferry_sharder::FileHash;

use crate::error::{blocking, Error, Result};
use crate::s3::{S3Url, S3};
use crate::snapshot::RemoteFile;

/// Where the upload goes: the connected client and the `s3://BUCKET/PREFIX` destination.
#[derive(Clone)]
pub(super) struct Prefix {
    pub(super) s3: S3,
    pub(super) dest: S3Url,
}

/// User metadata on every object ferry writes: the hub hash it was verified against.
pub(super) const META_HASH: &str = "ferry-hash";

pub(super) fn mismatch(f: &RemoteFile, actual: &FileHash) -> Error {
    Error::hash_mismatch(&f.path, &f.hash, std::slice::from_ref(actual))
}

pub(super) async fn sha256_b64(bytes: Bytes) -> Result<String> {
    blocking("hash task", move || {
        use sha2::Digest;
        crate::s3::b64_encode(&sha2::Sha256::digest(&bytes))
    })
    .await
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
