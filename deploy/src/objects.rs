//! A thin, read-only view over Kubernetes objects held as JSON values: who an object is, where its
//! pod templates live, and the few field conventions (quantities, probe defaults) the rules need.
//! Values stay untyped on purpose: the linter must read manifests that are partly wrong.

use serde_json::Value;

/// The label LWS puts on every pod of a group with the pod's index; "0" is the leader.
pub const LWS_WORKER_INDEX_LABEL: &str = "leaderworkerset.sigs.k8s.io/worker-index";
/// The label LWS puts on every pod with the name of its LeaderWorkerSet.
pub const LWS_NAME_LABEL: &str = "leaderworkerset.sigs.k8s.io/name";
/// Extended resource names that count as GPUs.
pub const GPU_RESOURCES: &[&str] = &["nvidia.com/gpu", "amd.com/gpu"];

/// One Kubernetes object and where it was read from.
#[derive(Debug, Clone)]
pub struct Object {
    /// File name, `-` for stdin, or the kustomization directory it was built from.
    pub source: String,
    pub value: Value,
}

impl Object {
    pub fn new(source: impl Into<String>, value: Value) -> Self {
        Self {
            source: source.into(),
            value,
        }
    }

    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.value["metadata"]["namespace"].as_str()
    }

    /// `Kind/name`, the way kubectl names objects.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    /// Whether two objects can see each other: a missing namespace is "wherever it is applied",
    /// so it matches any namespace.
    pub fn same_namespace(&self, other: &Object) -> bool {
        match (self.namespace(), other.namespace()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// The pod templates this object creates pods from, with the path to each.
    pub fn pod_templates(&self) -> Vec<PodTemplate<'_>> {
        let v = &self.value;
        let mut out: Vec<PodTemplate<'_>> = Vec::new();
        fn push<'a>(
            out: &mut Vec<PodTemplate<'a>>,
            path: &str,
            template: &'a Value,
            role: Role,
            pods: u64,
        ) {
            if template["spec"].is_object() {
                out.push(PodTemplate {
                    path: path.to_string(),
                    template,
                    role,
                    pods,
                });
            }
        }
        let replicas = |field: &Value, default: u64| field.as_u64().unwrap_or(default);
        match self.kind() {
            "Deployment" | "StatefulSet" | "ReplicaSet" => {
                let n = replicas(&v["spec"]["replicas"], 1);
                push(
                    &mut out,
                    "spec.template",
                    &v["spec"]["template"],
                    Role::Single,
                    n,
                )
            }
            // A DaemonSet runs on every matching node: at least two pods share whatever it mounts.
            "DaemonSet" => push(
                &mut out,
                "spec.template",
                &v["spec"]["template"],
                Role::Single,
                2,
            ),
            "Job" => {
                let n = replicas(&v["spec"]["parallelism"], 1);
                push(
                    &mut out,
                    "spec.template",
                    &v["spec"]["template"],
                    Role::Single,
                    n,
                )
            }
            "CronJob" => push(
                &mut out,
                "spec.jobTemplate.spec.template",
                &v["spec"]["jobTemplate"]["spec"]["template"],
                Role::Single,
                1,
            ),
            // A bare Pod is its own template: {metadata, spec}, at the empty path.
            "Pod" => push(&mut out, "", v, Role::Single, 1),
            "LeaderWorkerSet" => {
                let lwt = &v["spec"]["leaderWorkerTemplate"];
                let groups = replicas(&v["spec"]["replicas"], 1);
                let size = self.lws_size().unwrap_or(1);
                let worker_path = "spec.leaderWorkerTemplate.workerTemplate";
                if lwt["leaderTemplate"].is_object() {
                    push(
                        &mut out,
                        "spec.leaderWorkerTemplate.leaderTemplate",
                        &lwt["leaderTemplate"],
                        Role::Leader,
                        groups,
                    );
                } else {
                    // Without a leaderTemplate LWS builds the leader from the worker template.
                    push(
                        &mut out,
                        worker_path,
                        &lwt["workerTemplate"],
                        Role::Leader,
                        groups,
                    );
                }
                if size > 1 {
                    push(
                        &mut out,
                        worker_path,
                        &lwt["workerTemplate"],
                        Role::Worker,
                        groups * (size - 1),
                    );
                }
            }
            _ => {}
        }
        out
    }

    /// `spec.leaderWorkerTemplate.size` of a LeaderWorkerSet (LWS defaults it to 1).
    pub fn lws_size(&self) -> Option<u64> {
        if self.kind() != "LeaderWorkerSet" {
            return None;
        }
        Some(
            self.value["spec"]["leaderWorkerTemplate"]["size"]
                .as_u64()
                .unwrap_or(1),
        )
    }
}

/// Which pods of a workload a template makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Every pod of a Deployment, Job, Pod, ...
    Single,
    /// The leader of an LWS group (worker index 0): the one that serves HTTP.
    Leader,
    /// The other pods of an LWS group.
    Worker,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Single => "pod",
            Role::Leader => "leader",
            Role::Worker => "worker",
        }
    }
}

/// A pod template inside an object.
#[derive(Debug, Clone)]
pub struct PodTemplate<'a> {
    /// Path of the template in the object (`spec.template`), empty for a bare Pod.
    pub path: String,
    /// The template: `{metadata, spec}`.
    pub template: &'a Value,
    pub role: Role,
    /// How many pods this template makes (replicas, group size - 1, ...).
    pub pods: u64,
}

impl<'a> PodTemplate<'a> {
    pub fn spec(&self) -> &'a Value {
        &self.template["spec"]
    }

    pub fn labels(&self) -> serde_json::Map<String, Value> {
        self.template["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// `path.spec.<rest>`, or `spec.<rest>` for a bare Pod.
    pub fn field(&self, rest: &str) -> String {
        if self.path.is_empty() {
            format!("spec.{rest}")
        } else {
            format!("{}.spec.{rest}", self.path)
        }
    }

    pub fn containers(&self) -> Vec<&'a Value> {
        list(&self.spec()["containers"])
    }

    pub fn init_containers(&self) -> Vec<&'a Value> {
        list(&self.spec()["initContainers"])
    }

    /// The pod volume called `name`.
    pub fn volume(&self, name: &str) -> Option<&'a Value> {
        list(&self.spec()["volumes"])
            .into_iter()
            .find(|v| v["name"].as_str() == Some(name))
    }

    /// Whether Kubernetes injects `<SERVICE>_PORT`-style variables into this pod (it does unless
    /// `enableServiceLinks` is explicitly false).
    pub fn service_links(&self) -> bool {
        self.spec()["enableServiceLinks"].as_bool() != Some(false)
    }
}

/// Field path of a container: `…containers[name=x]`.
pub fn container_field(pod: &PodTemplate<'_>, init: bool, container: &Value, rest: &str) -> String {
    let list = if init { "initContainers" } else { "containers" };
    let name = container["name"].as_str().unwrap_or("?");
    let base = pod.field(&format!("{list}[name={name}]"));
    if rest.is_empty() {
        base
    } else {
        format!("{base}.{rest}")
    }
}

/// The elements of a JSON array, or nothing.
pub fn list(v: &Value) -> Vec<&Value> {
    v.as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

/// GPUs a container asks for (limits first, since extended resources must be set there).
pub fn gpus(container: &Value) -> u64 {
    let res = &container["resources"];
    for section in ["limits", "requests"] {
        for name in GPU_RESOURCES {
            if let Some(q) = quantity_value(&res[section][*name]) {
                return q.max(0.0) as u64;
            }
        }
    }
    0
}

fn quantity_value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_quantity(s),
        _ => None,
    }
}

/// Parses a Kubernetes quantity (`32Gi`, `500M`, `1.5`, `100m`) into its plain value (bytes for
/// memory). None for anything malformed.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    Some(num * mult)
}

/// Seconds a probe tolerates failure before the kubelet acts on it:
/// initialDelaySeconds + periodSeconds × failureThreshold, with the API defaults (0, 10, 3).
pub fn probe_budget_seconds(probe: &Value) -> u64 {
    let delay = probe["initialDelaySeconds"].as_u64().unwrap_or(0);
    let period = probe["periodSeconds"].as_u64().unwrap_or(10);
    let failures = probe["failureThreshold"].as_u64().unwrap_or(3);
    delay + period * failures
}

/// Container env entries with a literal value, as (name, value).
pub fn literal_env(container: &Value) -> Vec<(&str, &str)> {
    list(&container["env"])
        .into_iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect()
}

/// Whether `path` is `mount` or below it, compared component by component.
pub fn path_under(path: &str, mount: &str) -> bool {
    let mount = mount.trim_end_matches('/');
    if mount.is_empty() {
        return path.starts_with('/');
    }
    path == mount
        || path
            .strip_prefix(mount)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Normalizes an absolute path for comparison: no trailing slash, no `//`, no `.` components.
pub fn clean_path(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_binary_and_decimal_suffixes() {
        assert_eq!(parse_quantity("1Gi"), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("2G"), Some(2e9));
        assert_eq!(parse_quantity("8"), Some(8.0));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("3Xi"), None);
    }

    #[test]
    fn probe_budget_uses_api_defaults() {
        assert_eq!(probe_budget_seconds(&serde_json::json!({})), 30);
        let p = serde_json::json!({"initialDelaySeconds": 60, "periodSeconds": 10, "failureThreshold": 180});
        assert_eq!(probe_budget_seconds(&p), 1860);
    }

    #[test]
    fn paths_compare_by_component() {
        assert!(path_under("/models/DeepSeek-R1", "/models"));
        assert!(path_under("/models", "/models/"));
        assert!(!path_under("/models2/x", "/models"));
        assert!(path_under("/x", "/"));
        assert_eq!(clean_path("/models//a/./b/"), "/models/a/b");
    }

    #[test]
    fn lws_without_leader_template_uses_worker_template_for_both_roles() {
        let o = Object::new(
            "t",
            serde_json::json!({
                "kind": "LeaderWorkerSet", "metadata": {"name": "x"},
                "spec": {"leaderWorkerTemplate": {"size": 3, "workerTemplate": {"spec": {"containers": []}}}}
            }),
        );
        let t = o.pod_templates();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].role, Role::Leader);
        assert_eq!(t[1].role, Role::Worker);
        assert_eq!(t[1].pods, 2);
        assert_eq!(t[0].path, "spec.leaderWorkerTemplate.workerTemplate");
    }
}
