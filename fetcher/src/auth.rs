//! Tokens: where they come from, and how they are kept out of logs.

use std::path::PathBuf;

/// A credential. Its `Debug` and `Display` never show the value, so it cannot leak through a log
/// line, an error or a panic message.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let v = value.into().trim().to_string();
        (!v.is_empty()).then_some(Secret(v))
    }

    /// The raw value, for the one place that puts it in a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The Hugging Face token the way huggingface_hub finds it: `HF_TOKEN`, then
/// `HUGGING_FACE_HUB_TOKEN`, then the file `hf auth login` writes (`HF_TOKEN_PATH`, else
/// `$HF_HOME/token`, else `~/.cache/huggingface/token`).
pub fn hf_token_from_env() -> Option<Secret> {
    for var in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        if let Some(s) = std::env::var(var).ok().and_then(Secret::new) {
            return Some(s);
        }
    }
    let path = std::env::var_os("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("token")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                PathBuf::from(h)
                    .join(".cache")
                    .join("huggingface")
                    .join("token")
            })
        })?;
    std::fs::read_to_string(path).ok().and_then(Secret::new)
}

/// The ModelScope token: `MODELSCOPE_API_TOKEN`.
pub fn modelscope_token_from_env() -> Option<Secret> {
    std::env::var("MODELSCOPE_API_TOKEN")
        .ok()
        .and_then(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hf_supersecret").unwrap();
        assert!(!format!("{s:?} {s}").contains("supersecret"));
        assert_eq!(s.expose(), "hf_supersecret");
        assert!(Secret::new("  ").is_none());
    }
}
