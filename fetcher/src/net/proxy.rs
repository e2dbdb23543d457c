//! Which proxy a request goes through, decided in one place from `HTTPS_PROXY` / `HTTP_PROXY` /
//! `ALL_PROXY` / `NO_PROXY` the way curl and Python `requests` read them. The HTTP client asks
//! this module for every request (`reqwest::Proxy::custom`), so the proxy an error message names
//! is the one that was really used.

use url::Url;

use super::env;

/// The proxy settings of this process.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    https: Option<(Url, &'static str)>,
    http: Option<(Url, &'static str)>,
    no_proxy: Vec<String>,
}

impl Proxies {
    pub fn from_env() -> Proxies {
        let parse = |(name, value): (&'static str, String)| {
            let value = value.trim().to_string();
            let with_scheme = if value.contains("://") {
                value
            } else {
                format!("http://{value}")
            };
            Url::parse(&with_scheme).ok().map(|u| (u, name))
        };
        let all = env::first(&env::ALL_PROXY).and_then(parse);
        Proxies {
            https: env::first(&env::HTTPS_PROXY)
                .and_then(parse)
                .or_else(|| all.clone()),
            http: env::first(&env::HTTP_PROXY).and_then(parse).or(all),
            no_proxy: env::first(&env::NO_PROXY)
                .map(|(_, v)| {
                    v.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The proxy for `url` and the variable that named it; None: a direct connection.
    pub fn for_url(&self, url: &Url) -> Option<(&Url, &'static str)> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        if self.bypassed(url) {
            return None;
        }
        Some((&proxy.0, proxy.1))
    }

    /// True when `NO_PROXY` names `url`'s host.
    fn bypassed(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, want_port) = split_port(entry);
            if want_port.is_some() && want_port != port {
                return false;
            }
            let name = name.trim_start_matches("*.");
            match name.strip_prefix('.') {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == name || host.ends_with(&format!(".{name}")),
            }
        })
    }
}

/// `host:port` to (`host`, port); IPv6 literals keep their colons.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    let entry = entry.trim_start_matches('[');
    if let Some((host, rest)) = entry.split_once(']') {
        return (host, rest.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

/// A proxy URL fit for messages: no user or password (a proxy's credentials live there).
pub fn display(proxy: &Url) -> String {
    let mut u = proxy.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.as_str().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(no_proxy: &str) -> Proxies {
        Proxies {
            https: Some((Url::parse("http://u:p@proxy:3128").unwrap(), "HTTPS_PROXY")),
            http: None,
            no_proxy: no_proxy.split(',').map(str::to_string).collect(),
        }
    }

    #[test]
    fn no_proxy_matches_hosts_domains_and_ports() {
        let p = proxies("localhost,.internal,example.com,10.0.0.1,mirror:8443");
        let on = |u: &str| p.for_url(&Url::parse(u).unwrap()).is_some();
        assert!(on("https://huggingface.co/api"));
        assert!(!on("https://localhost/x"));
        assert!(!on("https://hub.internal/x"));
        assert!(!on("https://example.com/x"));
        assert!(!on("https://cdn.example.com/x"));
        assert!(on("https://notexample.com/x"));
        assert!(!on("https://10.0.0.1/x"));
        assert!(!on("https://mirror:8443/x"));
        assert!(on("https://mirror/x"));
        // No HTTP proxy set: plain http goes direct.
        assert!(!on("http://huggingface.co/"));
        assert!(proxies("*")
            .for_url(&Url::parse("https://a.b/").unwrap())
            .is_none());
    }

    #[test]
    fn display_hides_credentials() {
        let u = Url::parse("http://user:secret@proxy.corp:3128").unwrap();
        assert_eq!(display(&u), "http://proxy.corp:3128");
    }
}
