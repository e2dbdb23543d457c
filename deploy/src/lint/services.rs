//! Services: names that inject variables into the engine's own environment namespace, and
//! selectors that send traffic to LWS workers.

use std::collections::BTreeSet;

use super::{Context, RuleInfo, Severity};
use crate::objects::{Role, LWS_NAME_LABEL, LWS_WORKER_INDEX_LABEL};

pub const ENV_COLLISION: RuleInfo = RuleInfo {
    id: "service-env-collision",
    severity: Severity::Error,
    summary:
        "A Service named after an engine (sglang, vllm) makes Kubernetes inject SGLANG_PORT / \
              VLLM_PORT=tcp://… into pods with service links on; the engine reads that as its own \
              setting and fails to start.",
};

pub const SELECTS_WORKERS: RuleInfo = RuleInfo {
    id: "service-selects-workers",
    severity: Severity::Error,
    summary: "A Service whose selector matches LWS worker pods sends requests to pods that run no \
              HTTP server; select the leader with leaderworkerset.sigs.k8s.io/worker-index: \"0\".",
};

pub(crate) fn check(cx: &Context<'_>) {
    env_collision(cx);
    selects_workers(cx);
}

/// The variable prefix kubelet derives from a Service name: upper case, `-` → `_`.
fn env_prefix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

fn env_collision(cx: &Context<'_>) {
    let objects = cx.objects;
    for svc in objects.iter().filter(|o| o.kind() == "Service") {
        let spec = &svc.value["spec"];
        // Only Services with a cluster IP become environment variables (kubelet skips headless
        // and ExternalName Services).
        let headless = spec["clusterIP"].as_str() == Some("None");
        if headless || spec["type"].as_str() == Some("ExternalName") {
            continue;
        }
        let prefix = env_prefix(svc.name());
        let port = spec["ports"][0]["port"].as_u64().unwrap_or(80);
        for kind in [
            crate::engine::InferenceEngine::Sglang,
            crate::engine::InferenceEngine::Vllm,
        ] {
            let ep = kind.env_prefix();
            let exact = prefix == ep;
            if !exact && !prefix.starts_with(&format!("{ep}_")) {
                continue;
            }
            // The pods of this engine that would receive the variables.
            let exposed: BTreeSet<String> = cx
                .engines
                .iter()
                .filter(|e| e.engine.kind == kind && e.object.same_namespace(svc))
                .filter(|e| e.pod.service_links())
                .map(|e| e.object.id())
                .collect();
            let any_engine = cx
                .engines
                .iter()
                .any(|e| e.engine.kind == kind && e.object.same_namespace(svc));
            if any_engine && exposed.is_empty() {
                continue;
            }
            let vars = format!("{prefix}_PORT=tcp://<cluster-ip>:{port}, {prefix}_SERVICE_HOST, …");
            let who = if exposed.is_empty() {
                format!("any {} pod in this namespace", kind.name())
            } else {
                exposed.into_iter().collect::<Vec<_>>().join(", ")
            };
            // Certain only when the engine's pods are in the set; otherwise a warning about
            // whatever else runs in the namespace.
            let severity = if exact && any_engine {
                Severity::Error
            } else {
                Severity::Warning
            };
            let message = if exact {
                format!(
                    "Service `{}` makes Kubernetes inject {vars} into {who}; {} reads {prefix}_PORT \
                     as its own port setting and crashes parsing `tcp://…`",
                    svc.name(),
                    kind.name()
                )
            } else {
                format!(
                    "Service `{}` injects {vars} into {who}: variables in {}'s own {ep}_ namespace, \
                     which it may read as settings",
                    svc.name(),
                    kind.name()
                )
            };
            cx.report_as(
                &ENV_COLLISION,
                severity,
                svc,
                "metadata.name",
                message,
                format!(
                    "rename the Service after the model, not the engine (e.g. `deepseek-r1-api`), \
                     and set `enableServiceLinks: false` in every {} pod spec",
                    kind.name()
                ),
            );
        }
    }
}

fn selects_workers(cx: &Context<'_>) {
    let objects = cx.objects;
    for svc in objects.iter().filter(|o| o.kind() == "Service") {
        let Some(selector) = svc.value["spec"]["selector"].as_object() else {
            continue;
        };
        if selector.is_empty() {
            continue;
        }
        for lws in objects
            .iter()
            .filter(|o| o.kind() == "LeaderWorkerSet" && o.same_namespace(svc))
        {
            for pod in lws.pod_templates() {
                if pod.role != Role::Worker {
                    continue;
                }
                // The labels LWS adds to a worker pod on top of its template.
                let mut labels = pod.labels();
                labels.insert(LWS_NAME_LABEL.into(), lws.name().into());
                labels.insert(LWS_WORKER_INDEX_LABEL.into(), "1".into());
                let matches = selector
                    .iter()
                    .all(|(k, v)| labels.get(k).and_then(|l| l.as_str()) == v.as_str());
                if matches {
                    cx.report(
                        &SELECTS_WORKERS,
                        svc,
                        "spec.selector",
                        format!(
                            "the selector matches the worker pods of {}: requests land on workers, \
                             which run no API server, and fail",
                            lws.id()
                        ),
                        format!(
                            "select only the leader: add `{LWS_WORKER_INDEX_LABEL}: \"0\"` (and \
                             `{LWS_NAME_LABEL}: {}`) to spec.selector",
                            lws.name()
                        ),
                    );
                }
            }
        }
    }
}
