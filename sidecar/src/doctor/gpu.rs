//! The GPU-side rules: a driver is there, the compute capability meets the engine's minimum and
//! the model's dtype, the driver supports the image's CUDA, and the NVSwitch fabric is up.

use super::engine::{self, Capability, InferenceEngine, BF16_MIN, FP8_MARLIN_MIN, FP8_NATIVE};
use super::{Facts, Finding, GpuFacts};

/// Every GPU-side finding; only the driver finding when there are no GPU facts.
pub fn check(f: &Facts) -> Vec<Finding> {
    if let Some(why) = &f.node.nvml_error {
        return vec![Finding::warning(
            "gpu.driver",
            format!("{why}; GPU checks skipped, the model checks below still ran"),
            "run `ferry doctor` on the GPU node, inside a container that has the driver (it \
             requests nvidia.com/gpu, or sets NVIDIA_VISIBLE_DEVICES=all with the NVIDIA runtime)",
        )];
    }
    let Some(weakest) = f.node.gpus.iter().min_by_key(|g| g.capability) else {
        return vec![Finding::error(
            "gpu.driver",
            "the NVIDIA driver answers but sees no GPU",
            "check that the pod requests nvidia.com/gpu and that nvidia-smi lists the GPUs",
        )];
    };
    let mut out = vec![Finding::pass(
        "gpu.driver",
        format!(
            "{} × {} ({}, {}), driver {}, CUDA up to {}",
            f.node.gpus.len(),
            weakest.name,
            weakest.capability,
            super::gib(weakest.memory_bytes),
            f.node.driver_version.as_deref().unwrap_or("unknown"),
            f.node
                .cuda_driver_version
                .map_or("unknown".into(), |v| v.to_string()),
        ),
    )];
    out.push(engine_minimum(f.deployment.engine, weakest));
    out.extend(dtype(f, weakest));
    out.push(driver_vs_image(f));
    out.extend(fabric(&f.node.gpus));
    out
}

fn engine_minimum(engine: InferenceEngine, g: &GpuFacts) -> Finding {
    let min = engine::min_capability(engine);
    if g.capability >= min {
        return Finding::pass(
            "capability.engine",
            format!(
                "{} is {}; {engine} needs {min} or newer",
                g.name, g.capability
            ),
        );
    }
    let fix = match engine {
        InferenceEngine::Sglang
            if g.capability >= engine::min_capability(InferenceEngine::Vllm) =>
        {
            format!(
                "serve with vLLM (sm70+) on the {}, or schedule onto sm75+ GPUs (T4, A10, A100, \
             H100 …)",
                g.name
            )
        }
        _ => "schedule onto newer GPUs (Volta sm70 for vLLM, Turing sm75 for SGLang)".into(),
    };
    let symptom = match engine {
        InferenceEngine::Sglang => "the engine stops with `SGLang only supports sm75 and above`",
        InferenceEngine::Vllm => "vLLM's kernels are not built for it",
    };
    Finding::error(
        "capability.engine",
        format!(
            "{} is {}, below {engine}'s minimum {min}: {symptom}",
            g.name, g.capability
        ),
        fix,
    )
}

/// bf16 activations and FP8 weights against the capability.
fn dtype(f: &Facts, g: &GpuFacts) -> Vec<Finding> {
    let Some(cfg) = &f.model.config else {
        return vec![Finding::skipped(
            "capability.dtype",
            "no config.json: the model's dtype is unknown",
        )];
    };
    let mut out = Vec::new();
    if cfg.is_bf16() && g.capability < BF16_MIN {
        out.push(Finding::error(
            "capability.dtype",
            format!(
                "the model's torch_dtype is bfloat16 and {} is {} (bf16 needs {BF16_MIN}): the \
                 engine stops with `Bfloat16 is only supported on GPUs with compute capability \
                 of at least 8.0`",
                g.name, g.capability
            ),
            "start the engine with `--dtype half` (float16; a few models overflow in fp16: \
             check the outputs)",
        ));
    } else {
        out.push(Finding::pass(
            "capability.dtype",
            format!(
                "torch_dtype {} on {}",
                cfg.torch_dtype.as_deref().unwrap_or("unknown"),
                g.capability
            ),
        ));
    }
    if cfg.is_fp8() {
        out.push(fp8(f.deployment.engine, g, cfg.n_routed_experts.is_some()));
    }
    out
}

fn fp8(engine: InferenceEngine, g: &GpuFacts, moe: bool) -> Finding {
    let c = g.capability;
    if c >= FP8_NATIVE {
        return Finding::pass(
            "capability.fp8",
            format!("FP8 weights on {} {c}: native FP8 ({FP8_NATIVE}+)", g.name),
        );
    }
    let what = format!(
        "the weights are FP8 (quantization_config.quant_method fp8) and {} is {c}: FP8 matrix \
         multiply needs {FP8_NATIVE} (Ada, Hopper)",
        g.name
    );
    let bf16 = "use the BF16 checkpoint (DeepSeek's fp8_cast_bf16.py; R1 BF16 needs about \
                4 × 8 A100/A800 80 GB), or an INT8 (W8A8) / AWQ quantization (R1 INT8: 2 × 8 \
                A100/A800)";
    match engine {
        InferenceEngine::Vllm if c >= FP8_MARLIN_MIN => Finding::warning(
            "capability.fp8",
            format!(
                "{what}; vLLM falls back to weight-only FP8 (W8A16, the Marlin kernel){}",
                if moe {
                    ", which for MoE models only recent vLLM releases have: older ones stop \
                     at load"
                } else {
                    ""
                }
            ),
            format!(
                "check the vLLM version supports FP8 Marlin{}, or {bf16}",
                if moe { " MoE" } else { "" }
            ),
        ),
        _ => Finding::error(
            "capability.fp8",
            format!("{what}; {engine} has no fallback for it here"),
            bf16,
        ),
    }
}

/// The driver's newest CUDA against the engine image's.
fn driver_vs_image(f: &Facts) -> Finding {
    let (Some(image), Some(driver)) = (f.deployment.image_cuda, f.node.cuda_driver_version) else {
        return Finding::skipped(
            "cuda.driver",
            match (&f.deployment.image, f.deployment.image_cuda) {
                (_, Some(_)) => "the driver did not report its CUDA version".to_string(),
                (Some(img), None) => format!(
                    "the CUDA version of {img} is unknown (no -cuXYZ in the tag): pass \
                     --engine-cuda"
                ),
                (None, None) => "no --engine-image or --engine-cuda given".to_string(),
            },
        );
    };
    let min = image
        .min_driver()
        .map_or(String::new(), |d| format!(" (driver {d} or newer)"));
    let drv = f.node.driver_version.as_deref().unwrap_or("unknown");
    if driver >= image {
        return Finding::pass(
            "cuda.driver",
            format!("driver {drv} supports CUDA up to {driver}; the image needs {image}"),
        );
    }
    let fix = format!(
        "upgrade the node's driver to one for CUDA {image}{min}, or use an image built for \
         CUDA {driver} or older (e.g. a -cu{}{} tag)",
        driver.major, driver.minor
    );
    if image.major > driver.major {
        Finding::error(
            "cuda.driver",
            format!(
                "the image is built for CUDA {image} but driver {drv} supports only up to \
                 {driver}: the engine fails with `undefined symbol: cuTensorMapEncodeTiled` or \
                 `CUDA driver version is insufficient`"
            ),
            fix,
        )
    } else {
        Finding::warning(
            "cuda.driver",
            format!(
                "the image is built for CUDA {image}, driver {drv} supports up to {driver}: it \
                 starts through CUDA minor-version compatibility, but kernels compiled at run \
                 time (Triton, FlashInfer, DeepGEMM) fail with `unsupported toolchain` and \
                 newer driver APIs are missing"
            ),
            fix,
        )
    }
}

/// The NVSwitch fabric, where NVML reports it (Hopper and later; PCIe GPUs say not supported).
fn fabric(gpus: &[GpuFacts]) -> Option<Finding> {
    use super::node::Fabric;
    let reported: Vec<&GpuFacts> = gpus
        .iter()
        .filter(|g| {
            g.fabric
                .as_ref()
                .is_some_and(|s| *s != Fabric::NotSupported)
        })
        .collect();
    if reported.is_empty() {
        return None;
    }
    let bad: Vec<String> = reported
        .iter()
        .filter(|g| g.fabric != Some(Fabric::Completed { ok: true }))
        .map(|g| format!("GPU {} {:?}", g.index, g.fabric.as_ref()))
        .collect();
    if bad.is_empty() {
        return Some(Finding::pass(
            "fabric",
            format!("NVSwitch fabric registered on all {} GPUs", reported.len()),
        ));
    }
    Some(Finding::error(
        "fabric",
        format!(
            "NVSwitch fabric not ready ({}): CUDA fails with `Error 802: system not yet \
             initialized`",
            bad.join(", ")
        ),
        "start the fabric manager on the node (`systemctl enable --now nvidia-fabricmanager`, \
         same version as the driver; with the GPU Operator it runs in the driver container) and \
         wait until `nvidia-smi -q` shows Fabric State Completed",
    ))
}

/// Recorded facts of the GPUs the seed deployments use (NVML's names, capabilities and total
/// memory), for tests and examples.
pub fn recorded(name: &str) -> Option<GpuFacts> {
    let (n, cc, mib) = match name {
        "T4" => ("Tesla T4", (7, 5), 15360),
        "V100" => ("Tesla V100-SXM2-32GB", (7, 0), 32768),
        "A10" => ("NVIDIA A10", (8, 6), 23028),
        "A100" => ("NVIDIA A100-SXM4-80GB", (8, 0), 81920),
        "A800" => ("NVIDIA A800-SXM4-80GB", (8, 0), 81920),
        "H800" => ("NVIDIA H800", (9, 0), 81559),
        "H100" => ("NVIDIA H100 80GB HBM3", (9, 0), 81559),
        "H200" => ("NVIDIA H200", (9, 0), 143771),
        _ => return None,
    };
    Some(GpuFacts {
        index: 0,
        name: n.into(),
        capability: Capability::new(cc.0, cc.1),
        memory_bytes: mib << 20,
        fabric: None,
    })
}
