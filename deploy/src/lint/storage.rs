//! Volumes: where the engine finds the model, whether leader and workers see the same one,
//! whether a shared claim can be mounted by many nodes, and /dev/shm.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{Context, EnginePod, RuleInfo, Severity};
use crate::objects::{clean_path, list, parse_quantity, path_under, Object, PodTemplate, Role};

pub const VOLUME_MISMATCH: RuleInfo = RuleInfo {
    id: "leader-worker-volume-mismatch",
    severity: Severity::Error,
    summary: "The LWS leader and workers mount different volumes (or claims) at the same path, or \
              one of them lacks it: the ranks load different files, or none.",
};

pub const MODEL_NOT_MOUNTED: RuleInfo = RuleInfo {
    id: "model-path-not-mounted",
    severity: Severity::Error,
    summary: "The engine's --model-path / --model is not under any volume mounted in its \
              container, so it reads the image's filesystem (or an emptyDir) and finds nothing.",
};

pub const MODEL_FROM_HUB: RuleInfo = RuleInfo {
    id: "model-from-hub",
    severity: Severity::Warning,
    summary: "The engine is given a hub id instead of a local path: every pod downloads the \
              weights itself at start, unverified and ungated.",
};

pub const PVC_NOT_RWX: RuleInfo = RuleInfo {
    id: "shared-pvc-not-rwx",
    severity: Severity::Error,
    summary: "A PersistentVolumeClaim mounted by pods on several nodes is not ReadWriteMany: \
              all but one pod stay Pending (Multi-Attach error).",
};

pub const SHM: RuleInfo = RuleInfo {
    id: "shm-missing-or-small",
    severity: Severity::Error,
    summary: "An engine without a memory-backed /dev/shm (or with a tiny one) gets the runtime's \
              64 MiB default; NCCL and the engines' IPC fail or crash with bus errors.",
};

pub(crate) fn check(cx: &Context<'_>) {
    volume_mismatch(cx);
    model_not_mounted(cx);
    model_from_hub(cx);
    shared_claims(cx);
    shm(cx);
}

/// What backs a volume, for comparison: `pvc:NAME`, `hostPath:/p`, ...; None for volumes that are
/// per-pod by nature (emptyDir, configMap, secret, ...).
fn persistent_source(vol: &Value) -> Option<String> {
    if let Some(c) = vol["persistentVolumeClaim"]["claimName"].as_str() {
        return Some(format!("persistentVolumeClaim {c}"));
    }
    if let Some(p) = vol["hostPath"]["path"].as_str() {
        return Some(format!("hostPath {p}"));
    }
    if vol["nfs"].is_object() {
        let (s, p) = (&vol["nfs"]["server"], &vol["nfs"]["path"]);
        return Some(format!(
            "nfs {}:{}",
            s.as_str().unwrap_or("?"),
            p.as_str().unwrap_or("?")
        ));
    }
    if let Some(d) = vol["csi"]["driver"].as_str() {
        return Some(format!("csi {d}"));
    }
    None
}

/// A container's mounts with persistent sources, by mount path.
fn persistent_mounts(pod: &PodTemplate<'_>, container: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in list(&container["volumeMounts"]) {
        let (Some(path), Some(name)) = (m["mountPath"].as_str(), m["name"].as_str()) else {
            continue;
        };
        let Some(vol) = pod.volume(name) else {
            continue;
        };
        if let Some(mut src) = persistent_source(vol) {
            if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
                src = format!("{src} (subPath {sub})");
            }
            out.insert(clean_path(path), src);
        }
    }
    out
}

fn volume_mismatch(cx: &Context<'_>) {
    let mut out = Vec::new();
    for lws in cx.objects.iter().filter(|o| o.kind() == "LeaderWorkerSet") {
        let engines: Vec<&EnginePod<'_>> = cx.engines_of(lws).collect();
        let leader = engines.iter().find(|e| e.pod.role == Role::Leader);
        let worker = engines.iter().find(|e| e.pod.role == Role::Worker);
        let (Some(leader), Some(worker)) = (leader, worker) else {
            continue;
        };
        let lm = persistent_mounts(&leader.pod, leader.container);
        let wm = persistent_mounts(&worker.pod, worker.container);
        let paths: std::collections::BTreeSet<&String> = lm.keys().chain(wm.keys()).collect();
        for path in paths {
            let (l, w) = (lm.get(path), wm.get(path));
            if l == w {
                continue;
            }
            let describe = |s: Option<&String>| s.cloned().unwrap_or_else(|| "nothing".into());
            let field = if l.is_some() {
                worker.field("volumeMounts")
            } else {
                leader.field("volumeMounts")
            };
            out.push((
                lws,
                field,
                format!(
                    "at {path} the leader mounts {} but the workers mount {}: every rank must read \
                     the same model files",
                    describe(l),
                    describe(w)
                ),
                format!(
                    "mount the same volume at {path} in both templates: one PVC name for leader \
                     and workers"
                ),
            ));
        }
    }
    for (o, field, message, fix) in out {
        cx.report(&VOLUME_MISMATCH, o, field, message, fix);
    }
}

/// The literal model an engine loads, skipping values the kubelet expands at start.
fn literal_model(e: &EnginePod<'_>) -> Option<String> {
    e.engine
        .model()
        .filter(|m| !m.contains("$(") && !m.contains("${"))
}

fn model_from_hub(cx: &Context<'_>) {
    for e in &cx.engines {
        let Some(model) = literal_model(e).filter(|m| !m.starts_with('/')) else {
            continue;
        };
        cx.report(
            &MODEL_FROM_HUB,
            e.object,
            e.field("args"),
            format!(
                "`{}` loads `{model}` from a hub: each of the group's pods downloads the weights \
                 itself when it starts, with nothing verifying or gating them",
                e.container_name()
            ),
            "download once with the ferry download Job into a shared PVC and point \
             --model-path / --model at the local directory",
        );
    }
}

fn model_not_mounted(cx: &Context<'_>) {
    for e in &cx.engines {
        let Some(model) = literal_model(e).filter(|m| m.starts_with('/')) else {
            continue;
        };
        let model = clean_path(&model);
        let mounts: Vec<(&str, &str)> = list(&e.container["volumeMounts"])
            .into_iter()
            .filter_map(|m| Some((m["mountPath"].as_str()?, m["name"].as_str()?)))
            .collect();
        let best = mounts
            .iter()
            .filter(|(p, _)| path_under(&model, p))
            .max_by_key(|(p, _)| p.len());
        match best {
            None => cx.report(
                &MODEL_NOT_MOUNTED,
                e.object,
                e.field("args"),
                format!(
                    "`{}` loads the model from {model}, which is under none of its volumeMounts ({})",
                    e.container_name(),
                    if mounts.is_empty() {
                        "it has none".to_string()
                    } else {
                        mounts.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
                    }
                ),
                format!(
                    "mount the model PVC in this container at a parent of {model} (e.g. \
                     volumeMounts: [{{name: models, mountPath: /models, readOnly: true}}])"
                ),
            ),
            Some((path, name)) => {
                let empty_dir = e.pod.volume(name).is_some_and(|v| v["emptyDir"].is_object());
                if empty_dir {
                    cx.report_as(
                        &MODEL_NOT_MOUNTED,
                        Severity::Warning,
                        e.object,
                        e.field("args"),
                        format!(
                            "the model at {model} lives in emptyDir volume `{name}` (mounted at \
                             {path}): it is empty when the pod starts and lost when it restarts"
                        ),
                        "keep the model on the shared model PVC",
                    );
                }
            }
        }
    }
}

fn shared_claims(cx: &Context<'_>) {
    // claim name -> (pods mounting it, writers?, workloads)
    struct Use<'a> {
        pods: u64,
        all_read_only: bool,
        users: Vec<&'a Object>,
        field: String,
    }
    let mut uses: HashMap<(Option<String>, String), Use<'_>> = HashMap::new();
    for o in cx.objects {
        for pod in o.pod_templates() {
            for vol in list(&pod.spec()["volumes"]) {
                let (Some(claim), Some(vname)) = (
                    vol["persistentVolumeClaim"]["claimName"].as_str(),
                    vol["name"].as_str(),
                ) else {
                    continue;
                };
                let read_only = pod
                    .containers()
                    .into_iter()
                    .chain(pod.init_containers())
                    .flat_map(|c| list(&c["volumeMounts"]))
                    .filter(|m| m["name"].as_str() == Some(vname))
                    .all(|m| m["readOnly"].as_bool() == Some(true))
                    || vol["persistentVolumeClaim"]["readOnly"].as_bool() == Some(true);
                let key = (o.namespace().map(str::to_string), claim.to_string());
                let u = uses.entry(key).or_insert(Use {
                    pods: 0,
                    all_read_only: true,
                    users: Vec::new(),
                    field: pod.field("volumes"),
                });
                u.pods += pod.pods;
                u.all_read_only &= read_only;
                if !u.users.iter().any(|x| x.id() == o.id()) {
                    u.users.push(o);
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((ns, claim), u) in &uses {
        if u.pods < 2 && u.users.len() < 2 {
            continue;
        }
        let pvc = cx.objects.iter().find(|p| {
            p.kind() == "PersistentVolumeClaim"
                && p.name() == claim
                && (ns.is_none() || p.namespace().is_none() || p.namespace() == ns.as_deref())
        });
        let Some(pvc) = pvc else { continue };
        let modes: Vec<&str> = list(&pvc.value["spec"]["accessModes"])
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        let ok = modes.contains(&"ReadWriteMany")
            || (u.all_read_only && modes.contains(&"ReadOnlyMany"));
        if !ok {
            let users = u
                .users
                .iter()
                .map(|o| o.id())
                .collect::<Vec<_>>()
                .join(", ");
            out.push((
                pvc,
                format!(
                    "PVC `{claim}` is {} but {} pods mount it ({users}; mounted from {}): a \
                     ReadWriteOnce volume attaches to one node, so the other pods stay Pending",
                    if modes.is_empty() {
                        "without accessModes".to_string()
                    } else {
                        modes.join(", ")
                    },
                    u.pods.max(2),
                    u.field
                ),
            ));
        }
    }
    for (pvc, message) in out {
        cx.report(
            &PVC_NOT_RWX,
            pvc,
            "spec.accessModes",
            message,
            "use accessModes: [ReadWriteMany] on a StorageClass that supports it (CFS-Turbo, \
             NFS, CephFS, Lustre, ...)",
        );
    }
}

fn shm(cx: &Context<'_>) {
    let min = cx.options.min_shm_bytes;
    let mut out = Vec::new();
    for e in &cx.engines {
        if e.pod.spec()["hostIPC"].as_bool() == Some(true) {
            continue;
        }
        let mount = list(&e.container["volumeMounts"])
            .into_iter()
            .find(|m| m["mountPath"].as_str().map(clean_path).as_deref() == Some("/dev/shm"));
        let Some(mount) = mount else {
            out.push((
                Severity::Error,
                e.object,
                e.field("volumeMounts"),
                format!(
                    "engine container `{}` has no /dev/shm volume: it gets the container runtime's \
                     64 MiB, too small for NCCL and the engine's IPC",
                    e.container_name()
                ),
            ));
            continue;
        };
        let vol = mount["name"].as_str().and_then(|n| e.pod.volume(n));
        let Some(empty_dir) = vol.map(|v| &v["emptyDir"]).filter(|d| d.is_object()) else {
            continue;
        };
        if empty_dir["medium"].as_str() != Some("Memory") {
            out.push((
                Severity::Warning,
                e.object,
                e.field("volumeMounts"),
                format!(
                    "/dev/shm of `{}` is a disk-backed emptyDir: shared memory on disk is slow",
                    e.container_name()
                ),
            ));
        }
        if let Some(size) = empty_dir["sizeLimit"].as_str() {
            if parse_quantity(size).is_some_and(|b| b < min) {
                out.push((
                    Severity::Error,
                    e.object,
                    e.pod.field("volumes"),
                    format!(
                        "/dev/shm of `{}` is limited to {size}, less than the {} MiB an engine needs",
                        e.container_name(),
                        (min / 1024.0 / 1024.0) as u64
                    ),
                ));
            }
        }
    }
    for (sev, o, field, message) in out {
        cx.report_as(
            &SHM,
            sev,
            o,
            field,
            message,
            "mount an emptyDir {medium: Memory, sizeLimit: 32Gi} named dshm at /dev/shm (it \
             counts against the pod's memory limit)",
        );
    }
}
