//! The `r1` layout: DeepSeek-V3/R1's FP8 checkpoint (61 decoder layers, the first 3 dense, the rest
//! mixture-of-experts, plus one multi-token-prediction layer), with its widths and expert count
//! scaled down to fit a requested size.
//!
//! At scale 1.0 with 256 experts the tensors are exactly those of deepseek-ai/DeepSeek-R1: the
//! same names, dtypes and shapes, 688,586,727,753 bytes of files over 163 shards.

use serde_json::{json, Value};

use super::tensor::{Dtype, TensorName, TensorSink};

/// Decoder layers, always the real count, so that pipeline and per-layer plans look real.
pub const LAYERS: u32 = 61;
/// Layers 0..3 have a dense MLP; the rest route to experts.
pub const DENSE_LAYERS: u32 = 3;
/// Routed experts per MoE layer in the real model.
pub const REAL_EXPERTS: u32 = 256;
/// Experts each token is routed to; the scaled expert count never drops below it.
const EXPERTS_PER_TOKEN: u32 = 8;
/// Router groups; the expert count stays a multiple of it.
const EXPERT_GROUPS: u32 = 8;
/// The multi-token-prediction layer that follows the decoder layers in the checkpoint.
const MTP_LAYER: u32 = LAYERS;

/// Sum of the real checkpoint's file sizes (headers included), used to pick the expert count.
pub const REAL_FILE_BYTES: u64 = 688_586_727_753;

/// Widths of a (possibly scaled) DeepSeek-V3 model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeepseekDims {
    pub hidden: u64,
    pub intermediate: u64,
    pub moe_intermediate: u64,
    pub vocab: u64,
    pub heads: u64,
    pub q_lora_rank: u64,
    pub kv_lora_rank: u64,
    pub qk_nope_head_dim: u64,
    pub qk_rope_head_dim: u64,
    pub v_head_dim: u64,
    pub experts: u32,
}

impl DeepseekDims {
    /// The real model.
    pub fn real() -> Self {
        DeepseekDims {
            hidden: 7168,
            intermediate: 18432,
            moe_intermediate: 2048,
            vocab: 129_280,
            heads: 128,
            q_lora_rank: 1536,
            kv_lora_rank: 512,
            qk_nope_head_dim: 128,
            qk_rope_head_dim: 64,
            v_head_dim: 128,
            experts: REAL_EXPERTS,
        }
    }

    /// Every width multiplied by `factor` (rounded, at least 1), with `experts` routed experts.
    /// The vocabulary also shrinks with the expert count (at least `min_vocab`), keeping
    /// embeddings the small share of the bytes they are in the real model: otherwise they would
    /// dwarf the thinned-out MoE layers and unbalance the shards.
    pub fn scaled(factor: f64, experts: u32, min_vocab: u64) -> Self {
        let real = Self::real();
        let s = |v: u64| scale(v, factor);
        let vocab_factor = factor * f64::from(experts) / f64::from(REAL_EXPERTS);
        DeepseekDims {
            hidden: s(real.hidden),
            intermediate: s(real.intermediate),
            moe_intermediate: s(real.moe_intermediate),
            vocab: scale(real.vocab, vocab_factor).max(min_vocab),
            heads: s(real.heads),
            q_lora_rank: s(real.q_lora_rank),
            kv_lora_rank: s(real.kv_lora_rank),
            qk_nope_head_dim: s(real.qk_nope_head_dim),
            qk_rope_head_dim: s(real.qk_rope_head_dim),
            v_head_dim: s(real.v_head_dim),
            experts,
        }
    }

    /// The expert count for a model of about `target` bytes. Expert bytes grow as
    /// experts x width², so shrinking the count with the cube root of the size lets the widths
    /// shrink by the same cube root: small models keep a sensible tensor count (and header
    /// overhead) instead of 90,000 tiny tensors. A multiple of the router group count, 8 to 256.
    pub fn experts_for(target: u64) -> u32 {
        let ratio = target as f64 / REAL_FILE_BYTES as f64;
        let raw = f64::from(REAL_EXPERTS) * ratio.cbrt();
        let rounded = (raw / f64::from(EXPERT_GROUPS)).ceil() as u32 * EXPERT_GROUPS;
        rounded.clamp(EXPERTS_PER_TOKEN, REAL_EXPERTS)
    }

    /// Bytes added per extra vocabulary row: embed_tokens and lm_head, twice (the MTP layer has
    /// its own), BF16.
    pub fn vocab_row_bytes(&self) -> u64 {
        4 * self.hidden * Dtype::Bf16.size()
    }

    /// Every tensor in checkpoint order: embeddings, layers 0..61, final norm and head, then the
    /// MTP layer.
    pub fn visit(&self, sink: &mut impl TensorSink) {
        let bf16 = Dtype::Bf16;
        sink.tensor(
            TensorName::top("model.embed_tokens", "weight"),
            bf16,
            &[self.vocab, self.hidden],
        );
        for layer in 0..LAYERS {
            self.decoder_layer(layer, sink);
        }
        sink.tensor(
            TensorName::top("model.norm", "weight"),
            bf16,
            &[self.hidden],
        );
        sink.tensor(
            TensorName::top("lm_head", "weight"),
            bf16,
            &[self.vocab, self.hidden],
        );
        self.mtp_layer(sink);
    }

    fn decoder_layer(&self, layer: u32, sink: &mut impl TensorSink) {
        let h = self.hidden;
        let bf16 = Dtype::Bf16;
        let l = |module| TensorName::layer(layer, module, "weight");
        sink.tensor(l("input_layernorm"), bf16, &[h]);
        sink.fp8_weight(l("self_attn.q_a_proj"), self.q_lora_rank, h);
        sink.tensor(l("self_attn.q_a_layernorm"), bf16, &[self.q_lora_rank]);
        let q_head = self.qk_nope_head_dim + self.qk_rope_head_dim;
        sink.fp8_weight(
            l("self_attn.q_b_proj"),
            self.heads * q_head,
            self.q_lora_rank,
        );
        sink.fp8_weight(
            l("self_attn.kv_a_proj_with_mqa"),
            self.kv_lora_rank + self.qk_rope_head_dim,
            h,
        );
        sink.tensor(l("self_attn.kv_a_layernorm"), bf16, &[self.kv_lora_rank]);
        let kv_head = self.qk_nope_head_dim + self.v_head_dim;
        sink.fp8_weight(
            l("self_attn.kv_b_proj"),
            self.heads * kv_head,
            self.kv_lora_rank,
        );
        sink.fp8_weight(l("self_attn.o_proj"), h, self.heads * self.v_head_dim);
        sink.tensor(l("post_attention_layernorm"), bf16, &[h]);

        if layer < DENSE_LAYERS {
            let i = self.intermediate;
            sink.fp8_weight(l("mlp.gate_proj"), i, h);
            sink.fp8_weight(l("mlp.up_proj"), i, h);
            sink.fp8_weight(l("mlp.down_proj"), h, i);
            return;
        }
        let experts = u64::from(self.experts);
        sink.tensor(l("mlp.gate"), bf16, &[experts, h]);
        sink.tensor(
            TensorName::layer(layer, "mlp.gate", "e_score_correction_bias"),
            Dtype::F32,
            &[experts],
        );
        let m = self.moe_intermediate;
        for expert in 0..self.experts {
            let e = |module| TensorName::expert(layer, expert, module, "weight");
            sink.fp8_weight(e("gate_proj"), m, h);
            sink.fp8_weight(e("up_proj"), m, h);
            sink.fp8_weight(e("down_proj"), h, m);
        }
        sink.fp8_weight(l("mlp.shared_experts.gate_proj"), m, h);
        sink.fp8_weight(l("mlp.shared_experts.up_proj"), m, h);
        sink.fp8_weight(l("mlp.shared_experts.down_proj"), h, m);
    }

    /// Layer 61: a full MoE layer plus the MTP module's own embedding, norms, projection and head.
    fn mtp_layer(&self, sink: &mut impl TensorSink) {
        let h = self.hidden;
        let bf16 = Dtype::Bf16;
        let l = |module| TensorName::layer(MTP_LAYER, module, "weight");
        sink.tensor(l("embed_tokens"), bf16, &[self.vocab, h]);
        sink.tensor(l("enorm"), bf16, &[h]);
        sink.tensor(l("hnorm"), bf16, &[h]);
        sink.tensor(l("eh_proj"), bf16, &[h, 2 * h]);
        self.decoder_layer(MTP_LAYER, sink);
        sink.tensor(l("shared_head.norm"), bf16, &[h]);
        sink.tensor(l("shared_head.head"), bf16, &[self.vocab, h]);
    }

    /// config.json as in deepseek-ai/DeepSeek-R1, with the scaled widths (so that the config
    /// describes the tensors that are really there).
    pub fn config(&self) -> Value {
        let mut config = json!({
            "architectures": ["DeepseekV3ForCausalLM"],
            "attention_bias": false,
            "attention_dropout": 0.0,
            "aux_loss_alpha": 0.001,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "ep_size": 1,
            "first_k_dense_replace": DENSE_LAYERS,
            "hidden_act": "silu",
            "hidden_size": self.hidden,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate,
            "kv_lora_rank": self.kv_lora_rank,
            "max_position_embeddings": 163_840,
        });
        // Two halves: one json! of 50 keys exceeds the macro recursion limit.
        let rest = json!({
            "model_type": "deepseek_v3",
            "moe_intermediate_size": self.moe_intermediate,
            "moe_layer_freq": 1,
            "n_group": EXPERT_GROUPS,
            "n_routed_experts": self.experts,
            "n_shared_experts": 1,
            "norm_topk_prob": true,
            "num_attention_heads": self.heads,
            "num_experts_per_tok": EXPERTS_PER_TOKEN,
            "num_hidden_layers": LAYERS,
            "num_key_value_heads": self.heads,
            "num_nextn_predict_layers": 1,
            "q_lora_rank": self.q_lora_rank,
            "qk_nope_head_dim": self.qk_nope_head_dim,
            "qk_rope_head_dim": self.qk_rope_head_dim,
            "quantization_config": {
                "activation_scheme": "dynamic",
                "fmt": "e4m3",
                "quant_method": "fp8",
                "weight_block_size": [128, 128]
            },
            "rms_norm_eps": 1e-6,
            "rope_scaling": {
                "beta_fast": 32,
                "beta_slow": 1,
                "factor": 40,
                "mscale": 1.0,
                "mscale_all_dim": 1.0,
                "original_max_position_embeddings": 4096,
                "type": "yarn"
            },
            "rope_theta": 10000,
            "routed_scaling_factor": 2.5,
            "scoring_func": "sigmoid",
            "tie_word_embeddings": false,
            "topk_group": 4,
            "topk_method": "noaux_tc",
            "torch_dtype": "bfloat16",
            "transformers_version": "4.46.3",
            "use_cache": true,
            "v_head_dim": self.v_head_dim,
            "vocab_size": self.vocab
        });
        if let (Some(config), Value::Object(rest)) = (config.as_object_mut(), rest) {
            config.extend(rest);
        }
        config
    }
}

/// `v * factor`, rounded, at least 1.
pub fn scale(v: u64, factor: f64) -> u64 {
    ((v as f64 * factor).round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::tensor::tensor_bytes;

    #[derive(Default)]
    struct Count {
        tensors: u64,
        bytes: u64,
    }

    impl TensorSink for Count {
        fn tensor(&mut self, _: TensorName, dtype: Dtype, shape: &[u64]) {
            self.tensors += 1;
            self.bytes += tensor_bytes(dtype, shape);
        }
    }

    #[test]
    fn real_dims_give_the_real_checkpoint_tensor_bytes() {
        let mut count = Count::default();
        DeepseekDims::real().visit(&mut count);
        // 688,586,727,753 bytes of files minus ~11.9 MB of headers over 91,991 tensors.
        assert_eq!(count.tensors, 91_991);
        assert_eq!(count.bytes, 688_574_839_360);
    }

    #[test]
    fn scale_one_is_the_real_model() {
        assert_eq!(DeepseekDims::scaled(1.0, 256, 512), DeepseekDims::real());
    }

    #[test]
    fn expert_count_follows_size() {
        assert_eq!(DeepseekDims::experts_for(REAL_FILE_BYTES), 256);
        assert_eq!(DeepseekDims::experts_for(642_000_000_000), 256);
        assert_eq!(DeepseekDims::experts_for(1 << 20), 8);
        let mid = DeepseekDims::experts_for(2 << 30);
        assert!((8..256).contains(&mid) && mid.is_multiple_of(8), "{mid}");
    }
}
