//! Tensor descriptions shared by the model layouts: dtype, name and shape, without any data.

use std::fmt;

/// The safetensors dtypes the synthetic models use. All three are accepted by the Rust
/// `safetensors` crate and by Python's `safetensors` package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// Embeddings, norms, router weights.
    Bf16,
    /// Block scales of FP8 weights and the router's score-correction bias.
    F32,
    /// Projection and expert weights of the FP8 DeepSeek-V3/R1 checkpoint.
    F8E4M3,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Dtype::Bf16 => 2,
            Dtype::F32 => 4,
            Dtype::F8E4M3 => 1,
        }
    }

    /// The name safetensors headers use.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Bf16 => "BF16",
            Dtype::F32 => "F32",
            Dtype::F8E4M3 => "F8_E4M3",
        }
    }
}

/// A tensor name, kept in parts so that sizes can be estimated for ~90,000 tensors without
/// formatting a single string (the size search runs the enumeration dozens of times).
///
/// Renders as `model.layers.{layer}.mlp.experts.{expert}.{module}.{param}`, with the layer and
/// expert parts present only when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorName {
    pub layer: Option<u32>,
    pub expert: Option<u32>,
    pub module: &'static str,
    pub param: &'static str,
}

const LAYER_PREFIX: &str = "model.layers.";
const EXPERT_PREFIX: &str = "mlp.experts.";

impl TensorName {
    /// A tensor outside the decoder layers (`model.embed_tokens.weight`, `lm_head.weight`).
    pub const fn top(module: &'static str, param: &'static str) -> Self {
        TensorName {
            layer: None,
            expert: None,
            module,
            param,
        }
    }

    /// A tensor of decoder layer `layer` (`model.layers.3.self_attn.o_proj.weight`).
    pub const fn layer(layer: u32, module: &'static str, param: &'static str) -> Self {
        TensorName {
            layer: Some(layer),
            expert: None,
            module,
            param,
        }
    }

    /// A routed expert's tensor (`model.layers.3.mlp.experts.17.up_proj.weight`).
    pub const fn expert(
        layer: u32,
        expert: u32,
        module: &'static str,
        param: &'static str,
    ) -> Self {
        TensorName {
            layer: Some(layer),
            expert: Some(expert),
            module,
            param,
        }
    }

    /// Length of the rendered name in bytes, computed without rendering it.
    pub fn len(&self) -> usize {
        let mut n = self.module.len() + 1 + self.param.len();
        if let Some(layer) = self.layer {
            n += LAYER_PREFIX.len() + decimal_len(u64::from(layer)) + 1;
        }
        if let Some(expert) = self.expert {
            n += EXPERT_PREFIX.len() + decimal_len(u64::from(expert)) + 1;
        }
        n
    }
}

impl fmt::Display for TensorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(layer) = self.layer {
            write!(f, "{LAYER_PREFIX}{layer}.")?;
        }
        if let Some(expert) = self.expert {
            write!(f, "{EXPERT_PREFIX}{expert}.")?;
        }
        write!(f, "{}.{}", self.module, self.param)
    }
}

/// Number of decimal digits of `v`.
pub fn decimal_len(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Receives every tensor of a model, in file order.
pub trait TensorSink {
    fn tensor(&mut self, name: TensorName, dtype: Dtype, shape: &[u64]);

    /// An FP8 weight `[rows, cols]` followed by its `weight_scale_inv` (one F32 per 128x128
    /// block), as in DeepSeek's FP8 checkpoints.
    fn fp8_weight(&mut self, name: TensorName, rows: u64, cols: u64) {
        self.tensor(name, Dtype::F8E4M3, &[rows, cols]);
        let scale = TensorName {
            param: "weight_scale_inv",
            ..name
        };
        self.tensor(
            scale,
            Dtype::F32,
            &[rows.div_ceil(FP8_BLOCK), cols.div_ceil(FP8_BLOCK)],
        );
    }
}

/// Side of the square blocks that share one FP8 scale (`weight_block_size` in config.json).
pub const FP8_BLOCK: u64 = 128;

/// Bytes of a tensor's data.
pub fn tensor_bytes(dtype: Dtype, shape: &[u64]) -> u64 {
    shape.iter().product::<u64>() * dtype.size()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_len_matches_rendering() {
        let names = [
            TensorName::top("model.embed_tokens", "weight"),
            TensorName::layer(0, "input_layernorm", "weight"),
            TensorName::layer(60, "self_attn.q_a_proj", "weight_scale_inv"),
            TensorName::expert(10, 255, "down_proj", "weight"),
            TensorName::expert(3, 9, "gate_proj", "weight"),
        ];
        for name in names {
            assert_eq!(name.len(), name.to_string().len(), "{name}");
        }
        assert_eq!(
            TensorName::expert(3, 17, "up_proj", "weight").to_string(),
            "model.layers.3.mlp.experts.17.up_proj.weight"
        );
    }

    #[test]
    fn decimal_len_counts_digits() {
        assert_eq!(decimal_len(0), 1);
        assert_eq!(decimal_len(9), 1);
        assert_eq!(decimal_len(10), 2);
        assert_eq!(decimal_len(688_586_727_753), 12);
    }
}
