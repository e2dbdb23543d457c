//! Choosing a model's widths so that its files add up to the requested size.
//!
//! Every width is the real one times a factor `f` (rounded); the layer count stays real. A
//! bisection finds the largest `f` whose estimated file bytes (tensor data plus headers) fit, and
//! the vocabulary absorbs what rounding leaves over, since one vocabulary row is a few hundred
//! bytes. The estimate differs from the exact plan only in header offsets' digit counts, far
//! below a percent.

use serde_json::Value;

use super::deepseek::DeepseekDims;
use super::error::GenerateError;
use super::header;
use super::qwen::QwenDims;
use super::tensor::{decimal_len, tensor_bytes, Dtype, TensorName, TensorSink};
use super::Layout;

/// Smallest vocabulary: room for the tokenizer's 3 special and 256 byte tokens, with margin.
const MIN_VOCAB: u64 = 512;
/// Largest factor tried: 1024 times the real widths.
const MAX_FACTOR: f64 = 1024.0;
/// Bisection stops at this relative width of the interval: finer than one unit of any width
/// below a million, so no reachable model is skipped.
const RESOLUTION: f64 = 1e-6;

/// A model of one of the layouts, with concrete widths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Architecture {
    R1(DeepseekDims),
    Distill(QwenDims),
}

impl Architecture {
    /// The model with widths scaled by `factor`.
    fn scaled(layout: Layout, factor: f64, experts: u32) -> Self {
        match layout {
            Layout::R1 => Architecture::R1(DeepseekDims::scaled(factor, experts, MIN_VOCAB)),
            Layout::Distill => Architecture::Distill(QwenDims::scaled(factor, MIN_VOCAB)),
        }
    }

    /// Visits every tensor in file order.
    pub fn visit(&self, sink: &mut impl TensorSink) {
        match self {
            Architecture::R1(d) => d.visit(sink),
            Architecture::Distill(d) => d.visit(sink),
        }
    }

    /// The model's config.json.
    pub fn config(&self) -> Value {
        match self {
            Architecture::R1(d) => d.config(),
            Architecture::Distill(d) => d.config(),
        }
    }

    fn add_vocab_rows(&mut self, rows: u64) {
        match self {
            Architecture::R1(d) => d.vocab += rows,
            Architecture::Distill(d) => d.vocab += rows,
        }
    }

    fn vocab_row_bytes(&self) -> u64 {
        match self {
            Architecture::R1(d) => d.vocab_row_bytes(),
            Architecture::Distill(d) => d.vocab_row_bytes(),
        }
    }

    /// Estimated bytes of all shard files (headers included) when split into `shards` files.
    pub fn estimate_file_bytes(&self, shards: u32) -> u64 {
        let mut sum = Sum::default();
        self.visit(&mut sum);
        // Offsets within a shard have about as many digits as the shard's data size.
        let offset_digits = 2 * decimal_len(sum.data / u64::from(shards.max(1))) as u64;
        let per_shard = header::LEN_PREFIX + header::fixed_json_len() as u64 + 4;
        sum.data + sum.entries + sum.tensors * offset_digits + u64::from(shards) * per_shard
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        let mut sum = Sum::default();
        self.visit(&mut sum);
        sum.tensors as usize
    }
}

/// Totals of a tensor enumeration; header entries are counted without their offsets.
#[derive(Default)]
struct Sum {
    tensors: u64,
    data: u64,
    entries: u64,
}

impl TensorSink for Sum {
    fn tensor(&mut self, name: TensorName, dtype: Dtype, shape: &[u64]) {
        self.tensors += 1;
        self.data += tensor_bytes(dtype, shape);
        // entry_len with zero-digit offsets: subtract the two digits it counts for 0 and 0.
        self.entries += header::entry_len(name.len(), dtype, shape, 0, 0) as u64 - 2;
    }
}

/// The model of `layout` whose `shards` files come closest to `target` bytes without exceeding
/// it.
pub fn fit(layout: Layout, target: u64, shards: u32) -> Result<Architecture, GenerateError> {
    let experts = DeepseekDims::experts_for(target);
    let estimate =
        |factor: f64| Architecture::scaled(layout, factor, experts).estimate_file_bytes(shards);

    // The tensor count depends on the layout and expert count only, not on the widths.
    let tensors = Architecture::scaled(layout, 0.0, experts).tensor_count();
    if tensors < shards as usize {
        return Err(GenerateError::TooManyShards {
            layout: layout.name(),
            shards,
            tensors,
        });
    }
    let minimum = estimate(0.0);
    if minimum > target {
        return Err(GenerateError::TooSmall {
            layout: layout.name(),
            shards,
            requested: target,
            minimum,
        });
    }
    // Invariant: estimate(lo) <= target < estimate(hi).
    let (mut lo, mut hi) = (0.0, 1.0);
    while estimate(hi) <= target {
        lo = hi;
        hi *= 2.0;
        if hi > MAX_FACTOR {
            return Err(GenerateError::TooLarge { requested: target });
        }
    }
    while hi - lo > hi * RESOLUTION {
        let mid = (lo + hi) / 2.0;
        if estimate(mid) <= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut model = Architecture::scaled(layout, lo, experts);
    // Fill what rounding left with vocabulary rows. A row costs a little more than its data
    // when a number gains a digit in the headers, so take back rows until it fits (a step or
    // two).
    let base = model.clone();
    let row = model.vocab_row_bytes();
    let mut rows = (target - base.estimate_file_bytes(shards)) / row;
    loop {
        model = base.clone();
        model.add_vocab_rows(rows);
        let bytes = model.estimate_file_bytes(shards);
        if bytes <= target || rows == 0 {
            break;
        }
        rows = rows.saturating_sub((bytes - target).div_ceil(row));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_is_monotone_in_the_factor() {
        for layout in [Layout::R1, Layout::Distill] {
            let mut last = 0;
            for i in 0..200 {
                let bytes =
                    Architecture::scaled(layout, i as f64 * 0.01, 64).estimate_file_bytes(7);
                assert!(bytes >= last, "{layout:?} at {i}");
                last = bytes;
            }
        }
    }

    #[test]
    fn fit_lands_just_below_the_target() {
        for (layout, target, shards) in [
            (Layout::R1, 64 << 20, 163),
            (Layout::R1, 2 << 30, 163),
            (Layout::Distill, 10 << 20, 1),
            (Layout::Distill, 300 << 20, 4),
        ] {
            let model = fit(layout, target, shards).expect("fits");
            let got = model.estimate_file_bytes(shards);
            assert!(got <= target, "{layout:?} {target}: {got}");
            assert!(
                got as f64 > target as f64 * 0.999,
                "{layout:?} {target}: {got}"
            );
        }
    }

    #[test]
    fn tiny_sizes_are_refused_with_the_minimum() {
        match fit(Layout::R1, 1000, 1) {
            Err(GenerateError::TooSmall { minimum, .. }) => assert!(minimum > 1000),
            other => panic!("expected TooSmall, got {other:?}"),
        }
    }
}
