//! Plans, slices and verify bookkeeping on the full DeepSeek-R1 layout (163 shards, 688.6 GB)
//! without writing 688 GB: the layout is synthesized from the real tensor shapes, and written as
//! sparse files with real headers where the file system is needed.

use std::collections::BTreeMap;
use std::time::Instant;

use ferry_sharder::loader::{plan_warm, pp_layers, Parallelism, ReadMode};
use ferry_sharder::model::{layer_of, ModelLayout};
use ferry_sharder::slices::plan_slices;
use ferry_sharder::warm_plan::WarmPlan;
use ferry_sharder::InferenceEngine;
use ferry_sharder::{sim, validate, verify, FileHash, Manifest, ManifestFile};

fn par(nnodes: u32, gpus: u32, tp: u32, pp: u32) -> Parallelism {
    Parallelism {
        engine: InferenceEngine::Sglang,
        nnodes,
        gpus_per_node: gpus,
        tp,
        pp,
        ep: false,
        mtp: false,
        read: ReadMode::Tensors,
    }
}

#[test]
fn deepseek_layout_matches_the_published_checkpoint() {
    let m = sim::deepseek_r1();
    assert_eq!(m.layout.weights.len(), 163);
    assert_eq!(
        m.layout.weights[0].path,
        "model-00001-of-000163.safetensors"
    );
    let tensors: u64 = m
        .layout
        .weights
        .iter()
        .flat_map(|w| &w.tensors)
        .map(|t| t.len())
        .sum();
    // The hub shows 684.53B parameters for deepseek-ai/DeepSeek-R1: count elements (FP8 weights
    // and their fp32 block scales alike) to check every shape.
    let elements: u64 = m
        .layout
        .weights
        .iter()
        .flat_map(|w| &w.tensors)
        .map(|t| t.shape.iter().product::<u64>())
        .sum();
    assert_eq!(elements, 684_531_386_000);
    assert_eq!(tensors, 688_574_839_360);
    // The hub lists the 163 shard files at 688,586,727,753 bytes together; ours differ only by
    // the header JSON's formatting (no `__metadata__`), a few bytes per shard.
    let files: u64 = m.layout.weights.iter().map(|w| w.size).sum();
    assert!(files.abs_diff(688_586_727_753) < 163 * 100, "{files}");
    let l = sim::llama_70b();
    assert_eq!(l.layout.weights.len(), 17);
    let tensors: u64 = l
        .layout
        .weights
        .iter()
        .flat_map(|w| &w.tensors)
        .map(|t| t.len())
        .sum();
    // metadata.total_size of DeepSeek-R1-Distill-Llama-70B (and Llama-3.3-70B).
    assert_eq!(tensors, 141_107_412_992);
}

#[test]
fn slices_are_balanced_for_163_shards() {
    let files = sim::deepseek_r1().layout.files();
    let total: u64 = files.iter().map(|f| f.size).sum();
    for n in [1u32, 2, 4, 8, 16, 32, 64, 163] {
        let s = plan_slices(&files, n);
        let max = s.iter().map(|s| s.bytes).max().unwrap();
        let mean = total as f64 / f64::from(n);
        let ratio = max as f64 / mean;
        println!(
            "N={n:3}: max/mean {ratio:.6}, pieces {}",
            s.iter().map(|s| s.pieces.len()).sum::<usize>()
        );
        assert!(ratio <= 1.1, "N={n}: max {max} vs mean {mean}");
        assert_eq!(s.iter().map(|s| s.bytes).sum::<u64>(), total);
        // Splitting is the exception: at most one split per cut.
        let pieces: usize = s.iter().map(|s| s.pieces.len()).sum();
        assert!(pieces < files.len() + n as usize, "N={n}: {pieces} pieces");
        // Same plan from a shuffled list.
        let mut rev = files.clone();
        rev.reverse();
        assert_eq!(plan_slices(&rev, n), s);
    }
}

fn ranges_within_files(plan: &WarmPlan, layout: &ModelLayout) {
    let sizes: BTreeMap<String, u64> = layout
        .files()
        .into_iter()
        .map(|f| (f.path, f.size))
        .collect();
    for n in &plan.nodes {
        assert_eq!(n.bytes, n.ranges.iter().map(|r| r.len).sum::<u64>());
        for r in &n.ranges {
            let size = sizes[&r.path];
            assert!(r.end() <= size, "{r:?} past {size}");
        }
    }
}

/// True when one of `ranges` (sorted, coalesced) holds `[start, end)` of `path`.
fn covers(ranges: &[ferry_sharder::FileRange], path: &str, start: u64, end: u64) -> bool {
    let i = ranges.partition_point(|r| (r.path.as_str(), r.offset) <= (path, start));
    i > 0 && ranges[i - 1].path == path && ranges[i - 1].end() >= end
}

#[test]
fn pipeline_plans_split_the_layers() {
    let layout = sim::deepseek_r1().layout;
    for (nnodes, gpus, pp) in [(2u32, 8u32, 2u32), (4, 4, 4), (4, 8, 4)] {
        let plan = plan_warm(&layout, par(nnodes, gpus, 0, pp)).unwrap();
        ranges_within_files(&plan, &layout);
        // Every decoder layer's tensors are read by exactly the node(s) of its stage.
        for w in &layout.weights {
            for t in &w.tensors {
                let Some(l) = layer_of(&t.name) else { continue };
                let readers: Vec<u32> = plan
                    .nodes
                    .iter()
                    .filter(|n| covers(&n.ranges, &w.path, t.start, t.end))
                    .map(|n| n.node_rank)
                    .collect();
                if l >= 61 {
                    assert!(
                        readers.is_empty(),
                        "MTP layer {} read by {readers:?}",
                        t.name
                    );
                } else {
                    let stage = (0..pp)
                        .find(|&s| {
                            let (a, b) = pp_layers(61, s, pp);
                            (a..b).contains(&l)
                        })
                        .unwrap();
                    let nodes_per_stage = nnodes / pp;
                    let expect: Vec<u32> =
                        (stage * nodes_per_stage..(stage + 1) * nodes_per_stage).collect();
                    assert_eq!(readers, expect, "{} (layer {l})", t.name);
                }
            }
        }
        let sum: u64 = plan.nodes.iter().map(|n| n.bytes).sum();
        println!(
            "pp{pp} {nnodes}x{gpus}: {:?}",
            plan.nodes.iter().map(|n| n.bytes).collect::<Vec<_>>()
        );
        assert!(sum < layout.total_bytes() * u64::from(nnodes / pp) + 1);
    }
}

#[test]
fn tensor_parallel_across_nodes_reads_row_halves_and_full_mode_reads_everything() {
    let layout = sim::deepseek_r1().layout;
    let plan = plan_warm(&layout, par(2, 8, 16, 1)).unwrap();
    ranges_within_files(&plan, &layout);
    let total = layout.total_bytes();
    for n in &plan.nodes {
        assert!(
            n.bytes < total * 9 / 10 && n.bytes > total / 2,
            "{}",
            n.bytes
        );
    }
    // The two nodes' rows of q_b_proj are the two halves of the tensor.
    let (w, t) = layout
        .weights
        .iter()
        .flat_map(|w| w.tensors.iter().map(move |t| (w, t)))
        .find(|(_, t)| t.name == "model.layers.5.self_attn.q_b_proj.weight")
        .unwrap();
    let part = |node: usize| {
        plan.nodes[node]
            .ranges
            .iter()
            .find(|r| r.path == w.path && r.offset < t.end && t.start < r.end())
            .map(|r| (r.offset.max(t.start), r.end().min(t.end)))
            .unwrap()
    };
    assert_eq!(part(0), (t.start, t.start + t.len() / 2));
    assert_eq!(part(1), (t.start + t.len() / 2, t.end));

    // Expert parallelism: each node reads half of the routed experts.
    let ep = plan_warm(
        &layout,
        Parallelism {
            ep: true,
            ..par(2, 8, 16, 1)
        },
    )
    .unwrap();
    for n in &ep.nodes {
        assert!(n.bytes < total * 6 / 10, "{}", n.bytes);
    }

    let full = plan_warm(
        &layout,
        Parallelism {
            read: ReadMode::Full,
            ..par(2, 8, 16, 1)
        },
    )
    .unwrap();
    for n in &full.nodes {
        assert_eq!(n.bytes, total);
    }
    // A plan that does not add up is refused with the numbers.
    let err = plan_warm(&layout, par(2, 8, 8, 1)).unwrap_err().to_string();
    assert!(err.contains("tp 8 × pp 1 = 8"), "{err}");
}

#[test]
fn sparse_full_scale_directory_validates_and_verifies_in_seconds() {
    let d = tempfile::tempdir().unwrap();
    let sim = sim::deepseek_r1();
    sim.write_sparse(d.path()).unwrap();

    // Headers, index and config of 163 shards (688.6 GB apparent): validation reads headers only.
    let files = verify::scan(d.path()).unwrap();
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let t = Instant::now();
    let findings = validate::validate(d.path(), &refs);
    println!("validate of {} files: {:?}", files.len(), t.elapsed());
    assert!(
        findings.is_empty(),
        "{:#?}",
        &findings[..findings.len().min(5)]
    );

    // The layout read back from disk is the one synthesized.
    let back = ModelLayout::from_dir(d.path()).unwrap();
    assert_eq!(back.weights, sim.layout.weights);
    assert_eq!(back.num_hidden_layers, Some(61));

    // The quick check (what the sidecar runs at the gate) over the full manifest.
    let manifest = Manifest {
        selection: None,
        format: ferry_sharder::manifest::FORMAT,
        repo: "deepseek-ai/DeepSeek-R1".into(),
        source: "hf".into(),
        revision: "main".into(),
        commit: "5".repeat(40),
        ferry_version: "test".into(),
        completed_at: "2026-01-01T00:00:00Z".into(),
        files: sim
            .layout
            .files()
            .into_iter()
            .map(|f| ManifestFile {
                path: f.path,
                size: f.size,
                hash: FileHash::Sha256("0".repeat(64)),
            })
            .collect(),
    };
    assert!(manifest.total_bytes() > 688_000_000_000);
    let t = Instant::now();
    verify::quick_check(d.path(), &manifest).unwrap();
    println!(
        "quick_check of {}: {:?}",
        manifest.total_bytes(),
        t.elapsed()
    );

    // A shard cut short is found among the 163.
    let victim = d.path().join("model-00100-of-000163.safetensors");
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let err = verify::quick_check(d.path(), &manifest)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model-00100-of-000163.safetensors") && err.contains("truncated"),
        "{err}"
    );

    // Status at full scale: complete per manifest but one file short of its size is still
    // "present"; slices of the full list balance.
    manifest.write_atomic(d.path()).unwrap();
    let s = ferry_sharder::status::status(d.path()).unwrap();
    assert!(s.complete);
    assert_eq!(s.files_total, Some(manifest.files.len() as u64));
    assert_eq!(s.missing.as_deref(), Some(&[][..]));
}
