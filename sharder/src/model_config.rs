//! The facts of a model's `config.json` that decide where it can run: architecture, dtype,
//! attention heads (for tensor-parallel divisibility and the KV cache), layers, context length,
//! and quantization (DeepSeek-R1 ships FP8 blocks).
//!
//! Only the fields the checks need are read; every one is optional, since configs differ by
//! architecture and a missing field should skip a check, not fail the read. Multimodal configs
//! keep the language model's numbers under `text_config`, which is looked at second.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// The config file's name in a model directory.
pub const CONFIG_FILE: &str = "config.json";

/// What `config.json` says, as far as placement and memory go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelConfig {
    /// `architectures[0]`, e.g. `DeepseekV3ForCausalLM`.
    pub architecture: Option<String>,
    pub model_type: Option<String>,
    /// `torch_dtype` (or `dtype`): the activation dtype the engine picks with `--dtype auto`.
    pub torch_dtype: Option<String>,
    pub num_attention_heads: Option<u64>,
    /// Defaults to the attention heads when absent (multi-head attention).
    pub num_key_value_heads: Option<u64>,
    pub num_hidden_layers: Option<u64>,
    pub hidden_size: Option<u64>,
    /// Explicit `head_dim`; else `hidden_size / num_attention_heads`.
    pub head_dim: Option<u64>,
    pub max_position_embeddings: Option<u64>,
    /// Multi-head latent attention (DeepSeek-V2/V3/R1): the compressed KV width per token.
    pub kv_lora_rank: Option<u64>,
    pub qk_rope_head_dim: Option<u64>,
    /// `quantization_config.quant_method`, e.g. `fp8`, `awq`, `gptq`.
    pub quant_method: Option<String>,
    /// `quantization_config.fmt`, e.g. `e4m3`.
    pub quant_format: Option<String>,
    pub n_routed_experts: Option<u64>,
}

impl ModelConfig {
    /// Reads `dir/config.json`; `Ok(None)` when there is none.
    pub fn from_dir(dir: &Path) -> Result<Option<ModelConfig>> {
        let path = dir.join(CONFIG_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_json(&path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Parses a config; `path` only names it in errors.
    pub fn from_json(path: &Path, bytes: &[u8]) -> Result<ModelConfig> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::Invalid {
            dir: path.parent().unwrap_or(Path::new("")).to_path_buf(),
            findings: vec![crate::Finding::error(
                path.file_name()
                    .map_or(CONFIG_FILE.into(), |n| n.to_string_lossy()),
                format!("does not parse as JSON: {e}"),
            )],
        })?;
        let get = |key: &str| {
            v.get(key)
                .or_else(|| v.get("text_config").and_then(|t| t.get(key)))
        };
        let num = |key: &str| get(key).and_then(|n| n.as_u64());
        let text = |key: &str| get(key).and_then(|s| s.as_str()).map(str::to_string);
        let quant = get("quantization_config");
        let quant_text = |key: &str| {
            quant
                .and_then(|q| q.get(key))
                .and_then(|s| s.as_str())
                .map(str::to_string)
        };
        Ok(ModelConfig {
            architecture: get("architectures")
                .and_then(|a| a.get(0))
                .and_then(|s| s.as_str())
                .map(str::to_string),
            model_type: text("model_type"),
            torch_dtype: text("torch_dtype").or_else(|| text("dtype")),
            num_attention_heads: num("num_attention_heads"),
            num_key_value_heads: num("num_key_value_heads"),
            num_hidden_layers: num("num_hidden_layers"),
            hidden_size: num("hidden_size"),
            head_dim: num("head_dim"),
            max_position_embeddings: num("max_position_embeddings"),
            kv_lora_rank: num("kv_lora_rank"),
            qk_rope_head_dim: num("qk_rope_head_dim"),
            quant_method: quant_text("quant_method"),
            quant_format: quant_text("fmt"),
            n_routed_experts: num("n_routed_experts"),
        })
    }

    /// KV heads, defaulting to the attention heads (plain multi-head attention).
    pub fn kv_heads(&self) -> Option<u64> {
        self.num_key_value_heads.or(self.num_attention_heads)
    }

    /// The width of one attention head.
    pub fn head_width(&self) -> Option<u64> {
        self.head_dim.or_else(|| {
            let (h, n) = (self.hidden_size?, self.num_attention_heads?);
            (n > 0).then(|| h / n)
        })
    }

    /// Multi-head latent attention: one compressed KV vector per token and layer.
    pub fn is_mla(&self) -> bool {
        self.kv_lora_rank.is_some()
    }

    /// Weights stored as FP8 (`quant_method: fp8`, DeepSeek-V3/R1's block FP8).
    pub fn is_fp8(&self) -> bool {
        self.quant_method
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("fp8"))
    }

    /// The activation dtype is bfloat16.
    pub fn is_bf16(&self) -> bool {
        self.torch_dtype
            .as_deref()
            .is_some_and(|d| matches!(d, "bfloat16" | "bf16"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_r1_and_text_config() {
        let r1 = br#"{"architectures":["DeepseekV3ForCausalLM"],"hidden_size":7168,
            "kv_lora_rank":512,"qk_rope_head_dim":64,"num_attention_heads":128,
            "num_key_value_heads":128,"num_hidden_layers":61,"max_position_embeddings":163840,
            "quantization_config":{"quant_method":"fp8","fmt":"e4m3"},"torch_dtype":"bfloat16"}"#;
        let c = ModelConfig::from_json(Path::new("c.json"), r1).unwrap();
        assert!(c.is_mla() && c.is_fp8() && c.is_bf16());
        assert_eq!(c.head_width(), Some(56));
        assert_eq!(c.architecture.as_deref(), Some("DeepseekV3ForCausalLM"));
        let mm = br#"{"text_config":{"num_attention_heads":32,"hidden_size":4096}}"#;
        let c = ModelConfig::from_json(Path::new("c.json"), mm).unwrap();
        assert_eq!((c.kv_heads(), c.head_width()), (Some(32), Some(128)));
        let err = ModelConfig::from_json(Path::new("/m/config.json"), b"{")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/m") && err.contains("config.json"), "{err}");
    }
}
