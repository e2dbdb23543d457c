//! Every environment variable ferry's network layer reads, declared once, with what it means.
//! The README's "Networks, mirrors and proxies" section documents the same list.

/// Hugging Face hub URL (a mirror such as `https://hf-mirror.com`), as huggingface_hub reads it.
pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
/// ModelScope hub URL, as modelscope_hub reads it; a bare `host:port` gets `https://`.
pub const MODELSCOPE_ENDPOINT: &str = "MODELSCOPE_ENDPOINT";
/// The older ModelScope variable, read only when `MODELSCOPE_ENDPOINT` is unset.
pub const MODELSCOPE_DOMAIN: &str = "MODELSCOPE_DOMAIN";

/// huggingface_hub's offline switch: no requests at all, only what is on disk.
pub const HF_HUB_OFFLINE: &str = "HF_HUB_OFFLINE";
/// ferry's own offline switch (`--offline`), for every source.
pub const FERRY_OFFLINE: &str = "FERRY_OFFLINE";

/// A PEM bundle trusted on top of the system roots (OpenSSL's variable).
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// Directories of PEM certificates (`:`-separated), trusted on top of the system roots.
pub const SSL_CERT_DIR: &str = "SSL_CERT_DIR";
/// The CA bundle Python `requests` (so modelscope) uses; ferry adds it to its roots.
pub const REQUESTS_CA_BUNDLE: &str = "REQUESTS_CA_BUNDLE";
/// curl's CA bundle variable, also read by `requests`; added the same way.
pub const CURL_CA_BUNDLE: &str = "CURL_CA_BUNDLE";

/// Proxies, as curl and `requests` read them (lower case wins where both are set, like curl).
pub const HTTPS_PROXY: [&str; 2] = ["https_proxy", "HTTPS_PROXY"];
pub const HTTP_PROXY: [&str; 2] = ["http_proxy", "HTTP_PROXY"];
pub const ALL_PROXY: [&str; 2] = ["all_proxy", "ALL_PROXY"];
/// Hosts never proxied: `host`, `.domain`, `domain`, `*`, IPs, `host:port`, comma-separated.
pub const NO_PROXY: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// The value of `name`, unless unset or blank.
pub fn get(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The first of `names` that is set, with its name.
pub fn first(names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|n| get(n).map(|v| (*n, v)))
}

/// A boolean switch the way huggingface_hub reads one: `1`, `true`, `yes`, `on`.
pub fn truthy(name: &str) -> bool {
    get(name).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}
