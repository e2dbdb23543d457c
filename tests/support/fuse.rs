//! Real FUSE mounts for the shared-volume tests: several views of one backing directory, each
//! standing in for one node's client of a shared volume.
//!
//! bindfs without `--enable-lock-forwarding` keeps flock inside each mount (the kernel's FUSE
//! layer takes the lock locally when the filesystem does not ask for lock requests): two bindfs
//! mounts of one directory behave like two NFS clients with `local_lock=flock`, where both
//! "hold" the lock. Measured on this machine: `flock -n` on mount 1 held, `flock -n` on mount 2
//! of the same file succeeded, a second `flock -n` on mount 1 was refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One FUSE mount, unmounted on drop.
pub struct Mount {
    pub path: PathBuf,
}

impl Mount {
    /// Mounts `backing` at `at` with bindfs and any extra options.
    pub fn bindfs(backing: &Path, at: &Path, extra: &[&str]) -> Result<Mount, String> {
        std::fs::create_dir_all(at).map_err(|e| format!("{}: {e}", at.display()))?;
        let out = Command::new("bindfs")
            .args(extra)
            .arg(backing)
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run bindfs: {e} (apt-get install bindfs fuse3)"))?;
        if !out.status.success() {
            return Err(format!(
                "bindfs {} {}: {}",
                backing.display(),
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount {
            path: at.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.path)
            .status();
    }
}

/// Two (or more) "nodes": bindfs mounts of one backing directory, in a temp dir of their own.
pub struct Volume {
    pub root: tempfile::TempDir,
    pub backing: PathBuf,
    pub nodes: Vec<Mount>,
}

impl Volume {
    /// `n` bindfs views of a fresh backing directory; Err (with the reason) where FUSE cannot be
    /// mounted on this machine.
    pub fn new(n: usize) -> Result<Volume, String> {
        let root = tempfile::tempdir().map_err(|e| e.to_string())?;
        let backing = root.path().join("backing");
        std::fs::create_dir_all(&backing).map_err(|e| e.to_string())?;
        if !Path::new("/dev/fuse").exists() {
            return Err("/dev/fuse does not exist".into());
        }
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(Mount::bindfs(
                &backing,
                &root.path().join(format!("node{i}")),
                &[],
            )?);
        }
        Ok(Volume {
            root,
            backing,
            nodes,
        })
    }

    pub fn node(&self, i: usize) -> &Path {
        &self.nodes[i].path
    }
}

/// The volume, or a loud skip: the reason goes straight to the terminal (not through the test
/// harness's capture), so a machine without FUSE never passes these tests silently.
pub fn volume_or_skip(test: &str, n: usize) -> Option<Volume> {
    match Volume::new(n) {
        Ok(v) => Some(v),
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no FUSE mount possible here ({why}); install bindfs and fuse3 \
                 and run as a user who may mount FUSE"
            );
            None
        }
    }
}

/// Whether flock on `path` conflicts across two mounts of the same file: true when a lock taken
/// through `a` makes one through `b` fail (locks forwarded to a shared server), false when both
/// succeed (node-local locks).
pub fn flock_is_shared(a: &Path, b: &Path) -> bool {
    use std::fs::File;
    let fa = File::create(a).expect("create through mount a");
    fa.try_lock().expect("flock through mount a");
    let fb = File::open(b).expect("open through mount b");
    let shared = fb.try_lock().is_err();
    drop((fa, fb));
    shared
}
