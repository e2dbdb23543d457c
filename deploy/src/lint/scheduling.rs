//! Gang scheduling: a multi-node group under Volcano must be one PodGroup whose minMember is the
//! group's size, or the scheduler places pods one by one and a half-placed group holds GPUs
//! while it waits for nodes that never free up.

use super::{Context, RuleInfo, Severity};
use crate::objects::Role;

pub const VOLCANO_GANG: RuleInfo = RuleInfo {
    id: "volcano-gang",
    severity: Severity::Error,
    summary: "A multi-pod group scheduled by Volcano without a PodGroup annotation, with leader \
              and workers in different PodGroups, or with a PodGroup whose minMember is not the \
              number of pods: no gang, or a gang that can never be placed.",
};

/// The pod annotations Volcano reads the PodGroup from.
const GROUP_ANNOTATIONS: &[&str] = &[
    "scheduling.k8s.io/group-name",
    "scheduling.volcano.sh/group-name",
];

pub(crate) fn check(cx: &Context<'_>) {
    for o in cx.objects {
        let templates = o.pod_templates();
        let volcano: Vec<_> = templates
            .iter()
            .filter(|t| t.spec()["schedulerName"].as_str() == Some("volcano"))
            .collect();
        if volcano.is_empty() {
            continue;
        }
        let pods: u64 = templates.iter().map(|t| t.pods).sum();
        let group_of = |t: &crate::objects::PodTemplate<'_>| {
            GROUP_ANNOTATIONS
                .iter()
                .find_map(|a| t.template["metadata"]["annotations"][*a].as_str())
                .map(str::to_string)
        };
        let groups: Vec<Option<String>> = volcano.iter().map(|t| group_of(t)).collect();
        if pods > 1 && o.kind() == "LeaderWorkerSet" {
            if let Some(t) = volcano
                .iter()
                .zip(&groups)
                .find(|(_, g)| g.is_none())
                .map(|(t, _)| t)
            {
                cx.report(
                    &VOLCANO_GANG,
                    o,
                    format!("{}.metadata.annotations", t.path),
                    format!(
                        "the {} pods of this group are scheduled by Volcano without a PodGroup: \
                         they are placed one at a time, and a half-placed group holds its GPUs \
                         waiting for the rest",
                        pods
                    ),
                    format!(
                        "add a PodGroup (scheduling.volcano.sh/v1beta1) with minMember: {pods} and \
                         annotate both templates with scheduling.k8s.io/group-name: NAME (`ferry \
                         deploy render --scheduler volcano`)"
                    ),
                );
                continue;
            }
            let leader = volcano
                .iter()
                .zip(&groups)
                .find(|(t, _)| t.role == Role::Leader);
            let worker = volcano
                .iter()
                .zip(&groups)
                .find(|(t, _)| t.role == Role::Worker);
            if let (Some((_, lg)), Some((wt, wg))) = (leader, worker) {
                if lg != wg {
                    cx.report(
                        &VOLCANO_GANG,
                        o,
                        format!("{}.metadata.annotations", wt.path),
                        format!(
                            "the leader is in PodGroup {} and the workers in {}: neither gang \
                             holds the whole group",
                            lg.as_deref().unwrap_or("?"),
                            wg.as_deref().unwrap_or("?")
                        ),
                        "annotate leader and worker templates with the same group name",
                    );
                    continue;
                }
            }
        }
        let Some(name) = groups.iter().flatten().next() else {
            continue;
        };
        let pg = cx
            .objects
            .iter()
            .find(|p| p.kind() == "PodGroup" && p.name() == name && p.same_namespace(o));
        let Some(min) = pg.and_then(|p| p.value["spec"]["minMember"].as_u64()) else {
            continue;
        };
        if min != pods {
            let effect = if min > pods {
                "the gang can never be complete and no pod is ever placed"
            } else {
                "the scheduler may place part of the group, which then holds GPUs waiting for the rest"
            };
            cx.report(
                &VOLCANO_GANG,
                pg.unwrap_or(o),
                "spec.minMember",
                format!(
                    "PodGroup {name} has minMember {min} but {} makes {pods} pods: {effect}",
                    o.id()
                ),
                format!("set minMember: {pods}"),
            );
        }
    }
}
