//! `ferry status --check-volume`: does this volume give what ferry relies on?
//!
//! Runs the primitives ferry's coordination rests on inside `DIR/.ferry/` (an `O_EXCL` create
//! and a link(2) that refuse an existing name, a rename over a file), the one it only uses when
//! present (flock), reads the mount's type and options from `/proc/self/mountinfo` and says which
//! ones matter, and estimates the file server's clock offset from a fresh file's mtime (lease
//! heartbeats compare clocks across nodes).

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::layout;

/// One probe and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// ferry needs this one; a failed optional one (flock) only costs an early refusal.
    pub required: bool,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VolumeReport {
    pub dir: String,
    pub fs_type: Option<String>,
    pub mount_point: Option<String>,
    pub mount_options: Option<String>,
    pub checks: Vec<Check>,
    /// The file's mtime minus this node's clock, in ms (positive: the server is ahead).
    pub clock_offset_ms: Option<i64>,
    /// What the mount options mean for ferry, in words.
    pub advice: Vec<String>,
}

impl VolumeReport {
    /// Every required primitive works.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok || !c.required)
    }
}

/// Probes `dir` (which must exist); the probe files are removed afterwards.
pub fn check_volume(dir: &Path) -> Result<VolumeReport> {
    let probe = dir.join(layout::STATE_DIR).join(format!(
        "volume-probe-{}-{}",
        crate::host::hostname(),
        std::process::id()
    ));
    std::fs::create_dir_all(&probe).map_err(|e| Error::io(&probe, e))?;
    let before = SystemTime::now();
    let checks = vec![
        check_excl(&probe),
        check_link(&probe),
        check_rename(&probe),
        check_flock(&probe),
    ];
    let after = SystemTime::now();
    let clock_offset_ms = std::fs::metadata(probe.join("a"))
        .and_then(|m| m.modified())
        .ok()
        .map(|m| offset_ms(m, before, after));
    let _ = std::fs::remove_dir_all(&probe);
    let mount = mount_of(dir);
    let advice = advice(mount.as_ref(), clock_offset_ms);
    Ok(VolumeReport {
        dir: dir.display().to_string(),
        fs_type: mount.as_ref().map(|m| m.fs_type.clone()),
        mount_point: mount.as_ref().map(|m| m.point.display().to_string()),
        mount_options: mount.as_ref().map(|m| m.options.clone()),
        checks,
        clock_offset_ms,
        advice,
    })
}

fn offset_ms(mtime: SystemTime, before: SystemTime, after: SystemTime) -> i64 {
    let ms = |t: SystemTime| crate::lease::unix_ms(t) as i64;
    let (m, b, a) = (ms(mtime), ms(before), ms(after));
    if m < b {
        m - b
    } else if m > a {
        m - a
    } else {
        0
    }
}

fn check(name: &'static str, required: bool, r: std::result::Result<String, String>) -> Check {
    let ok = r.is_ok();
    Check {
        name,
        required,
        ok,
        detail: r.unwrap_or_else(|e| e),
    }
}

fn create_new(p: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new().write(true).create_new(true).open(p)
}

fn check_excl(probe: &Path) -> Check {
    let a = probe.join("a");
    let r = match create_new(&a) {
        Err(e) => Err(format!("O_EXCL create failed: {e}")),
        Ok(_) => match create_new(&a) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Ok("a second O_EXCL create of one name is refused".to_string())
            }
            Err(e) => Err(format!("second O_EXCL create failed oddly: {e}")),
            Ok(_) => Err("a second O_EXCL create of one name succeeded".into()),
        },
    };
    check("o_excl_create", true, r)
}

fn check_link(probe: &Path) -> Check {
    let (a, b) = (probe.join("a"), probe.join("b"));
    let r = match std::fs::hard_link(&a, &b) {
        Err(e) => Err(format!(
            "link(2) failed: {e} (leases and the slice pin need it)"
        )),
        Ok(()) => match std::fs::hard_link(&a, &b) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Ok("link(2) onto an existing name is refused".to_string())
            }
            Err(e) => Err(format!("second link(2) failed oddly: {e}")),
            Ok(()) => Err("link(2) onto an existing name succeeded".into()),
        },
    };
    check("link", true, r)
}

fn check_rename(probe: &Path) -> Check {
    let (c, b) = (probe.join("c"), probe.join("b"));
    let r = std::fs::write(&c, b"new")
        .and_then(|()| std::fs::rename(&c, &b))
        .and_then(|()| std::fs::read(&b))
        .map_err(|e| format!("rename over a file failed: {e}"))
        .and_then(|got| {
            (got == b"new")
                .then(|| "rename replaces a file whole".to_string())
                .ok_or_else(|| "after rename the target still shows the old content".into())
        });
    check("rename", true, r)
}

fn check_flock(probe: &Path) -> Check {
    let r = std::fs::File::open(probe.join("a"))
        .and_then(|f| f.try_lock().map_err(std::io::Error::from))
        .map(|()| {
            "flock works on this node (whether it holds across nodes needs a second node: see the README)"
                .to_string()
        })
        .map_err(|e| format!("flock fails here ({e}): ferry relies on its lease alone"));
    check("flock", false, r)
}

struct Mount {
    point: PathBuf,
    fs_type: String,
    options: String,
}

/// The mount holding `dir`: the longest mount point that prefixes its canonical path.
fn mount_of(dir: &Path) -> Option<Mount> {
    let dir = dir.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - TYPE SOURCE SUPER_OPTS
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let point = PathBuf::from(l.get(4)?.replace("\\040", " "));
            let fs_type = r.first()?.to_string();
            let options = format!("{},{}", l.get(5)?, r.get(2).unwrap_or(&""));
            dir.starts_with(&point).then_some(Mount {
                point,
                fs_type,
                options,
            })
        })
        .max_by_key(|m| m.point.as_os_str().len())
}

fn advice(mount: Option<&Mount>, offset: Option<i64>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = mount {
        let has = |o: &str| {
            m.options
                .split(',')
                .any(|x| x == o || x.starts_with(&format!("{o}=")))
        };
        let value = |o: &str| {
            m.options
                .split(',')
                .find_map(|x| x.strip_prefix(&format!("{o}=")).map(String::from))
        };
        if m.fs_type.starts_with("nfs") {
            if has("nolock") || matches!(value("local_lock").as_deref(), Some("flock" | "all")) {
                out.push("flock is node-local on this mount (nolock/local_lock): fine for ferry, which uses its lease".into());
            }
            match value("lookupcache").as_deref() {
                None | Some("all") => out.push("lookupcache=all (default) caches missing files too: a gate may see a new file late; mount with lookupcache=positive or raise FERRY_VISIBILITY_WAIT to acdirmax".into()),
                _ => {}
            }
            if let Some(v) = value("acdirmax").or_else(|| value("actimeo")) {
                out.push(format!("directory attributes may be {v}s stale on other nodes: FERRY_VISIBILITY_WAIT of at least {v}s covers it"));
            }
        } else if m.fs_type == "lustre" || m.fs_type.contains("turbo") {
            if has("flock") {
                out.push("flock is coherent across clients (-o flock)".into());
            } else if has("localflock") {
                out.push("flock is node-local (-o localflock): fine for ferry".into());
            } else {
                out.push(
                    "no flock mount option: flock may fail with ENOSYS; ferry relies on its lease"
                        .into(),
                );
            }
        } else if m.fs_type.starts_with("fuse") {
            out.push("a FUSE mount: flock is node-local unless the filesystem forwards locks; ferry relies on its lease".into());
        }
    }
    if let Some(ms) = offset.filter(|ms| ms.abs() > 2_000) {
        out.push(format!("the file server's clock is {ms} ms off this node's: lease heartbeats assume clocks within a few seconds (check NTP)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_directory_passes_every_required_probe_and_is_left_clean() {
        let dir = tempfile::tempdir().unwrap();
        let r = check_volume(dir.path()).unwrap();
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.checks.len(), 4);
        assert!(r.fs_type.is_some(), "{r:?}");
        let left: Vec<_> = std::fs::read_dir(dir.path().join(".ferry"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn nfs_options_that_matter_are_explained() {
        let m = Mount {
            point: "/models".into(),
            fs_type: "nfs4".into(),
            options: "rw,relatime,vers=4.1,actimeo=30,local_lock=flock".into(),
        };
        let a = advice(Some(&m), Some(5_000)).join("\n");
        assert!(a.contains("node-local"), "{a}");
        assert!(a.contains("lookupcache=all"), "{a}");
        assert!(a.contains("30s"), "{a}");
        assert!(a.contains("5000 ms"), "{a}");
    }
}
