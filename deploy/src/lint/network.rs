//! RDMA between the nodes of a group: NCCL told to use InfiniBand / RoCE needs the HCA devices
//! in the pod and the right to pin memory; host networking needs the DNS policy that keeps
//! cluster names resolvable.

use serde_json::Value;

use super::{all_containers, Context, RuleInfo, Severity};
use crate::objects::{list, literal_env};

pub const RDMA_WITHOUT_DEVICE: RuleInfo = RuleInfo {
    id: "rdma-env-without-device",
    severity: Severity::Error,
    summary:
        "NCCL is configured for InfiniBand/RoCE (NCCL_IB_HCA, NCCL_IB_GID_INDEX, NCCL_NET=IB) \
              but the container has no RDMA device (no rdma/… resource, no /dev/infiniband, not \
              privileged): NCCL finds no HCA and fails, or falls back to TCP sockets many times \
              slower.",
};

pub const RDMA_IPC_LOCK: RuleInfo = RuleInfo {
    id: "rdma-without-ipc-lock",
    severity: Severity::Warning,
    summary: "A container with RDMA devices but without the IPC_LOCK capability: registering \
              GPU memory with the HCA pins pages, the container's memlock limit stops it, and \
              NCCL aborts or falls back to sockets.",
};

pub const HOST_NETWORK_DNS: RuleInfo = RuleInfo {
    id: "host-network-dns-policy",
    severity: Severity::Error,
    summary: "A hostNetwork pod without dnsPolicy: ClusterFirstWithHostNet resolves names with \
              the node's resolver: Services and LWS_LEADER_ADDRESS do not resolve and the group \
              never forms.",
};

/// NCCL settings that only make sense with an RDMA device.
fn wants_rdma(container: &Value) -> Option<String> {
    let env = literal_env(container);
    if env
        .iter()
        .any(|(k, v)| *k == "NCCL_IB_DISABLE" && *v == "1")
    {
        return None;
    }
    env.iter()
        .find(|(k, v)| {
            matches!(*k, "NCCL_IB_HCA" | "NCCL_IB_GID_INDEX")
                || (*k == "NCCL_NET" && v.eq_ignore_ascii_case("IB"))
        })
        .map(|(k, v)| format!("{k}={v}"))
}

fn privileged(container: &Value) -> bool {
    container["securityContext"]["privileged"].as_bool() == Some(true)
}

/// The RDMA device resource a container asks for (the shared-device and SR-IOV plugins).
fn rdma_resource(container: &Value) -> Option<String> {
    let res = &container["resources"];
    ["limits", "requests"]
        .iter()
        .find_map(|section| {
            res[*section].as_object()?.keys().find(|k| {
                k.starts_with("rdma/") || k.contains("rdma") || k.starts_with("mellanox.com/")
            })
        })
        .cloned()
}

/// Whether the container mounts the node's /dev/infiniband.
fn mounts_infiniband(pod_spec: &Value, container: &Value) -> bool {
    list(&container["volumeMounts"]).into_iter().any(|m| {
        let vol = list(&pod_spec["volumes"])
            .into_iter()
            .find(|v| v["name"] == m["name"]);
        m["mountPath"].as_str() == Some("/dev/infiniband")
            || vol.is_some_and(|v| v["hostPath"]["path"].as_str() == Some("/dev/infiniband"))
    })
}

pub(crate) fn check(cx: &Context<'_>) {
    rdma_without_device(cx);
    rdma_without_ipc_lock(cx);
    host_network_dns(cx);
}

fn rdma_without_device(cx: &Context<'_>) {
    for c in all_containers(cx.objects) {
        let Some(setting) = wants_rdma(c.container) else {
            continue;
        };
        let has_device = rdma_resource(c.container).is_some()
            || mounts_infiniband(c.pod.spec(), c.container)
            || privileged(c.container);
        if !has_device {
            cx.report(
                &RDMA_WITHOUT_DEVICE,
                c.object,
                c.field("resources"),
                format!(
                    "`{}` sets {setting} but has no RDMA device: NCCL finds no HCA and fails or \
                     falls back to TCP sockets",
                    c.name()
                ),
                "request the RDMA device plugin's resource (e.g. limits: {rdma/ib: 1}; `ferry \
                 deploy render --rdma`) and add IPC_LOCK, or drop the NCCL_IB_* settings",
            );
        }
    }
}

fn rdma_without_ipc_lock(cx: &Context<'_>) {
    for c in all_containers(cx.objects) {
        let has_device =
            rdma_resource(c.container).is_some() || mounts_infiniband(c.pod.spec(), c.container);
        let ipc_lock = list(&c.container["securityContext"]["capabilities"]["add"])
            .into_iter()
            .any(|cap| {
                cap.as_str()
                    .is_some_and(|s| s.trim_start_matches("CAP_") == "IPC_LOCK")
            });
        if has_device && !ipc_lock && !privileged(c.container) {
            cx.report(
                &RDMA_IPC_LOCK,
                c.object,
                c.field("securityContext.capabilities"),
                format!(
                    "`{}` has RDMA devices but not the IPC_LOCK capability: pinning memory for \
                     the HCA hits the memlock limit",
                    c.name()
                ),
                "add securityContext: {capabilities: {add: [IPC_LOCK]}}",
            );
        }
    }
}

fn host_network_dns(cx: &Context<'_>) {
    for o in cx.objects {
        for pod in o.pod_templates() {
            let spec = pod.spec();
            if spec["hostNetwork"].as_bool() != Some(true) {
                continue;
            }
            let policy = spec["dnsPolicy"].as_str().unwrap_or("ClusterFirst");
            if policy != "ClusterFirstWithHostNet" {
                cx.report(
                    &HOST_NETWORK_DNS,
                    o,
                    pod.field("dnsPolicy"),
                    format!(
                        "hostNetwork: true with dnsPolicy {policy}: the {} resolves names with the \
                         node's resolver, so Services and LWS_LEADER_ADDRESS do not resolve",
                        pod.role.label()
                    ),
                    "set dnsPolicy: ClusterFirstWithHostNet",
                );
            }
        }
    }
}
