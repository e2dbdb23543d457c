//! The engine pods of a render: the ferry gate, the engine container with its parallel sizes and
//! rendezvous, and the pod around them (RDMA devices, host networking, scheduler, placement).

use serde_json::{json, Value};

use super::{labels, models_volume, restricted, Params, Scheduler, MODELS_ROOT, SIDECAR_PORT};
use crate::engine::InferenceEngine;
use crate::objects::{LWS_NAME_LABEL, LWS_WORKER_INDEX_LABEL};

/// The annotation Volcano reads a pod's PodGroup from.
pub const VOLCANO_GROUP_ANNOTATION: &str = "scheduling.k8s.io/group-name";
/// The annotation TKE super nodes (serverless GPU pods) read the GPU model from.
pub const TKE_GPU_TYPE_ANNOTATION: &str = "eks.tke.cloud.tencent.com/gpu-type";

/// The port the engine's rendezvous (`--dist-init-addr`) listens on in the leader.
const RENDEZVOUS_PORT: u16 = 20000;

/// The ferry gate: a native sidecar whose startupProbe on /readyz holds back the engine until the
/// model is complete, verified and this node's share is warm.
fn gate(p: &Params) -> Value {
    let (tp, pp) = p.parallelism();
    json!({
        "name": "ferry-gate",
        "image": p.ferry_image,
        "restartPolicy": "Always",
        // With the topology the sidecar computes this node's warm plan itself (rank from
        // LWS_WORKER_INDEX) and reads only its share; --preflight checks the node first.
        "args": ["sidecar", "--model-dir", p.model_dir(), "--mode", "serve",
                 "--listen", format!("0.0.0.0:{SIDECAR_PORT}"), "--warm", "--preflight",
                 "--engine", p.engine.name(), "--tp", tp.to_string(), "--pp", pp.to_string(),
                 "--nnodes", p.nodes.to_string(), "--gpus-per-node", p.gpus_per_node.to_string()],
        "ports": [{"name": "ferry", "containerPort": SIDECAR_PORT}],
        // A day: the gate also waits out the download Job, which takes hours for 642 GB.
        "startupProbe": {"httpGet": {"path": "/readyz", "port": SIDECAR_PORT}, "periodSeconds": 10, "failureThreshold": 8640},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": SIDECAR_PORT}, "periodSeconds": 20, "failureThreshold": 3},
        // No memory limit: the page cache the warm-up reads is charged to this container, and a
        // limit would evict it as fast as it is read.
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": restricted(),
        "volumeMounts": [{"name": "models", "mountPath": MODELS_ROOT, "readOnly": true}],
    })
}

/// The NCCL / Gloo environment of an RDMA group. The interface is the pod's own (eth0) or, with
/// host networking, the node's; override any of it with --env.
fn rdma_env(p: &Params) -> Vec<(String, String)> {
    if p.rdma.is_none() {
        return Vec::new();
    }
    let ifname = if p.host_network { "bond0" } else { "eth0" };
    [
        ("NCCL_IB_DISABLE", "0"),
        // Every mlx5 HCA the device plugin gave the pod.
        ("NCCL_IB_HCA", "mlx5"),
        // RoCE v2 over IPv4 is GID index 3 on Mellanox NICs; InfiniBand ignores it.
        ("NCCL_IB_GID_INDEX", "3"),
        ("NCCL_SOCKET_IFNAME", ifname),
        ("GLOO_SOCKET_IFNAME", ifname),
        ("NCCL_DEBUG", "WARN"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The engine's environment: RDMA settings, then --env (which replaces a rendered entry).
fn engine_env(p: &Params) -> Value {
    let mut env = rdma_env(p);
    for (k, v) in &p.env {
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.clone()));
    }
    Value::Array(
        env.into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect(),
    )
}

fn sglang_args(p: &Params, port: u16) -> Vec<String> {
    let (tp, pp) = p.parallelism();
    let mut args: Vec<String> = [
        "-m",
        "sglang.launch_server",
        "--model-path",
        &p.model_dir(),
        "--served-model-name",
        &p.model,
        "--tp",
        &tp.to_string(),
        "--trust-remote-code",
        "--host",
        "0.0.0.0",
        "--port",
        &port.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if pp > 1 {
        args.extend(["--pp-size".to_string(), pp.to_string()]);
    }
    if p.nodes > 1 {
        args.extend(
            [
                "--dist-init-addr",
                &format!("$(LWS_LEADER_ADDRESS):{RENDEZVOUS_PORT}"),
                "--nnodes",
                "$(LWS_GROUP_SIZE)",
                "--node-rank",
                "$(LWS_WORKER_INDEX)",
            ]
            .map(String::from),
        );
    }
    args.extend(p.engine_args.iter().cloned());
    args
}

/// vLLM's script: across nodes it runs on a Ray cluster, the leader starts its head and waits for
/// the group, the workers join it (the helper script ships in the vLLM image).
fn vllm_script(p: &Params, port: u16, leader: bool) -> String {
    let (tp, pp) = p.parallelism();
    let extra: String = p
        .engine_args
        .iter()
        .map(|a| format!(" {}", shell_quote(a)))
        .collect();
    let serve = format!(
        "vllm serve {} --served-model-name {} --tensor-parallel-size {tp} \
         --pipeline-parallel-size {pp} --trust-remote-code --host 0.0.0.0 --port {port}{extra}",
        p.model_dir(),
        p.model
    );
    match (p.nodes > 1, leader) {
        (false, _) => format!("exec {serve}"),
        (true, true) => format!(
            "bash /vllm-workspace/examples/online_serving/multi-node-serving.sh leader \
             --ray_cluster_size=$(LWS_GROUP_SIZE) && exec {serve} --distributed-executor-backend ray"
        ),
        (true, false) => "exec bash /vllm-workspace/examples/online_serving/multi-node-serving.sh \
                          worker --ray_address=$(LWS_LEADER_ADDRESS)"
            .to_string(),
    }
}

/// Single quotes for a word in a shell script, when it needs them.
fn shell_quote(w: &str) -> String {
    if w.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:@%+".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The engine container of one role. `leader` serves HTTP; multi-node workers only join.
fn engine_container(p: &Params, leader: bool) -> Value {
    let port = p.engine.default_port();
    let gpus = p.gpus_per_node.to_string();
    let memory = p.engine_memory();
    let mut requests = json!({"cpu": "16", "memory": memory, "nvidia.com/gpu": gpus});
    let mut limits = json!({"memory": memory, "nvidia.com/gpu": gpus});
    let mut mounts = vec![
        json!({"name": "models", "mountPath": MODELS_ROOT, "readOnly": true}),
        json!({"name": "dshm", "mountPath": "/dev/shm"}),
    ];
    let mut c = json!({"name": p.engine.name(), "image": p.engine_image()});
    if let Some(resource) = &p.rdma {
        requests[resource] = json!("1");
        limits[resource] = json!("1");
        // Registering GPU memory with the HCA pins pages: without IPC_LOCK the memlock limit
        // makes ibv_reg_mr fail and NCCL falls back to sockets, or aborts.
        c["securityContext"] = json!({"capabilities": {"add": ["IPC_LOCK"]}});
        if p.host_network {
            mounts.push(json!({"name": "infiniband", "mountPath": "/dev/infiniband"}));
        }
    }
    c["resources"] = json!({"requests": requests, "limits": limits});
    c["volumeMounts"] = json!(mounts);
    let env = engine_env(p);
    if env.as_array().is_some_and(|e| !e.is_empty()) {
        c["env"] = env;
    }
    match p.engine {
        InferenceEngine::Sglang => {
            c["command"] = json!(["python3"]);
            c["args"] = json!(sglang_args(p, port));
        }
        InferenceEngine::Vllm => {
            c["command"] = json!(["/bin/sh", "-c"]);
            c["args"] = json!([vllm_script(p, port, leader)]);
        }
    }
    if leader {
        c["ports"] = json!([{"name": "http", "containerPort": port}]);
        let health = json!({"path": "/health", "port": "http"});
        // Loading a 671B model takes many minutes: the startupProbe gives it an hour; liveness
        // only starts counting after it passed.
        c["startupProbe"] =
            json!({"httpGet": health, "periodSeconds": 10, "failureThreshold": 360});
        c["readinessProbe"] =
            json!({"httpGet": health, "periodSeconds": 10, "failureThreshold": 3});
        c["livenessProbe"] = json!({"httpGet": health, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 5});
    }
    c
}

/// Node selector and tolerations of GPU pods: the GPU taint, then what --tolerations adds.
pub(super) fn placement(p: &Params, spec: &mut Value) {
    let mut tolerations =
        vec![json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})];
    tolerations.extend(p.tolerations.iter().cloned());
    spec["tolerations"] = json!(tolerations);
    if !p.node_selector.is_empty() {
        let sel: serde_json::Map<String, Value> = p
            .node_selector
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        spec["nodeSelector"] = Value::Object(sel);
    }
}

fn pod_spec(p: &Params, leader: bool) -> Value {
    let mut volumes = vec![
        models_volume(p, true),
        json!({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}}),
    ];
    let mut spec = json!({
        // A Service named like the engine would inject SGLANG_PORT / VLLM_PORT: no service links.
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 60,
        "initContainers": [gate(p)],
        "containers": [engine_container(p, leader)],
    });
    placement(p, &mut spec);
    if p.rdma.is_some() && p.host_network {
        // The SGLang docs' RoCE variant: the node's own interfaces and HCAs. Without this DNS
        // policy the pod resolves with the node's resolver and never finds LWS_LEADER_ADDRESS.
        spec["hostNetwork"] = json!(true);
        spec["dnsPolicy"] = json!("ClusterFirstWithHostNet");
        volumes.push(json!({"name": "infiniband", "hostPath": {"path": "/dev/infiniband", "type": "Directory"}}));
    }
    if p.scheduler == Scheduler::Volcano {
        spec["schedulerName"] = json!("volcano");
    }
    spec["volumes"] = json!(volumes);
    spec
}

/// Pod template metadata: labels, and the annotations of the scheduler and TKE super nodes.
fn template_meta(p: &Params, mut labels: Value) -> Value {
    let mut annotations = serde_json::Map::new();
    if p.scheduler == Scheduler::Volcano {
        annotations.insert(VOLCANO_GROUP_ANNOTATION.into(), json!(p.base_name()));
    }
    if let Some(t) = &p.gpu_type {
        annotations.insert(TKE_GPU_TYPE_ANNOTATION.into(), json!(t));
    }
    let mut meta = json!({"labels": labels.take()});
    if !annotations.is_empty() {
        meta["annotations"] = Value::Object(annotations);
    }
    meta
}

pub(super) fn leader_worker_set(p: &Params) -> Value {
    let name = p.base_name();
    let mut leader_labels = labels(p, "engine");
    leader_labels["ferry.dev/role"] = json!("leader");
    let mut worker_labels = labels(p, "engine");
    worker_labels["ferry.dev/role"] = json!("worker");
    json!({
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "labels": labels(p, "engine")},
        "spec": {
            "replicas": 1,
            // LeaderReady would wait for a leader that waits for its workers.
            "startupPolicy": "LeaderCreated",
            "leaderWorkerTemplate": {
                "size": p.nodes,
                // A restarted rank cannot rejoin a running NCCL group: restart the whole group.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": template_meta(p, leader_labels), "spec": pod_spec(p, true)},
                "workerTemplate": {"metadata": template_meta(p, worker_labels), "spec": pod_spec(p, false)},
            },
        },
    })
}

pub(super) fn deployment(p: &Params) -> Value {
    let name = p.base_name();
    let selector = json!({"app.kubernetes.io/name": name, "app.kubernetes.io/component": "engine"});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(p, "engine")},
        "spec": {
            "replicas": 1,
            // The GPUs are all taken by the running pod: replace it rather than surge.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {"metadata": template_meta(p, labels(p, "engine")), "spec": pod_spec(p, true)},
        },
    })
}

/// The selector of the API Service: the leader only (worker index 0) in a group.
pub(super) fn api_selector(p: &Params) -> Value {
    let name = p.base_name();
    if p.nodes > 1 {
        json!({LWS_NAME_LABEL: name, LWS_WORKER_INDEX_LABEL: "0"})
    } else {
        json!({"app.kubernetes.io/name": name, "app.kubernetes.io/component": "engine"})
    }
}
