//! How much page cache this container can hold: its cgroup memory limit and the node's
//! available memory.
//!
//! Page cache is charged to the cgroup of the process that first reads a page, so a sidecar that
//! warms 640 GB inside a pod limited to 64 GiB only churns its own cache: the kernel reclaims
//! the first pages while it reads the last. The limit is found from `/proc/self/cgroup` and the
//! cgroup mounts in `/proc/self/mountinfo` (v2 `memory.max`, v1 `memory.limit_in_bytes`), taking
//! the smallest limit on the way up the hierarchy, since every ancestor's limit applies too.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// v1 reports "no limit" as a huge page-aligned number; anything above this is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// The memory that bounds what can stay in the page cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryBudget {
    /// The effective cgroup memory limit, when there is one.
    pub cgroup_limit: Option<u64>,
    /// The file that set it (the smallest on the way up).
    pub cgroup_limit_file: Option<PathBuf>,
    /// The cgroup's charged memory that is not page cache (process memory the cache cannot
    /// reclaim).
    pub cgroup_non_cache: Option<u64>,
    /// `MemAvailable` of `/proc/meminfo`: what the node can still give without swapping.
    pub mem_available: Option<u64>,
}

impl MemoryBudget {
    /// Reads the running process's budget; fields it cannot find stay `None` (no cgroup
    /// mounted, an unusual kernel), since a missing limit must never stop warming.
    pub fn detect() -> MemoryBudget {
        Self::detect_at(Path::new("/"))
    }

    /// Like [`MemoryBudget::detect`], with `/proc` and the cgroup mounts found under `root` (for
    /// tests).
    pub fn detect_at(root: &Path) -> MemoryBudget {
        let mut budget = MemoryBudget::default();
        if let Some((limit, file, non_cache)) = cgroup_limit(root) {
            budget.cgroup_limit = Some(limit);
            budget.cgroup_limit_file = Some(file);
            budget.cgroup_non_cache = non_cache;
        }
        budget.mem_available = std::fs::read_to_string(root.join("proc/meminfo"))
            .ok()
            .and_then(|s| meminfo_field(&s, "MemAvailable"));
        budget
    }

    /// Why `to_warm` more bytes of page cache cannot all stay resident, or `None` when they fit.
    /// `already_resident` bytes of the set are in the cache already and need no room.
    pub fn shortfall(&self, to_warm: u64, already_resident: u64) -> Option<String> {
        let need = to_warm.saturating_sub(already_resident);
        if let (Some(limit), Some(file)) = (self.cgroup_limit, &self.cgroup_limit_file) {
            let room = limit.saturating_sub(self.cgroup_non_cache.unwrap_or(0));
            if need > room {
                return Some(format!(
                    "{} to warm cannot stay resident: this container's memory limit is {} ({}), \
                     of which {} is already taken by processes, and page cache is charged to the \
                     container; the kernel will drop the first bytes while reading the last.\n  \
                     hint: raise the pod's memory limit above the part to warm, warm only this \
                     node's part with --plan/--node-rank, or leave warming off",
                    gb(to_warm),
                    gb(limit),
                    file.display(),
                    gb(self.cgroup_non_cache.unwrap_or(0)),
                ));
            }
        }
        if let Some(avail) = self.mem_available {
            if need > avail {
                return Some(format!(
                    "{} to warm cannot stay resident: the node has only {} available \
                     (MemAvailable), so the kernel will drop the first bytes while reading the \
                     last.\n  hint: warm only this node's part with --plan/--node-rank, or leave \
                     warming off",
                    gb(need),
                    gb(avail),
                ));
            }
        }
        None
    }
}

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// One `kB` field of `/proc/meminfo`, in bytes.
fn meminfo_field(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// The effective limit, the file it came from, and the non-cache usage of our own cgroup.
fn cgroup_limit(root: &Path) -> Option<(u64, PathBuf, Option<u64>)> {
    let cgroups = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string(root.join("proc/self/mountinfo")).ok()?;
    // v1 first: on a hybrid host the memory controller lives in v1 and the v2 tree carries none.
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            let dir = cgroup_dir(root, &mountinfo, path, |fstype, opts| {
                fstype == "cgroup" && opts.split(',').any(|o| o == "memory")
            })?;
            return walk_up(&dir.0, &dir.1, "memory.limit_in_bytes", |s| {
                s.trim().parse::<u64>().ok().filter(|&v| v < V1_UNLIMITED)
            })
            .map(|(limit, file)| {
                let non_cache =
                    stat_non_cache(&dir.0, &["total_cache", "cache"], "memory.usage_in_bytes");
                (limit, file, non_cache)
            });
        }
    }
    for line in cgroups.lines() {
        if let Some(path) = line.strip_prefix("0::") {
            let dir = cgroup_dir(root, &mountinfo, path, |fstype, _| fstype == "cgroup2")?;
            return walk_up(&dir.0, &dir.1, "memory.max", |s| {
                let s = s.trim();
                if s == "max" {
                    None
                } else {
                    s.parse::<u64>().ok()
                }
            })
            .map(|(limit, file)| {
                let non_cache = stat_non_cache(&dir.0, &["file"], "memory.current");
                (limit, file, non_cache)
            });
        }
    }
    None
}

/// Our cgroup's directory and the mount point above which we must not walk, from the cgroup
/// path and the mount whose filesystem matches. The mount's root (4th mountinfo field) is the
/// part of the cgroup path the mount hides (a cgroup namespace, a container runtime's bind).
fn cgroup_dir(
    root: &Path,
    mountinfo: &str,
    cgroup_path: &str,
    wanted: impl Fn(&str, &str) -> bool,
) -> Option<(PathBuf, PathBuf)> {
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 || !wanted(post[0], post[2]) {
            continue;
        }
        let (mount_root, mount_point) = (pre[3], pre[4]);
        let rel = if mount_root == "/" {
            cgroup_path
        } else {
            // Outside the mounted subtree (or "/" in a cgroup namespace): the mount point itself
            // is our cgroup as far as we can see.
            cgroup_path.strip_prefix(mount_root).unwrap_or("/")
        };
        let mount = root.join(mount_point.trim_start_matches('/'));
        let dir = mount.join(rel.trim_start_matches('/'));
        let dir = if dir.is_dir() { dir } else { mount.clone() };
        return Some((dir, mount));
    }
    None
}

/// The smallest limit in `file` from `dir` up to `mount` inclusive.
fn walk_up(
    dir: &Path,
    mount: &Path,
    file: &str,
    parse: impl Fn(&str) -> Option<u64>,
) -> Option<(u64, PathBuf)> {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let f = d.join(file);
        if let Some(v) = std::fs::read_to_string(&f).ok().and_then(|s| parse(&s)) {
            if best.as_ref().is_none_or(|(b, _)| v < *b) {
                best = Some((v, f));
            }
        }
        if d == mount {
            break;
        }
        cur = d.parent().filter(|p| p.starts_with(mount));
    }
    best
}

/// Usage minus page cache, from the usage file and the first cache field found in memory.stat.
fn stat_non_cache(dir: &Path, cache_fields: &[&str], usage_file: &str) -> Option<u64> {
    let usage: u64 = std::fs::read_to_string(dir.join(usage_file))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    let cache = cache_fields.iter().find_map(|name| {
        stat.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == *name).then(|| v.trim().parse::<u64>().ok()).flatten()
        })
    })?;
    Some(usage.saturating_sub(cache))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// A fake `/` under `root`: each file at its path (relative to `/`) with its content.
    fn tree(root: &Path, files: &[(&str, &str)]) {
        for (rel, content) in files {
            write(root, rel, content);
        }
    }

    #[test]
    fn v2_takes_the_smallest_limit_up_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let ctr = "sys/fs/cgroup/kubepods/pod1/ctr";
        tree(
            r,
            &[
                ("proc/self/cgroup", "0::/kubepods/pod1/ctr\n"),
                (
                    "proc/self/mountinfo",
                    "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
                ),
                (
                    "proc/meminfo",
                    "MemTotal: 100 kB\nMemAvailable:    2048 kB\n",
                ),
                (&format!("{ctr}/memory.max"), "max\n"),
                (&format!("{ctr}/memory.current"), "5000\n"),
                (&format!("{ctr}/memory.stat"), "anon 1000\nfile 3000\n"),
                ("sys/fs/cgroup/kubepods/pod1/memory.max", "8000\n"),
                ("sys/fs/cgroup/kubepods/memory.max", "9000\n"),
            ],
        );
        let b = MemoryBudget::detect_at(r);
        assert_eq!(b.cgroup_limit, Some(8000));
        assert!(b
            .cgroup_limit_file
            .unwrap()
            .ends_with("kubepods/pod1/memory.max"));
        assert_eq!(b.cgroup_non_cache, Some(2000));
        assert_eq!(b.mem_available, Some(2048 * 1024));
    }

    #[test]
    fn v1_inside_a_namespaced_mount_and_no_limit() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let mem = "sys/fs/cgroup/memory";
        tree(
            r,
            &[
                (
                    "proc/self/cgroup",
                    "5:cpu,cpuacct:/x\n4:memory:/kubepods/pod2/ctr\n0::/\n",
                ),
                (
                    "proc/self/mountinfo",
                    "35 31 0:32 /kubepods/pod2/ctr /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
                ),
                (&format!("{mem}/memory.limit_in_bytes"), "4096\n"),
                (&format!("{mem}/memory.usage_in_bytes"), "3000\n"),
                (&format!("{mem}/memory.stat"), "cache 1000\ntotal_cache 2500\n"),
            ],
        );
        let b = MemoryBudget::detect_at(r);
        assert_eq!(b.cgroup_limit, Some(4096));
        assert_eq!(b.cgroup_non_cache, Some(500));

        let unlimited = "9223372036854771712\n";
        write(r, &format!("{mem}/memory.limit_in_bytes"), unlimited);
        assert_eq!(MemoryBudget::detect_at(r).cgroup_limit, None);
    }

    #[test]
    fn shortfall_names_the_limit_and_what_to_do() {
        let b = MemoryBudget {
            cgroup_limit: Some(10_000_000_000),
            cgroup_limit_file: Some("/sys/fs/cgroup/memory.max".into()),
            cgroup_non_cache: Some(1_000_000_000),
            mem_available: Some(100_000_000_000),
        };
        assert_eq!(b.shortfall(8_000_000_000, 0), None);
        let msg = b.shortfall(20_000_000_000, 0).unwrap();
        assert!(
            msg.contains("10.00 GB") && msg.contains("memory.max"),
            "{msg}"
        );
        assert!(msg.contains("--plan"), "{msg}");
        // What is already resident needs no room.
        assert_eq!(b.shortfall(20_000_000_000, 15_000_000_000), None);
        let node = MemoryBudget {
            mem_available: Some(1_000),
            ..Default::default()
        };
        assert!(node.shortfall(2_000, 0).unwrap().contains("MemAvailable"));
    }

    #[test]
    fn detect_on_this_machine_does_not_fail() {
        // Whatever the host has, detection returns and MemAvailable is known on Linux.
        assert!(MemoryBudget::detect().mem_available.is_some());
    }
}
