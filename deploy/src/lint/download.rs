//! The download Job and container hygiene: slices against the Indexed Job's completions, slices
//! with S3 (which ferry refuses), per-index retries, tokens written into manifests, and floating
//! image tags.

use serde_json::Value;

use super::{all_containers, Context, RuleInfo, Severity};
use crate::engine::{ferry, flag_value, int_flag_value, Gate};
use crate::objects::{literal_env, Object};

pub const SLICES: RuleInfo = RuleInfo {
    id: "fetch-slices-mismatch",
    severity: Severity::Error,
    summary: "`ferry fetch --slices N` in a Job that is not Indexed with completions: N leaves \
              slices undownloaded or downloads them twice.",
};

pub const S3_SLICES: RuleInfo = RuleInfo {
    id: "fetch-s3-slices",
    severity: Severity::Error,
    summary: "`ferry fetch --slice/--slices` with an s3:// source or target: ferry refuses it, \
              so every pod of the Job fails; one pod moves an S3 prefix with many connections.",
};

pub const RETRY_POLICY: RuleInfo = RuleInfo {
    id: "fetch-retry-policy",
    severity: Severity::Warning,
    summary: "An Indexed download Job without backoffLimitPerIndex: retries of one bad slice use \
              up the whole Job's backoffLimit and fail every slice.",
};

pub const SECRET_IN_ENV: RuleInfo = RuleInfo {
    id: "secret-in-env",
    severity: Severity::Error,
    summary: "A token or key written as a literal env value ends up in git and in `kubectl get -o \
              yaml`; read it from a Secret.",
};

pub const IMAGE_TAG: RuleInfo = RuleInfo {
    id: "image-tag-floating",
    severity: Severity::Warning,
    summary: "An image without a tag or with :latest changes under a running group: leader and \
              workers can end up on different engine versions.",
};

/// Env names that hold credentials.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "API_KEY", "ACCESS_KEY"]
        .iter()
        .any(|s| n.ends_with(s) || n.contains(&format!("{s}_")))
}

/// The tag of an image reference, None without one; digests count as pinned.
fn floating(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => true,
        Some((_, tag)) => tag == "latest",
    }
}

pub(crate) fn check(cx: &Context<'_>) {
    secret_in_env(cx);
    image_tag(cx);
    let jobs = fetch_jobs(cx.objects);
    s3_slices(cx, &jobs);
    slices(cx, &jobs);
    retry_policy(cx, &jobs);
}

fn secret_in_env(cx: &Context<'_>) {
    for c in all_containers(cx.objects) {
        for (var, value) in literal_env(c.container) {
            if secret_name(var) && !value.is_empty() {
                cx.report(
                    &SECRET_IN_ENV,
                    c.object,
                    c.field("env"),
                    format!(
                        "`{}` sets {var} to a literal value in the manifest",
                        c.name()
                    ),
                    format!(
                        "store it in a Secret (kubectl create secret generic hf-token \
                         --from-literal=token=…) and use env: [{{name: {var}, valueFrom: \
                         {{secretKeyRef: {{name: hf-token, key: token}}}}}}]"
                    ),
                );
            }
        }
    }
}

fn image_tag(cx: &Context<'_>) {
    for c in all_containers(cx.objects) {
        if let Some(image) = c.container["image"].as_str().filter(|i| floating(i)) {
            cx.report(
                &IMAGE_TAG,
                c.object,
                c.field("image"),
                format!("`{}` uses image `{image}`, a tag that moves", c.name()),
                "pin a version tag or a digest",
            );
        }
    }
}

/// A `ferry fetch` container of a Job, with the Job's spec and the command line.
struct FetchJob<'a> {
    object: &'a Object,
    spec: &'a Value,
    gate: Gate,
    words: Vec<String>,
    field: String,
}

impl FetchJob<'_> {
    /// Slices with an s3:// source or target, which ferry refuses before anything else.
    fn refused(&self) -> bool {
        self.words.iter().any(|w| w.starts_with("s3://"))
            && self.words.iter().any(|w| w.starts_with("--slice"))
    }

    fn indexed(&self) -> bool {
        self.spec["completionMode"].as_str() == Some("Indexed")
    }

    fn completions(&self) -> u64 {
        self.spec["completions"].as_u64().unwrap_or(1)
    }
}

fn fetch_jobs(objects: &[Object]) -> Vec<FetchJob<'_>> {
    let mut out = Vec::new();
    for object in objects.iter().filter(|o| o.kind() == "Job") {
        let spec = &object.value["spec"];
        for c in crate::objects::list(&spec["template"]["spec"]["containers"]) {
            let Some(gate) = ferry(c).filter(|g| g.verb == "fetch") else {
                continue;
            };
            out.push(FetchJob {
                object,
                spec,
                gate,
                words: crate::engine::command_line(c),
                field: format!(
                    "spec.template.spec.containers[name={}].args",
                    c["name"].as_str().unwrap_or("?")
                ),
            });
        }
    }
    out
}

fn s3_slices(cx: &Context<'_>, jobs: &[FetchJob<'_>]) {
    for j in jobs {
        if j.refused() {
            cx.report(
                &S3_SLICES,
                j.object,
                j.field.clone(),
                "`ferry fetch` moves an s3:// prefix with --slice/--slices, which ferry refuses \
                 (slices apply to hub sources into a shared directory): every pod exits 1",
                "drop --slices and run one pod (completions: 1); it opens many ranged \
                 connections by itself",
            );
        }
    }
}

fn slices(cx: &Context<'_>, jobs: &[FetchJob<'_>]) {
    for j in jobs.iter().filter(|j| !j.refused()) {
        let (indexed, completions) = (j.indexed(), j.completions());
        let slices = int_flag_value(&j.words, &["--slices"]);
        let fixed_slice = flag_value(&j.words, &["--slice"]).filter(|s| !s.contains("$("));
        let (message, fix) = if let Some(n) = slices {
            if indexed && completions == n {
                continue;
            }
            let effect = if !indexed {
                "without an index every pod takes the same slice".to_string()
            } else if completions < n {
                format!("slices {completions}..{} are never downloaded", n - 1)
            } else {
                format!("indexes {n}..{} have no slice", completions - 1)
            };
            (
                format!(
                    "`ferry fetch --slices {n}` runs in a Job with completionMode {} and \
                     completions {completions}: each pod takes slice JOB_COMPLETION_INDEX of \
                     {n}, so {effect}",
                    j.spec["completionMode"].as_str().unwrap_or("NonIndexed"),
                ),
                format!("set completionMode: Indexed and completions: {n} (parallelism ≤ {n})"),
            )
        } else if let Some(s) = fixed_slice.as_ref().filter(|_| completions > 1) {
            (
                format!("every one of the {completions} pods downloads the same slice {s}"),
                format!(
                    "use --slices {completions} and let each pod take its slice from \
                     JOB_COMPLETION_INDEX"
                ),
            )
        } else if fixed_slice.is_none() && indexed && completions > 1 {
            (
                format!(
                    "{completions} indexed pods each download the whole model into {}",
                    j.gate.model_dir.as_deref().unwrap_or("the same directory")
                ),
                format!("add --slices {completions}"),
            )
        } else {
            continue;
        };
        cx.report(&SLICES, j.object, j.field.clone(), message, fix);
    }
}

fn retry_policy(cx: &Context<'_>, jobs: &[FetchJob<'_>]) {
    for j in jobs.iter().filter(|j| !j.refused()) {
        let completions = j.completions();
        if j.indexed() && completions > 1 && j.spec["backoffLimitPerIndex"].is_null() {
            cx.report(
                &RETRY_POLICY,
                j.object,
                "spec.backoffLimitPerIndex",
                format!(
                    "the {completions} slices share one backoffLimit ({}): one slice that keeps \
                     failing uses it up and the whole download fails",
                    j.spec["backoffLimit"].as_u64().unwrap_or(6)
                ),
                "set backoffLimitPerIndex (e.g. 4) so each slice retries on its own",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_and_floating_tags() {
        assert!(secret_name("HF_TOKEN"));
        assert!(secret_name("AWS_SECRET_ACCESS_KEY"));
        assert!(secret_name("OPENAI_API_KEY"));
        assert!(!secret_name("HF_HOME"));
        assert!(floating("lmsysorg/sglang"));
        assert!(floating("lmsysorg/sglang:latest"));
        assert!(!floating("localhost:5000/sglang:v0.5.2"));
        assert!(floating("localhost:5000/sglang"));
        assert!(!floating("vllm/vllm-openai@sha256:abc"));
    }
}
