//! The inference engines ferry serves models to (SGLang, vLLM): one enum for every crate, so the
//! warm plans, the manifest linter, the renderer and the CLI agree on names and defaults.

use serde::{Deserialize, Serialize};

/// An LLM inference engine whose loader and deployment traps ferry knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InferenceEngine {
    #[default]
    Sglang,
    Vllm,
}

impl InferenceEngine {
    /// Every engine, in the order the docs list them.
    pub const ALL: [InferenceEngine; 2] = [InferenceEngine::Sglang, InferenceEngine::Vllm];

    /// The lower-case name used on command lines and in files.
    pub fn name(self) -> &'static str {
        match self {
            InferenceEngine::Sglang => "sglang",
            InferenceEngine::Vllm => "vllm",
        }
    }

    /// The prefix of the environment variables the engine reads its own settings from; a
    /// Kubernetes Service whose name maps onto it injects variables the engine misparses.
    pub fn env_prefix(self) -> &'static str {
        match self {
            InferenceEngine::Sglang => "SGLANG",
            InferenceEngine::Vllm => "VLLM",
        }
    }

    /// The engine's HTTP port when its command line does not say (`--port`).
    pub fn default_port(self) -> u16 {
        match self {
            InferenceEngine::Sglang => 30000,
            InferenceEngine::Vllm => 8000,
        }
    }
}

impl std::fmt::Display for InferenceEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for InferenceEngine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown engine `{s}`: use sglang or vllm"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for e in InferenceEngine::ALL {
            assert_eq!(e.name().parse::<InferenceEngine>(), Ok(e));
            let json = serde_json::to_string(&e).expect("serializes");
            assert_eq!(json, format!("\"{}\"", e.name()));
        }
        assert_eq!("VLLM".parse(), Ok(InferenceEngine::Vllm));
        assert!("tgi"
            .parse::<InferenceEngine>()
            .unwrap_err()
            .contains("sglang or vllm"));
    }
}
