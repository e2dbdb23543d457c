//! The doctor's checks over recorded facts: the seed deployments' GPUs (T4, V100, A10, A100,
//! A800, H800, H100, H200) and models (R1 671B FP8, its BF16 upcast, the 1.5B–70B distills, with
//! their real config.json values in tests/fixtures/configs). Each seed failure must come out as
//! an error (or warning) with the right fix, and the configurations that work must pass.

use std::path::Path;

use ferry_sharder::model_config::ModelConfig;
use ferry_sidecar::doctor::node::{Fabric, NcclEnv, RdmaDevice};
use ferry_sidecar::doctor::{
    diagnose, gpu, CudaVersion, Deployment, Facts, Finding, InferenceEngine, ModelFacts, NodeFacts,
    Report, Severity,
};

const GIB: u64 = 1 << 30;

/// Weight bytes as the hub lists them.
fn weights(model: &str) -> u64 {
    match model {
        "DeepSeek-R1" => 642 * GIB,
        "DeepSeek-R1-BF16" => 1_342_000_000_000,
        "DeepSeek-R1-Distill-Qwen-1.5B" => 3_550_000_000,
        "DeepSeek-R1-Distill-Qwen-7B" => 15_230_000_000,
        "DeepSeek-R1-Distill-Llama-8B" => 16_060_000_000,
        "DeepSeek-R1-Distill-Qwen-14B" => 29_540_000_000,
        "DeepSeek-R1-Distill-Qwen-32B" => 65_530_000_000,
        "DeepSeek-R1-Distill-Llama-70B" => 141_100_000_000,
        _ => panic!("no size for {model}"),
    }
}

fn model(name: &str) -> ModelFacts {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/configs")
        .join(format!("{name}.json"));
    let bytes = std::fs::read(&path).unwrap();
    ModelFacts {
        dir: None,
        config: Some(ModelConfig::from_json(&path, &bytes).unwrap()),
        weight_bytes: Some(weights(name)),
        weight_source: Some("manifest"),
        complete: true,
        missing_bytes: Some(0),
    }
}

/// A node of `count` recorded GPUs with a CUDA 12.8 driver and room everywhere.
fn node(gpu_name: &str, count: u32) -> NodeFacts {
    let gpus = (0..count)
        .map(|i| {
            let mut g = gpu::recorded(gpu_name).unwrap();
            g.index = i;
            g
        })
        .collect();
    NodeFacts {
        driver_version: Some("570.124.06".into()),
        cuda_driver_version: Some(CudaVersion::new(12, 8)),
        gpus,
        shm_bytes: Some(64 * GIB),
        dev_infiniband: false,
        ..NodeFacts::default()
    }
}

fn deploy(engine: InferenceEngine, tp: u32, pp: u32, nnodes: u32) -> Deployment {
    Deployment {
        engine,
        tp,
        pp,
        nnodes,
        ..Deployment::default()
    }
}

fn run(node: NodeFacts, model: ModelFacts, deployment: Deployment) -> Report {
    diagnose(Facts {
        node,
        model,
        deployment,
    })
}

fn finding<'a>(r: &'a Report, rule: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} finding in {:#?}", r.findings))
}

fn assert_ok(r: &Report) {
    assert!(
        r.ok,
        "expected no errors: {:#?}",
        r.errors().collect::<Vec<_>>()
    );
}

fn assert_error(r: &Report, rule: &str, message: &str, fix: &str) {
    let f = finding(r, rule);
    assert_eq!(f.severity, Severity::Error, "{f:#?}");
    assert!(f.message.contains(message), "{rule} message: {}", f.message);
    let got = f.fix.as_deref().unwrap_or("");
    assert!(got.contains(fix), "{rule} fix: {got}");
    assert!(!r.ok);
}

#[test]
fn sglang_on_v100_needs_sm75() {
    let r = run(
        node("V100", 1),
        model("DeepSeek-R1-Distill-Qwen-7B"),
        deploy(InferenceEngine::Sglang, 1, 1, 1),
    );
    assert_error(&r, "capability.engine", "SGLang only supports sm75", "vLLM");
    // vLLM runs on Volta, and the same GPU then only needs --dtype half.
    let r = run(
        node("V100", 1),
        model("DeepSeek-R1-Distill-Qwen-7B"),
        deploy(InferenceEngine::Vllm, 1, 1, 1),
    );
    assert_eq!(finding(&r, "capability.engine").severity, Severity::Pass);
    assert_error(
        &r,
        "capability.dtype",
        "Bfloat16 is only supported",
        "--dtype half",
    );
}

#[test]
fn bf16_distills_on_t4_need_dtype_half() {
    for engine in [InferenceEngine::Sglang, InferenceEngine::Vllm] {
        let r = run(
            node("T4", 1),
            model("DeepSeek-R1-Distill-Qwen-1.5B"),
            deploy(engine, 1, 1, 1),
        );
        assert_error(&r, "capability.dtype", "sm75", "--dtype half");
        assert_eq!(finding(&r, "capability.engine").severity, Severity::Pass);
        assert_eq!(finding(&r, "memory.weights").severity, Severity::Pass);
    }
}

#[test]
fn r1_fp8_on_one_h200_node_passes_and_on_one_gpu_does_not_fit() {
    let r = run(
        node("H200", 8),
        model("DeepSeek-R1"),
        deploy(InferenceEngine::Sglang, 8, 1, 1),
    );
    assert_ok(&r);
    assert_eq!(finding(&r, "capability.fp8").severity, Severity::Pass);
    assert_eq!(finding(&r, "memory.kv").severity, Severity::Pass);
    let kv = finding(&r, "memory.kv");
    assert!(
        kv.message.contains("70272 bytes/token"),
        "MLA: {}",
        kv.message
    );
    let r = run(
        node("H200", 1),
        model("DeepSeek-R1"),
        deploy(InferenceEngine::Sglang, 1, 1, 1),
    );
    assert_error(
        &r,
        "memory.weights",
        "CUDA out of memory",
        "at least 8 × NVIDIA H200",
    );
}

#[test]
fn r1_fp8_needs_two_h100_or_h800_nodes() {
    for gpu_name in ["H100", "H800"] {
        let r = run(
            node(gpu_name, 8),
            model("DeepSeek-R1"),
            deploy(InferenceEngine::Sglang, 8, 1, 1),
        );
        assert_error(&r, "memory.weights", "CUDA out of memory", "at least 16 ×");
        let mut n = node(gpu_name, 8);
        n.rdma_devices = vec![RdmaDevice {
            name: "mlx5_0".into(),
            link_layer: Some("InfiniBand".into()),
            state: Some("4: ACTIVE".into()),
        }];
        n.dev_infiniband = true;
        let r = run(
            n,
            model("DeepSeek-R1"),
            deploy(InferenceEngine::Sglang, 16, 1, 2),
        );
        assert_ok(&r);
    }
}

#[test]
fn r1_fp8_on_a800_has_no_sglang_path_and_a_vllm_fallback() {
    let r = run(
        node("A800", 8),
        model("DeepSeek-R1"),
        deploy(InferenceEngine::Sglang, 16, 1, 2),
    );
    assert_error(&r, "capability.fp8", "needs sm89", "BF16");
    let r = run(
        node("A800", 8),
        model("DeepSeek-R1"),
        deploy(InferenceEngine::Vllm, 16, 1, 2),
    );
    let f = finding(&r, "capability.fp8");
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message.contains("Marlin") && f.message.contains("MoE"),
        "{f:?}"
    );
}

#[test]
fn r1_bf16_needs_four_a100_nodes() {
    let r = run(
        node("A100", 8),
        model("DeepSeek-R1-BF16"),
        deploy(InferenceEngine::Sglang, 16, 1, 2),
    );
    assert_error(&r, "memory.weights", "out of memory", "at least 32 ×");
    let r = run(
        node("A100", 8),
        model("DeepSeek-R1-BF16"),
        deploy(InferenceEngine::Sglang, 32, 1, 4),
    );
    // Four nodes without RDMA run, slowly: a warning, not an error.
    assert_ok(&r);
    assert_eq!(finding(&r, "rdma.devices").severity, Severity::Warning);
}

#[test]
fn tp_must_divide_the_heads() {
    let r = run(
        node("H800", 8),
        model("DeepSeek-R1"),
        deploy(InferenceEngine::Sglang, 24, 1, 3),
    );
    assert_error(
        &r,
        "tp.heads",
        "tp 24 does not divide the model's 128",
        "1, 2, 4, 8, 16, 32, 64",
    );
    let r = run(
        node("A10", 1),
        model("DeepSeek-R1-Distill-Qwen-7B"),
        deploy(InferenceEngine::Vllm, 3, 1, 3),
    );
    assert_error(&r, "tp.heads", "28 attention heads", "1, 2, 4, 7, 14, 28");
}

#[test]
fn distills_that_do_not_fit_name_how_many_gpus() {
    let r = run(
        node("A10", 1),
        model("DeepSeek-R1-Distill-Qwen-32B"),
        deploy(InferenceEngine::Vllm, 1, 1, 1),
    );
    assert_error(
        &r,
        "memory.weights",
        "out of memory",
        "at least 4 × NVIDIA A10",
    );
    let r = run(
        node("A10", 4),
        model("DeepSeek-R1-Distill-Qwen-32B"),
        deploy(InferenceEngine::Vllm, 4, 1, 1),
    );
    assert_eq!(finding(&r, "memory.weights").severity, Severity::Pass);
    // 70B: 2 × A100 is below the seed rule, 4 × passes with the full 128K context.
    let r = run(
        node("A100", 2),
        model("DeepSeek-R1-Distill-Llama-70B"),
        deploy(InferenceEngine::Vllm, 2, 1, 1),
    );
    assert_error(&r, "memory.weights", "out of memory", "at least 4 ×");
    let r = run(
        node("A100", 4),
        model("DeepSeek-R1-Distill-Llama-70B"),
        deploy(InferenceEngine::Vllm, 4, 1, 1),
    );
    assert_ok(&r);
}

#[test]
fn full_context_kv_cache_that_does_not_fit_caps_the_context() {
    // 7B on one A10: the weights fit, 131072 tokens of KV cache (56 KiB each) do not.
    let r = run(
        node("A10", 1),
        model("DeepSeek-R1-Distill-Qwen-7B"),
        deploy(InferenceEngine::Vllm, 1, 1, 1),
    );
    assert_eq!(finding(&r, "memory.weights").severity, Severity::Pass);
    assert_error(
        &r,
        "memory.kv",
        "max seq len (131072) is larger",
        "--max-model-len ",
    );
    // The fix's number is what fits, so following it passes.
    let fix = finding(&r, "memory.kv").fix.clone().unwrap();
    let cap: u64 = fix
        .split("--max-model-len ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!((32_768..131_072).contains(&cap), "{cap}");
    let mut d = deploy(InferenceEngine::Vllm, 1, 1, 1);
    d.context_length = Some(cap * 9 / 10);
    let r = run(node("A10", 1), model("DeepSeek-R1-Distill-Qwen-7B"), d);
    assert_ok(&r);
    // SGLang starts with a smaller cache: a warning with its own flag.
    let r = run(
        node("A10", 1),
        model("DeepSeek-R1-Distill-Qwen-7B"),
        deploy(InferenceEngine::Sglang, 1, 1, 1),
    );
    let f = finding(&r, "memory.kv");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.fix.as_deref().unwrap().contains("--context-length"));
}

#[test]
fn every_distill_runs_on_one_h200() {
    for name in [
        "DeepSeek-R1-Distill-Qwen-1.5B",
        "DeepSeek-R1-Distill-Qwen-7B",
        "DeepSeek-R1-Distill-Llama-8B",
        "DeepSeek-R1-Distill-Qwen-14B",
        "DeepSeek-R1-Distill-Qwen-32B",
    ] {
        let r = run(
            node("H200", 1),
            model(name),
            deploy(InferenceEngine::Sglang, 1, 1, 1),
        );
        assert_ok(&r);
    }
    let r = run(
        node("H200", 1),
        model("DeepSeek-R1-Distill-Llama-70B"),
        deploy(InferenceEngine::Sglang, 1, 1, 1),
    );
    assert_error(&r, "memory.weights", "out of memory", "at least 2 ×");
}

#[test]
fn image_cuda_newer_than_the_driver() {
    let mut n = node("A100", 8);
    n.driver_version = Some("520.61.05".into());
    n.cuda_driver_version = Some(CudaVersion::new(11, 8));
    let mut d = deploy(InferenceEngine::Sglang, 8, 1, 1);
    d.image = Some("lmsysorg/sglang:v0.4.6.post1-cu124".into());
    d.image_cuda = CudaVersion::from_image(d.image.as_deref().unwrap());
    let r = run(n.clone(), model("DeepSeek-R1-Distill-Qwen-32B"), d.clone());
    assert_error(&r, "cuda.driver", "cuTensorMapEncodeTiled", "550.54.14");
    n.cuda_driver_version = Some(CudaVersion::new(12, 2));
    let r = run(n.clone(), model("DeepSeek-R1-Distill-Qwen-32B"), d.clone());
    assert_eq!(finding(&r, "cuda.driver").severity, Severity::Warning);
    n.cuda_driver_version = Some(CudaVersion::new(12, 8));
    let r = run(n, model("DeepSeek-R1-Distill-Qwen-32B"), d);
    assert_eq!(finding(&r, "cuda.driver").severity, Severity::Pass);
}

#[test]
fn nvswitch_without_fabric_manager_is_error_802() {
    let mut n = node("H800", 8);
    for g in &mut n.gpus {
        g.fabric = Some(Fabric::NotStarted);
    }
    let r = run(
        n.clone(),
        model("DeepSeek-R1-Distill-Qwen-32B"),
        deploy(InferenceEngine::Vllm, 8, 1, 1),
    );
    assert_error(&r, "fabric", "Error 802", "nvidia-fabricmanager");
    for g in &mut n.gpus {
        g.fabric = Some(Fabric::Completed { ok: true });
    }
    let r = run(
        n,
        model("DeepSeek-R1-Distill-Qwen-32B"),
        deploy(InferenceEngine::Vllm, 8, 1, 1),
    );
    assert_eq!(finding(&r, "fabric").severity, Severity::Pass);
}

#[test]
fn small_shm_and_rdma_env_without_devices() {
    let mut n = node("H800", 8);
    n.shm_bytes = Some(64 << 20);
    n.nccl = NcclEnv {
        ib_hca: Some("mlx5_0,mlx5_1".into()),
        ..NcclEnv::default()
    };
    let r = run(
        n,
        model("DeepSeek-R1"),
        deploy(InferenceEngine::Sglang, 16, 1, 2),
    );
    assert_error(&r, "shm", "64 MiB", "emptyDir");
    assert_error(&r, "rdma.env", "NCCL_IB_HCA=mlx5_0,mlx5_1", "rdma/ib");
    let mut n = node("H800", 8);
    n.rdma_devices = vec![RdmaDevice {
        name: "mlx5_0".into(),
        link_layer: Some("Ethernet".into()),
        state: None,
    }];
    let r = run(
        n,
        model("DeepSeek-R1"),
        deploy(InferenceEngine::Sglang, 16, 1, 2),
    );
    assert_error(&r, "rdma.devices", "/dev/infiniband is missing", "IPC_LOCK");
}

#[test]
fn disk_must_hold_what_is_left_to_download() {
    let mut n = node("H200", 8);
    n.disk_free_bytes = Some(500_000_000_000);
    let mut m = model("DeepSeek-R1");
    m.complete = false;
    m.missing_bytes = Some(600_000_000_000);
    let r = run(
        n.clone(),
        m.clone(),
        deploy(InferenceEngine::Sglang, 8, 1, 1),
    );
    assert_error(&r, "disk", "500.0 GB free", "grow the volume");
    m.missing_bytes = Some(100_000_000_000);
    let r = run(n, m, deploy(InferenceEngine::Sglang, 8, 1, 1));
    assert_eq!(finding(&r, "disk").severity, Severity::Pass);
}

#[test]
fn no_driver_still_runs_the_model_checks() {
    let n = NodeFacts {
        nvml_error: Some("no NVIDIA driver found: libnvidia-ml.so.1 could not be loaded".into()),
        shm_bytes: Some(64 * GIB),
        ..NodeFacts::default()
    };
    let r = run(
        n,
        model("DeepSeek-R1"),
        deploy(InferenceEngine::Sglang, 24, 1, 3),
    );
    let f = finding(&r, "gpu.driver");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("no NVIDIA driver found"));
    assert_error(&r, "tp.heads", "128 attention heads", "16");
    assert_eq!(finding(&r, "memory.weights").severity, Severity::Skipped);
}
