//! The gate: nothing may start the engine before the model is complete and verified. That is a
//! ferry init container (`ferry sidecar --mode init`), or a native sidecar (`restartPolicy:
//! Always` init container) running `--mode serve` whose startupProbe on /readyz holds back the
//! pod's main containers.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Context, EnginePod, RuleInfo, Severity};
use crate::engine::{ferry, Gate};
use crate::objects::{clean_path, container_field, list, path_under, PodTemplate};

pub const NO_GATE: RuleInfo = RuleInfo {
    id: "no-gate",
    severity: Severity::Error,
    summary: "An engine pod has no ferry gate (init container or native sidecar) before the \
              engine: it starts on a half-downloaded model and crashes, or serves a wrong one.",
};

pub const GATE_NO_STARTUP: RuleInfo = RuleInfo {
    id: "gate-without-startup-probe",
    severity: Severity::Error,
    summary: "A native-sidecar gate without a startupProbe gates nothing: the kubelet starts the \
              main containers as soon as the sidecar has started.",
};

pub const GATE_MODE: RuleInfo = RuleInfo {
    id: "gate-mode",
    severity: Severity::Error,
    summary: "A plain init container running `--mode serve` never exits (the pod never starts); \
              a native sidecar (restartPolicy: Always) must run `--mode serve`, not exit.",
};

pub const GATE_MODEL_MISMATCH: RuleInfo = RuleInfo {
    id: "gate-model-mismatch",
    severity: Severity::Error,
    summary: "The gate checks a different directory or volume than the one the engine loads.",
};

struct GateContainer<'a> {
    container: &'a Value,
    gate: Gate,
    native: bool,
}

/// ferry verbs that hold a pod until the model is complete.
fn gating_verb(g: &Gate) -> bool {
    matches!(g.verb.as_str(), "sidecar" | "verify")
}

/// The volume name and mount path that holds `path` in a container.
fn mount_for<'v>(container: &'v Value, path: &str) -> Option<(&'v str, &'v str)> {
    list(&container["volumeMounts"])
        .into_iter()
        .filter_map(|m| Some((m["name"].as_str()?, m["mountPath"].as_str()?)))
        .filter(|(_, p)| path_under(path, p))
        .max_by_key(|(_, p)| p.len())
}

pub(crate) fn check(cx: &Context<'_>) {
    no_gate(cx);
    gate_startup_and_mode(cx);
    gate_model(cx);
}

/// Engine pods, one per pod template even with several engine containers in it.
fn engine_pods<'c, 'a>(cx: &'c Context<'a>) -> Vec<&'c EnginePod<'a>> {
    let mut seen = BTreeSet::new();
    cx.engines
        .iter()
        .filter(|e| {
            seen.insert((
                e.object.id(),
                e.object.source.clone(),
                e.pod.path.clone(),
                e.pod.role,
            ))
        })
        .collect()
}

/// The gating ferry init containers of a pod.
fn gates_of<'a>(pod: &PodTemplate<'a>) -> Vec<GateContainer<'a>> {
    pod.init_containers()
        .into_iter()
        .filter_map(|c| {
            let gate = ferry(c).filter(gating_verb)?;
            Some(GateContainer {
                container: c,
                native: c["restartPolicy"].as_str() == Some("Always"),
                gate,
            })
        })
        .collect()
}

fn no_gate(cx: &Context<'_>) {
    for e in engine_pods(cx) {
        let pod = &e.pod;
        if !gates_of(pod).is_empty() {
            continue;
        }
        let in_main = pod
            .containers()
            .into_iter()
            .any(|c| ferry(c).is_some_and(|g| g.verb == "sidecar"));
        let message = if in_main {
            format!(
                "the ferry sidecar of this {} runs among the main containers, which start \
                     together: `{}` does not wait for it",
                pod.role.label(),
                e.container_name()
            )
        } else {
            format!(
                "nothing holds `{}` ({}) back until the model is downloaded and verified: it \
                     starts on a partial model",
                e.container_name(),
                pod.role.label()
            )
        };
        cx.report(
            &NO_GATE,
            e.object,
            pod.field("initContainers"),
            message,
            "add a ferry init container: native sidecar `ferry sidecar --model-dir DIR --mode \
                 serve` with restartPolicy: Always and a startupProbe on /readyz (port 8090), or \
                 `ferry sidecar --model-dir DIR --mode init` as a plain init container"
                .to_string(),
        );
    }
}

/// A native sidecar must hold the pod with a startupProbe and serve; a plain init container
/// must exit.
fn gate_startup_and_mode(cx: &Context<'_>) {
    for e in engine_pods(cx) {
        let pod = &e.pod;
        for g in &gates_of(pod) {
            let field = |rest: &str| container_field(pod, true, g.container, rest);
            let name = g.container["name"].as_str().unwrap_or("?");
            let mode = g.gate.mode.as_deref();
            if g.native {
                if !g.container["startupProbe"].is_object() {
                    cx.report(
                        &GATE_NO_STARTUP,
                        e.object,
                        field("startupProbe"),
                        format!(
                            "native sidecar `{name}` has no startupProbe: the kubelet starts `{}` \
                             as soon as `{name}` has started, before the model is ready",
                            e.container_name()
                        ),
                        "add startupProbe: {httpGet: {path: /readyz, port: 8090}, periodSeconds: \
                         10, failureThreshold: 8640} (a day: a 642 GB download takes hours)"
                            .to_string(),
                    );
                }
                if g.gate.verb != "sidecar" || mode != Some("serve") {
                    cx.report(
                        &GATE_MODE,
                        e.object,
                        field("args"),
                        format!(
                            "`{name}` is a native sidecar (restartPolicy: Always) but runs `ferry \
                             {} {}`, which exits: the kubelet restarts it over and over and \
                             /readyz never answers",
                            g.gate.verb,
                            mode.map(|m| format!("--mode {m}")).unwrap_or_default()
                        ),
                        "run `ferry sidecar --mode serve` in a native sidecar, or drop \
                         restartPolicy: Always to make it a plain init container"
                            .to_string(),
                    );
                }
            } else if mode == Some("serve") {
                cx.report(
                    &GATE_MODE,
                    e.object,
                    field("args"),
                    format!(
                        "`{name}` is a plain init container running `--mode serve`, which never \
                         exits: the pod's main containers never start"
                    ),
                    "use `--mode init` here, or add restartPolicy: Always and a startupProbe on \
                     /readyz to make it a native sidecar"
                        .to_string(),
                );
            }
        }
    }
}

/// The gate must watch what the engine loads, through the same volume.
fn gate_model(cx: &Context<'_>) {
    for e in engine_pods(cx) {
        let pod = &e.pod;
        let model = e
            .engine
            .model()
            .filter(|m| m.starts_with('/'))
            .map(|m| clean_path(&m));
        for g in &gates_of(pod) {
            let field = |rest: &str| container_field(pod, true, g.container, rest);
            let name = g.container["name"].as_str().unwrap_or("?");
            let (Some(model), Some(dir)) = (model.as_deref(), g.gate.model_dir.as_deref()) else {
                continue;
            };
            let dir = clean_path(dir);
            if dir != model {
                cx.report(
                    &GATE_MODEL_MISMATCH,
                    e.object,
                    field("args"),
                    format!(
                        "`{name}` gates {dir} but `{}` loads {model}",
                        e.container_name()
                    ),
                    format!("pass --model-dir {model} to the gate"),
                );
                continue;
            }
            let gate_vol = mount_for(g.container, &dir).and_then(|(v, _)| pod.volume(v));
            let engine_vol = mount_for(e.container, model).and_then(|(v, _)| pod.volume(v));
            match (gate_vol, engine_vol) {
                (None, _) => cx.report(
                    &GATE_MODEL_MISMATCH,
                    e.object,
                    field("volumeMounts"),
                    format!("`{name}` gates {dir} but mounts no volume there: it watches its own empty filesystem"),
                    format!("mount the engine's model volume in `{name}` too (readOnly: true is enough)"),
                ),
                (Some(gv), Some(ev)) if gv["name"] != ev["name"] => cx.report(
                    &GATE_MODEL_MISMATCH,
                    e.object,
                    field("volumeMounts"),
                    format!(
                        "`{name}` reads {dir} from volume `{}` but `{}` from volume `{}`",
                        gv["name"].as_str().unwrap_or("?"),
                        e.container_name(),
                        ev["name"].as_str().unwrap_or("?")
                    ),
                    "mount the same volume in the gate and the engine".to_string(),
                ),
                _ => {}
            }
        }
    }
}
