//! The network as people have it: which endpoint a hub is reached at and where that came from
//! (`--endpoint`, `HF_ENDPOINT`, `MODELSCOPE_ENDPOINT`, `MODELSCOPE_DOMAIN`, the default), which
//! proxy a request takes ([`proxy`]), which CAs are trusted ([`tls`]), why a request got no
//! answer ([`diagnose`]), offline mode, and every variable read for all that ([`env`]).

pub mod diagnose;
pub mod env;
pub mod proxy;
pub mod tls;

/// Where an endpoint URL came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointFrom {
    /// `--endpoint`.
    Flag,
    /// An environment variable.
    Env(&'static str),
    /// The public hub.
    Default,
}

impl std::fmt::Display for EndpointFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointFrom::Flag => f.write_str("--endpoint"),
            EndpointFrom::Env(v) => f.write_str(v),
            EndpointFrom::Default => f.write_str("the default"),
        }
    }
}

/// True when offline mode is on for a Hugging Face (`hf`) or other source: `FERRY_OFFLINE`, and
/// for Hugging Face also `HF_HUB_OFFLINE`, as huggingface_hub reads it.
pub fn offline_from_env(hf: bool) -> Option<&'static str> {
    if env::truthy(env::FERRY_OFFLINE) {
        Some(env::FERRY_OFFLINE)
    } else if hf && env::truthy(env::HF_HUB_OFFLINE) {
        Some(env::HF_HUB_OFFLINE)
    } else {
        None
    }
}
