//! The fit rules: TP divides the heads, TP × PP matches the GPUs, the weights and a full-context
//! KV cache fit in GPU memory, `/dev/shm` is big enough for NCCL, the RDMA environment matches
//! the devices, and disk and page cache hold this node's share.

use super::engine::{context_flag, InferenceEngine};
use super::memory::{self, Estimate};
use super::{gb, gib, Facts, Finding};

pub fn check(f: &Facts) -> Vec<Finding> {
    let mut out = vec![tp_heads(f)];
    out.extend(parallel_gpus(f));
    out.extend(memory_checks(f));
    out.extend(shm(f));
    out.extend(rdma(f));
    out.extend(disk(f));
    out
}

/// Tensor parallelism splits attention heads (and vLLM KV heads) evenly.
fn tp_heads(f: &Facts) -> Finding {
    let tp = u64::from(f.deployment.tp.max(1));
    let Some(heads) = f.model.config.as_ref().and_then(|c| c.num_attention_heads) else {
        return Finding::skipped("tp.heads", "config.json gives no num_attention_heads");
    };
    let valid: Vec<String> = (1..=heads.min(64))
        .filter(|d| heads.is_multiple_of(*d))
        .map(|d| d.to_string())
        .collect();
    if !heads.is_multiple_of(tp) {
        return Finding::error(
            "tp.heads",
            format!("tp {tp} does not divide the model's {heads} attention heads: the engine stops at start"),
            format!("use a tp that divides {heads}: {}", valid.join(", ")),
        );
    }
    let kv = f
        .model
        .config
        .as_ref()
        .and_then(|c| c.kv_heads())
        .unwrap_or(heads);
    let mla = f.model.config.as_ref().is_some_and(|c| c.is_mla());
    if !mla && !kv.is_multiple_of(tp) && !tp.is_multiple_of(kv) {
        return Finding::error(
            "tp.heads",
            format!("tp {tp} neither divides nor is a multiple of the {kv} KV heads"),
            format!("use a tp that divides {kv} or is a multiple of it"),
        );
    }
    Finding::pass(
        "tp.heads",
        format!("tp {tp} divides {heads} attention heads ({kv} KV heads)"),
    )
}

/// TP × PP against the nodes' GPUs, and the GPUs this node has against what the engine uses.
fn parallel_gpus(f: &Facts) -> Vec<Finding> {
    let d = &f.deployment;
    let ranks = d.tp.max(1) * d.pp.max(1);
    let here = f.node.gpus.len() as u32;
    let per_node = d.gpus_per_node.or((here > 0).then_some(here));
    let mut out = Vec::new();
    if let Some(per_node) = per_node {
        let world = per_node * d.nnodes.max(1);
        out.push(if world == ranks {
            Finding::pass(
                "parallel.gpus",
                format!(
                    "tp {} × pp {} = {ranks} = {} nodes × {per_node} GPUs",
                    d.tp, d.pp, d.nnodes
                ),
            )
        } else {
            Finding::error(
                "parallel.gpus",
                format!(
                    "tp {} × pp {} = {ranks} ranks, but {} nodes × {per_node} GPUs = {world}",
                    d.tp, d.pp, d.nnodes
                ),
                "make tp × pp equal the group's GPUs (nnodes × GPUs per node)",
            )
        });
    }
    if here > 0 && here < d.ranks_per_node() {
        out.push(Finding::error(
            "parallel.gpus_here",
            format!(
                "this node has {here} GPUs, the engine puts {} ranks on each node",
                d.ranks_per_node()
            ),
            "request as many nvidia.com/gpu per pod as ranks per node, or lower tp/pp",
        ));
    }
    out
}

fn memory_checks(f: &Facts) -> Vec<Finding> {
    let Some(weights) = f.model.weight_bytes else {
        return vec![Finding::skipped(
            "memory.weights",
            "the weights' size is unknown (no manifest, no weight files)",
        )];
    };
    let Some(gpu) = f.node.gpus.iter().min_by_key(|g| g.memory_bytes) else {
        return vec![Finding::skipped(
            "memory.weights",
            format!("{} of weights; no GPU facts to compare with", gb(weights)),
        )];
    };
    let d = &f.deployment;
    let e = memory::estimate(
        d.engine,
        f.model.config.as_ref(),
        weights,
        d.tp,
        d.pp,
        gpu.memory_bytes,
    );
    let mut out = vec![weights_fit(&e, weights, &gpu.name)];
    if out[0].severity == super::Severity::Pass {
        out.push(kv_fit(f, &e));
    }
    out
}

fn weights_fit(e: &Estimate, weights: u64, gpu: &str) -> Finding {
    let numbers = format!(
        "{} of weights over {} GPUs = {} per GPU; × {} + {} = {} needed, the {gpu} has {}",
        gb(weights),
        e.gpus,
        gb(e.weights_per_gpu),
        memory::WEIGHT_FACTOR,
        gib(memory::PER_ENGINE_OVERHEAD),
        gib(e.need_per_gpu),
        gib(e.gpu_memory)
    );
    if e.need_per_gpu <= e.gpu_memory {
        return Finding::pass("memory.weights", numbers);
    }
    let fix = match memory::min_gpus(weights, e.gpu_memory) {
        Some(n) => format!("use at least {n} × {gpu} (tp × pp = {n}, across nodes if need be), a quantized checkpoint, or GPUs with more memory"),
        None => "use GPUs with more memory".into(),
    };
    Finding::error(
        "memory.weights",
        format!("{numbers}: the load ends in `CUDA out of memory`"),
        fix,
    )
}

fn kv_fit(f: &Facts, e: &Estimate) -> Finding {
    let cfg = f.model.config.as_ref();
    let context = f
        .deployment
        .context_length
        .or(cfg.and_then(|c| c.max_position_embeddings));
    let (Some(per_token), Some(fit), Some(context)) = (e.kv_bytes_per_token, e.tokens_fit, context)
    else {
        return Finding::skipped(
            "memory.kv",
            "config.json lacks the layer/head counts or the context length",
        );
    };
    let numbers = format!(
        "KV cache {per_token} bytes/token/GPU ({}); {} for the engine − {} weights leaves room for {fit} tokens; the context is {context}",
        e.kv_method.as_deref().unwrap_or(""), gib(e.engine_memory), gb(e.weights_per_gpu)
    );
    let engine = f.deployment.engine;
    if fit >= context + context / 10 {
        return Finding::pass("memory.kv", numbers);
    }
    // Round down to a multiple of 1024 tokens, the way context lengths are usually given.
    let cap = fit / 1024 * 1024;
    let fix = format!("start the engine with `{} {cap}` (or fewer), add GPUs, or use `--kv-cache-dtype fp8` to halve the cache", context_flag(engine));
    if fit >= context {
        return Finding::warning(
            "memory.kv",
            format!("{numbers}: less than 10 % headroom, activations may not fit"),
            fix,
        );
    }
    match engine {
        InferenceEngine::Vllm => Finding::error(
            "memory.kv",
            format!("{numbers}: vLLM stops with `max seq len ({context}) is larger than the maximum number of tokens that can be stored in KV cache`"),
            fix,
        ),
        InferenceEngine::Sglang => Finding::warning(
            "memory.kv",
            format!("{numbers}: SGLang starts, but one request of the full context cannot be held"),
            fix,
        ),
    }
}

/// NCCL between GPUs of one node goes through shared memory; containers default to 64 MiB.
fn shm(f: &Facts) -> Option<Finding> {
    const MIN: u64 = 1 << 30;
    let ranks = f.deployment.ranks_per_node();
    let Some(size) = f.node.shm_bytes else {
        return Some(Finding::skipped("shm", "/dev/shm is not mounted"));
    };
    if ranks <= 1 {
        return Some(Finding::pass(
            "shm",
            format!("/dev/shm {}; one GPU per node needs little", gib(size)),
        ));
    }
    Some(if size >= MIN {
        Finding::pass(
            "shm",
            format!("/dev/shm {} for {ranks} ranks on this node", gib(size)),
        )
    } else {
        Finding::error(
            "shm",
            format!("/dev/shm is {} and {ranks} ranks share this node: NCCL fails with `unhandled system error` / `Bus error` (at least {} needed)", gib(size), gib(MIN)),
            "mount an emptyDir {medium: Memory, sizeLimit: 16Gi} at /dev/shm (docker: --shm-size 16g or --ipc=host)",
        )
    })
}

/// The NCCL RDMA environment against the devices this container can see.
fn rdma(f: &Facts) -> Vec<Finding> {
    let n = &f.node;
    let names: Vec<&str> = n.rdma_devices.iter().map(|d| d.name.as_str()).collect();
    let mut out = Vec::new();
    if let Some(hca) = &n.nccl.ib_hca {
        // NCCL_IB_HCA is `[^=]dev[:port],dev…`; a leading ^ excludes, = means exact names.
        let list = hca.trim_start_matches(['^', '=']);
        let missing: Vec<&str> = list
            .split(',')
            .map(|d| d.split(':').next().unwrap_or("").trim())
            .filter(|d| !d.is_empty() && !names.iter().any(|n| n.starts_with(d)))
            .collect();
        if !hca.starts_with('^') && !missing.is_empty() {
            out.push(Finding::error(
                "rdma.env",
                format!("NCCL_IB_HCA={hca} names {} but this container sees {}", missing.join(", "), if names.is_empty() { "no RDMA device".into() } else { names.join(", ") }),
                "request the RDMA device resource (e.g. rdma/ib or rdma/hca_shared_devices_a) and IPC_LOCK, or fix NCCL_IB_HCA to the names in /sys/class/infiniband",
            ));
        }
    }
    if !names.is_empty() && !n.dev_infiniband {
        out.push(Finding::error(
            "rdma.devices",
            format!("RDMA devices {} are visible in /sys/class/infiniband but /dev/infiniband is missing: NCCL cannot open them and falls back to TCP", names.join(", ")),
            "request the RDMA device plugin's resource (it mounts /dev/infiniband), or with hostNetwork mount /dev/infiniband and add IPC_LOCK",
        ));
    }
    if f.deployment.nnodes > 1 && names.is_empty() && !n.nccl.ib_disabled() {
        out.push(Finding::warning(
            "rdma.devices",
            format!("{} nodes and no RDMA device in this container: NCCL runs over TCP sockets, several times slower for tensor parallelism across nodes", f.deployment.nnodes),
            "give the pods the RDMA resource (and IPC_LOCK), or set NCCL_IB_DISABLE=1 to say TCP is intended",
        ));
    }
    if out.is_empty() && (!names.is_empty() || f.deployment.nnodes > 1) {
        out.push(Finding::pass(
            "rdma",
            format!(
                "RDMA devices: {}",
                if names.is_empty() {
                    "none (NCCL_IB_DISABLE=1)".into()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    out
}

/// Free disk for what is still to download, and the page cache this container may hold.
fn disk(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    match (f.model.missing_bytes, f.node.disk_free_bytes) {
        (Some(missing), Some(free)) if free < missing => out.push(Finding::error(
            "disk",
            format!(
                "{} free where the model goes, {} still to download",
                gb(free),
                gb(missing)
            ),
            "grow the volume (or free space) before fetching",
        )),
        (_, Some(free)) => out.push(Finding::pass(
            "disk",
            format!(
                "{} free where the model goes{}",
                gb(free),
                match f.model.missing_bytes {
                    Some(0) => ", the model is complete".to_string(),
                    Some(m) => format!(", {} still to download", gb(m)),
                    None => String::new(),
                }
            ),
        )),
        _ => {}
    }
    if let Some(w) = f.model.weight_bytes {
        let share = w / u64::from(f.deployment.nnodes.max(1));
        if let Some(why) = f.node.memory.shortfall(share, 0) {
            // The budget's own hint names `ferry warm` flags; the fix below says it for both.
            let why = why.split("\n  hint:").next().unwrap_or(&why).to_string();
            out.push(Finding::warning(
                "page_cache",
                format!("this node's share ≈ {}: {why}", gb(share)),
                "warming is only a speed-up: raise the pod's memory limit, warm only this \
                 node's share (--tp/--pp/--nnodes), or leave warming off",
            ));
        }
    }
    out
}
