//! Whether the engine's settings fit the model and the GPUs the manifest declares: the
//! tensor-parallel size must divide the model's attention heads, and bfloat16 needs a GPU of
//! compute capability 8.0 or later (Ampere and newer).

use super::{Context, RuleInfo, Severity};
use crate::models;
use crate::objects::list;

pub const TP_HEADS: RuleInfo = RuleInfo {
    id: "tp-heads-mismatch",
    severity: Severity::Error,
    summary: "The tensor-parallel size does not divide the model's attention heads (config.json \
              num_attention_heads, e.g. 128 for DeepSeek-R1; known models, or the \
              ferry.dev/attention-heads annotation): the engine refuses to start.",
};

pub const DTYPE_GPU: RuleInfo = RuleInfo {
    id: "dtype-gpu-mismatch",
    severity: Severity::Error,
    summary: "--dtype bfloat16 on a pod that asks for a GPU without bfloat16 (T4, V100, P100, \
              P40: compute capability below 8.0, by nodeSelector, node affinity or the TKE \
              gpu-type annotation): the engine fails at start; use --dtype half.",
};

/// The annotation that declares a model's attention heads where ferry cannot know them.
pub const HEADS_ANNOTATION: &str = "ferry.dev/attention-heads";

/// GPU models without bfloat16, as node labels and the TKE annotation name them.
const NO_BF16: &[&str] = &["T4", "V100", "P100", "P40", "P4", "K80", "M60"];

pub(crate) fn check(cx: &Context<'_>) {
    tp_heads(cx);
    dtype_gpu(cx);
}

fn tp_heads(cx: &Context<'_>) {
    for e in cx.engines.iter().filter(|e| e.engine.launches_server) {
        let Some(tp) = e.engine.tensor_parallel() else {
            continue;
        };
        let annotated = [&e.pod.template["metadata"], &e.object.value["metadata"]]
            .iter()
            .find_map(|m| {
                m["annotations"][HEADS_ANNOTATION]
                    .as_str()?
                    .parse::<u64>()
                    .ok()
            });
        let heads = annotated.or_else(|| {
            e.engine
                .model()
                .and_then(|m| models::known(&m))
                .map(|f| f.attention_heads)
        });
        let Some(problem) = heads.and_then(|h| models::tp_problem(tp, h)) else {
            continue;
        };
        cx.report(
            &TP_HEADS,
            e.object,
            e.field("args"),
            format!("`{}`: {problem}", e.container_name()),
            "pick a TP size that divides the heads (and TP × PP = the group's GPUs), e.g. --tp 16 \
             on 2 × 8 GPUs for DeepSeek-R1",
        );
    }
}

/// The GPU models a pod template asks for: nodeSelector and required node affinity values, and
/// the TKE super node annotation.
fn declared_gpus(template: &serde_json::Value) -> Vec<String> {
    let spec = &template["spec"];
    let mut out: Vec<String> = spec["nodeSelector"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|v| v.as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let terms = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    for term in list(terms) {
        for expr in list(&term["matchExpressions"]) {
            if expr["operator"].as_str() == Some("In") {
                out.extend(
                    list(&expr["values"])
                        .into_iter()
                        .filter_map(|v| v.as_str())
                        .map(String::from),
                );
            }
        }
    }
    if let Some(t) =
        template["metadata"]["annotations"]["eks.tke.cloud.tencent.com/gpu-type"].as_str()
    {
        out.push(t.to_string());
    }
    out
}

/// Whether a label value names a GPU without bfloat16 (`Tesla-V100-SXM2-32GB`, `T4`, `v100`).
fn lacks_bf16(value: &str) -> bool {
    value
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| NO_BF16.iter().any(|g| w.eq_ignore_ascii_case(g)))
}

fn dtype_gpu(cx: &Context<'_>) {
    for e in cx.engines.iter().filter(|e| e.engine.launches_server) {
        let Some(dtype) = e.engine.flag(&["--dtype"]) else {
            continue;
        };
        if !matches!(dtype.to_ascii_lowercase().as_str(), "bfloat16" | "bf16") {
            continue;
        }
        let Some(gpu) = declared_gpus(e.pod.template)
            .into_iter()
            .find(|v| lacks_bf16(v))
        else {
            continue;
        };
        cx.report(
            &DTYPE_GPU,
            e.object,
            e.field("args"),
            format!(
                "`{}` runs --dtype {dtype} on {gpu} GPUs, which have no bfloat16 (compute \
                 capability below 8.0): the engine fails at start",
                e.container_name()
            ),
            "use --dtype half (float16) on these GPUs, or schedule onto Ampere or newer",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_names_without_bf16() {
        assert!(lacks_bf16("Tesla-V100-SXM2-32GB"));
        assert!(lacks_bf16("T4"));
        assert!(!lacks_bf16("NVIDIA-A800-SXM4-80GB"));
        assert!(!lacks_bf16("H20"));
    }
}
