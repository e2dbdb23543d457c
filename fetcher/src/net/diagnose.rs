//! Why a request got no answer, told apart: a name that does not resolve, nothing listening, a
//! connection reset, a certificate from an unknown CA, a connect that hangs, a server that
//! accepts and says nothing, a dead proxy. Each class knows whether waiting can heal it and what
//! the person at the keyboard should do.

use crate::http::{describe_reqwest, SendError};

/// The kind of a failure to get an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The host name does not exist (NXDOMAIN): a typo or a network without that name.
    DnsMissing,
    /// The resolver did not answer (EAI_AGAIN): may heal.
    DnsFlaky,
    /// Nothing listens there (or a firewall rejects).
    Refused,
    /// The connection broke (RST, EOF mid-handshake).
    Reset,
    /// The certificate is signed by a CA ferry does not trust.
    UnknownCa,
    /// Any other TLS failure (name mismatch, expired, protocol).
    Tls,
    /// The TCP connect did not finish (a blackholed SYN).
    ConnectTimeout,
    /// Connected, then no response headers within the limit (a server that hangs).
    NoAnswer,
    /// The proxy itself could not be reached or refused the tunnel.
    Proxy,
    /// Anything else.
    Other,
}

impl Class {
    /// Whether waiting and retrying can help; the others end at once.
    pub fn heals(self) -> bool {
        matches!(
            self,
            Class::DnsFlaky | Class::Reset | Class::ConnectTimeout | Class::NoAnswer | Class::Other
        )
    }

    /// A refused connection heals only if the server was restarting: a few quick tries.
    pub fn quick_retries(self) -> u32 {
        match self {
            Class::Refused | Class::Proxy => 2,
            _ => 0,
        }
    }

    /// Timeouts end with exit 8, the rest with 6.
    pub fn is_timeout(self) -> bool {
        matches!(self, Class::ConnectTimeout | Class::NoAnswer)
    }

    /// A few words for the message.
    pub fn what(self) -> &'static str {
        match self {
            Class::DnsMissing => "the host name does not resolve",
            Class::DnsFlaky => "the DNS resolver did not answer",
            Class::Refused => {
                "the connection was refused (nothing listens there, or a firewall rejects it)"
            }
            Class::Reset => "the connection was reset",
            Class::UnknownCa => "its TLS certificate is signed by a CA ferry does not trust",
            Class::Tls => "the TLS handshake failed",
            Class::ConnectTimeout => {
                "the TCP connection did not complete in time (a firewall dropping packets?)"
            }
            Class::NoAnswer => "the server accepted the connection but sent no answer in time",
            Class::Proxy => "the proxy could not be reached or refused the connection",
            Class::Other => "the request failed",
        }
    }
}

/// Classifies `e`; `proxied`: the request went through a proxy, which is then the first suspect
/// for a connect failure.
pub fn classify(e: &SendError, proxied: bool) -> Class {
    let err = match e {
        SendError::Timeout(_) => return Class::NoAnswer,
        SendError::Http(err) => err,
    };
    let text = describe_reqwest(err).to_ascii_lowercase();
    let io_kind = io_kind(err);
    let class = if text.contains("unknownissuer") || text.contains("unknown issuer") {
        Class::UnknownCa
    } else if text.contains("invalid peer certificate")
        || text.contains("handshake")
        || text.contains("received fatal alert")
        || text.contains("corrupt message")
        || text.contains("certificate")
        || (err.is_connect() && io_kind == Some(std::io::ErrorKind::InvalidData))
    {
        Class::Tls
    } else if text.contains("dns error") || text.contains("failed to lookup address") {
        if text.contains("temporary failure") || text.contains("try again") {
            Class::DnsFlaky
        } else {
            Class::DnsMissing
        }
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        Class::Refused
    } else if err.is_connect() && err.is_timeout() {
        Class::ConnectTimeout
    } else if matches!(
        io_kind,
        Some(
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
    ) || text.contains("connection reset")
        || text.contains("connection closed")
    {
        Class::Reset
    } else if err.is_timeout() {
        Class::NoAnswer
    } else {
        Class::Other
    };
    let proxy_trouble = text.contains("proxy") || err.is_connect();
    if proxied && proxy_trouble && !matches!(class, Class::UnknownCa | Class::Tls) {
        return Class::Proxy;
    }
    class
}

fn io_kind(err: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut src = std::error::Error::source(err);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        src = s.source();
    }
    None
}

/// What to do about a failure of `class` reaching an endpoint that came from `from` (`--endpoint`,
/// `HF_ENDPOINT`, ...); `hf`: the endpoint is a Hugging Face one (mirrors exist).
pub fn hint(class: Class, from: &str, hf: bool, proxy: Option<&str>) -> String {
    let mirror = if hf {
        "; where huggingface.co is out of reach, use a mirror (HF_ENDPOINT=https://hf-mirror.com) or --source modelscope"
    } else {
        ""
    };
    match class {
        Class::DnsMissing => format!(
            "check the host name ({from}) and this machine's DNS{mirror}; without any egress, use --offline on a directory fetched before"
        ),
        Class::DnsFlaky => format!("the resolver is failing; check this machine's DNS{mirror}"),
        Class::Refused => format!(
            "check the URL and port ({from}), and that egress to it is allowed{mirror}"
        ),
        Class::Reset => format!(
            "something between here and the hub cut the connection (a firewall or proxy?); check egress{mirror}"
        ),
        Class::UnknownCa => format!(
            "a private mirror or a TLS-inspecting proxy? Trust its CA with {}",
            super::tls::HINT_VARS
        ),
        Class::Tls => format!(
            "check that the URL ({from}) is the hub's https address and that its certificate is valid for that name"
        ),
        Class::ConnectTimeout => format!(
            "packets to the endpoint are dropped; check egress and proxies (HTTPS_PROXY){mirror}"
        ),
        Class::NoAnswer => {
            "the server or a proxy in between hangs; raise --stall-timeout if it is only slow, or try again later"
                .into()
        }
        Class::Proxy => format!(
            "check the proxy {} or unset it; hosts that must not use it go in NO_PROXY",
            proxy.unwrap_or("(HTTPS_PROXY)")
        ),
        Class::Other => format!("check the endpoint ({from}) and the network"),
    }
}
