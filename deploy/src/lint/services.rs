//! Services: names that inject variables into the engine's own environment namespace, and
//! selectors that send traffic to LWS workers.

use std::collections::BTreeSet;

use super::{all_containers, Context, RuleInfo, Severity};
use crate::engine::InferenceEngine;
use crate::objects::{Object, Role, LWS_NAME_LABEL, LWS_WORKER_INDEX_LABEL};

pub const ENV_COLLISION: RuleInfo = RuleInfo {
    id: "service-env-collision",
    severity: Severity::Error,
    summary: "A Service named after an engine (sglang, vllm, ollama) makes Kubernetes inject \
              SGLANG_PORT / VLLM_PORT / OLLAMA_PORT=tcp://… into pods with service links on; the \
              server reads that as its own setting and fails to start.",
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

/// A server that reads its settings from a variable prefix: name, prefix, and its pods as
/// (object, service links on).
type EnvReader<'a> = (&'static str, &'static str, Vec<(&'a Object, bool)>);

/// The servers that read settings from a variable prefix: the engines, and Ollama (OLLAMA_*),
/// recognized by its image.
fn env_readers<'a>(cx: &Context<'a>) -> Vec<EnvReader<'a>> {
    let mut out: Vec<_> = InferenceEngine::ALL
        .iter()
        .map(|kind| {
            let pods = cx
                .engines
                .iter()
                .filter(|e| e.engine.kind == *kind)
                .map(|e| (e.object, e.pod.service_links()))
                .collect();
            (kind.name(), kind.env_prefix(), pods)
        })
        .collect();
    let ollama = all_containers(cx.objects)
        .into_iter()
        .filter(|c| {
            let image = c.container["image"].as_str().unwrap_or("");
            image
                .rsplit('/')
                .next()
                .is_some_and(|r| r.starts_with("ollama"))
        })
        .map(|c| (c.object, c.pod.service_links()))
        .collect();
    out.push(("ollama", "OLLAMA", ollama));
    out
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
        for (server, ep, pods) in env_readers(cx) {
            let exact = prefix == ep;
            if !exact && !prefix.starts_with(&format!("{ep}_")) {
                continue;
            }
            // The pods of this server that would receive the variables.
            let in_ns: Vec<_> = pods.iter().filter(|(o, _)| o.same_namespace(svc)).collect();
            let exposed: BTreeSet<String> = in_ns
                .iter()
                .filter(|(_, links)| *links)
                .map(|(o, _)| o.id())
                .collect();
            let any_engine = !in_ns.is_empty();
            if any_engine && exposed.is_empty() {
                continue;
            }
            let vars = format!("{prefix}_PORT=tcp://<cluster-ip>:{port}, {prefix}_SERVICE_HOST, …");
            let who = if exposed.is_empty() {
                format!("any {server} pod in this namespace")
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
                    "Service `{}` makes Kubernetes inject {vars} into {who}; {server} reads \
                     {prefix}_* as its own settings and fails on `tcp://…`",
                    svc.name(),
                )
            } else {
                format!(
                    "Service `{}` injects {vars} into {who}: variables in {server}'s own {ep}_ \
                     namespace, which it may read as settings",
                    svc.name(),
                )
            };
            cx.report_as(
                &ENV_COLLISION,
                severity,
                svc,
                "metadata.name",
                message,
                format!(
                    "rename the Service after the model, not the engine (e.g. `deepseek-r1-api`, \
                     `ollama-api`), and set `enableServiceLinks: false` in every {server} pod spec"
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
