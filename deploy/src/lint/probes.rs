//! Probes on engine containers: loading a 671B model takes many minutes, so a liveness probe
//! without a long startupProbe restarts the engine in a loop; LWS's LeaderReady startup policy
//! waits for a leader that waits for its workers.

use super::{Context, RuleInfo, Severity};
use crate::objects::{probe_budget_seconds, Role};

pub const LIVENESS_WITHOUT_STARTUP: RuleInfo = RuleInfo {
    id: "liveness-without-startup",
    severity: Severity::Error,
    summary:
        "A livenessProbe on an engine with no startupProbe kills the engine while it is still \
              loading weights; guard it with a startupProbe sized for the load.",
};

pub const STARTUP_TOO_SHORT: RuleInfo = RuleInfo {
    id: "startup-probe-too-short",
    severity: Severity::Error,
    summary: "An engine startupProbe whose budget (initialDelaySeconds + periodSeconds × \
              failureThreshold) is shorter than a large model's load restarts it before it is up.",
};

pub const NO_READINESS: RuleInfo = RuleInfo {
    id: "engine-no-readiness",
    severity: Severity::Warning,
    summary: "An engine that serves HTTP with no readinessProbe is put behind its Service before \
              the model is loaded.",
};

pub const LWS_STARTUP_DEADLOCK: RuleInfo = RuleInfo {
    id: "lws-startup-deadlock",
    severity: Severity::Error,
    summary: "startupPolicy: LeaderReady creates workers only once the leader is ready, but a \
              multi-node engine leader is ready only once its workers joined.",
};

pub(crate) fn check(cx: &Context<'_>) {
    liveness_without_startup(cx);
    startup_too_short(cx);
    no_readiness(cx);
    lws_startup_deadlock(cx);
}

fn liveness_without_startup(cx: &Context<'_>) {
    let min = cx.options.min_startup_seconds;
    for e in &cx.engines {
        let liveness = &e.container["livenessProbe"];
        if !liveness.is_object() || e.container["startupProbe"].is_object() {
            continue;
        }
        if liveness["initialDelaySeconds"].as_u64().unwrap_or(0) >= min {
            continue;
        }
        cx.report(
            &LIVENESS_WITHOUT_STARTUP,
            e.object,
            e.field("livenessProbe"),
            format!(
                "{} container `{}` has a livenessProbe that fails after {}s and no startupProbe: \
                 the kubelet kills the engine while it loads the model",
                e.engine.kind.name(),
                e.container_name(),
                probe_budget_seconds(liveness)
            ),
            format!(
                "add a startupProbe on the same endpoint with periodSeconds × failureThreshold ≥ \
                 {min}s (e.g. periodSeconds: 10, failureThreshold: {})",
                min.div_ceil(10)
            ),
        );
    }
}

fn startup_too_short(cx: &Context<'_>) {
    let min = cx.options.min_startup_seconds;
    for e in &cx.engines {
        let startup = &e.container["startupProbe"];
        let budget = probe_budget_seconds(startup);
        if !startup.is_object() || budget >= min {
            continue;
        }
        cx.report(
            &STARTUP_TOO_SHORT,
            e.object,
            e.field("startupProbe"),
            format!(
                "the startupProbe of `{}` gives the engine {budget}s to come up; loading a large \
                 model takes longer, and the kubelet restarts the container then",
                e.container_name()
            ),
            format!(
                "raise failureThreshold so that initialDelaySeconds + periodSeconds × \
                 failureThreshold ≥ {min}s"
            ),
        );
    }
}

fn no_readiness(cx: &Context<'_>) {
    for e in &cx.engines {
        if !e.engine.launches_server
            || e.pod.role == Role::Worker
            || e.container["readinessProbe"].is_object()
        {
            continue;
        }
        cx.report(
            &NO_READINESS,
            e.object,
            e.field("readinessProbe"),
            format!(
                "engine container `{}` has no readinessProbe: the pod joins its Service as soon \
                 as it starts, long before the model is loaded",
                e.container_name()
            ),
            format!(
                "add readinessProbe: httpGet {{path: /health, port: {}}}",
                e.engine.port()
            ),
        );
    }
}

fn lws_startup_deadlock(cx: &Context<'_>) {
    for lws in cx.objects.iter().filter(|o| o.kind() == "LeaderWorkerSet") {
        let policy = lws.value["spec"]["startupPolicy"].as_str();
        if policy != Some("LeaderReady") || lws.lws_size().unwrap_or(1) < 2 {
            continue;
        }
        let leader_waits = cx
            .engines_of(lws)
            .any(|e| e.pod.role == Role::Leader && e.container["readinessProbe"].is_object());
        if leader_waits {
            cx.report(
                &LWS_STARTUP_DEADLOCK,
                lws,
                "spec.startupPolicy",
                "startupPolicy: LeaderReady creates the workers only after the leader is Ready, \
                 and the engine leader's readinessProbe passes only after every worker joined: \
                 the group never starts",
                "use startupPolicy: LeaderCreated (the default)",
            );
        }
    }
}
