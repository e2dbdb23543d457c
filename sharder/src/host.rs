//! Who this process is: the one place that reads the node's identity (host name, boot id, pid
//! namespace, process start), for everything other processes read back: leases, lock holders,
//! slice markers, manifests, heartbeats and `ferry status`.
//!
//! In Kubernetes the host name is the pod name (what `kubectl logs` takes); two pods of one node
//! share the boot id but not the pid namespace, so [`Identity::node`] tells whether a pid seen in
//! a file can be checked here.

/// The host name, or `unknown` when the kernel does not say (never fails: it is only a label).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its full length, and gethostname writes at most that many
    // bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The current time as RFC 3339 in UTC, seconds precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Who this process is, as leases and lock holders name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// [`hostname`]: the pod name in Kubernetes.
    pub host: String,
    /// Boot id and pid namespace: where a pid means the same process.
    pub node: String,
    /// When this process started (see [`pid_start`]).
    pub pid_start: u64,
}

/// This process's identity (never fails: unreadable parts are empty).
pub fn identity() -> Identity {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let pidns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Identity {
        host: hostname(),
        node: format!("{}/{pidns}", boot.trim()),
        pid_start: pid_start(std::process::id()).unwrap_or(0),
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
pub fn pid_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}
