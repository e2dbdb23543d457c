//! Full-scale model layouts without the bytes: the real tensor names, dtypes and shapes of
//! DeepSeek-R1 (684.53B parameters in FP8 with fp32 block scales, 163
//! shards, 688.6 GB = 641 GiB) and of a Llama-70B distill, packed
//! into shards the way exporters do (whole tensors, in layer order, up to a size limit).
//!
//! Plans, slices and verify bookkeeping run on these at full scale; [`SimModel::write_sparse`]
//! writes them as sparse files with real headers, index and config (a few MB on disk), so that
//! validation and `ferry plan` can be exercised on a 642 GB directory in a test.

use std::path::Path;

use crate::error::{Error, Result};
use crate::header::{self, TensorSpec};
use crate::index::INDEX_FILE;
use crate::model::{ModelLayout, WeightFile};
use crate::slices::SliceInput;

/// A synthetic model: its layout plus the JSON files a directory of it holds.
#[derive(Debug, Clone)]
pub struct SimModel {
    pub name: &'static str,
    pub layout: ModelLayout,
    /// Header bytes of each weight file, in `layout.weights` order.
    pub headers: Vec<Vec<u8>>,
    pub config_json: String,
    pub index_json: String,
}

/// The models `--simulate` knows.
pub const MODELS: [&str; 2] = ["deepseek-r1", "llama-70b"];

/// A model by name (see [`MODELS`]).
pub fn by_name(name: &str) -> Result<SimModel> {
    match name {
        "deepseek-r1" | "deepseek-v3" => Ok(deepseek_r1()),
        "llama-70b" | "deepseek-r1-distill-llama-70b" => Ok(llama_70b()),
        _ => Err(Error::CannotPlan {
            reason: format!("no simulated model called `{name}`"),
            hint: format!("use one of: {}", MODELS.join(", ")),
        }),
    }
}

fn t(name: String, dtype: &str, shape: &[u64]) -> TensorSpec {
    let bits = header::dtype_bits(dtype).unwrap_or(8);
    let len = shape.iter().product::<u64>() * bits / 8;
    TensorSpec {
        name,
        dtype: dtype.to_string(),
        shape: shape.to_vec(),
        len,
    }
}

/// An FP8 (e4m3) linear weight `[out, in]` with its fp32 128×128 block scales, as DeepSeek ships.
fn fp8_linear(v: &mut Vec<TensorSpec>, prefix: &str, out: u64, inp: u64) {
    v.push(t(format!("{prefix}.weight"), "F8_E4M3", &[out, inp]));
    v.push(t(
        format!("{prefix}.weight_scale_inv"),
        "F32",
        &[out.div_ceil(128), inp.div_ceil(128)],
    ));
}

/// DeepSeek-V3's dimensions (its config.json).
mod dsv3 {
    pub const H: u64 = 7168;
    pub const VOCAB: u64 = 129_280;
    pub const HEADS: u64 = 128;
    pub const Q_LORA: u64 = 1536;
    pub const KV_LORA: u64 = 512;
    pub const ROPE: u64 = 64;
    pub const NOPE: u64 = 128;
    pub const V_HEAD: u64 = 128;
    pub const DENSE_I: u64 = 18_432;
    pub const MOE_I: u64 = 2048;
    pub const EXPERTS: u64 = 256;
    pub const LAYERS: u32 = 61;
    /// Layers before this one are dense; the rest are MoE.
    pub const FIRST_MOE: u32 = 3;
}

/// DeepSeek-V3 / R1: 61 decoder layers (3 dense, 58 MoE with 256 routed experts + 1 shared), MLA
/// attention, plus the multi-token-prediction layer 61; 163 shards.
pub fn deepseek_r1() -> SimModel {
    use dsv3::*;
    let mut v = vec![t("model.embed_tokens.weight".into(), "BF16", &[VOCAB, H])];
    for i in 0..LAYERS {
        deepseek_layer(&mut v, i, false);
    }
    v.push(t("model.norm.weight".into(), "BF16", &[H]));
    v.push(t("lm_head.weight".into(), "BF16", &[VOCAB, H]));
    deepseek_layer(&mut v, LAYERS, true);
    let config = serde_json::json!({
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "hidden_size": H, "intermediate_size": DENSE_I, "moe_intermediate_size": MOE_I,
        "num_hidden_layers": LAYERS, "num_nextn_predict_layers": 1,
        "num_attention_heads": HEADS, "n_routed_experts": EXPERTS, "n_shared_experts": 1,
        "first_k_dense_replace": FIRST_MOE, "q_lora_rank": Q_LORA, "kv_lora_rank": KV_LORA,
        "qk_rope_head_dim": ROPE, "qk_nope_head_dim": NOPE, "v_head_dim": V_HEAD,
        "vocab_size": VOCAB, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
        "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
    });
    pack(
        "deepseek-r1",
        v,
        163,
        6,
        config,
        &[
            ("tokenizer.json", 7_847_584),
            ("tokenizer_config.json", 3_584),
            ("generation_config.json", 171),
        ],
    )
}

/// One DeepSeek decoder layer `i`, in the order the hub's shards hold its tensors; `mtp` adds
/// the multi-token-prediction layer's own embedding, projections and head.
fn deepseek_layer(v: &mut Vec<TensorSpec>, i: u32, mtp: bool) {
    use dsv3::*;
    let p = format!("model.layers.{i}");
    if mtp {
        v.push(t(format!("{p}.embed_tokens.weight"), "BF16", &[VOCAB, H]));
        v.push(t(format!("{p}.enorm.weight"), "BF16", &[H]));
        v.push(t(format!("{p}.hnorm.weight"), "BF16", &[H]));
        v.push(t(format!("{p}.eh_proj.weight"), "BF16", &[H, 2 * H]));
    }
    v.push(t(format!("{p}.input_layernorm.weight"), "BF16", &[H]));
    deepseek_attention(v, &p);
    v.push(t(
        format!("{p}.post_attention_layernorm.weight"),
        "BF16",
        &[H],
    ));
    if i < FIRST_MOE {
        fp8_linear(v, &format!("{p}.mlp.gate_proj"), DENSE_I, H);
        fp8_linear(v, &format!("{p}.mlp.up_proj"), DENSE_I, H);
        fp8_linear(v, &format!("{p}.mlp.down_proj"), H, DENSE_I);
    } else {
        v.push(t(format!("{p}.mlp.gate.weight"), "BF16", &[EXPERTS, H]));
        v.push(t(
            format!("{p}.mlp.gate.e_score_correction_bias"),
            "F32",
            &[EXPERTS],
        ));
        for e in 0..EXPERTS {
            fp8_linear(v, &format!("{p}.mlp.experts.{e}.gate_proj"), MOE_I, H);
            fp8_linear(v, &format!("{p}.mlp.experts.{e}.up_proj"), MOE_I, H);
            fp8_linear(v, &format!("{p}.mlp.experts.{e}.down_proj"), H, MOE_I);
        }
        fp8_linear(v, &format!("{p}.mlp.shared_experts.gate_proj"), MOE_I, H);
        fp8_linear(v, &format!("{p}.mlp.shared_experts.up_proj"), MOE_I, H);
        fp8_linear(v, &format!("{p}.mlp.shared_experts.down_proj"), H, MOE_I);
    }
    if mtp {
        v.push(t(format!("{p}.shared_head.norm.weight"), "BF16", &[H]));
        v.push(t(
            format!("{p}.shared_head.head.weight"),
            "BF16",
            &[VOCAB, H],
        ));
    }
}

/// The multi-head latent attention of a DeepSeek layer (prefix `p`): low-rank q and kv
/// projections with their norms, and the output projection.
fn deepseek_attention(v: &mut Vec<TensorSpec>, p: &str) {
    use dsv3::*;
    fp8_linear(v, &format!("{p}.self_attn.q_a_proj"), Q_LORA, H);
    v.push(t(
        format!("{p}.self_attn.q_a_layernorm.weight"),
        "BF16",
        &[Q_LORA],
    ));
    fp8_linear(
        v,
        &format!("{p}.self_attn.q_b_proj"),
        HEADS * (NOPE + ROPE),
        Q_LORA,
    );
    fp8_linear(
        v,
        &format!("{p}.self_attn.kv_a_proj_with_mqa"),
        KV_LORA + ROPE,
        H,
    );
    v.push(t(
        format!("{p}.self_attn.kv_a_layernorm.weight"),
        "BF16",
        &[KV_LORA],
    ));
    fp8_linear(
        v,
        &format!("{p}.self_attn.kv_b_proj"),
        HEADS * (NOPE + V_HEAD),
        KV_LORA,
    );
    fp8_linear(v, &format!("{p}.self_attn.o_proj"), H, HEADS * V_HEAD);
}

/// A Llama-3 70B (DeepSeek-R1-Distill-Llama-70B): 80 layers, hidden 8192, GQA with 8 KV heads,
/// BF16, 17 shards.
pub fn llama_70b() -> SimModel {
    const H: u64 = 8192;
    const I: u64 = 28_672;
    const KV: u64 = 8 * 128;
    const VOCAB: u64 = 128_256;
    const LAYERS: u32 = 80;
    let mut v = vec![t("model.embed_tokens.weight".into(), "BF16", &[VOCAB, H])];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        v.push(t(format!("{p}.input_layernorm.weight"), "BF16", &[H]));
        v.push(t(format!("{p}.self_attn.q_proj.weight"), "BF16", &[H, H]));
        v.push(t(format!("{p}.self_attn.k_proj.weight"), "BF16", &[KV, H]));
        v.push(t(format!("{p}.self_attn.v_proj.weight"), "BF16", &[KV, H]));
        v.push(t(format!("{p}.self_attn.o_proj.weight"), "BF16", &[H, H]));
        v.push(t(
            format!("{p}.post_attention_layernorm.weight"),
            "BF16",
            &[H],
        ));
        v.push(t(format!("{p}.mlp.gate_proj.weight"), "BF16", &[I, H]));
        v.push(t(format!("{p}.mlp.up_proj.weight"), "BF16", &[I, H]));
        v.push(t(format!("{p}.mlp.down_proj.weight"), "BF16", &[H, I]));
    }
    v.push(t("model.norm.weight".into(), "BF16", &[H]));
    v.push(t("lm_head.weight".into(), "BF16", &[VOCAB, H]));
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": H, "intermediate_size": I, "num_hidden_layers": LAYERS,
        "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": VOCAB,
        "tie_word_embeddings": false, "torch_dtype": "bfloat16"
    });
    pack(
        "llama-70b",
        v,
        17,
        5,
        config,
        &[
            ("tokenizer.json", 17_209_920),
            ("tokenizer_config.json", 54_619),
            ("generation_config.json", 181),
        ],
    )
}

/// The smallest shard size limit that packs `tensors`, in order and whole, into at most `shards`
/// files (a binary search over the limit).
fn shard_cap(tensors: &[TensorSpec], shards: u64) -> u64 {
    let count_for = |cap: u64| {
        let (mut n, mut fill) = (1u64, 0u64);
        for t in tensors {
            if fill > 0 && fill + t.len > cap {
                n += 1;
                fill = 0;
            }
            fill += t.len;
        }
        n
    };
    let total: u64 = tensors.iter().map(|t| t.len).sum();
    let (mut lo, mut hi) = (total / shards, total);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count_for(mid) <= shards {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Splits `tensors`, in order, into groups of at most `cap` bytes (a tensor bigger than `cap`
/// gets a group of its own).
fn group_by_cap(tensors: Vec<TensorSpec>, cap: u64) -> Vec<Vec<TensorSpec>> {
    let mut groups: Vec<Vec<TensorSpec>> = vec![Vec::new()];
    let mut fill = 0;
    for t in tensors {
        if fill > 0 && fill + t.len > cap {
            groups.push(Vec::new());
            fill = 0;
        }
        fill += t.len;
        if let Some(g) = groups.last_mut() {
            g.push(t);
        }
    }
    groups
}

/// Packs tensors in order into exactly `shards` files (the smallest size limit that fits them in
/// that many), named like the hub's `model-00001-of-000163.safetensors`.
fn pack(
    name: &'static str,
    tensors: Vec<TensorSpec>,
    shards: u64,
    digits: usize,
    config: serde_json::Value,
    extra: &[(&str, u64)],
) -> SimModel {
    let total: u64 = tensors.iter().map(|t| t.len).sum();
    let cap = shard_cap(&tensors, shards);
    let groups = group_by_cap(tensors, cap);
    let n = groups.len();
    let mut weights = Vec::with_capacity(n);
    let mut headers = Vec::with_capacity(n);
    let mut weight_map = serde_json::Map::new();
    for (i, g) in groups.iter().enumerate() {
        let path = format!(
            "model-{:0w$}-of-{:0w2$}.safetensors",
            i + 1,
            n,
            w = 5,
            w2 = digits
        );
        let (bytes, entries) = header::encode(g);
        let size = entries.last().map(|e| e.end).unwrap_or(bytes.len() as u64);
        for e in &entries {
            weight_map.insert(e.name.clone(), serde_json::Value::String(path.clone()));
        }
        weights.push(WeightFile {
            path,
            size,
            data_start: bytes.len() as u64,
            tensors: entries,
        });
        headers.push(bytes);
    }
    let index_json = serde_json::to_string_pretty(&serde_json::json!({
        "metadata": {"total_size": total},
        "weight_map": weight_map,
    }))
    .unwrap_or_default();
    let config_json = serde_json::to_string_pretty(&config).unwrap_or_default();
    let mut others = vec![
        SliceInput {
            path: "config.json".into(),
            size: config_json.len() as u64,
        },
        SliceInput {
            path: INDEX_FILE.into(),
            size: index_json.len() as u64,
        },
    ];
    others.extend(extra.iter().map(|(p, s)| SliceInput {
        path: p.to_string(),
        size: *s,
    }));
    others.sort_by(|a, b| a.path.cmp(&b.path));
    let num_hidden_layers = config
        .get("num_hidden_layers")
        .and_then(|v| v.as_u64())
        .map(|v| v as u32);
    SimModel {
        name,
        layout: ModelLayout {
            weights,
            others,
            num_hidden_layers,
            tie_word_embeddings: false,
        },
        headers,
        config_json,
        index_json,
    }
}

impl SimModel {
    /// Writes the model into `dir` as sparse files: real headers, index and config, holes where
    /// the tensor data would be (a few MB of disk for 642 GB of apparent size). Other files
    /// (tokenizer) are sparse too.
    pub fn write_sparse(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for (w, h) in self.layout.weights.iter().zip(&self.headers) {
            let path = dir.join(&w.path);
            let mut f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            std::io::Write::write_all(&mut f, h).map_err(|e| Error::io(&path, e))?;
            f.set_len(w.size).map_err(|e| Error::io(&path, e))?;
        }
        for o in &self.layout.others {
            let path = dir.join(&o.path);
            match o.path.as_str() {
                "config.json" => std::fs::write(&path, &self.config_json),
                INDEX_FILE => std::fs::write(&path, &self.index_json),
                _ => std::fs::File::create(&path).and_then(|f| f.set_len(o.size)),
            }
            .map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}
