//! How much GPU memory the model needs per GPU, and how many tokens of KV cache fit beside it.
//!
//! The estimate, and how good it is:
//! - Weights per GPU = weight bytes / (tp × pp). Tensors every rank replicates (norms, the MLA
//!   down-projections, the router) make the busiest GPU hold a little more: a few percent for
//!   R1 at tp 8. The seeds' sizing rule, minimum memory ≈ weights × 1.2 + ~2 GB per engine
//!   process, is applied per GPU: the 20 % covers that imbalance plus activations, the 2 GiB the
//!   CUDA context, NCCL buffers and CUDA graphs.
//! - KV cache per token per GPU, in the model dtype (2 bytes; both engines default the cache to
//!   it, and R1's FP8 checkpoint still keeps a bf16 cache unless `--kv-cache-dtype fp8`):
//!   - grouped/multi-head attention: 2 (K and V) × layers per stage × max(1, kv heads / tp) ×
//!     head dim × 2 bytes. Qwen2.5-7B: 2 × 28 × 4 × 128 × 2 = 56 KiB per token on one GPU.
//!   - multi-head latent attention (DeepSeek-V2/V3/R1, `kv_lora_rank` in config.json): one
//!     compressed vector of kv_lora_rank + qk_rope_head_dim per token and layer, replicated on
//!     every tensor-parallel rank: R1 61 × (512 + 64) × 2 = 68.6 KiB per token on every GPU.
//! - Memory the engine takes = its default fraction (SGLang 0.88, vLLM 0.9) × GPU memory; what
//!   is left after the weights holds the KV cache. A request of the full context needs that many
//!   tokens of cache. This is an upper bound on what fits: the engines also reserve activation
//!   and CUDA-graph memory out of the same fraction (a few GB), so near the limit the real
//!   number is lower; the check warns when less than 10 % headroom is left.

use serde::Serialize;

use super::engine::{memory_fraction, InferenceEngine};
use ferry_sharder::model_config::ModelConfig;

/// 2 GiB per engine process (CUDA context, NCCL, graphs): the seeds' rule.
pub const PER_ENGINE_OVERHEAD: u64 = 2 << 30;
/// The seeds' factor on the weights.
pub const WEIGHT_FACTOR: f64 = 1.2;
/// Bytes per KV element (bf16/fp16).
pub const KV_ELEMENT_BYTES: u64 = 2;

/// The numbers behind the memory checks, for one GPU of the group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// GPUs of the group (tp × pp).
    pub gpus: u32,
    pub weights_per_gpu: u64,
    /// weights_per_gpu × 1.2 + 2 GiB.
    pub need_per_gpu: u64,
    /// Memory of the smallest GPU.
    pub gpu_memory: u64,
    /// The engine's share of it.
    pub engine_memory: u64,
    /// KV cache bytes per token on one GPU, when config.json says enough.
    pub kv_bytes_per_token: Option<u64>,
    /// How the KV size was worked out, in words.
    pub kv_method: Option<String>,
    /// Tokens of KV cache that fit beside the weights on each GPU.
    pub tokens_fit: Option<u64>,
}

/// KV cache bytes per token on one GPU, and how that was worked out.
pub fn kv_per_token(cfg: &ModelConfig, tp: u32, pp: u32) -> Option<(u64, String)> {
    let layers = cfg.num_hidden_layers?;
    let per_stage = layers.div_ceil(u64::from(pp.max(1)));
    if let (Some(rank), Some(rope)) = (cfg.kv_lora_rank, cfg.qk_rope_head_dim) {
        let b = per_stage * (rank + rope) * KV_ELEMENT_BYTES;
        return Some((
            b,
            format!(
                "MLA: {per_stage} layers × (kv_lora_rank {rank} + qk_rope_head_dim {rope}) × \
                 {KV_ELEMENT_BYTES} bytes, the same on every tensor-parallel rank"
            ),
        ));
    }
    let kv_heads = cfg.kv_heads()?;
    let head = cfg.head_width()?;
    let per_gpu = (kv_heads / u64::from(tp.max(1))).max(1);
    let b = 2 * per_stage * per_gpu * head * KV_ELEMENT_BYTES;
    Some((
        b,
        format!(
            "2 (K, V) × {per_stage} layers × {per_gpu} of {kv_heads} KV heads × head dim {head} \
             × {KV_ELEMENT_BYTES} bytes"
        ),
    ))
}

/// The estimate for `weight_bytes` over `tp × pp` GPUs of `gpu_memory` bytes each.
pub fn estimate(
    engine: InferenceEngine,
    cfg: Option<&ModelConfig>,
    weight_bytes: u64,
    tp: u32,
    pp: u32,
    gpu_memory: u64,
) -> Estimate {
    let gpus = tp.max(1) * pp.max(1);
    let weights_per_gpu = weight_bytes / u64::from(gpus);
    let need_per_gpu = (weights_per_gpu as f64 * WEIGHT_FACTOR) as u64 + PER_ENGINE_OVERHEAD;
    let engine_memory = (gpu_memory as f64 * memory_fraction(engine)) as u64;
    let kv = cfg.and_then(|c| kv_per_token(c, tp, pp));
    let tokens_fit = kv
        .as_ref()
        .map(|(b, _)| engine_memory.saturating_sub(weights_per_gpu) / b.max(&1));
    Estimate {
        gpus,
        weights_per_gpu,
        need_per_gpu,
        gpu_memory,
        engine_memory,
        kv_bytes_per_token: kv.as_ref().map(|k| k.0),
        kv_method: kv.map(|k| k.1),
        tokens_fit,
    }
}

/// The fewest GPUs of `gpu_memory` that hold `weight_bytes` by the seeds' rule, rounded up to a
/// power of two (what tensor parallelism over attention heads allows in practice).
pub fn min_gpus(weight_bytes: u64, gpu_memory: u64) -> Option<u32> {
    let usable = gpu_memory.checked_sub(PER_ENGINE_OVERHEAD)? as f64;
    if usable <= 0.0 {
        return None;
    }
    let n = ((weight_bytes as f64 * WEIGHT_FACTOR) / usable)
        .ceil()
        .max(1.0) as u32;
    Some(n.next_power_of_two())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mla_and_gqa_per_token() {
        let r1 = ModelConfig {
            num_hidden_layers: Some(61),
            kv_lora_rank: Some(512),
            qk_rope_head_dim: Some(64),
            num_attention_heads: Some(128),
            ..ModelConfig::default()
        };
        assert_eq!(kv_per_token(&r1, 8, 1).unwrap().0, 61 * 576 * 2);
        let qwen7 = ModelConfig {
            num_hidden_layers: Some(28),
            num_attention_heads: Some(28),
            num_key_value_heads: Some(4),
            hidden_size: Some(3584),
            ..ModelConfig::default()
        };
        assert_eq!(kv_per_token(&qwen7, 1, 1).unwrap().0, 2 * 28 * 4 * 128 * 2);
        // tp 8 > 4 KV heads: each rank keeps one (replicated) head.
        assert_eq!(kv_per_token(&qwen7, 8, 1).unwrap().0, 2 * 28 * 128 * 2);
        assert_eq!(min_gpus(689_000_000_000, 141 << 30), Some(8));
    }
}
