//! The fake CDN: signed, expiring `/_cdn/...` URLs on the *other* origin of this same server
//! (`localhost:P` for a hub reached as `127.0.0.1:P` and vice versa), so clients treat them as a
//! different host, like the real hub's 302 to a signed CDN URL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Why a CDN URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdnDenied {
    Expired,
    BadSignature,
}

/// Signs CDN URLs with a per-process random secret.
pub struct CdnSigner {
    secret: [u8; 16],
}

impl Default for CdnSigner {
    fn default() -> Self {
        Self {
            secret: rand::random(),
        }
    }
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

impl CdnSigner {
    fn signature(&self, path: &str, expires: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(path.as_bytes());
        h.update(b"\n");
        h.update(expires.to_string().as_bytes());
        hex::encode(&h.finalize()[..16])
    }

    /// A URL for `path` (already percent-encoded, starting with `/_cdn/`) on `origin`
    /// (`host:port`), valid for `ttl`.
    pub fn url(&self, origin: &str, path: &str, ttl: Duration) -> String {
        let expires = (now_millis() / 1000) as u64 + ttl.as_secs();
        let sig = self.signature(path, expires);
        format!("http://{origin}{path}?expires={expires}&signature={sig}")
    }

    /// Checks the `expires` and `signature` query parameters of a CDN request.
    pub fn verify(&self, path: &str, query: Option<&str>) -> Result<(), CdnDenied> {
        let mut expires = None;
        let mut sig = None;
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse::<u64>().ok(),
                Some(("signature", v)) => sig = Some(v),
                _ => {}
            }
        }
        let (Some(expires), Some(sig)) = (expires, sig) else {
            return Err(CdnDenied::BadSignature);
        };
        if self.signature(path, expires) != sig {
            return Err(CdnDenied::BadSignature);
        }
        // Millisecond precision: a URL with a TTL of 0 is expired as soon as it is used.
        if now_millis() > u128::from(expires) * 1000 {
            return Err(CdnDenied::Expired);
        }
        Ok(())
    }
}

/// The other origin of this server: `localhost:P` <-> `127.0.0.1:P`.
pub fn other_origin(host_header: Option<&str>, port: u16) -> String {
    let host = host_header.unwrap_or("127.0.0.1");
    let name = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(h, _)| h)
    } else {
        host.split_once(':').map_or(host, |(h, _)| h)
    };
    let other = if name.eq_ignore_ascii_case("localhost") {
        "127.0.0.1"
    } else {
        "localhost"
    };
    format!("{other}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_verify_and_expire() {
        let s = CdnSigner::default();
        let url = s.url("localhost:1", "/_cdn/a/b/c/x", Duration::from_secs(60));
        let query = url.split_once('?').unwrap().1;
        assert_eq!(s.verify("/_cdn/a/b/c/x", Some(query)), Ok(()));
        assert_eq!(
            s.verify("/_cdn/a/b/c/y", Some(query)),
            Err(CdnDenied::BadSignature)
        );
        let old = s.url("localhost:1", "/_cdn/a/b/c/x", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            s.verify("/_cdn/a/b/c/x", Some(old.split_once('?').unwrap().1)),
            Err(CdnDenied::Expired)
        );
    }

    #[test]
    fn swaps_origins() {
        assert_eq!(other_origin(Some("127.0.0.1:8080"), 8080), "localhost:8080");
        assert_eq!(other_origin(Some("localhost:8080"), 8080), "127.0.0.1:8080");
        assert_eq!(other_origin(None, 9), "localhost:9");
    }
}
