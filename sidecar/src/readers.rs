//! How many parallel readers a warm uses when nobody said: chosen from the storage the model is
//! on and the machine's cores, not a constant.
//!
//! Measured (docs/BENCHMARKS.md, "Warm" and "At real shard size"): on a local NVMe disk 8
//! readers reach the disk's parallel cold-read limit and 16–32 are no faster; on a spinning
//! disk parallel streams turn sequential reads into seeks; on network storage (NFS,
//! CFS, CephFS, Lustre, FUSE clients) each stream waits on round trips, so the rate grows with
//! the streams until the link or the server is full, and a node with more cores has the
//! bandwidth to use more of them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Where the model's bytes come from, as far as the reader count cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// A network or FUSE filesystem, by its name.
    Network(&'static str),
    /// A local spinning disk.
    Rotational,
    /// A local SSD, NVMe, or anything else local.
    Local,
}

/// Readers on local flash: the measured knee.
const LOCAL: usize = 8;
/// Readers on a spinning disk: two streams keep the queue busy without turning into seeks.
const ROTATIONAL: usize = 2;
/// Readers per core on network storage, and the bounds.
const NETWORK_PER_CORE: usize = 2;
const NETWORK_MIN: usize = 16;
const NETWORK_MAX: usize = 64;

/// The reader count for a warm of files under `path`, and why (for the report and the logs).
pub fn default_readers(path: &Path) -> (usize, String) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let storage = storage_of(path);
    let n = readers_for(&storage, cores);
    let why = match &storage {
        Storage::Network(fs) => format!("{fs} is network storage: {NETWORK_PER_CORE} per core"),
        Storage::Rotational => "a spinning disk".to_string(),
        Storage::Local => "local storage".to_string(),
    };
    (n, why)
}

fn readers_for(storage: &Storage, cores: usize) -> usize {
    match storage {
        Storage::Network(_) => (NETWORK_PER_CORE * cores).clamp(NETWORK_MIN, NETWORK_MAX),
        Storage::Rotational => ROTATIONAL,
        Storage::Local => LOCAL,
    }
}

/// The storage under `path` (its nearest existing ancestor): the filesystem's magic number from
/// statfs, then for a block device whether the kernel says it rotates.
pub fn storage_of(path: &Path) -> Storage {
    let Some(existing) = path.ancestors().find(|p| p.exists()) else {
        return Storage::Local;
    };
    if let Some(fs) = network_fs(existing) {
        return Storage::Network(fs);
    }
    match std::fs::metadata(existing) {
        Ok(meta) if rotational(meta.dev()) => Storage::Rotational,
        _ => Storage::Local,
    }
}

/// The network filesystem `path` is on, by statfs's `f_type` (linux/magic.h).
fn network_fs(path: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs only writes the struct it is given; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // f_type's integer type differs between libcs and architectures.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64 as u32;
    Some(match magic {
        0x6969 => "nfs",
        0x517b | 0xff53_4d42 | 0xfe53_4d42 => "smb",
        0x6573_5546 => "fuse",
        0x00c3_6400 => "cephfs",
        0x0bd0_0bd0 => "lustre",
        0x0102_1997 => "9p",
        0x4750_4653 => "gpfs",
        0x5346_414f => "afs",
        _ => return None,
    })
}

/// Whether the block device `dev` (a partition's disk, for a partition) rotates. A virtual disk
/// (virtio, Xen) is taken for flash whatever it says: virtio-blk reports "rotational" by
/// default, and on the device machine's virtio disk 2 readers and 8 reached the same
/// parallel-read limit.
fn rotational(dev: u64) -> bool {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let base = format!("/sys/dev/block/{major}:{minor}");
    let device = std::fs::canonicalize(&base).unwrap_or_default();
    let device = device.to_string_lossy();
    if device.contains("/virtio") || device.contains("/xvd") || device.contains("/vbd-") {
        return false;
    }
    [
        format!("{base}/queue/rotational"),
        format!("{base}/../queue/rotational"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .is_some_and(|s| s.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_follows_storage_and_cores() {
        assert_eq!(readers_for(&Storage::Local, 2), 8);
        assert_eq!(readers_for(&Storage::Local, 64), 8);
        assert_eq!(readers_for(&Storage::Rotational, 16), 2);
        assert_eq!(readers_for(&Storage::Network("nfs"), 2), 16);
        assert_eq!(readers_for(&Storage::Network("nfs"), 16), 32);
        assert_eq!(readers_for(&Storage::Network("nfs"), 96), 64);
    }

    #[test]
    fn a_temporary_directory_is_not_network_storage() {
        let d = tempfile::tempdir().unwrap();
        assert!(!matches!(storage_of(d.path()), Storage::Network(_)));
        // A path that does not exist yet is judged by its nearest existing parent.
        let (n, _) = default_readers(&d.path().join("not/yet"));
        assert!(n >= ROTATIONAL);
    }
}
