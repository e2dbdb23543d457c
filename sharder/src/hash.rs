//! The file hashes sources publish.
//!
//! Hugging Face names LFS files by the sha256 of their bytes and regular files by their git blob
//! sha1 (`sha1("blob <len>\0" + bytes)`); ModelScope gives sha256 for every file. S3 objects that
//! ferry did not upload carry what the server has: a sha256 checksum, an ETag that is the MD5 of
//! the bytes (single-part, not KMS-encrypted), or an opaque ETag.

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

/// The hash a file must have, as published by its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileHash {
    /// sha256 of the raw bytes, lowercase hex.
    Sha256(String),
    /// git blob sha1 (`blob <len>\0` prefix), lowercase hex.
    GitSha1(String),
    /// MD5 of the raw bytes, lowercase hex: an S3 single-part ETag, which is exactly that.
    Md5(String),
    /// An S3 object known only by its ETag (no ferry manifest, no S3 sha256 checksum): the
    /// ETag is not a content hash ferry can recompute (multipart and encrypted objects), so the
    /// check is the size alone, and the ETag is kept to say which object version was taken.
    S3Etag(String),
}

impl FileHash {
    pub fn hex(&self) -> &str {
        match self {
            FileHash::Sha256(h) | FileHash::GitSha1(h) | FileHash::Md5(h) | FileHash::S3Etag(h) => {
                h
            }
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            FileHash::Sha256(_) => "sha256",
            FileHash::GitSha1(_) => "git-sha1",
            FileHash::Md5(_) => "md5",
            FileHash::S3Etag(_) => "size+etag",
        }
    }

    /// A fresh hasher that computes this kind of hash for a file of `size` bytes.
    pub fn hasher(&self, size: u64) -> Hasher {
        match self {
            FileHash::Sha256(_) => Hasher::sha256(),
            FileHash::GitSha1(_) => Hasher::git_sha1(size),
            FileHash::Md5(_) => Hasher::Md5(md5::Md5::new()),
            FileHash::S3Etag(etag) => Hasher::SizeOnly {
                etag: etag.clone(),
                expected: size,
                seen: 0,
            },
        }
    }
}

impl std::fmt::Display for FileHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

/// An incremental hasher for either [`FileHash`] kind.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    GitSha1(sha1::Sha1),
    Md5(md5::Md5),
    /// Counts bytes for [`FileHash::S3Etag`]: finishes to the ETag only when exactly the expected
    /// number of bytes went through.
    SizeOnly {
        etag: String,
        expected: u64,
        seen: u64,
    },
}

impl Hasher {
    pub fn sha256() -> Self {
        Hasher::Sha256(sha2::Sha256::new())
    }

    pub fn git_sha1(size: u64) -> Self {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {size}\0").as_bytes());
        Hasher::GitSha1(h)
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::GitSha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
            Hasher::SizeOnly { seen, .. } => *seen += data.len() as u64,
        }
    }

    pub fn finish(self) -> FileHash {
        match self {
            Hasher::Sha256(h) => FileHash::Sha256(hex::encode(h.finalize())),
            Hasher::GitSha1(h) => FileHash::GitSha1(hex::encode(h.finalize())),
            Hasher::Md5(h) => FileHash::Md5(hex::encode(h.finalize())),
            Hasher::SizeOnly {
                etag,
                expected,
                seen,
            } => {
                if seen == expected {
                    FileHash::S3Etag(etag)
                } else {
                    FileHash::S3Etag(format!("{etag} (size {seen}, expected {expected})"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_etag_checks_the_size_only() {
        let expected = FileHash::S3Etag("9b2cf535f27731c974343645a3985328".into());
        let mut h = expected.hasher(5);
        h.update(b"hel");
        h.update(b"lo");
        assert_eq!(h.finish(), expected);
        let mut h = expected.hasher(5);
        h.update(b"hell");
        assert_ne!(h.finish(), expected, "a short file must not pass");
        assert_eq!(expected.algorithm(), "size+etag");
    }

    #[test]
    fn known_vectors() {
        let mut h = Hasher::git_sha1(0);
        h.update(b"");
        assert_eq!(h.finish().hex(), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        let mut h = Hasher::git_sha1(6);
        h.update(b"hello\n");
        assert_eq!(h.finish().hex(), "ce013625030ba8dba906f756967f9e9ca394464a");
        let mut h = FileHash::Md5(String::new()).hasher(6);
        h.update(b"hello\n");
        assert_eq!(h.finish().hex(), "b1946ac92492d2347c6235b4d2611184");
        let mut h = Hasher::sha256();
        h.update(b"hello\n");
        assert_eq!(
            h.finish().hex(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
    }
}
