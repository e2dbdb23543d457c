//! Probes against ports: each probe must reach a port its container listens on. ferry's sidecar
//! listens on `--listen` (8090 without it), an engine on `--port` (its default without it), and a
//! named probe port must be declared among the container's ports.

use serde_json::Value;

use super::{all_containers, Context, RuleInfo, Severity};
use crate::engine::{detect, ferry, flag_value};
use crate::objects::list;
use crate::render::SIDECAR_PORT;

pub const PROBE_PORT: RuleInfo = RuleInfo {
    id: "probe-port-mismatch",
    severity: Severity::Error,
    summary: "A probe targets a port its container does not listen on (e.g. a ferry gate probed \
              on 8090 but started with another --listen): the startupProbe never passes and the \
              pod waits out its whole budget, or the liveness probe restarts it forever.",
};

const PROBES: &[&str] = &["startupProbe", "readinessProbe", "livenessProbe"];

/// The port a container's own server listens on, when its command line says.
fn listening_port(container: &Value) -> Option<(u16, String)> {
    if let Some(g) = ferry(container).filter(|g| g.verb == "sidecar") {
        let words = crate::engine::command_line(container);
        return Some(match flag_value(&words, &["--listen"]) {
            Some(addr) => {
                let port = addr.rsplit(':').next()?.parse().ok()?;
                (port, format!("`ferry sidecar --listen {addr}`"))
            }
            None => (
                SIDECAR_PORT,
                format!(
                    "`ferry sidecar` without --listen (default {SIDECAR_PORT}{})",
                    g.mode.map(|m| format!(", --mode {m}")).unwrap_or_default()
                ),
            ),
        });
    }
    let e = detect(container).filter(|e| e.launches_server)?;
    Some((e.port(), format!("{} on port {}", e.kind.name(), e.port())))
}

/// A probe's port: a number, or a name resolved through the container's declared ports.
enum ProbePort {
    Number(u16),
    Named(String, Option<u16>),
}

fn probe_port(container: &Value, probe: &Value) -> Option<ProbePort> {
    let port = ["httpGet", "tcpSocket", "grpc"]
        .iter()
        .map(|k| &probe[*k]["port"])
        .find(|p| !p.is_null())?;
    match port {
        Value::Number(n) => Some(ProbePort::Number(u16::try_from(n.as_u64()?).ok()?)),
        Value::String(s) => match s.parse::<u16>() {
            Ok(n) => Some(ProbePort::Number(n)),
            Err(_) => {
                let declared = list(&container["ports"])
                    .into_iter()
                    .find(|p| p["name"].as_str() == Some(s))
                    .and_then(|p| p["containerPort"].as_u64())
                    .and_then(|p| u16::try_from(p).ok());
                Some(ProbePort::Named(s.clone(), declared))
            }
        },
        _ => None,
    }
}

pub(crate) fn check(cx: &Context<'_>) {
    for c in all_containers(cx.objects) {
        let listens = listening_port(c.container);
        for probe in PROBES {
            let Some(port) = probe_port(c.container, &c.container[*probe]) else {
                continue;
            };
            let (target, problem) = match (port, &listens) {
                (ProbePort::Named(name, None), _) => (
                    name.clone(),
                    format!("no port named `{name}` is declared in the container's ports"),
                ),
                (ProbePort::Named(name, Some(n)), Some((want, how))) if n != *want => {
                    (format!("{name} ({n})"), format!("the container runs {how}"))
                }
                (ProbePort::Number(n), Some((want, how))) if n != *want => {
                    (n.to_string(), format!("the container runs {how}"))
                }
                _ => continue,
            };
            let fix = match &listens {
                Some((want, _)) => {
                    format!("probe port {want}, or change what the container listens on")
                }
                None => {
                    "declare the port under ports: [{name: …, containerPort: …}] or probe a number"
                        .to_string()
                }
            };
            cx.report(
                &PROBE_PORT,
                c.object,
                c.field(probe),
                format!(
                    "the {probe} of `{}` targets port {target}, but {problem}: it never passes",
                    c.name()
                ),
                fix,
            );
        }
    }
}
