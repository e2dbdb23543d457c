//! Nodes with links of their own, for the scale-out tests and benchmark: N network namespaces,
//! each joined to the host by a veth pair whose host side is rate-capped with `tc` (a token
//! bucket on the host side's egress: what the node downloads). hubsim listens on the host (bind
//! 0.0.0.0); a node reaches it at its veth's host address. Commands run inside a node with
//! `ip netns exec`, in a pid namespace of their own as well (`unshare --pid`), so a lease taken
//! there names another "node" and a kill -9 is noticed only by its heartbeat going stale, as
//! between real machines. Everything is removed on drop.
//!
//! Needs root and iproute2 (`ip`, `tc`); [`Nodes::or_skip`] says so loudly and skips elsewhere.

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One node: a namespace and its capped link.
pub struct Node {
    pub ns: String,
    /// The veth end on the host (where the cap is) and its address: the node's way to the hub.
    pub host_if: String,
    pub host_ip: String,
    pub node_ip: String,
    pub mbit: u32,
}

/// A set of nodes, removed on drop.
pub struct Nodes {
    pub nodes: Vec<Node>,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e} (apt-get install iproute2)", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Nodes {
    /// One node per rate (Mbit/s, 10^6 bits) in `mbit`.
    pub fn new(mbit: &[u32]) -> Result<Nodes, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (network namespaces and tc need CAP_NET_ADMIN)".into());
        }
        let set = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Names unique per process and set (interface names have at most 15 bytes); addresses
        // in 10.64.0.0/10, one /30 per node.
        let tag = format!("fy{}{}", pid % 100_000, set % 100);
        let (a, b) = (64 + pid % 128, set % 256);
        let mut nodes = Nodes { nodes: Vec::new() };
        for (k, &rate) in mbit.iter().enumerate() {
            let node = Node {
                ns: format!("{tag}n{k}"),
                host_if: format!("{tag}h{k}"),
                host_ip: format!("10.{a}.{b}.{}", 4 * k + 1),
                node_ip: format!("10.{a}.{b}.{}", 4 * k + 2),
                mbit: rate,
            };
            let peer = format!("{tag}p{k}");
            // Pushed first so that drop removes what was made even if a later step fails.
            let (ns, host_if) = (node.ns.clone(), node.host_if.clone());
            let (host_ip, node_ip) = (node.host_ip.clone(), node.node_ip.clone());
            nodes.nodes.push(node);
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer,
            ])?;
            sh(&["ip", "link", "set", &peer, "netns", &ns])?;
            sh(&[
                "ip",
                "addr",
                "add",
                &format!("{host_ip}/30"),
                "dev",
                &host_if,
            ])?;
            sh(&["ip", "link", "set", &host_if, "up"])?;
            let inside = |args: &[&str]| {
                let mut v = vec!["ip", "netns", "exec", &ns];
                v.extend_from_slice(args);
                sh(&v)
            };
            inside(&["ip", "addr", "add", &format!("{node_ip}/30"), "dev", &peer])?;
            inside(&["ip", "link", "set", &peer, "up"])?;
            inside(&["ip", "link", "set", "lo", "up"])?;
            nodes.nodes[k].set_rate(rate)?;
        }
        Ok(nodes)
    }

    /// The nodes, or a loud skip naming why (straight to the terminal, past the harness's
    /// capture, so a machine without them never passes these tests silently).
    pub fn or_skip(test: &str, mbit: &[u32]) -> Option<Nodes> {
        match Nodes::new(mbit) {
            Ok(n) => Some(n),
            Err(why) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: no rate-capped network namespaces here ({why}); run as root \
                     with iproute2 installed"
                );
                None
            }
        }
    }
}

impl Node {
    /// Caps what the node receives at `mbit` Mbit/s: a token bucket on the host side of its
    /// veth, with a burst of at least 64 KiB (one GSO super-packet) and 1/50 s of the rate.
    pub fn set_rate(&mut self, mbit: u32) -> Result<(), String> {
        let burst = (u64::from(mbit) * 1_000_000 / 8 / 50).max(64 << 10);
        let _ = sh(&["tc", "qdisc", "del", "dev", &self.host_if, "root"]);
        sh(&[
            "tc",
            "qdisc",
            "add",
            "dev",
            &self.host_if,
            "root",
            "tbf",
            "rate",
            &format!("{mbit}mbit"),
            "burst",
            &burst.to_string(),
            "latency",
            "100ms",
        ])?;
        self.mbit = mbit;
        Ok(())
    }

    /// The cap in bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        f64::from(self.mbit) * 1e6 / 8.0
    }

    /// `program` run inside this node: its network namespace and a pid namespace of its own
    /// (killing the returned child kills the program: `--kill-child`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns])
            .args(["unshare", "--pid", "--fork", "--kill-child"])
            .arg(program);
        c
    }

    /// `http://HOST_IP:PORT`: the hub as this node reaches it.
    pub fn url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.host_ip)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for n in &self.nodes {
            // Deleting the namespace deletes the peer, and with it the pair.
            let _ = sh(&["ip", "netns", "del", &n.ns]);
            let _ = sh(&["ip", "link", "del", &n.host_if]);
        }
    }
}
