//! Every rule against its fixtures (deploy/tests/fixtures/<rule>/bad.yaml triggers it, good.yaml,
//! the same manifest fixed, is clean of every rule), plus the edges of the rules that have them,
//! and the renders and shipped manifests linting clean.

use std::path::{Path, PathBuf};

use ferry_deploy::engine::InferenceEngine;
use ferry_deploy::lint::{lint, Finding, Options, Severity, RULES};
use ferry_deploy::load::{parse_documents, read_file};
use ferry_deploy::objects::Object;
use ferry_deploy::render::{render, Params};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn lint_file(path: &Path) -> Vec<Finding> {
    let objects = read_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!objects.is_empty(), "{} holds no objects", path.display());
    lint(&objects, &Options::default())
}

fn lint_text(text: &str) -> Vec<Finding> {
    lint(
        &parse_documents("test", text).expect("parses"),
        &Options::default(),
    )
}

/// `ferry lint` over a render.
fn lint_render(p: &Params) -> Vec<Finding> {
    let objects: Vec<Object> = render(p)
        .expect("renders")
        .into_iter()
        .map(|v| Object::new("render", v))
        .collect();
    lint(&objects, &Options::default())
}

fn rules_of(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.rule).collect()
}

#[test]
fn every_rule_has_a_bad_and_a_fixed_fixture() {
    let mut missing = Vec::new();
    for rule in RULES {
        for f in ["bad.yaml", "good.yaml"] {
            if !fixtures().join(rule.id).join(f).is_file() {
                missing.push(format!("{}/{f}", rule.id));
            }
        }
    }
    assert!(missing.is_empty(), "fixtures missing: {missing:?}");
}

#[test]
fn each_bad_fixture_triggers_its_rule_with_object_field_and_fix() {
    for rule in RULES {
        let path = fixtures().join(rule.id).join("bad.yaml");
        let findings = lint_file(&path);
        let hits: Vec<&Finding> = findings.iter().filter(|f| f.rule == rule.id).collect();
        assert!(
            !hits.is_empty(),
            "{}: expected {}, got {:?}",
            path.display(),
            rule.id,
            rules_of(&findings)
        );
        for f in hits {
            assert_eq!(
                f.severity,
                rule.severity,
                "{}: severity of {}",
                path.display(),
                rule.id
            );
            assert!(
                f.object.contains('/') && !f.object.ends_with('/'),
                "object: {}",
                f.object
            );
            assert!(
                !f.field.is_empty() && !f.message.is_empty() && !f.fix.is_empty(),
                "{f:?}"
            );
            assert!(f.source.ends_with("bad.yaml"), "source: {}", f.source);
        }
    }
}

#[test]
fn each_fixed_fixture_is_clean_of_every_rule() {
    for rule in RULES {
        let path = fixtures().join(rule.id).join("good.yaml");
        let findings = lint_file(&path);
        assert!(findings.is_empty(), "{}: {:#?}", path.display(), findings);
    }
}

#[test]
fn error_rules_are_errors_and_findings_sort_errors_first() {
    let findings = lint_file(&fixtures().join("engine-no-readiness/bad.yaml"));
    assert!(findings.iter().all(|f| f.severity == Severity::Warning));
    let mut all = Vec::new();
    for name in ["no-gate", "image-tag-floating"] {
        all.extend(read_file(&fixtures().join(name).join("bad.yaml")).expect("reads"));
    }
    let findings = lint(&all, &Options::default());
    assert_eq!(findings.first().map(|f| f.severity), Some(Severity::Error));
    assert_eq!(findings.last().map(|f| f.severity), Some(Severity::Warning));
}

const ENGINE_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  enableServiceLinks: LINKS
  containers:
    - {name: e, image: vllm/vllm-openai:v0.10.1, command: [vllm, serve, /models/R1]}
---
apiVersion: v1
kind: Service
metadata: {name: SERVICE}
spec: {CLUSTER_IP selector: {a: b}, ports: [{port: 8000}]}
"#;

fn service_case(service: &str, links: bool, headless: bool) -> Vec<Finding> {
    let text = ENGINE_POD
        .replace("SERVICE", service)
        .replace("LINKS", &links.to_string())
        .replace("CLUSTER_IP", if headless { "clusterIP: None," } else { "" });
    lint_text(&text)
        .into_iter()
        .filter(|f| f.rule == "service-env-collision")
        .collect()
}

#[test]
fn service_names_collide_exactly_or_by_prefix_unless_links_are_off() {
    let exact = service_case("vllm", true, false);
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0].severity, Severity::Error);
    assert!(
        exact[0].message.contains("VLLM_PORT=tcp://"),
        "{}",
        exact[0].message
    );
    let prefix = service_case("vllm-api", true, false);
    assert_eq!(prefix.len(), 1);
    assert_eq!(prefix[0].severity, Severity::Warning);
    assert!(
        service_case("vllm", false, false).is_empty(),
        "links off: nothing injected"
    );
    assert!(
        service_case("vllm", true, true).is_empty(),
        "headless Services inject nothing"
    );
    // No SGLang pod in the set: any SGLang pod of the namespace may get it, a warning.
    let other = service_case("sglang", true, false);
    assert_eq!(
        other.iter().map(|f| f.severity).collect::<Vec<_>>(),
        [Severity::Warning]
    );
    assert!(service_case("r1-api", true, false).is_empty());
}

#[test]
fn a_service_named_after_an_engine_with_no_such_pods_in_the_set_still_warns() {
    let text =
        "apiVersion: v1\nkind: Service\nmetadata: {name: sglang}\nspec: {ports: [{port: 80}]}\n";
    let f = lint_text(text);
    assert_eq!(rules_of(&f), ["service-env-collision"]);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(f[0].message.contains("any sglang pod"), "{}", f[0].message);
}

#[test]
fn services_only_see_engines_in_their_namespace() {
    let text = ENGINE_POD
        .replace("SERVICE", "vllm")
        .replace("LINKS", "true")
        .replace("CLUSTER_IP", "")
        .replace("metadata: {name: p}", "metadata: {name: p, namespace: a}")
        .replace(
            "metadata: {name: vllm}",
            "metadata: {name: vllm, namespace: b}",
        );
    let f: Vec<Finding> = lint_text(&text)
        .into_iter()
        .filter(|f| f.rule == "service-env-collision")
        .collect();
    // Namespace b has no vLLM pod in this set: a warning about any pod, not an error about p.
    assert_eq!(f.len(), 1);
    assert!(!f[0].message.contains("Pod/p"), "{}", f[0].message);
}

#[test]
fn a_long_liveness_delay_is_accepted_but_a_short_one_is_not() {
    let base = std::fs::read_to_string(fixtures().join("liveness-without-startup/bad.yaml"))
        .expect("reads");
    let long = base.replace(
        "periodSeconds: 10}",
        "periodSeconds: 10, initialDelaySeconds: 3600}",
    );
    assert!(!rules_of(&lint_text(&long)).contains(&"liveness-without-startup"));
    let opts = Options {
        min_startup_seconds: 7200,
        ..Options::default()
    };
    let f = lint(&parse_documents("t", &long).expect("parses"), &opts);
    assert!(rules_of(&f).contains(&"liveness-without-startup"));
}

#[test]
fn fewer_gpus_used_than_held_is_a_warning_and_more_is_an_error() {
    let good =
        std::fs::read_to_string(fixtures().join("parallelism-mismatch/good.yaml")).expect("reads");
    let under = good.replace(r#"--tp, "16""#, r#"--tp, "8""#);
    let f: Vec<Finding> = lint_text(&under)
        .into_iter()
        .filter(|f| f.rule == "parallelism-mismatch")
        .collect();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(
        f[0].message.contains("needs 8 GPUs") && f[0].message.contains("16"),
        "{}",
        f[0].message
    );
    let bad = lint_file(&fixtures().join("parallelism-mismatch/bad.yaml"));
    assert!(bad
        .iter()
        .any(|f| f.rule == "parallelism-mismatch" && f.severity == Severity::Error));
}

#[test]
fn a_literal_worker_rank_is_wrong_in_a_group_of_more_than_two() {
    let good = std::fs::read_to_string(fixtures().join("multinode-args/good.yaml")).expect("reads");
    // Only the worker template (the second args line) gets a literal rank.
    let idx = good.rfind("$(LWS_WORKER_INDEX)").expect("has rank");
    let literal = format!(
        "{}1{}",
        &good[..idx],
        &good[idx + "$(LWS_WORKER_INDEX)".len()..]
    );
    assert!(
        !rules_of(&lint_text(&literal)).contains(&"multinode-args"),
        "size 2: rank 1 is right"
    );
    let three = literal
        .replace("size: 2", "size: 3")
        .replace(r#"--tp, "16""#, r#"--tp, "24""#);
    let f = lint_text(&three);
    assert!(
        f.iter()
            .any(|f| f.rule == "multinode-args" && f.message.contains("same literal")),
        "{f:#?}"
    );
}

#[test]
fn an_lws_without_leader_template_is_checked_once() {
    let text = r#"
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
metadata: {name: r1}
spec:
  leaderWorkerTemplate:
    size: 2
    workerTemplate:
      spec:
        containers:
          - name: sglang
            image: lmsysorg/sglang:v0.5.2
            command: [python3, -m, sglang.launch_server]
            args: [--model-path, /models/R1, --tp, "16", --dist-init-addr, "$(LWS_LEADER_ADDRESS):20000",
                   --nnodes, "$(LWS_GROUP_SIZE)", --node-rank, "$(LWS_WORKER_INDEX)"]
            resources: {limits: {nvidia.com/gpu: "8"}}
            readinessProbe: {httpGet: {path: /health, port: 30000}}
            volumeMounts: [{name: models, mountPath: /models}, {name: dshm, mountPath: /dev/shm}]
        volumes:
          - {name: models, persistentVolumeClaim: {claimName: models}}
          - {name: dshm, emptyDir: {medium: Memory}}
"#;
    // The leader is built from the worker template: one template, one finding.
    assert_eq!(rules_of(&lint_text(text)), ["no-gate"]);
}

#[test]
fn renders_lint_clean_across_shapes() {
    for engine in [InferenceEngine::Sglang, InferenceEngine::Vllm] {
        for (nodes, gpus) in [(1, 1), (1, 8), (2, 8), (4, 4), (8, 2)] {
            let mut p = Params::new(engine, "deepseek-ai/DeepSeek-R1");
            p.nodes = nodes;
            p.gpus_per_node = gpus;
            p.prewarm = nodes > 2;
            let findings = lint_render(&p);
            assert!(
                findings.is_empty(),
                "{} {nodes}x{gpus}: {findings:#?}",
                engine.name()
            );
        }
    }
}

/// The shipped bases, read as plain files (no kubectl needed): each is whole objects.
#[test]
fn shipped_bases_lint_clean() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("base");
    for engine in ["sglang", "vllm", "distill"] {
        let mut objects = Vec::new();
        for dir in ["storage", "download", engine, "openwebui", "prewarm"] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(base.join(dir))
                .expect("base dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
                .collect();
            files.sort();
            for f in files {
                objects.extend(read_file(&f).expect("reads"));
            }
        }
        assert!(objects.len() >= 8, "{engine}: {}", objects.len());
        let findings = lint(&objects, &Options::default());
        assert!(findings.is_empty(), "{engine}: {findings:#?}");
    }
}

#[test]
fn renders_with_rdma_volcano_local_disks_and_placement_lint_clean() {
    use ferry_deploy::render::{toleration, Scheduler, Storage, DEFAULT_RDMA_RESOURCE};
    for engine in [InferenceEngine::Sglang, InferenceEngine::Vllm] {
        for host_network in [false, true] {
            let mut p = Params::new(engine, "deepseek-ai/DeepSeek-R1");
            p.nodes = 2;
            p.namespace = Some("llm".into());
            p.rdma = Some(DEFAULT_RDMA_RESOURCE.into());
            p.host_network = host_network;
            p.scheduler = Scheduler::Volcano;
            p.node_selector = vec![("gpu".into(), "a800".into())];
            p.tolerations = vec![toleration("dedicated=llm:NoSchedule").expect("parses")];
            p.prewarm = true;
            if host_network {
                p.storage = Storage::Local {
                    host_path: "/mnt/nvme/models".into(),
                };
            }
            let findings = lint_render(&p);
            assert!(
                findings.is_empty(),
                "{} host_network={host_network}: {findings:#?}",
                engine.name()
            );
        }
    }
}

#[test]
fn render_refuses_what_lint_refuses() {
    let mut p = Params::new(InferenceEngine::Sglang, "deepseek-ai/DeepSeek-R1");
    p.nodes = 3;
    let err = render(&p).unwrap_err();
    assert!(err.to_string().contains("128 attention heads"), "{err}");
    assert_eq!(err.kind(), ferry_deploy::error::ErrorKind::Usage);
}

#[test]
fn a_service_named_ollama_collides_with_the_ollama_server() {
    let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: ollama}
spec:
  selector: {matchLabels: {app: ollama}}
  template:
    metadata: {labels: {app: ollama}}
    spec:
      enableServiceLinks: LINKS
      containers:
        - {name: ollama, image: "ollama/ollama:0.12.6", ports: [{name: http, containerPort: 11434}]}
---
apiVersion: v1
kind: Service
metadata: {name: SERVICE}
spec: {selector: {app: ollama}, ports: [{port: 11434}]}
"#;
    let case = |service: &str, links: bool| -> Vec<Finding> {
        lint_text(
            &text
                .replace("SERVICE", service)
                .replace("LINKS", &links.to_string()),
        )
        .into_iter()
        .filter(|f| f.rule == "service-env-collision")
        .collect()
    };
    let hit = case("ollama", true);
    assert_eq!(hit.len(), 1, "{hit:#?}");
    assert_eq!(hit[0].severity, Severity::Error);
    assert!(
        hit[0].message.contains("OLLAMA_PORT=tcp://"),
        "{}",
        hit[0].message
    );
    assert!(case("ollama", false).is_empty());
    assert!(case("ollama-api", false).is_empty());
}
