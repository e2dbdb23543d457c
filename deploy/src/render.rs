//! `ferry deploy render`: a consistent set of manifests from a few parameters. Every number that
//! must agree across objects (GPUs, TP/PP, group size, model path, PVC name, slices) is derived
//! here from one place, so the traps `ferry lint` looks for cannot appear in a render.

use std::path::Path;

use serde_json::{json, Value};

use crate::engine::EngineKind;
use crate::{Error, Result};

/// Where the model PVC is mounted in every container.
pub const MODELS_ROOT: &str = "/models";
/// The ferry sidecar's HTTP port (/healthz, /readyz, /metrics).
pub const SIDECAR_PORT: u16 = 8090;
/// The Secret holding the hub token, key `token`.
pub const TOKEN_SECRET: &str = "hf-token";
/// Default ferry image; override with --image.
pub const DEFAULT_FERRY_IMAGE: &str = "ghcr.io/ferry-project/ferry:0.1.0";

/// The knobs of a render.
#[derive(Debug, Clone)]
pub struct Params {
    pub engine: EngineKind,
    /// Hub repository, `ORG/NAME`.
    pub model: String,
    /// Nodes per engine instance: 1 renders a Deployment, more a LeaderWorkerSet.
    pub nodes: u64,
    pub gpus_per_node: u64,
    /// The shared model PVC.
    pub pvc: String,
    pub storage_class: String,
    pub pvc_size: String,
    pub namespace: Option<String>,
    /// Base name of the objects; defaults to the model's name, lower-cased.
    pub name: Option<String>,
    /// Slices of the download Job (pods downloading in parallel).
    pub slices: u64,
    /// `hf` or `modelscope`.
    pub source: String,
    pub revision: Option<String>,
    pub ferry_image: String,
    pub engine_image: Option<String>,
    /// Add a DaemonSet that pre-warms the page cache of every GPU node.
    pub prewarm: bool,
}

impl Params {
    /// The parameters for `model` with the defaults of the docs.
    pub fn new(engine: EngineKind, model: &str) -> Self {
        Self {
            engine,
            model: model.to_string(),
            nodes: 1,
            gpus_per_node: 8,
            pvc: "models".into(),
            storage_class: "cfs-turbo".into(),
            pvc_size: "1Ti".into(),
            namespace: None,
            name: None,
            slices: 8,
            source: "hf".into(),
            revision: None,
            ferry_image: DEFAULT_FERRY_IMAGE.into(),
            engine_image: None,
            prewarm: false,
        }
    }

    /// The base name of the rendered objects.
    pub fn base_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let last = self.model.rsplit('/').next().unwrap_or(&self.model);
        let mut s: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        while s.contains("--") {
            s = s.replace("--", "-");
        }
        s.trim_matches('-')
            .chars()
            .take(40)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    }

    /// Where the model lives in the containers.
    pub fn model_dir(&self) -> String {
        let last = self.model.rsplit('/').next().unwrap_or(&self.model);
        format!("{MODELS_ROOT}/{last}")
    }

    fn engine_image(&self) -> String {
        self.engine_image
            .clone()
            .unwrap_or_else(|| match self.engine {
                EngineKind::Sglang => "lmsysorg/sglang:v0.5.2-cu126".into(),
                EngineKind::Vllm => "vllm/vllm-openai:v0.10.1".into(),
            })
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Params(m));
        let parts: Vec<&str> = self.model.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return bad(format!("--model `{}` is not ORG/NAME", self.model));
        }
        if self.nodes == 0 || self.gpus_per_node == 0 || self.slices == 0 {
            return bad("--nodes, --gpus-per-node and --slices must be at least 1".into());
        }
        for (what, v) in [("--pvc", self.pvc.clone()), ("--name", self.base_name())] {
            if !dns_label(&v) {
                return bad(format!(
                    "{what} `{v}` is not a DNS label (lower-case letters, digits, '-', at most 63)"
                ));
            }
        }
        let name = self.base_name();
        if name == "sglang" || name == "vllm" {
            return bad(format!(
                "--name `{name}`: a Service named after the engine injects {}_PORT into its pods; \
                 name it after the model",
                name.to_ascii_uppercase()
            ));
        }
        if !matches!(self.source.as_str(), "hf" | "modelscope") {
            return bad(format!(
                "--source `{}`: expected hf or modelscope",
                self.source
            ));
        }
        Ok(())
    }
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Renders the objects of a deployment, in the order they are applied.
pub fn render(p: &Params) -> Result<Vec<Value>> {
    p.validate()?;
    let mut objects = vec![pvc(p), download_job(p)];
    if p.nodes > 1 {
        objects.push(leader_worker_set(p));
    } else {
        objects.push(deployment(p));
    }
    objects.push(service(p));
    if p.prewarm {
        objects.push(prewarm(p));
    }
    if let Some(ns) = &p.namespace {
        for o in &mut objects {
            o["metadata"]["namespace"] = json!(ns);
        }
    }
    Ok(objects)
}

fn labels(p: &Params, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": p.base_name(),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "ferry",
    })
}

/// The security context of ferry's own containers: ferry needs no privileges at all.
fn restricted() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn pvc(p: &Params) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": p.pvc, "labels": labels(p, "storage")},
        "spec": {
            // Every GPU node mounts it at once: only ReadWriteMany works.
            "accessModes": ["ReadWriteMany"],
            "storageClassName": p.storage_class,
            "resources": {"requests": {"storage": p.pvc_size}},
        },
    })
}

fn download_job(p: &Params) -> Value {
    let mut args = vec![
        json!("fetch"),
        json!(p.model),
        json!("--to"),
        json!(p.model_dir()),
        json!("--source"),
        json!(p.source),
        json!("--slices"),
        json!(p.slices.to_string()),
    ];
    if let Some(rev) = &p.revision {
        args.extend([json!("--revision"), json!(rev)]);
    }
    let token_env = if p.source == "modelscope" {
        "MODELSCOPE_API_TOKEN"
    } else {
        "HF_TOKEN"
    };
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": format!("{}-download", p.base_name()), "labels": labels(p, "download")},
        "spec": {
            // Each index downloads slice JOB_COMPLETION_INDEX of --slices.
            "completionMode": "Indexed",
            "completions": p.slices,
            "parallelism": p.slices,
            // A slice retries on its own; one bad slice does not use up the others' retries.
            "backoffLimitPerIndex": 4,
            "maxFailedIndexes": 0,
            "podFailurePolicy": {"rules": [
                // ferry exits 3 (auth) and 4 (not found): retrying cannot help.
                {"action": "FailIndex", "onExitCodes": {"containerName": "fetch", "operator": "In", "values": [3, 4]}},
                // A drained node is not the slice's fault.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {
                "metadata": {"labels": labels(p, "download")},
                "spec": {
                    "restartPolicy": "Never",
                    "enableServiceLinks": false,
                    "securityContext": {"fsGroup": 65532, "fsGroupChangePolicy": "OnRootMismatch"},
                    "containers": [{
                        "name": "fetch",
                        "image": p.ferry_image,
                        "args": args,
                        "env": [{
                            "name": token_env,
                            "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET, "key": "token", "optional": true}},
                        }],
                        "resources": {
                            "requests": {"cpu": "2", "memory": "2Gi"},
                            "limits": {"cpu": "4", "memory": "4Gi"},
                        },
                        "securityContext": restricted(),
                        "volumeMounts": [
                            {"name": "models", "mountPath": MODELS_ROOT},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "models", "persistentVolumeClaim": {"claimName": p.pvc}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    })
}

/// The ferry gate: a native sidecar whose startupProbe on /readyz holds back the engine until the
/// model is complete, verified and warm.
fn gate(p: &Params) -> Value {
    json!({
        "name": "ferry-gate",
        "image": p.ferry_image,
        "restartPolicy": "Always",
        "args": ["sidecar", "--model-dir", p.model_dir(), "--mode", "serve", "--warm",
                 "--listen", format!("0.0.0.0:{SIDECAR_PORT}")],
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

/// The engine container of one role. `leader` serves HTTP; multi-node workers only join.
fn engine_container(p: &Params, leader: bool) -> Value {
    let dir = p.model_dir();
    let multi = p.nodes > 1;
    let (port, name) = match p.engine {
        EngineKind::Sglang => (30000, "sglang"),
        EngineKind::Vllm => (8000, "vllm"),
    };
    let mut c = json!({
        "name": name,
        "image": p.engine_image(),
        "resources": {
            "requests": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": p.gpus_per_node.to_string()},
            "limits": {"nvidia.com/gpu": p.gpus_per_node.to_string()},
        },
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_ROOT, "readOnly": true},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    });
    match p.engine {
        EngineKind::Sglang => {
            let mut args = vec![
                "-m".to_string(),
                "sglang.launch_server".into(),
                "--model-path".into(),
                dir,
                "--served-model-name".into(),
                p.model.clone(),
                "--tp".into(),
                (p.nodes * p.gpus_per_node).to_string(),
                "--trust-remote-code".into(),
                "--host".into(),
                "0.0.0.0".into(),
                "--port".into(),
                port.to_string(),
            ];
            if multi {
                args.extend(
                    [
                        "--dist-init-addr",
                        "$(LWS_LEADER_ADDRESS):20000",
                        "--nnodes",
                        "$(LWS_GROUP_SIZE)",
                        "--node-rank",
                        "$(LWS_WORKER_INDEX)",
                    ]
                    .map(String::from),
                );
            }
            c["command"] = json!(["python3"]);
            c["args"] = json!(args);
        }
        EngineKind::Vllm => {
            let serve = format!(
                "vllm serve {dir} --served-model-name {} --tensor-parallel-size {} \
                 --pipeline-parallel-size {} --trust-remote-code --host 0.0.0.0 --port {port}",
                p.model, p.gpus_per_node, p.nodes
            );
            // Across nodes vLLM runs on a Ray cluster: the leader starts its head and waits for
            // the group, the workers join it (the helper script ships in the vLLM image).
            let script = match (multi, leader) {
                (false, _) => format!("exec {serve}"),
                (true, true) => format!(
                    "bash /vllm-workspace/examples/online_serving/multi-node-serving.sh leader \
                     --ray_cluster_size=$(LWS_GROUP_SIZE) && exec {serve} --distributed-executor-backend ray"
                ),
                (true, false) => "exec bash /vllm-workspace/examples/online_serving/multi-node-serving.sh \
                                  worker --ray_address=$(LWS_LEADER_ADDRESS)"
                    .to_string(),
            };
            c["command"] = json!(["/bin/sh", "-c"]);
            c["args"] = json!([script]);
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

fn pod_spec(p: &Params, leader: bool) -> Value {
    json!({
        // A Service named like the engine would inject SGLANG_PORT / VLLM_PORT: no service links.
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 60,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "initContainers": [gate(p)],
        "containers": [engine_container(p, leader)],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": p.pvc, "readOnly": true}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}},
        ],
    })
}

fn leader_worker_set(p: &Params) -> Value {
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
                "leaderTemplate": {"metadata": {"labels": leader_labels}, "spec": pod_spec(p, true)},
                "workerTemplate": {"metadata": {"labels": worker_labels}, "spec": pod_spec(p, false)},
            },
        },
    })
}

fn deployment(p: &Params) -> Value {
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
            "template": {"metadata": {"labels": labels(p, "engine")}, "spec": pod_spec(p, true)},
        },
    })
}

fn service(p: &Params) -> Value {
    let name = p.base_name();
    let selector = if p.nodes > 1 {
        // Only the leader (worker index 0) serves HTTP.
        json!({
            crate::objects::LWS_NAME_LABEL: name,
            crate::objects::LWS_WORKER_INDEX_LABEL: "0",
        })
    } else {
        json!({"app.kubernetes.io/name": name, "app.kubernetes.io/component": "engine"})
    };
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        // Named after the model, never after the engine.
        "metadata": {"name": format!("{name}-api"), "labels": labels(p, "api")},
        "spec": {
            "selector": selector,
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "ferry", "port": SIDECAR_PORT, "targetPort": SIDECAR_PORT},
            ],
        },
    })
}

fn prewarm(p: &Params) -> Value {
    let name = format!("{}-prewarm", p.base_name());
    let mut sel = labels(p, "prewarm");
    sel.as_object_mut()
        .map(|m| m.remove("app.kubernetes.io/part-of"));
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "labels": labels(p, "prewarm")},
        "spec": {
            "selector": {"matchLabels": sel},
            "template": {
                "metadata": {"labels": labels(p, "prewarm")},
                "spec": {
                    "enableServiceLinks": false,
                    "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    // Waits for the model, reads it into this node's page cache, and stays Ready
                    // to say so; the engine pods later find it warm.
                    "containers": [{
                        "name": "warm",
                        "image": p.ferry_image,
                        "args": ["sidecar", "--model-dir", p.model_dir(), "--mode", "serve", "--warm",
                                 "--listen", format!("0.0.0.0:{SIDECAR_PORT}")],
                        "ports": [{"name": "ferry", "containerPort": SIDECAR_PORT}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": SIDECAR_PORT}, "periodSeconds": 30},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": SIDECAR_PORT}, "periodSeconds": 30},
                        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
                        "securityContext": restricted(),
                        "volumeMounts": [{"name": "models", "mountPath": MODELS_ROOT, "readOnly": true}],
                    }],
                    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": p.pvc, "readOnly": true}}],
                },
            },
        },
    })
}

/// Multi-document YAML of `objects`, with a header saying where it came from.
pub fn to_yaml(objects: &[Value], header: &str) -> Result<String> {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("# {line}\n"));
    }
    for o in objects {
        out.push_str("---\n");
        out.push_str(
            &serde_yaml_ng::to_string(o)
                .map_err(|e| Error::Params(format!("cannot write YAML: {e}")))?,
        );
    }
    Ok(out)
}

/// File name of an object in a rendered directory: `02-job-deepseek-r1-download.yaml`.
fn file_name(i: usize, o: &Value) -> String {
    let kind = o["kind"].as_str().unwrap_or("object").to_ascii_lowercase();
    let name = o["metadata"]["name"].as_str().unwrap_or("unnamed");
    format!("{:02}-{kind}-{name}.yaml", i + 1)
}

/// Writes one file per object and a kustomization.yaml listing them, so the directory can be
/// applied with `kubectl apply -k DIR` and patched like the shipped overlays.
pub fn write_dir(objects: &[Value], dir: &Path, header: &str) -> Result<Vec<std::path::PathBuf>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    let mut resources = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        let name = file_name(i, o);
        let path = dir.join(&name);
        std::fs::write(&path, to_yaml(std::slice::from_ref(o), header)?).map_err(io(&path))?;
        resources.push(name);
        written.push(path);
    }
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    let path = dir.join("kustomization.yaml");
    std::fs::write(&path, to_yaml(&[kustomization], header)?).map_err(io(&path))?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_model() {
        let p = Params::new(
            EngineKind::Sglang,
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        );
        assert_eq!(p.base_name(), "deepseek-r1-distill-qwen-32b");
        assert_eq!(p.model_dir(), "/models/DeepSeek-R1-Distill-Qwen-32B");
    }

    #[test]
    fn bad_parameters_are_refused() {
        let mut p = Params::new(EngineKind::Sglang, "deepseek-ai/DeepSeek-R1");
        p.name = Some("sglang".into());
        assert!(render(&p).unwrap_err().to_string().contains("SGLANG_PORT"));
        let p = Params::new(EngineKind::Vllm, "DeepSeek-R1");
        assert!(render(&p).is_err());
        let mut p = Params::new(EngineKind::Vllm, "deepseek-ai/DeepSeek-R1");
        p.pvc = "Models_1".into();
        assert!(render(&p).is_err());
    }

    #[test]
    fn multi_node_renders_an_lws_whose_numbers_agree() {
        let mut p = Params::new(EngineKind::Sglang, "deepseek-ai/DeepSeek-R1");
        p.nodes = 4;
        p.gpus_per_node = 4;
        p.namespace = Some("llm".into());
        let objs = render(&p).expect("renders");
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["PersistentVolumeClaim", "Job", "LeaderWorkerSet", "Service"]
        );
        let lws = &objs[2];
        assert_eq!(lws["spec"]["leaderWorkerTemplate"]["size"], 4);
        let args = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
            ["args"]
            .as_array()
            .unwrap();
        let tp = args.iter().position(|a| a == "--tp").unwrap();
        assert_eq!(args[tp + 1], "16");
        assert!(objs.iter().all(|o| o["metadata"]["namespace"] == "llm"));
        assert_eq!(objs[3]["metadata"]["name"], "deepseek-r1-api");
    }

    #[test]
    fn written_directory_holds_a_kustomization_of_every_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Params::new(EngineKind::Vllm, "deepseek-ai/DeepSeek-R1");
        p.prewarm = true;
        let objs = render(&p).expect("renders");
        let files = write_dir(&objs, dir.path(), "test").expect("writes");
        assert_eq!(files.len(), objs.len() + 1);
        let k = std::fs::read_to_string(dir.path().join("kustomization.yaml")).expect("read");
        assert!(k.contains("05-daemonset-deepseek-r1-prewarm.yaml"), "{k}");
        assert!(k.starts_with("# test\n---\n"));
    }
}
