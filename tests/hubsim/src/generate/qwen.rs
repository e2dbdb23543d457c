//! The `distill` layout: a small dense Qwen2 model in the shape of
//! deepseek-ai/DeepSeek-R1-Distill-Qwen-7B (28 layers, grouped-query attention, all BF16), with
//! its widths scaled to fit a requested size.

use serde_json::{json, Value};

use super::deepseek::scale;
use super::tensor::{Dtype, TensorName, TensorSink};

/// Decoder layers, always the real count.
pub const LAYERS: u32 = 28;
/// Query heads per key/value head in the real model (28 / 4).
const QUERIES_PER_KV_HEAD: u64 = 7;

/// Widths of a (possibly scaled) Qwen2 model. `hidden = heads * head_dim`, as Qwen2 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QwenDims {
    pub hidden: u64,
    pub intermediate: u64,
    pub vocab: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
}

impl QwenDims {
    /// DeepSeek-R1-Distill-Qwen-7B.
    pub fn real() -> Self {
        QwenDims {
            hidden: 3584,
            intermediate: 18944,
            vocab: 152_064,
            heads: 28,
            kv_heads: 4,
            head_dim: 128,
        }
    }

    /// Widths multiplied by `factor`; the head dimension stays even (rotary embeddings rotate
    /// pairs) and the vocabulary at least `min_vocab`.
    pub fn scaled(factor: f64, min_vocab: u64) -> Self {
        let real = Self::real();
        let kv_heads = scale(real.kv_heads, factor);
        let heads = kv_heads * QUERIES_PER_KV_HEAD;
        let head_dim = 2 * scale(real.head_dim / 2, factor);
        QwenDims {
            hidden: heads * head_dim,
            intermediate: scale(real.intermediate, factor),
            vocab: scale(real.vocab, factor).max(min_vocab),
            heads,
            kv_heads,
            head_dim,
        }
    }

    /// Bytes added per extra vocabulary row: embed_tokens and lm_head, BF16.
    pub fn vocab_row_bytes(&self) -> u64 {
        2 * self.hidden * Dtype::Bf16.size()
    }

    /// Every tensor in checkpoint order.
    pub fn visit(&self, sink: &mut impl TensorSink) {
        let bf16 = Dtype::Bf16;
        let (h, q, kv) = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
        );
        sink.tensor(
            TensorName::top("model.embed_tokens", "weight"),
            bf16,
            &[self.vocab, h],
        );
        for layer in 0..LAYERS {
            let w = |module| TensorName::layer(layer, module, "weight");
            let b = |module| TensorName::layer(layer, module, "bias");
            sink.tensor(w("input_layernorm"), bf16, &[h]);
            sink.tensor(w("self_attn.q_proj"), bf16, &[q, h]);
            sink.tensor(b("self_attn.q_proj"), bf16, &[q]);
            sink.tensor(w("self_attn.k_proj"), bf16, &[kv, h]);
            sink.tensor(b("self_attn.k_proj"), bf16, &[kv]);
            sink.tensor(w("self_attn.v_proj"), bf16, &[kv, h]);
            sink.tensor(b("self_attn.v_proj"), bf16, &[kv]);
            sink.tensor(w("self_attn.o_proj"), bf16, &[h, q]);
            sink.tensor(w("post_attention_layernorm"), bf16, &[h]);
            sink.tensor(w("mlp.gate_proj"), bf16, &[self.intermediate, h]);
            sink.tensor(w("mlp.up_proj"), bf16, &[self.intermediate, h]);
            sink.tensor(w("mlp.down_proj"), bf16, &[h, self.intermediate]);
        }
        sink.tensor(TensorName::top("model.norm", "weight"), bf16, &[h]);
        sink.tensor(TensorName::top("lm_head", "weight"), bf16, &[self.vocab, h]);
    }

    /// config.json as in DeepSeek-R1-Distill-Qwen-7B, with the scaled widths.
    pub fn config(&self) -> Value {
        json!({
            "architectures": ["Qwen2ForCausalLM"],
            "attention_dropout": 0.0,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "hidden_act": "silu",
            "hidden_size": self.hidden,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate,
            "max_position_embeddings": 131_072,
            "max_window_layers": LAYERS,
            "model_type": "qwen2",
            "num_attention_heads": self.heads,
            "num_hidden_layers": LAYERS,
            "num_key_value_heads": self.kv_heads,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000,
            "sliding_window": 4096,
            "tie_word_embeddings": false,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.44.0",
            "use_cache": true,
            "use_mrope": false,
            "use_sliding_window": false,
            "vocab_size": self.vocab
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_one_is_the_real_model() {
        assert_eq!(QwenDims::scaled(1.0, 512), QwenDims::real());
    }

    #[test]
    fn scaled_model_keeps_qwen_invariants() {
        for factor in [0.001, 0.05, 0.3, 2.0] {
            let d = QwenDims::scaled(factor, 512);
            assert_eq!(d.hidden, d.heads * d.head_dim, "{d:?}");
            assert!(d.heads.is_multiple_of(d.kv_heads), "{d:?}");
            assert!(d.head_dim.is_multiple_of(2), "{d:?}");
            assert!(d.vocab >= 512, "{d:?}");
        }
    }
}
