//! The shape of a multi-node engine: parallel sizes against LWS size × GPUs per pod, GPU limits
//! of leader and workers, the rendezvous arguments, and what LWS does when one pod restarts.

use super::{Context, RuleInfo, Severity};
use crate::engine::InferenceEngine;
use crate::objects::{gpus, Role};

pub const PARALLELISM: RuleInfo = RuleInfo {
    id: "parallelism-mismatch",
    severity: Severity::Error,
    summary: "Tensor × pipeline (× data) parallel sizes on the engine command line do not match \
              the GPUs the group has (LWS size × GPU limit per pod).",
};

pub const GPU_MISMATCH: RuleInfo = RuleInfo {
    id: "gpu-limit-mismatch",
    severity: Severity::Error,
    summary: "The LWS leader and workers ask for different GPU counts; engines shard evenly \
              across nodes and hang or crash on an uneven group.",
};

pub const MULTINODE_ARGS: RuleInfo = RuleInfo {
    id: "multinode-args",
    severity: Severity::Error,
    summary: "A multi-node engine lacks the rendezvous arguments (--nnodes matching the LWS size, \
              --node-rank from LWS_WORKER_INDEX, --dist-init-addr from LWS_LEADER_ADDRESS).",
};

pub const LWS_RESTART_POLICY: RuleInfo = RuleInfo {
    id: "lws-restart-policy",
    severity: Severity::Warning,
    summary: "A multi-node LWS whose restartPolicy is not RecreateGroupOnPodRestart restarts one \
              pod alone; it cannot rejoin the running NCCL group and the group hangs.",
};

pub(crate) fn check(cx: &Context<'_>) {
    parallelism(cx);
    gpu_limits(cx);
    multinode_args(cx);
    restart_policy(cx);
}

/// Parallel sizes against the GPUs of the whole group, and leader against workers.
fn parallelism(cx: &Context<'_>) {
    for object in cx.objects {
        let size = object.lws_size().unwrap_or(1);
        let engines: Vec<_> = cx.engines_of(object).collect();
        let head = engines
            .iter()
            .find(|e| e.pod.role != Role::Worker && e.engine.launches_server);
        let worker = engines.iter().find(|e| e.pod.role == Role::Worker);
        // Parallel sizes against the GPUs the whole group has.
        if let Some(h) = head {
            if let Some(needed) = h.engine.gpus_needed() {
                let per_pod = gpus(h.container);
                let total = per_pod * size;
                let shape = if size > 1 {
                    format!("{size} pods × {per_pod} GPUs = {total}")
                } else {
                    format!("{per_pod} GPUs")
                };
                let args = describe_parallel(&h.engine);
                if needed != total {
                    let severity = if needed > total {
                        Severity::Error
                    } else {
                        Severity::Warning
                    };
                    let effect = if needed > total {
                        "the engine waits for GPUs that do not exist, or fails to start"
                    } else {
                        "the rest of the GPUs sit idle"
                    };
                    cx.report_as(
                        &PARALLELISM,
                        severity,
                        object,
                        h.field("args"),
                        format!(
                            "{args} needs {needed} GPUs but the {} has {shape}: {effect}",
                            if size > 1 { "group" } else { "pod" }
                        ),
                        if size > 1 {
                            format!(
                                "make TP × PP equal size × GPUs per pod (e.g. --tp {total} for \
                                 SGLang, or --tensor-parallel-size {per_pod} \
                                 --pipeline-parallel-size {size} for vLLM), or change the size / \
                                 the nvidia.com/gpu limits"
                            )
                        } else {
                            format!("set --tp {per_pod} or nvidia.com/gpu: {needed}")
                        },
                    );
                }
            }
            // Leader and worker must agree on the parallel sizes.
            if let Some(w) = worker.filter(|w| w.engine.launches_server) {
                let (lt, wt) = (h.engine.tensor_parallel(), w.engine.tensor_parallel());
                let (lp, wp) = (h.engine.pipeline_parallel(), w.engine.pipeline_parallel());
                if lt != wt || lp != wp {
                    cx.report_as(
                        &PARALLELISM,
                        Severity::Error,
                        object,
                        w.field("args"),
                        format!(
                            "the leader runs with {} but the workers with {}: the ranks disagree \
                             on the sharding and the rendezvous fails",
                            describe_parallel(&h.engine),
                            describe_parallel(&w.engine)
                        ),
                        "give leader and workers the same --tp / --pp".to_string(),
                    );
                }
            }
        }
    }
}

/// The GPU limits of leader and workers.
fn gpu_limits(cx: &Context<'_>) {
    for object in cx.objects {
        let engines: Vec<_> = cx.engines_of(object).collect();
        let worker = engines.iter().find(|e| e.pod.role == Role::Worker);
        // GPU limits of leader and worker.
        let leader = engines.iter().find(|e| e.pod.role == Role::Leader);
        if let (Some(l), Some(w)) = (leader, worker) {
            let (lg, wg) = (gpus(l.container), gpus(w.container));
            if lg != wg {
                cx.report_as(
                    &GPU_MISMATCH,
                    Severity::Error,
                    object,
                    w.field("resources.limits"),
                    format!(
                        "the leader asks for {lg} GPUs and each worker for {wg}: the engine shards \
                         the model evenly across nodes"
                    ),
                    "set the same nvidia.com/gpu limit in the leader and worker templates"
                        .to_string(),
                );
            }
        }
    }
}

/// The rendezvous arguments of every engine of a group.
fn multinode_args(cx: &Context<'_>) {
    for object in cx.objects {
        let size = object.lws_size().unwrap_or(1);
        let engines: Vec<_> = cx.engines_of(object).collect();
        // Rendezvous arguments.
        for e in &engines {
            if !e.engine.launches_server {
                continue;
            }
            let nnodes = e.engine.flag(&["--nnodes"]);
            if size < 2 {
                if let Some(n) = nnodes
                    .as_deref()
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|n| *n > 1)
                {
                    cx.report_as(
                        &MULTINODE_ARGS,
                        Severity::Error,
                        object,
                        e.field("args"),
                        format!("--nnodes {n} in a single pod: the engine waits for {} more nodes that never come", n - 1),
                        "run multi-node engines as a LeaderWorkerSet with size = --nnodes, or drop --nnodes"
                            .to_string(),
                    );
                }
                continue;
            }
            // vLLM across nodes runs through Ray unless --nnodes is given; only check what is set.
            if e.engine.kind == InferenceEngine::Vllm && nnodes.is_none() {
                continue;
            }
            let mut problems = Vec::new();
            match nnodes.as_deref() {
                None => problems.push(format!("no --nnodes (the group has {size} pods)")),
                Some(n) => match n.parse::<u64>() {
                    Ok(n) if n != size => {
                        problems.push(format!("--nnodes {n} but the LWS size is {size}"))
                    }
                    _ => {}
                },
            }
            match e.engine.flag(&["--node-rank"]) {
                None => problems.push("no --node-rank".to_string()),
                Some(r) if e.pod.role == Role::Worker && size > 2 && r.parse::<u64>().is_ok() => {
                    problems.push(format!(
                        "--node-rank {r} is the same literal for all {} workers",
                        size - 1
                    ))
                }
                Some(r) if e.pod.role == Role::Leader && r.parse::<u64>().is_ok_and(|r| r != 0) => {
                    problems.push(format!("--node-rank {r} on the leader, which is rank 0"))
                }
                _ => {}
            }
            let addr = e.engine.flag(&["--dist-init-addr", "--master-addr"]);
            if addr.is_none() {
                problems.push("no --dist-init-addr".to_string());
            }
            if !problems.is_empty() {
                cx.report_as(
                    &MULTINODE_ARGS,
                    Severity::Error,
                    object,
                    e.field("args"),
                    format!(
                        "the {} of this {size}-pod group cannot join it: {}",
                        e.pod.role.label(),
                        problems.join("; ")
                    ),
                    "pass --nnodes $(LWS_GROUP_SIZE) --node-rank $(LWS_WORKER_INDEX) \
                     --dist-init-addr $(LWS_LEADER_ADDRESS):20000 (LWS sets these variables in \
                     every container)"
                        .to_string(),
                );
            }
        }
    }
}

/// What LWS does when one pod of a group restarts.
fn restart_policy(cx: &Context<'_>) {
    for object in cx.objects {
        let size = object.lws_size().unwrap_or(1);
        let engines: Vec<_> = cx.engines_of(object).collect();
        if size > 1 && !engines.is_empty() {
            let policy = object.value["spec"]["leaderWorkerTemplate"]["restartPolicy"].as_str();
            if matches!(policy, Some("None") | Some("Default")) {
                cx.report_as(
                    &LWS_RESTART_POLICY,
                    Severity::Warning,
                    object,
                    "spec.leaderWorkerTemplate.restartPolicy".to_string(),
                    format!(
                        "restartPolicy {} restarts a failed pod alone; a restarted rank cannot \
                         rejoin the group's running NCCL communicator, so the group hangs",
                        policy.unwrap_or("")
                    ),
                    "use restartPolicy: RecreateGroupOnPodRestart (the default)".to_string(),
                );
            }
        }
    }
}

fn describe_parallel(e: &crate::engine::EngineCommand) -> String {
    let mut parts = Vec::new();
    parts.push(format!("TP {}", e.tensor_parallel().unwrap_or(1)));
    if let Some(pp) = e.pipeline_parallel() {
        parts.push(format!("PP {pp}"));
    }
    if let Some(dp) = e.data_parallel() {
        parts.push(format!("DP {dp}"));
    }
    parts.join(" × ")
}
