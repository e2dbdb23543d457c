//! Reading a huge safetensors header takes memory in proportion to its size, not ~20x it: a
//! counting allocator measures the peak while one is parsed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = NOW.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        NOW.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was live when it started.
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    (r, PEAK.load(Ordering::Relaxed) - base)
}

/// A shard of `count` tiny BF16 tensors: a header of many megabytes over little data.
fn write_big_shard(dir: &std::path::Path, count: usize) -> usize {
    let mut json = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    for i in 0..count {
        json.push_str(&format!(
            ",\"model.layers.{}.mlp.experts.{}.down_proj.weight\":{{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[{},{}]}}",
            i / 256,
            i % 256,
            2 * i,
            2 * i + 2
        ));
    }
    json.push('}');
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    bytes.resize(bytes.len() + 2 * count, 0);
    std::fs::write(dir.join("big.safetensors"), &bytes).unwrap();
    json.len()
}

#[test]
fn a_huge_header_is_parsed_in_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    let count = 200_000;
    let n = write_big_shard(d.path(), count);
    assert!(n > 15_000_000, "header is only {n} bytes");

    let (r, peak) = peak_of(|| ferry_sharder::header::read_header(d.path(), "big.safetensors"));
    let (h, findings) = r.unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(h.tensors.len(), count);
    assert!(ferry_sharder::header::check(&h).is_empty());
    drop(h);

    // What a whole-tree parse (the old way) costs on the same bytes, to show the bound bites.
    let buf = std::fs::read(d.path().join("big.safetensors")).unwrap();
    let (tree, tree_peak) = peak_of(|| {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&buf[8..8 + n])
            .unwrap()
    });
    drop(tree);

    let bound = 5 * n;
    eprintln!(
        "header {n} bytes: streaming peak {peak} ({:.1}x), whole tree {tree_peak} ({:.1}x)",
        peak as f64 / n as f64,
        tree_peak as f64 / n as f64
    );
    assert!(
        peak < bound,
        "peak {peak} bytes for a {n}-byte header (bound {bound})"
    );
    assert!(
        tree_peak > bound,
        "the bound {bound} would not catch a tree parse ({tree_peak})"
    );
}
