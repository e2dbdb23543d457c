//! What the serving engines need from a GPU and a driver: the minimum compute capability of each
//! engine, how they handle bf16 and FP8 on older GPUs, the CUDA version an engine image was built
//! with (read from its tag), and the oldest driver each CUDA release needs.
//!
//! Sources (read for this table):
//! - vLLM's GPU installation page: "compute capability 7.0 or higher (e.g., V100, T4, …)".
//! - SGLang refuses older GPUs at start with "SGLang only supports sm75 and above".
//! - vLLM's FP8 page: FP8 W8A8 needs compute capability ≥ 8.9 (Ada, Hopper); older GPUs run FP8
//!   checkpoints as weight-only W8A16 through the FP8 Marlin kernel, and FP8 *MoE* models needed
//!   ≥ 8.9 until recent releases (Red Hat AI's answer on DeepSeek-Coder-V2-FP8).
//! - SGLang's DeepSeek-V3/R1 page lists FP8 only on H100/H200-class GPUs; A100/A800 run the BF16
//!   upcast (4 × 8) or INT8/AWQ quantized weights (16 × or 8 ×).
//! - NVIDIA's CUDA toolkit release notes: the minimum Linux driver of each CUDA release.

use std::fmt;

use serde::Serialize;

pub use ferry_sharder::InferenceEngine;

/// A CUDA version, `12.4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CudaVersion {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl CudaVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        CudaVersion { major, minor }
    }

    /// From NVML's integer (`12040` → 12.4).
    pub fn from_nvml(v: i32) -> Option<Self> {
        (v > 0).then(|| CudaVersion::new(v as u32 / 1000, (v as u32 % 1000) / 10))
    }

    /// `12.4`, `12`, `124` (the tag spelling: last digit is the minor), `118`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('.') {
            let minor = b.split('.').next()?;
            return Some(CudaVersion::new(a.parse().ok()?, minor.parse().ok()?));
        }
        if !s.chars().all(|c| c.is_ascii_digit()) || s.is_empty() {
            return None;
        }
        match s.len() {
            1 | 2 => Some(CudaVersion::new(s.parse().ok()?, 0)),
            3 => Some(CudaVersion::new(s[..2].parse().ok()?, s[2..].parse().ok()?)),
            _ => None,
        }
    }

    /// The CUDA version in an image reference's tag: `lmsysorg/sglang:v0.4.6-cu124` → 12.4,
    /// `…:latest-cu12.8`, `…-cuda12.1-…`. `None` when the tag does not say.
    pub fn from_image(image: &str) -> Option<Self> {
        // The tag is after the last ':' that follows the last '/' (a registry may have a port).
        let tail = image.rsplit('/').next()?;
        let tag = tail.split_once(':')?.1;
        let tag = tag.split('@').next()?.to_ascii_lowercase();
        tag.split(['-', '_'])
            .filter_map(|part| {
                let v = part
                    .strip_prefix("cuda")
                    .or_else(|| part.strip_prefix("cu"))?;
                CudaVersion::parse(v).filter(|v| (10..=20).contains(&v.major))
            })
            .next()
    }

    /// The oldest Linux driver this CUDA release needs without the forward-compatibility package
    /// (CUDA release notes, "Toolkit Driver Version"); `None` for versions not in the table.
    pub fn min_driver(&self) -> Option<&'static str> {
        const TABLE: [((u32, u32), &str); 11] = [
            ((11, 8), "520.61.05"),
            ((12, 0), "525.60.13"),
            ((12, 1), "530.30.02"),
            ((12, 2), "535.54.03"),
            ((12, 3), "545.23.06"),
            ((12, 4), "550.54.14"),
            ((12, 5), "555.42.02"),
            ((12, 6), "560.28.03"),
            ((12, 8), "570.26"),
            ((12, 9), "575.51.03"),
            ((13, 0), "580.65.06"),
        ];
        TABLE
            .iter()
            .find(|(v, _)| *v == (self.major, self.minor))
            .map(|(_, d)| *d)
    }
}

/// A GPU's compute capability, `9.0` (sm90).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Capability {
    pub major: u32,
    pub minor: u32,
}

impl Capability {
    pub const fn new(major: u32, minor: u32) -> Self {
        Capability { major, minor }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm{}{}", self.major, self.minor)
    }
}

/// The lowest compute capability an engine runs on at all.
pub fn min_capability(engine: InferenceEngine) -> Capability {
    match engine {
        InferenceEngine::Sglang => Capability::new(7, 5),
        InferenceEngine::Vllm => Capability::new(7, 0),
    }
}

/// Hardware FP8 matrix multiply (Ada sm89, Hopper sm90, Blackwell).
pub const FP8_NATIVE: Capability = Capability::new(8, 9);
/// bfloat16 arithmetic (Ampere and later).
pub const BF16_MIN: Capability = Capability::new(8, 0);
/// vLLM's FP8 Marlin weight-only kernel (W8A16): Turing and later in current releases.
pub const FP8_MARLIN_MIN: Capability = Capability::new(7, 5);

/// The flag that caps the context length, per engine.
pub fn context_flag(engine: InferenceEngine) -> &'static str {
    match engine {
        InferenceEngine::Sglang => "--context-length",
        InferenceEngine::Vllm => "--max-model-len",
    }
}

/// Share of GPU memory the engine takes for weights and KV cache by default (SGLang
/// `--mem-fraction-static` is chosen per GPU size, about 0.88 on 80 GB cards; vLLM
/// `--gpu-memory-utilization` 0.9).
pub fn memory_fraction(engine: InferenceEngine) -> f64 {
    match engine {
        InferenceEngine::Sglang => 0.88,
        InferenceEngine::Vllm => 0.9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        let v = |s: &str| CudaVersion::from_image(s).map(|v| v.to_string());
        assert_eq!(
            v("lmsysorg/sglang:v0.4.6.post1-cu124").as_deref(),
            Some("12.4")
        );
        assert_eq!(v("lmsysorg/sglang:latest-cu12.8").as_deref(), Some("12.8"));
        assert_eq!(
            v("registry:5000/x/vllm:v0.6-cu118").as_deref(),
            Some("11.8")
        );
        assert_eq!(
            v("nvcr.io/nvidia/pytorch:24.05-cuda12.4-py3").as_deref(),
            Some("12.4")
        );
        assert_eq!(v("vllm/vllm-openai:v0.8.5"), None);
        assert_eq!(
            v("registry:5000/cu124"),
            None,
            "a repository name is not a tag"
        );
        assert_eq!(CudaVersion::from_nvml(12080), Some(CudaVersion::new(12, 8)));
        assert_eq!(CudaVersion::new(12, 4).min_driver(), Some("550.54.14"));
    }
}
