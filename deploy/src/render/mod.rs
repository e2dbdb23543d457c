//! `ferry deploy render`: a consistent set of manifests from a few parameters. Every number that
//! must agree across objects (GPUs, TP/PP, group size, model path, PVC name, slices, ports) is
//! derived here from one place, so the traps `ferry lint` looks for cannot appear in a render.
//!
//! [`params`] holds the knobs and refuses impossible ones; [`workload`] renders the engine pods
//! (gate, engine, RDMA, scheduling); [`supporting`] the objects around them (Namespace, storage,
//! download, Service, pre-warm, PodGroup).

mod params;
mod supporting;
mod workload;

use std::path::Path;

use serde_json::{json, Value};

pub use params::{key_value, toleration, Params, Scheduler, Storage, DEFAULT_RDMA_RESOURCE};

use crate::{Error, Result};

/// Where the model volume is mounted in every container.
pub const MODELS_ROOT: &str = "/models";
/// The ferry sidecar's HTTP port (/healthz, /readyz, /metrics): `ferry sidecar`'s default, the
/// Dockerfile's EXPOSE and every probe of the docs.
pub const SIDECAR_PORT: u16 = 8090;
/// Port of `ferry fetch --metrics-listen` in the download Job's pods (Prometheus `/metrics`).
pub const FETCH_METRICS_PORT: u16 = 9400;
/// The Secret holding the hub token, key `token`.
pub const TOKEN_SECRET: &str = "hf-token";
/// Default ferry image; override with --image.
pub const DEFAULT_FERRY_IMAGE: &str = "ghcr.io/ferry-project/ferry:0.1.0";

/// Renders the objects of a deployment, in the order `kubectl apply` creates them.
pub fn render(p: &Params) -> Result<Vec<Value>> {
    p.validate()?;
    let mut objects = Vec::new();
    if let Some(ns) = &p.namespace {
        objects.push(supporting::namespace(ns));
    }
    match &p.storage {
        Storage::Shared => {
            objects.push(supporting::pvc(p));
            objects.push(supporting::download_job(p));
        }
        Storage::Local { .. } => objects.push(supporting::download_per_node(p)),
    }
    if p.scheduler == Scheduler::Volcano {
        objects.push(supporting::pod_group(p));
    }
    if p.nodes > 1 {
        objects.push(workload::leader_worker_set(p));
    } else {
        objects.push(workload::deployment(p));
    }
    objects.push(supporting::service(p));
    if p.prewarm {
        objects.push(supporting::prewarm(p));
    }
    if let Some(ns) = &p.namespace {
        for o in objects.iter_mut().filter(|o| o["kind"] != "Namespace") {
            o["metadata"]["namespace"] = json!(ns);
        }
    }
    Ok(objects)
}

/// The header comment of a render: the command that made it, how to check it and how to apply
/// it (in the words of the README).
pub fn header(p: &Params) -> String {
    let command = p.command.clone().unwrap_or_else(|| {
        format!(
            "ferry deploy render --engine {} --model {} --nodes {} --gpus-per-node {}",
            p.engine.name(),
            p.model,
            p.nodes,
            p.gpus_per_node
        )
    });
    let mut crds = Vec::new();
    if p.nodes > 1 {
        crds.push("LeaderWorkerSet");
    }
    if p.scheduler == Scheduler::Volcano {
        crds.push("Volcano (PodGroup)");
    }
    let needs = if crds.is_empty() {
        String::new()
    } else {
        format!(" The cluster needs {} installed first.", crds.join(" and "))
    };
    format!(
        "Rendered by `{command}`.\n\
         Check with `ferry lint FILE` (or `ferry lint DIR`). Apply everything at once with \
         `kubectl apply -f FILE` (or `-k DIR`):\n\
         order does not matter, the engine pods wait behind their ferry gates while the \
         download runs.{needs}"
    )
}

/// The labels of every rendered object.
pub(crate) fn labels(p: &Params, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": p.base_name(),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "ferry",
    })
}

/// The security context of ferry's own containers: ferry needs no privileges at all.
pub(crate) fn restricted() -> Value {
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

/// The model volume of a pod: the shared PVC, or the node's own directory.
pub(crate) fn models_volume(p: &Params, read_only: bool) -> Value {
    match &p.storage {
        Storage::Shared => {
            json!({"name": "models", "persistentVolumeClaim": {"claimName": p.pvc, "readOnly": read_only}})
        }
        Storage::Local { host_path } => {
            json!({"name": "models", "hostPath": {"path": host_path, "type": "Directory"}})
        }
    }
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
    use crate::engine::InferenceEngine;

    #[test]
    fn names_come_from_the_model() {
        let p = Params::new(
            InferenceEngine::Sglang,
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        );
        assert_eq!(p.base_name(), "deepseek-r1-distill-qwen-32b");
        assert_eq!(p.model_dir(), "/models/DeepSeek-R1-Distill-Qwen-32B");
    }

    #[test]
    fn bad_parameters_are_refused() {
        let mut p = Params::new(InferenceEngine::Sglang, "deepseek-ai/DeepSeek-R1");
        p.name = Some("sglang".into());
        assert!(render(&p).unwrap_err().to_string().contains("SGLANG_PORT"));
        let p = Params::new(InferenceEngine::Vllm, "DeepSeek-R1");
        assert!(render(&p).is_err());
        let mut p = Params::new(InferenceEngine::Vllm, "deepseek-ai/DeepSeek-R1");
        p.pvc = "Models_1".into();
        assert!(render(&p).is_err());
    }

    #[test]
    fn multi_node_renders_an_lws_whose_numbers_agree() {
        let mut p = Params::new(InferenceEngine::Sglang, "deepseek-ai/DeepSeek-R1");
        p.nodes = 4;
        p.gpus_per_node = 4;
        p.namespace = Some("llm".into());
        let objs = render(&p).expect("renders");
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "PersistentVolumeClaim",
                "Job",
                "LeaderWorkerSet",
                "Service"
            ]
        );
        assert_eq!(objs[0]["metadata"]["name"], "llm");
        // The download Job claims pieces dynamically: uneven links add up.
        let fetch = objs[2]["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap();
        let at = fetch.iter().position(|a| a == "--slices").unwrap();
        assert_eq!(fetch[at + 1], objs[2]["spec"]["completions"].to_string());
        assert!(fetch.iter().any(|a| a == "--dynamic"), "{fetch:?}");
        let lws = &objs[3];
        assert_eq!(lws["spec"]["leaderWorkerTemplate"]["size"], 4);
        let args = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
            ["args"]
            .as_array()
            .unwrap();
        let tp = args.iter().position(|a| a == "--tp").unwrap();
        assert_eq!(args[tp + 1], "16");
        assert!(objs[1..]
            .iter()
            .all(|o| o["metadata"]["namespace"] == "llm"));
        assert_eq!(objs[4]["metadata"]["name"], "deepseek-r1-api");
    }

    #[test]
    fn written_directory_holds_a_kustomization_of_every_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Params::new(InferenceEngine::Vllm, "deepseek-ai/DeepSeek-R1");
        p.prewarm = true;
        let objs = render(&p).expect("renders");
        let files = write_dir(&objs, dir.path(), "test").expect("writes");
        assert_eq!(files.len(), objs.len() + 1);
        let k = std::fs::read_to_string(dir.path().join("kustomization.yaml")).expect("read");
        assert!(k.contains("05-daemonset-deepseek-r1-prewarm.yaml"), "{k}");
        assert!(k.starts_with("# test\n---\n"));
    }

    fn engine_of(objs: &[Value]) -> &Value {
        let o = objs
            .iter()
            .find(|o| o["kind"] == "LeaderWorkerSet" || o["kind"] == "Deployment")
            .expect("engine workload");
        let lwt = &o["spec"]["leaderWorkerTemplate"];
        if lwt.is_object() {
            &lwt["workerTemplate"]
        } else {
            &o["spec"]["template"]
        }
    }

    #[test]
    fn rdma_host_network_and_volcano_shape_the_pods() {
        let mut p = Params::new(InferenceEngine::Sglang, "deepseek-ai/DeepSeek-R1");
        p.nodes = 2;
        p.rdma = Some(DEFAULT_RDMA_RESOURCE.into());
        p.host_network = true;
        p.scheduler = Scheduler::Volcano;
        p.env = vec![("NCCL_IB_HCA".into(), "mlx5_bond_0".into())];
        p.engine_args = vec!["--enable-dp-attention".into()];
        p.gpu_type = Some("A800".into());
        let objs = render(&p).expect("renders");
        let pg = objs
            .iter()
            .find(|o| o["kind"] == "PodGroup")
            .expect("PodGroup");
        assert_eq!(pg["spec"]["minMember"], 2);
        let t = engine_of(&objs);
        assert_eq!(
            t["metadata"]["annotations"]["scheduling.k8s.io/group-name"],
            "deepseek-r1"
        );
        assert_eq!(
            t["metadata"]["annotations"]["eks.tke.cloud.tencent.com/gpu-type"],
            "A800"
        );
        let spec = &t["spec"];
        assert_eq!(spec["schedulerName"], "volcano");
        assert_eq!(spec["hostNetwork"], true);
        assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
        let c = &spec["containers"][0];
        assert_eq!(c["resources"]["limits"]["rdma/ib"], "1");
        assert_eq!(c["securityContext"]["capabilities"]["add"][0], "IPC_LOCK");
        let env: Vec<(&str, &str)> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
            .collect();
        // --env replaced the rendered value instead of adding a second entry.
        assert_eq!(env.iter().filter(|(k, _)| *k == "NCCL_IB_HCA").count(), 1);
        assert!(env.contains(&("NCCL_IB_HCA", "mlx5_bond_0")));
        assert!(env.contains(&("GLOO_SOCKET_IFNAME", "bond0")));
        let args = c["args"].as_array().unwrap();
        assert_eq!(args.last().unwrap(), "--enable-dp-attention");
        assert_eq!(
            c["resources"]["requests"]["memory"],
            c["resources"]["limits"]["memory"]
        );
    }

    #[test]
    fn local_disks_download_per_node_and_gates_check_the_node_copy() {
        let mut p = Params::new(InferenceEngine::Vllm, "deepseek-ai/DeepSeek-R1");
        p.nodes = 2;
        p.storage = Storage::Local {
            host_path: "/mnt/nvme/models".into(),
        };
        p.hf_endpoint = Some("https://hf-mirror.com".into());
        let objs = render(&p).expect("renders");
        assert!(objs.iter().all(|o| o["kind"] != "PersistentVolumeClaim"));
        let ds = objs
            .iter()
            .find(|o| o["kind"] == "DaemonSet")
            .expect("per-node download");
        let fetch = &ds["spec"]["template"]["spec"]["initContainers"][0];
        assert!(!fetch["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--slices"));
        assert!(fetch["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HF_ENDPOINT"));
        let vol = &engine_of(&objs)["spec"]["volumes"][0];
        assert_eq!(vol["hostPath"]["path"], "/mnt/nvme/models");
    }

    #[test]
    fn the_gate_gets_the_topology_to_warm_its_share() {
        let mut p = Params::new(InferenceEngine::Vllm, "deepseek-ai/DeepSeek-R1");
        p.nodes = 2;
        let objs = render(&p).expect("renders");
        let gate = &engine_of(&objs)["spec"]["initContainers"][0];
        let args: Vec<&str> = gate["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let flag = |f: &str| args[args.iter().position(|a| *a == f).unwrap() + 1];
        assert_eq!(
            (
                flag("--tp"),
                flag("--pp"),
                flag("--nnodes"),
                flag("--engine")
            ),
            ("8", "2", "2", "vllm")
        );
        assert_eq!(flag("--listen"), "0.0.0.0:8090");
        assert!(args.contains(&"--preflight") && args.contains(&"--warm"));
    }

    #[test]
    fn the_header_records_the_command_and_the_apply_order() {
        let mut p = Params::new(InferenceEngine::Sglang, "deepseek-ai/DeepSeek-R1");
        p.nodes = 2;
        p.command = Some("ferry deploy render --engine sglang --rdma".into());
        let h = header(&p);
        assert!(
            h.starts_with("Rendered by `ferry deploy render --engine sglang --rdma`."),
            "{h}"
        );
        assert!(
            h.contains("order does not matter") && h.contains("LeaderWorkerSet"),
            "{h}"
        );
    }
}
