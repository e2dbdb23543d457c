//! How the binary writes sizes, rates, durations and commits for people. One convention for all
//! commands: decimal units (kB, MB, GB, TB: powers of 1000), as disks, hubs and network links
//! count them. Flags that take a size (`--chunk-size 64MiB`) still accept either kind.

use std::time::Duration;

/// Bytes in decimal units: `512 B`, `1.5 MB`, `688.6 GB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A rate in bytes per second: `1.2 GB/s`.
pub fn rate(bytes_per_second: f64) -> String {
    format!("{}/s", size(bytes_per_second.max(0.0) as u64))
}

/// A duration to the second: `1h 2m 3s`.
pub fn duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// A count with its noun, singular for one: `1 file`, `163 files`, `2 retries`.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

/// The first 12 hex digits of a commit, as git and the hubs show it.
pub fn short_commit(commit: &str) -> &str {
    // A ModelScope pin by listing (`listing:<sha256>`) keeps its prefix, so it reads as one.
    let keep = if commit.starts_with("listing:") {
        20
    } else {
        12
    };
    commit.get(..keep).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_units() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1500), "1.5 kB");
        assert_eq!(size(688_600_000_000), "688.6 GB");
        assert_eq!(rate(2.5e9), "2.5 GB/s");
        assert_eq!(short_commit("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_commit("abc"), "abc");
        assert_eq!(duration(Duration::from_millis(61_500)), "1m 1s");
        assert_eq!(count(1u64, "file"), "1 file");
        assert_eq!(count(0u64, "file"), "0 files");
        assert_eq!(count(163u64, "file"), "163 files");
        assert_eq!(count(2u64, "retry"), "2 retries");
        assert_eq!(count(1u64, "retry"), "1 retry");
    }
}
