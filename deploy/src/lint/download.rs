//! The download Job and container hygiene: slices against the Indexed Job's completions, slices
//! with S3 (which ferry refuses), per-index retries, tokens written into manifests, and floating
//! image tags.

use super::{Context, RuleInfo, Severity};
use crate::engine::{ferry, flag_value, int_flag_value};
use crate::objects::{container_field, literal_env};

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

pub(crate) fn check(cx: &mut Context<'_>) {
    let mut out = Vec::new();
    for o in cx.objects {
        for pod in o.pod_templates() {
            let all = pod
                .containers()
                .into_iter()
                .map(|c| (false, c))
                .chain(pod.init_containers().into_iter().map(|c| (true, c)));
            for (init, c) in all {
                let name = c["name"].as_str().unwrap_or("?");
                for (var, value) in literal_env(c) {
                    if secret_name(var) && !value.is_empty() {
                        out.push((
                            &SECRET_IN_ENV,
                            o,
                            container_field(&pod, init, c, "env"),
                            format!("`{name}` sets {var} to a literal value in the manifest"),
                            format!(
                                "store it in a Secret (kubectl create secret generic hf-token \
                                 --from-literal=token=…) and use env: [{{name: {var}, valueFrom: \
                                 {{secretKeyRef: {{name: hf-token, key: token}}}}}}]"
                            ),
                        ));
                    }
                }
                if let Some(image) = c["image"].as_str() {
                    if floating(image) {
                        out.push((
                            &IMAGE_TAG,
                            o,
                            container_field(&pod, init, c, "image"),
                            format!("`{name}` uses image `{image}`, a tag that moves"),
                            "pin a version tag or a digest".to_string(),
                        ));
                    }
                }
            }
        }
        if o.kind() != "Job" {
            continue;
        }
        let spec = &o.value["spec"];
        for c in crate::objects::list(&spec["template"]["spec"]["containers"]) {
            let Some(g) = ferry(c).filter(|g| g.verb == "fetch") else {
                continue;
            };
            let words = crate::engine::command_line(c);
            let field = format!(
                "spec.template.spec.containers[name={}].args",
                c["name"].as_str().unwrap_or("?")
            );
            if words.iter().any(|w| w.starts_with("s3://"))
                && words
                    .iter()
                    .any(|w| w == "--slices" || w == "--slice" || w.starts_with("--slice"))
            {
                out.push((
                    &S3_SLICES,
                    o,
                    field.clone(),
                    "`ferry fetch` moves an s3:// prefix with --slice/--slices, which ferry \
                     refuses (slices apply to hub sources into a shared directory): every pod \
                     exits 1"
                        .to_string(),
                    "drop --slices and run one pod (completions: 1); it opens many ranged \
                     connections by itself"
                        .to_string(),
                ));
                continue;
            }
            let indexed = spec["completionMode"].as_str() == Some("Indexed");
            let completions = spec["completions"].as_u64().unwrap_or(1);
            let slices = int_flag_value(&words, &["--slices"]);
            let fixed_slice = flag_value(&words, &["--slice"]).filter(|s| !s.contains("$("));
            if let Some(n) = slices {
                if !indexed || completions != n {
                    out.push((
                        &SLICES,
                        o,
                        field.clone(),
                        format!(
                            "`ferry fetch --slices {n}` runs in a Job with completionMode {} and \
                             completions {completions}: each pod takes slice JOB_COMPLETION_INDEX \
                             of {n}, so {}",
                            spec["completionMode"].as_str().unwrap_or("NonIndexed"),
                            if !indexed {
                                "without an index every pod takes the same slice".to_string()
                            } else if completions < n {
                                format!("slices {completions}..{} are never downloaded", n - 1)
                            } else {
                                format!("indexes {n}..{} have no slice", completions - 1)
                            }
                        ),
                        format!(
                            "set completionMode: Indexed and completions: {n} (parallelism ≤ {n})"
                        ),
                    ));
                }
            } else if let Some(s) = fixed_slice {
                if completions > 1 {
                    out.push((
                        &SLICES,
                        o,
                        field.clone(),
                        format!("every one of the {completions} pods downloads the same slice {s}"),
                        format!(
                            "use --slices {completions} and let each pod take its slice from \
                             JOB_COMPLETION_INDEX"
                        ),
                    ));
                }
            } else if indexed && completions > 1 {
                out.push((
                    &SLICES,
                    o,
                    field.clone(),
                    format!(
                        "{completions} indexed pods each download the whole model into {}",
                        g.model_dir.as_deref().unwrap_or("the same directory")
                    ),
                    format!("add --slices {completions}"),
                ));
            }
            if indexed && completions > 1 && spec["backoffLimitPerIndex"].is_null() {
                out.push((
                    &RETRY_POLICY,
                    o,
                    "spec.backoffLimitPerIndex".to_string(),
                    format!(
                        "the {completions} slices share one backoffLimit ({}): one slice that \
                         keeps failing uses it up and the whole download fails",
                        spec["backoffLimit"].as_u64().unwrap_or(6)
                    ),
                    "set backoffLimitPerIndex (e.g. 4) so each slice retries on its own"
                        .to_string(),
                ));
            }
        }
    }
    for (rule, o, field, message, fix) in out {
        cx.report(rule, o, field, message, fix);
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
