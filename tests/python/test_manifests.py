"""Validates every manifest ferry ships and every `ferry deploy render` against real schemas.

For each kustomize overlay under deploy/overlays and each render:
- `kubectl kustomize` builds it;
- core objects validate against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
  fields are errors), offline: the schemas ship inside the package;
- custom resources validate against their CRD's openAPIV3Schema (deploy/schemas: LWS v0.10.0,
  Volcano PodGroup v1.15.1, Gateway API HTTPRoute v1.6.1), made strict the way the API server's
  field validation is, and LWS pod templates against the core PodTemplateSpec schema;
- `ferry lint` finds nothing.

The binary comes from FERRY_BIN (default: target/debug/ferry, built by scripts/test).
"""

import copy
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = REPO / "deploy" / "overlays"
SCHEMAS = REPO / "deploy" / "schemas"
# apiVersion -> (CRD file, kind, version) of every custom resource the manifests use.
CRDS = {
    "leaderworkerset.x-k8s.io/v1": ("leaderworkerset-crd.yaml", "v1"),
    "scheduling.volcano.sh/v1beta1": ("volcano-podgroup-v1.15.1-crd.yaml", "v1beta1"),
    "gateway.networking.k8s.io/v1": ("gateway-api-httproute-v1.6.1-crd.yaml", "v1"),
}
FERRY = Path(os.environ.get("FERRY_BIN", REPO / "target" / "debug" / "ferry"))
# Native sidecars (restartPolicy: Always init containers) are on by default from 1.29 and GA in
# 1.33; validate against 1.33, the oldest release where everything these manifests use is GA.
K8S_VERSION = "1.33.0"
TIMEOUT = 60

RENDERS = {
    "sglang-2x8": ["--engine", "sglang", "--model", "deepseek-ai/DeepSeek-R1", "--nodes", "2", "--gpus-per-node", "8"],
    "sglang-4x4": ["--engine", "sglang", "--model", "deepseek-ai/DeepSeek-R1", "--nodes", "4", "--gpus-per-node", "4",
                   "--namespace", "llm", "--prewarm"],
    "vllm-2x8": ["--engine", "vllm", "--model", "deepseek-ai/DeepSeek-R1", "--nodes", "2", "--gpus-per-node", "8",
                 "--pvc", "weights", "--storage-class", "nfs-rwx"],
    "distill-1x2": ["--engine", "sglang", "--model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "--nodes", "1",
                    "--gpus-per-node", "2", "--source", "modelscope", "--slices", "4"],
    "vllm-1x8": ["--engine", "vllm", "--model", "deepseek-ai/DeepSeek-R1", "--gpus-per-node", "8"],
    "sglang-2x8-roce-volcano": ["--engine", "sglang", "--model", "deepseek-ai/DeepSeek-R1", "--nodes", "2",
                                "--gpus-per-node", "8", "--namespace", "llm", "--rdma", "--host-network",
                                "--scheduler", "volcano", "--env", "NCCL_IB_HCA=mlx5_bond_0",
                                "--engine-arg=--enable-dp-attention", "--engine-arg=--dp", "--engine-arg", "16",
                                "--node-selector", "gpu=a800", "--tolerations", "dedicated=llm:NoSchedule",
                                "--gpu-type", "A800"],
    "vllm-2x8-rdma-local": ["--engine", "vllm", "--model", "deepseek-ai/DeepSeek-R1", "--nodes", "2",
                            "--gpus-per-node", "8", "--rdma", "rdma/hca_shared_devices_a",
                            "--local-dir", "/mnt/nvme/models", "--hf-endpoint", "https://hf-mirror.com",
                            "--prewarm"],
    "sglang-4x8-tp16-pp2": ["--engine", "sglang", "--model", "deepseek-ai/DeepSeek-R1", "--nodes", "4",
                            "--gpus-per-node", "8", "--tp", "16", "--pp", "2", "--memory", "512Gi"],
}

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def kustomize(directory):
    out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, f"kubectl kustomize {directory} failed:\n{out.stderr}"
    return out.stdout


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


def strict(schema):
    """The CRD schema with unknown fields refused, as `kubectl apply` (strict field validation)
    does: every object schema that lists properties gets additionalProperties: false."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_validator(file, version):
    crd = next(d for d in documents((SCHEMAS / file).read_text()) if d.get("kind") == "CustomResourceDefinition")
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))


def pod_template_validator():
    """The core PodTemplateSpec schema kubernetes-validate ships, strict flavour."""
    base = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    schema = kv_utils.schema_contents(f"{base}/podtemplatespec-v1.json", K8S_VERSION)
    definitions = kv_utils.schema_contents(f"{base}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


CR_VALIDATORS = {api: crd_validator(file, version) for api, (file, version) in CRDS.items()}
POD_TEMPLATE = pod_template_validator()


def lws_pod_templates(obj):
    lwt = obj["spec"]["leaderWorkerTemplate"]
    for role in ("leaderTemplate", "workerTemplate"):
        if role in lwt:
            yield role, lwt[role]


def schema_errors(obj):
    """Every schema violation of one object, as readable strings."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    validator = CR_VALIDATORS.get(obj.get("apiVersion"))
    if validator is not None:
        errors = [f"{name}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
        for role, template in lws_pod_templates(obj) if obj.get("kind") == "LeaderWorkerSet" else ():
            errors += [
                f"{name}: {role}.{'.'.join(map(str, e.path))}: {e.message}" for e in POD_TEMPLATE.iter_errors(template)
            ]
        return errors
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {'.'.join(map(str, e.path))}: {e.message}"]
    return []


def ferry_lint(text):
    assert FERRY.is_file(), f"{FERRY} is missing: build it (cargo build) or set FERRY_BIN"
    out = subprocess.run([str(FERRY), "lint", "--json", "-"], input=text, capture_output=True, text=True,
                         timeout=TIMEOUT)
    report = json.loads(out.stdout)
    return out.returncode, report


def check_set(text):
    objs = documents(text)
    assert objs, "the build produced no objects"
    errors = [e for o in objs for e in schema_errors(o)]
    assert not errors, "schema violations:\n" + "\n".join(errors)
    rc, report = ferry_lint(text)
    findings = "\n".join(f"{f['rule']} {f['object']} {f['field']}: {f['message']}" for f in report["findings"])
    assert rc == 0 and report["errors"] == 0, f"ferry lint found errors:\n{findings}"
    assert report["warnings"] == 0, f"ferry lint found warnings:\n{findings}"
    assert report["objects"] == len(objs)
    return objs


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


OVERLAY_NAMES = sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").is_file())


def test_every_overlay_is_covered():
    assert {"sglang-2x8", "sglang-4x4", "vllm-2x8", "distill", "openwebui", "prewarm", "sglang-2x8-rdma",
            "sglang-2x8-roce-hostnet", "sglang-2x8-volcano", "vllm-2x8-rdma", "openwebui-ingress",
            "openwebui-gateway", "distill-hpa", "sglang-2x8-cfs", "sglang-2x8-local-nvme", "ollama"} <= set(OVERLAY_NAMES)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_overlay_builds_validates_and_lints_clean(overlay, no_network):
    objs = check_set(kustomize(OVERLAYS / overlay))
    kinds = {o["kind"] for o in objs}
    if overlay.endswith("local-nvme"):
        # Every node's own disk: a per-node download, no shared volume.
        assert {"LeaderWorkerSet", "DaemonSet", "Service"} <= kinds and "PersistentVolumeClaim" not in kinds
    elif overlay.startswith(("sglang", "vllm")):
        assert {"LeaderWorkerSet", "Job", "PersistentVolumeClaim", "Service", "StorageClass"} <= kinds
    # Everything namespaced lands in one namespace.
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] not in ("Namespace", "StorageClass")}
    assert namespaces == {"llm"}, namespaces


@needs_kubectl
def test_sglang_4x4_is_a_group_of_four_with_four_gpus_each():
    lws = next(o for o in documents(kustomize(OVERLAYS / "sglang-4x4")) if o["kind"] == "LeaderWorkerSet")
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 4
    for _, template in lws_pod_templates(lws):
        engine = template["spec"]["containers"][0]
        assert engine["resources"]["limits"]["nvidia.com/gpu"] == "4"
        assert engine["args"][engine["args"].index("--tp") + 1] == "16"


@needs_kubectl
@pytest.mark.parametrize("name", sorted(RENDERS))
def test_render_builds_validates_and_lints_clean(name, tmp_path, no_network):
    assert FERRY.is_file(), f"{FERRY} is missing: build it (cargo build) or set FERRY_BIN"
    out = subprocess.run([str(FERRY), "deploy", "render", *RENDERS[name], "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    objs = check_set(kustomize(tmp_path))
    # The printed render is the same set of objects as the written one.
    printed = subprocess.run([str(FERRY), "deploy", "render", *RENDERS[name]], capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert printed.returncode == 0, printed.stderr
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, documents(printed.stdout))) == sorted(map(key, objs))


# The validators must be able to fail, or the tests above prove nothing.

def test_lws_schema_rejects_unknown_and_mistyped_fields():
    lws = next(o for o in documents((REPO / "deploy/base/sglang/lws.yaml").read_text()))
    assert schema_errors(lws) == []
    bad = copy.deepcopy(lws)
    bad["spec"]["leaderWorkerTemplate"]["sise"] = 2
    assert any("sise" in e for e in schema_errors(bad))
    bad = copy.deepcopy(lws)
    bad["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "Sometimes"
    assert schema_errors(bad)


def test_pod_template_schema_rejects_a_bad_container():
    lws = next(o for o in documents((REPO / "deploy/base/sglang/lws.yaml").read_text()))
    template = copy.deepcopy(lws["spec"]["leaderWorkerTemplate"]["workerTemplate"])
    assert list(POD_TEMPLATE.iter_errors(template)) == []
    template["spec"]["containers"][0]["volumeMount"] = []
    assert list(POD_TEMPLATE.iter_errors(template))


def test_core_schema_is_strict_and_offline(no_network):
    job = next(o for o in documents((REPO / "deploy/base/download/job.yaml").read_text()))
    assert schema_errors(job) == []
    bad = copy.deepcopy(job)
    bad["spec"]["backofLimitPerIndex"] = 4
    assert schema_errors(bad)
    bad = copy.deepcopy(job)
    bad["spec"]["completions"] = "eight"
    assert schema_errors(bad)


def test_ferry_lint_fails_a_broken_set():
    text = (REPO / "deploy/base/sglang/lws.yaml").read_text().replace('- "16"', '- "8"', 1)
    rc, report = ferry_lint(text)
    assert report["errors"] >= 1 and rc != 0, report
    assert "parallelism-mismatch" in {f["rule"] for f in report["findings"]}


@needs_kubectl
def test_s3_overlays_mirror_once_and_pull_with_one_pod():
    mirror = [o for o in documents(kustomize(OVERLAYS / "s3-mirror")) if o["kind"] == "Job"]
    assert len(mirror) == 1
    args = mirror[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--to") + 1].startswith("s3://")
    pulled = next(o for o in documents(kustomize(OVERLAYS / "sglang-2x8-from-s3")) if o["kind"] == "Job")
    spec = pulled["spec"]
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert args[1].startswith("s3://") and "--slices" not in args
    assert spec.get("completions") == 1 and "completionMode" not in spec
    env = {e["name"]: e for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert "secretKeyRef" in env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]


def test_podgroup_and_httproute_schemas_reject_bad_fields():
    pg = next(o for o in documents((REPO / "deploy/components/volcano/podgroup.yaml").read_text()))
    assert schema_errors(pg) == []
    bad = copy.deepcopy(pg)
    bad["spec"]["minMember"] = "two"
    assert schema_errors(bad)
    bad = copy.deepcopy(pg)
    bad["spec"]["minMembers"] = 2
    assert any("minMembers" in e for e in schema_errors(bad))
    route = next(o for o in documents((REPO / "deploy/overlays/openwebui-gateway/httproute.yaml").read_text()))
    assert schema_errors(route) == []
    bad = copy.deepcopy(route)
    bad["spec"]["rules"][0]["backendRef"] = bad["spec"]["rules"][0].pop("backendRefs")
    assert schema_errors(bad)


@needs_kubectl
def test_rdma_overlays_carry_devices_ipc_lock_and_the_host_network_dns_policy():
    lws = next(o for o in documents(kustomize(OVERLAYS / "sglang-2x8-roce-hostnet")) if o["kind"] == "LeaderWorkerSet")
    for _, template in lws_pod_templates(lws):
        spec = template["spec"]
        engine = spec["containers"][0]
        assert engine["resources"]["limits"]["rdma/ib"] == "1"
        assert "IPC_LOCK" in engine["securityContext"]["capabilities"]["add"]
        env = {e["name"]: e["value"] for e in engine["env"]}
        assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "bond0"
        assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
        assert any(v.get("hostPath", {}).get("path") == "/dev/infiniband" for v in spec["volumes"])


@needs_kubectl
def test_volcano_gang_is_the_whole_group():
    objs = documents(kustomize(OVERLAYS / "sglang-2x8-volcano"))
    pg = next(o for o in objs if o["kind"] == "PodGroup")
    lws = next(o for o in objs if o["kind"] == "LeaderWorkerSet")
    assert pg["spec"]["minMember"] == lws["spec"]["leaderWorkerTemplate"]["size"]
    for _, template in lws_pod_templates(lws):
        assert template["spec"]["schedulerName"] == "volcano"
        assert template["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == pg["metadata"]["name"]


@needs_kubectl
def test_local_nvme_downloads_on_every_node_and_gates_read_the_node_copy():
    objs = documents(kustomize(OVERLAYS / "sglang-2x8-local-nvme"))
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    path = ds["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"]
    lws = next(o for o in objs if o["kind"] == "LeaderWorkerSet")
    for _, template in lws_pod_templates(lws):
        assert template["spec"]["volumes"][0]["hostPath"]["path"] == path


@needs_kubectl
def test_ollama_overlay_pulls_with_ferry_and_points_openwebui_at_ollama():
    objs = documents(kustomize(OVERLAYS / "ollama"))
    job = next(o for o in objs if o["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:4] == [
        "fetch", "ollama://deepseek-r1:7b", "--to", "/models/ollama"]
    services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
    assert "ollama" not in services and "ollama-api" in services
    ollama = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "ollama")
    env = {e["name"]: e["value"] for e in ollama["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OLLAMA_HOST"] == "0.0.0.0:11434" and env["OLLAMA_MODELS"] == "/models/ollama"
    assert "OLLAMA_SCHED_SPREAD" in env
    webui = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "open-webui")
    env = {e["name"]: e["value"] for e in webui["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OLLAMA_BASE_URL"] == "http://ollama-api:11434"


@needs_kubectl
def test_gpu_hpa_never_scales_down():
    hpa = next(o for o in documents(kustomize(OVERLAYS / "distill-hpa")) if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"] == "Disabled"
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "DCGM_FI_DEV_GPU_UTIL"


def test_render_refuses_tp_not_dividing_heads_and_tp_pp_not_matching_gpus():
    for args, needle in [
        (["--nodes", "3", "--gpus-per-node", "8"], "128 attention heads"),
        (["--nodes", "2", "--gpus-per-node", "8", "--tp", "8", "--pp", "1"], "= 8 GPUs"),
    ]:
        out = subprocess.run([str(FERRY), "deploy", "render", "--engine", "sglang", "--model",
                              "deepseek-ai/DeepSeek-R1", *args], capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 2, (out.returncode, out.stderr)
        assert needle in out.stderr, out.stderr


def test_render_header_records_the_command_and_the_apply_order():
    args = RENDERS["sglang-2x8-roce-volcano"]
    out = subprocess.run([str(FERRY), "deploy", "render", *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("# Rendered by `ferry deploy render ") and "--engine-arg=--enable-dp-attention" in first
    assert "order does not matter" in out.stdout.split("---")[0]
    objs = documents(out.stdout)
    assert objs[0]["kind"] == "Namespace" and objs[0]["metadata"]["name"] == "llm"
    assert any(o["kind"] == "PodGroup" for o in objs)


def pod_metrics_target(job):
    """The download Job's pod labels, its annotated scrape port, and its named container ports."""
    template = job["spec"]["template"]
    annotations = template["metadata"].get("annotations", {})
    ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    args = template["spec"]["containers"][0]["args"]
    return template["metadata"]["labels"], annotations, ports, args


def check_download_metrics(objs):
    jobs = [o for o in objs if o["kind"] == "Job" and o["metadata"]["name"].endswith("-download")]
    assert jobs, "no download Job"
    monitors = documents((REPO / "deploy" / "examples" / "podmonitor.yaml").read_text())
    download = next(m for m in monitors if m["metadata"]["name"] == "ferry-download")
    for job in jobs:
        labels, annotations, ports, args = pod_metrics_target(job)
        assert annotations.get("prometheus.io/scrape") == "true", annotations
        assert annotations.get("prometheus.io/path") == "/metrics"
        port = int(annotations["prometheus.io/port"])
        assert ports.get("metrics") == port, ports
        assert args[args.index("--metrics-listen") + 1] == f"0.0.0.0:{port}", args
        # The example PodMonitor selects these pods and scrapes the port by its name.
        assert download["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert download["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


@needs_kubectl
@pytest.mark.parametrize("overlay", ["sglang-2x8", "distill", "sglang-2x8-from-s3"])
def test_download_job_exposes_fetch_metrics_to_prometheus(overlay):
    check_download_metrics(documents(kustomize(OVERLAYS / overlay)))


def test_rendered_download_job_exposes_fetch_metrics():
    assert FERRY.is_file(), f"{FERRY} is missing: build it (cargo build) or set FERRY_BIN"
    out = subprocess.run([str(FERRY), "deploy", "render", *RENDERS["sglang-2x8"]], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    check_download_metrics(documents(out.stdout))


def test_podmonitor_example_is_well_formed():
    """deploy/examples/podmonitor.yaml is not under an overlay (the CRD comes with the Prometheus
    Operator) and deploy/schemas carries no PodMonitor CRD, so its shape is checked here: the
    fields the operator's monitoring.coreos.com/v1 PodMonitor schema defines, nothing else."""
    monitors = documents((REPO / "deploy" / "examples" / "podmonitor.yaml").read_text())
    assert [m["metadata"]["name"] for m in monitors] == ["ferry-download", "ferry-gate"]
    endpoint_fields = {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "scheme"}
    for m in monitors:
        assert (m["apiVersion"], m["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
        assert set(m["spec"]) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}
        for e in m["spec"]["podMetricsEndpoints"]:
            assert set(e) <= endpoint_fields, set(e) - endpoint_fields
            assert e["path"] == "/metrics"
