//! File hashes (sha256, git blob sha1, LFS pointer), computed once per file version and cached.
//!
//! Repos can be hundreds of GB, so a file is hashed at most once per (path, size, mtime): the first
//! listing or resolve pays, every later request reads the cache. With a cache file the hashes also
//! survive restarts (benchmarks start hubsim again and again over the same root).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// The hashes both hubs publish for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHashes {
    /// sha256 of the bytes (HF `lfs.oid` / `X-Linked-Etag`, ModelScope `Sha256`).
    pub sha256: String,
    /// HF tree `oid`: the git blob sha1 of the content, or of the LFS pointer for LFS files.
    pub git_oid: String,
    /// Byte length of the LFS pointer text (HF `lfs.pointerSize`); 0 for regular files.
    pub pointer_size: u64,
}

/// Identity of one version of a file on disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    path: PathBuf,
    size: u64,
    mtime: Option<SystemTime>,
    lfs: bool,
}

/// In-memory cache; concurrent first requests for one file share a single hashing run.
#[derive(Default)]
pub struct HashCache {
    cells: Mutex<HashMap<Key, Arc<OnceCell<FileHashes>>>>,
    /// Where to keep the hashes across restarts, if anywhere.
    file: Option<PathBuf>,
    dirty: AtomicBool,
}

/// One cached file version in the cache file.
#[derive(Serialize, Deserialize)]
struct Persisted {
    path: PathBuf,
    size: u64,
    /// Modification time as (seconds, nanoseconds) since the epoch.
    mtime: Option<(u64, u32)>,
    lfs: bool,
    hashes: FileHashes,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    hubsim_hash_cache: u32,
    files: Vec<Persisted>,
}

const CACHE_VERSION: u32 = 1;

impl HashCache {
    /// A cache backed by `file`: entries are loaded from it now (a missing or unreadable file is
    /// an empty cache) and written back by [`HashCache::save`].
    pub fn with_file(file: PathBuf) -> Self {
        let mut cells = HashMap::new();
        if let Ok(bytes) = std::fs::read(&file) {
            if let Ok(cache) = serde_json::from_slice::<CacheFile>(&bytes) {
                if cache.hubsim_hash_cache == CACHE_VERSION {
                    for p in cache.files {
                        let key = Key {
                            path: p.path,
                            size: p.size,
                            mtime: p.mtime.map(|(s, n)| UNIX_EPOCH + Duration::new(s, n)),
                            lfs: p.lfs,
                        };
                        cells.insert(key, Arc::new(OnceCell::new_with(Some(p.hashes))));
                    }
                }
            }
        }
        Self {
            cells: Mutex::new(cells),
            file: Some(file),
            dirty: AtomicBool::new(false),
        }
    }

    /// Writes the cache file if new hashes were computed since the last save (write to a
    /// temporary name, then rename, so a crash never leaves half a file).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let files: Vec<Persisted> = {
            let cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
            cells
                .iter()
                .filter_map(|(k, cell)| {
                    Some(Persisted {
                        path: k.path.clone(),
                        size: k.size,
                        mtime: k
                            .mtime
                            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                            .map(|d| (d.as_secs(), d.subsec_nanos())),
                        lfs: k.lfs,
                        hashes: cell.get()?.clone(),
                    })
                })
                .collect()
        };
        let body = serde_json::to_vec(&CacheFile {
            hubsim_hash_cache: CACHE_VERSION,
            files,
        })
        .map_err(std::io::Error::other)?;
        // Unique per save: two snapshots may finish hashing at once.
        let tmp = file.with_extension(format!(
            "tmp.{}.{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, file)
    }

    /// Hashes of `path` (which has `size` bytes and `mtime`), computing them on a blocking thread
    /// the first time.
    pub async fn get(
        &self,
        path: &Path,
        size: u64,
        mtime: Option<SystemTime>,
        lfs: bool,
    ) -> std::io::Result<FileHashes> {
        let key = Key {
            path: path.to_path_buf(),
            size,
            mtime,
            lfs,
        };
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
            cells.entry(key).or_default().clone()
        };
        let owned = path.to_path_buf();
        cell.get_or_try_init(|| async move {
            let hashes = tokio::task::spawn_blocking(move || hash_file(&owned, lfs))
                .await
                .map_err(std::io::Error::other)??;
            self.dirty.store(true, Ordering::SeqCst);
            Ok::<_, std::io::Error>(hashes)
        })
        .await
        .cloned()
    }
}

/// The git object id of a blob: sha1("blob <len>\0" + bytes).
pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())
}

/// The LFS pointer text git would store instead of the file.
pub fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

/// Reads the file once; the content's git sha1 is only needed (and only computed) for non-LFS
/// files, which are small.
fn hash_file(path: &Path, lfs: bool) -> std::io::Result<FileHashes> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut sha256 = Sha256::new();
    let mut sha1 = (!lfs).then(|| {
        let mut h = Sha1::new();
        h.update(format!("blob {len}\0").as_bytes());
        h
    });
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        if let Some(h) = sha1.as_mut() {
            h.update(&buf[..n]);
        }
    }
    let sha256 = hex::encode(sha256.finalize());
    Ok(match sha1 {
        Some(h) => FileHashes {
            sha256,
            git_oid: hex::encode(h.finalize()),
            pointer_size: 0,
        },
        None => {
            let pointer = lfs_pointer(&sha256, len);
            FileHashes {
                git_oid: git_blob_sha1(pointer.as_bytes()),
                pointer_size: pointer.len() as u64,
                sha256,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_documented_vectors() {
        assert_eq!(
            git_blob_sha1(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            git_blob_sha1(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        let pointer = lfs_pointer(sha, 6);
        assert_eq!(pointer.len(), 126);
        assert_eq!(
            git_blob_sha1(pointer.as_bytes()),
            "fa61e1ef71c9908c0926776a4aa3504b3a27f159"
        );
    }

    #[tokio::test]
    async fn a_cache_file_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        let cache_file = dir.path().join("cache.json");
        let first = HashCache::with_file(cache_file.clone());
        let h = first.get(&p, 6, meta.modified().ok(), false).await.unwrap();
        first.save().unwrap();
        // The second cache must answer from the file: prove it by changing the content behind
        // its back while keeping size and mtime.
        std::fs::write(&p, b"HELLO\n").unwrap();
        let second = HashCache::with_file(cache_file);
        let again = second
            .get(&p, 6, meta.modified().ok(), false)
            .await
            .unwrap();
        assert_eq!(again, h);
        assert!(!second.dirty.load(Ordering::SeqCst));
    }

    #[test]
    fn hashes_a_file_once_and_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        let regular = hash_file(&p, false).unwrap();
        assert_eq!(regular.git_oid, "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(
            regular.sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        let lfs = hash_file(&p, true).unwrap();
        assert_eq!(lfs.git_oid, "fa61e1ef71c9908c0926776a4aa3504b3a27f159");
        assert_eq!(lfs.pointer_size, 126);
    }
}
