//! The objects around the engine pods: the Namespace, the model storage and its download (one
//! Indexed Job into a shared volume, or one pod per node into local disks), the PodGroup of a
//! Volcano gang, the API Service and the optional pre-warm DaemonSet.

use serde_json::{json, Value};

use super::workload::{api_selector, placement};
use super::{
    labels, models_volume, restricted, Params, FETCH_METRICS_PORT, MODELS_ROOT, SIDECAR_PORT,
    TOKEN_SECRET,
};

pub(super) fn namespace(ns: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "ferry"}},
    })
}

pub(super) fn pvc(p: &Params) -> Value {
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

/// `ferry fetch` and its environment (token from the Secret, the hub mirror).
fn fetch_container(p: &Params, slices: Option<u64>) -> Value {
    let mut args = vec![
        json!("fetch"),
        json!(p.model),
        json!("--to"),
        json!(p.model_dir()),
        json!("--source"),
        json!(p.source),
    ];
    if let Some(n) = slices {
        // Dynamic claims: uneven links add up and a dead pod's pieces move to the others.
        args.extend([json!("--slices"), json!(n.to_string()), json!("--dynamic")]);
    }
    if let Some(rev) = &p.revision {
        args.extend([json!("--revision"), json!(rev)]);
    }
    let token_env = if p.source == "modelscope" {
        "MODELSCOPE_API_TOKEN"
    } else {
        "HF_TOKEN"
    };
    let mut env = vec![json!({
        "name": token_env,
        "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET, "key": "token", "optional": true}},
    })];
    if let Some(endpoint) = &p.hf_endpoint {
        env.push(json!({"name": "HF_ENDPOINT", "value": endpoint}));
    }
    json!({
        "name": "fetch",
        "image": p.ferry_image,
        "args": args,
        "env": env,
        "resources": {
            "requests": {"cpu": "2", "memory": "2Gi"},
            "limits": {"cpu": "4", "memory": "4Gi"},
        },
        "securityContext": restricted(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_ROOT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    })
}

/// The Job's fetch serves its progress to Prometheus while it runs: the port, and the
/// `prometheus.io/*` annotations that annotation-based scrape configs look for (a PodMonitor
/// for the Prometheus Operator is in deploy/examples/).
fn with_metrics(mut fetch: Value) -> Value {
    if let Some(args) = fetch["args"].as_array_mut() {
        args.extend([
            json!("--metrics-listen"),
            json!(format!("0.0.0.0:{FETCH_METRICS_PORT}")),
        ]);
    }
    fetch["ports"] = json!([{"name": "metrics", "containerPort": FETCH_METRICS_PORT}]);
    fetch
}

pub(super) fn download_job(p: &Params) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": format!("{}-download", p.base_name()), "labels": labels(p, "download")},
        "spec": {
            // Index JOB_COMPLETION_INDEX of --slices, claiming pieces as it goes (--dynamic).
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
                "metadata": {
                    "labels": labels(p, "download"),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": FETCH_METRICS_PORT.to_string(),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "restartPolicy": "Never",
                    "enableServiceLinks": false,
                    "securityContext": {"fsGroup": 65532, "fsGroupChangePolicy": "OnRootMismatch"},
                    "containers": [with_metrics(fetch_container(p, Some(p.slices)))],
                    "volumes": [
                        models_volume(p, false),
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    })
}

/// Local disks: every GPU node needs its own copy, so the download runs once per node, as a
/// DaemonSet on the engine's nodes. Its init container fetches into the node's directory (a
/// re-run resumes and verifies); the pod then stays Ready while the copy is complete, so
/// `kubectl rollout status ds/NAME-download` says when every node has it. The engine pods' gates
/// check their own node's copy.
pub(super) fn download_per_node(p: &Params) -> Value {
    let spec = json!({
        "enableServiceLinks": false,
        "securityContext": {"fsGroup": 65532, "fsGroupChangePolicy": "OnRootMismatch"},
        "initContainers": [fetch_container(p, None)],
        "containers": [watch_container(p, "verified", false)],
        "volumes": [models_volume(p, false), {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    });
    gpu_daemon_set(p, "download", spec)
}

/// A DaemonSet `NAME-COMPONENT` on every GPU node the engine may use.
fn gpu_daemon_set(p: &Params, component: &str, mut spec: Value) -> Value {
    let mut sel = labels(p, component);
    sel.as_object_mut()
        .map(|m| m.remove("app.kubernetes.io/part-of"));
    placement(p, &mut spec);
    if p.node_selector.is_empty() {
        spec["nodeSelector"] = json!({"nvidia.com/gpu.present": "true"});
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": format!("{}-{component}", p.base_name()), "labels": labels(p, component)},
        "spec": {
            "selector": {"matchLabels": sel},
            "template": {"metadata": {"labels": labels(p, component)}, "spec": spec},
        },
    })
}

/// A ferry sidecar that stays Ready while the model is complete (and, with `warm`, in the
/// node's page cache).
fn watch_container(p: &Params, name: &str, warm: bool) -> Value {
    let mut args = vec![
        json!("sidecar"),
        json!("--model-dir"),
        json!(p.model_dir()),
        json!("--mode"),
        json!("serve"),
        json!("--listen"),
        json!(format!("0.0.0.0:{SIDECAR_PORT}")),
    ];
    if warm {
        args.push(json!("--warm"));
    }
    json!({
        "name": name,
        "image": p.ferry_image,
        "args": args,
        "ports": [{"name": "ferry", "containerPort": SIDECAR_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": SIDECAR_PORT}, "periodSeconds": 30},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": SIDECAR_PORT}, "periodSeconds": 30},
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": restricted(),
        "volumeMounts": [{"name": "models", "mountPath": MODELS_ROOT, "readOnly": true}],
    })
}

/// The Volcano gang: every pod of the group is placed at once or none is, so a half-placed group
/// never holds GPUs while it waits for the rest.
pub(super) fn pod_group(p: &Params) -> Value {
    json!({
        "apiVersion": "scheduling.volcano.sh/v1beta1",
        "kind": "PodGroup",
        "metadata": {"name": p.base_name(), "labels": labels(p, "engine")},
        "spec": {
            "minMember": p.nodes,
            "queue": "default",
        },
    })
}

pub(super) fn service(p: &Params) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        // Named after the model, never after the engine.
        "metadata": {"name": format!("{}-api", p.base_name()), "labels": labels(p, "api")},
        "spec": {
            "selector": api_selector(p),
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "ferry", "port": SIDECAR_PORT, "targetPort": SIDECAR_PORT},
            ],
        },
    })
}

pub(super) fn prewarm(p: &Params) -> Value {
    // Waits for the model, reads it into this node's page cache, and stays Ready to say so; the
    // engine pods later find it warm.
    let spec = json!({
        "enableServiceLinks": false,
        "containers": [watch_container(p, "warm", true)],
        "volumes": [models_volume(p, true)],
    });
    gpu_daemon_set(p, "prewarm", spec)
}
