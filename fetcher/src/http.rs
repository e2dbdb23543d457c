//! One HTTP client for a fetch: connection pool, user agent, trusted CAs and proxies (see
//! [`crate::net`]), `Accept-Encoding: identity`, and redirects handled by hand so the token goes
//! only to the hub's own origins.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, COOKIE, LOCATION, RANGE, RETRY_AFTER,
};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::auth::Secret;
use crate::net::proxy::{self, Proxies};

const MAX_REDIRECTS: usize = 5;
/// How long a TCP (and TLS) connect may take; a blackholed SYN ends here.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a server's `Retry-After` / `RateLimit` is believed; the retry budget still applies.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(600);

/// A client bound to one hub and its credentials.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    /// The origins the token may go to: the endpoint's, plus the hub's own aliases.
    token_origins: Vec<url::Origin>,
    token: Option<Secret>,
    /// ModelScope also sends the token as this session cookie.
    token_cookie: Option<&'static str>,
    proxies: Arc<Proxies>,
}

/// A response together with the URL that produced it after redirects.
pub struct Answer {
    pub response: Response,
    pub url: Url,
}

impl Http {
    /// A client for `endpoint`; the token also goes to `aliases` (other origins of the same hub,
    /// e.g. `https://hf.co` for `https://huggingface.co`), and nowhere else.
    pub fn new(
        endpoint: &Url,
        aliases: &[&str],
        token: Option<Secret>,
        token_cookie: Option<&'static str>,
    ) -> crate::Result<Self> {
        let proxies = Arc::new(Proxies::from_env());
        let route = Arc::clone(&proxies);
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            // Model bytes must arrive exactly as stored: no transparent decompression.
            .no_gzip()
            // One place decides the proxy, so messages can name the one used.
            .no_proxy()
            .proxy(reqwest::Proxy::custom(move |url| {
                route.for_url(url).map(|(p, _)| p.clone())
            }));
        for cert in crate::net::tls::roots()? {
            builder = builder.add_root_certificate(cert.clone());
        }
        let client = builder.build().map_err(|e| {
            crate::Error::Usage(format!(
                "cannot build the HTTP client: {}",
                describe_reqwest(&e)
            ))
        })?;
        let mut token_origins = vec![endpoint.origin()];
        token_origins.extend(
            aliases
                .iter()
                .filter_map(|a| Url::parse(a).ok())
                .map(|u| u.origin()),
        );
        Ok(Http {
            client,
            token_origins,
            token,
            token_cookie,
            proxies,
        })
    }

    /// A client for `endpoint` (a base URL, given a trailing slash), with the errors that say
    /// what is wrong with it; returns the parsed base too.
    pub fn for_endpoint(
        endpoint: &str,
        aliases: &[&str],
        token: Option<Secret>,
        token_cookie: Option<&'static str>,
    ) -> crate::Result<(Url, Http)> {
        let base = parse_endpoint(endpoint)?;
        let http = Http::new(&base, aliases, token, token_cookie)?;
        Ok((base, http))
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// True when `url` is on one of the hub's origins, the only places the token may go.
    pub fn is_hub_origin(&self, url: &Url) -> bool {
        let origin = url.origin();
        self.token_origins.contains(&origin)
    }

    /// The proxy a request to `url` goes through (credentials removed) and the variable that set
    /// it.
    pub fn proxy_for(&self, url: &Url) -> Option<(String, &'static str)> {
        self.proxies
            .for_url(url)
            .map(|(p, var)| (proxy::display(p), var))
    }

    /// Sends a request, following redirects by hand. The token is attached only while the URL
    /// stays on the hub origin, so a redirect to a CDN or any other host never carries it.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        range: Option<(u64, u64)>,
        header_timeout: Duration,
    ) -> Result<Answer, SendError> {
        self.send_with(method, url, range, &HeaderMap::new(), header_timeout)
            .await
    }

    /// [`Http::send`] with `extra` headers on every hop (e.g. the `Accept` a registry needs).
    pub async fn send_with(
        &self,
        method: Method,
        url: Url,
        range: Option<(u64, u64)>,
        extra: &HeaderMap,
        header_timeout: Duration,
    ) -> Result<Answer, SendError> {
        let mut url = url;
        let mut hops = 0;
        loop {
            let mut headers = extra.clone();
            // A compressed body would change every byte count and hash ferry checks.
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            if let Some((start, end)) = range {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes={start}-{end}")) {
                    headers.insert(RANGE, v);
                }
            }
            if self.is_hub_origin(&url) {
                if let Some(tok) = &self.token {
                    if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", tok.expose())) {
                        v.set_sensitive(true);
                        headers.insert(AUTHORIZATION, v);
                    }
                    if let Some(name) = self.token_cookie {
                        if let Ok(mut v) =
                            HeaderValue::from_str(&format!("{name}={}", tok.expose()))
                        {
                            v.set_sensitive(true);
                            headers.insert(COOKIE, v);
                        }
                    }
                }
            }
            // Only the wait for headers is bounded here; bodies are guarded by a stall timer
            // while they stream, since a 50 GB body has no sensible total timeout.
            let request = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers)
                .send();
            let response = tokio::time::timeout(header_timeout, request)
                .await
                .map_err(|_| SendError::Timeout(header_timeout))?
                .map_err(|e| SendError::Http(e.without_url()))?;
            let status = response.status();
            if status.is_redirection() && hops < MAX_REDIRECTS {
                let next = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| url.join(loc).ok());
                if let Some(next) = next {
                    if status != StatusCode::NOT_MODIFIED {
                        url = next;
                        hops += 1;
                        continue;
                    }
                }
            }
            return Ok(Answer { response, url });
        }
    }
}

/// A base URL from `--endpoint` or a variable: http(s) with a host, else a usage error.
pub fn parse_endpoint(endpoint: &str) -> crate::Result<Url> {
    let bad = |why: String| {
        crate::Error::Usage(format!(
            "bad endpoint {endpoint:?}: {why}; expected an http(s) URL such as https://hf-mirror.com"
        ))
    };
    let trimmed = endpoint.trim().trim_end_matches('/');
    let base = Url::parse(&format!("{trimmed}/")).map_err(|e| bad(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(bad(format!(
            "the scheme {:?} is not http or https",
            base.scheme()
        )));
    }
    if base.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(bad("a query or fragment cannot be a base URL".into()));
    }
    Ok(base)
}

/// How long the server asked us to wait, read the way huggingface_hub reads it: on a `429`, the
/// `t=` of `RateLimit: "api";r=0;t=55` when `r=0` (the quota is spent); else `Retry-After`
/// (seconds). `RateLimit` with `r>0` is informational (the hub sends it on every answer) and
/// never a reason to wait.
pub fn server_wait(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let secs = ratelimit(headers)
        .filter(|&(remaining, _)| status == StatusCode::TOO_MANY_REQUESTS && remaining == 0)
        .map(|(_, reset)| reset + 1)
        .or_else(|| {
            headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        })?;
    Some(Duration::from_secs(secs).min(MAX_SERVER_WAIT))
}

/// `(r, t)` of a `RateLimit: "name";r=N;t=N` header (IETF draft, as the hub sends it).
pub fn ratelimit(headers: &HeaderMap) -> Option<(u64, u64)> {
    let v = headers.get("ratelimit")?.to_str().ok()?;
    let (mut r, mut t) = (None, None);
    for part in v.split(';').map(str::trim) {
        if let Some(x) = part.strip_prefix("r=") {
            r = x.trim().parse().ok();
        } else if let Some(x) = part.strip_prefix("t=") {
            t = x.trim().parse().ok();
        }
    }
    Some((r?, t?))
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    Http(reqwest::Error),
    Timeout(Duration),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Http(e) => write!(f, "{}", describe_reqwest(e)),
            SendError::Timeout(d) => write!(f, "no response headers within {} s", d.as_secs()),
        }
    }
}

/// A reqwest error with its causes, for errors whose URL was removed (`without_url`) because a
/// signed URL's query is a credential.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// A URL fit for logs and errors: no query string (signed URLs carry credentials there) and no
/// user info.
pub fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn ratelimit_counts_only_when_spent_on_a_429() {
        let info = h(&[("ratelimit", "\"resolvers\";r=2999;t=172")]);
        assert_eq!(server_wait(StatusCode::BAD_GATEWAY, &info), None);
        assert_eq!(server_wait(StatusCode::TOO_MANY_REQUESTS, &info), None);
        let spent = h(&[("ratelimit", "\"api\";r=0;t=55")]);
        assert_eq!(
            server_wait(StatusCode::TOO_MANY_REQUESTS, &spent),
            Some(Duration::from_secs(56))
        );
        // Spent but not a 429: informational.
        assert_eq!(server_wait(StatusCode::SERVICE_UNAVAILABLE, &spent), None);
        let retry = h(&[("retry-after", "3"), ("ratelimit", "\"api\";r=5;t=200")]);
        assert_eq!(
            server_wait(StatusCode::SERVICE_UNAVAILABLE, &retry),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn endpoints_must_be_http_urls_with_a_host() {
        assert!(parse_endpoint("https://hf-mirror.com").is_ok());
        assert!(parse_endpoint("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "hf-mirror.com",
            "ftp://x.org",
            "http://",
            "not a url",
            "https://x/?a=1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_goes_to_the_hub_and_its_aliases_only() {
        let base = Url::parse("https://huggingface.co/").unwrap();
        let http = Http::new(&base, &["https://hf.co"], Secret::new("t"), None).unwrap();
        let on = |u: &str| http.is_hub_origin(&Url::parse(u).unwrap());
        assert!(on("https://huggingface.co/api/models/x"));
        assert!(on("https://hf.co/x"));
        assert!(!on("http://huggingface.co/x"));
        assert!(!on("https://cdn-lfs.hf.co/x"));
        assert!(!on("https://cas-bridge.xethub.hf.co/x"));
        assert!(!on("https://huggingface.co.evil.com/x"));
        assert!(!on("https://hf.co:8443/x"));
    }
}
