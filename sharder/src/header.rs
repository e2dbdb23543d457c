//! Reading a safetensors header without touching tensor data.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header naming every
//! tensor's dtype, shape and `data_offsets` (relative to the end of the header), then the data.
//! Only the first `8 + n` bytes are read, with plain positioned reads rather than a memory map:
//! a file truncated by a concurrent writer then yields a short read we can name, not a SIGBUS, and
//! a 642 GB checkpoint validates from its ~160 headers in well under a second.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Deserialize;

use crate::finding::Finding;

/// The largest header the safetensors crate accepts (its `MAX_HEADER_SIZE`).
pub const MAX_HEADER: u64 = 100_000_000;

/// One tensor as the header describes it. Offsets are absolute positions in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    /// The dtype string as written (`F8_E4M3`, `BF16`, ...).
    pub dtype: String,
    pub shape: Vec<u64>,
    /// First byte of the tensor's data in the file.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
}

impl TensorEntry {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes that dtype × shape take, or why they cannot be computed.
    pub fn expected_len(&self) -> Result<u64, String> {
        let dtype: safetensors::Dtype =
            serde_json::from_value(serde_json::Value::String(self.dtype.clone()))
                .map_err(|_| format!("unknown dtype `{}`", self.dtype))?;
        let elements = self
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("shape {:?} overflows", self.shape))?;
        let bits = elements
            .checked_mul(dtype.bitsize() as u64)
            .ok_or_else(|| format!("shape {:?} overflows", self.shape))?;
        if bits % 8 != 0 {
            return Err(format!(
                "dtype {} × shape {:?} is not a whole number of bytes",
                self.dtype, self.shape
            ));
        }
        Ok(bits / 8)
    }
}

/// A parsed header of one shard.
#[derive(Debug, Clone)]
pub struct ShardHeader {
    /// Path relative to the model directory.
    pub file: String,
    pub file_size: u64,
    /// Where tensor data begins: `8 + header length`.
    pub data_start: u64,
    /// In file order (by start offset, then name).
    pub tensors: Vec<TensorEntry>,
}

impl ShardHeader {
    /// Bytes of tensor data the header describes (sum of tensor lengths).
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(TensorEntry::len).sum()
    }
}

#[derive(Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// A header's tensor entries in file order of appearance, each parsed on its own (one small
/// `Value` at a time, so a malformed entry is named without failing the others); `__metadata__`
/// is skipped without being built.
struct Entries(Vec<(String, Result<RawInfo, String>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of tensor entries")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if name == "__metadata__" {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        continue;
                    }
                    let value: serde_json::Value = map.next_value()?;
                    let raw = serde_json::from_value::<RawInfo>(value).map_err(|e| e.to_string());
                    out.push((name, raw));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A process-wide cap on header bytes being parsed at once.
mod budget {
    use std::sync::{Condvar, Mutex};

    /// Header bytes that may be in memory at once across threads. A header larger than this
    /// waits until it can run alone.
    pub const BYTES: u64 = 256 << 20;

    static IN_USE: Mutex<u64> = Mutex::new(0);
    static FREED: Condvar = Condvar::new();

    pub struct Permit(u64);

    pub fn acquire(n: u64) -> Permit {
        let want = n.min(BYTES);
        let mut used = IN_USE.lock().unwrap_or_else(|p| p.into_inner());
        while *used + want > BYTES {
            used = FREED.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += want;
        Permit(want)
    }

    impl Drop for Permit {
        fn drop(&mut self) {
            let mut used = IN_USE.lock().unwrap_or_else(|p| p.into_inner());
            *used -= self.0;
            FREED.notify_all();
        }
    }
}

/// Reads and parses the header of `dir/rel`. Entries that do not parse are reported in the
/// returned findings (naming the tensor) and left out; a header that cannot be read at all is a
/// single finding.
pub fn read_header(dir: &Path, rel: &str) -> Result<(ShardHeader, Vec<Finding>), Finding> {
    let path = dir.join(rel);
    let file = File::open(&path).map_err(|e| Finding::error(rel, format!("cannot open: {e}")))?;
    let file_size = file
        .metadata()
        .map_err(|e| Finding::error(rel, format!("cannot stat: {e}")))?
        .len();
    if file_size < 8 {
        return Err(Finding::error(
            rel,
            format!("only {file_size} bytes: too short for a safetensors header (truncated?)"),
        ));
    }
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0)
        .map_err(|e| Finding::error(rel, format!("cannot read the header length: {e}")))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER {
        return Err(Finding::error(
            rel,
            format!("header length {n} exceeds the {MAX_HEADER}-byte limit: not a safetensors file, or its first bytes are damaged"),
        ));
    }
    if 8 + n > file_size {
        return Err(Finding::error(
            rel,
            format!("header says it is {n} bytes but the file has only {file_size}: truncated"),
        ));
    }
    // Hold this header's share of the byte budget until its entries are built, so parallel
    // validation of several huge headers cannot add up to gigabytes.
    let _budget = budget::acquire(n);
    let mut buf = vec![0u8; n as usize];
    file.read_exact_at(&mut buf, 8)
        .map_err(|e| Finding::error(rel, format!("cannot read the header: {e}")))?;
    let data_start = 8 + n;
    // Entry by entry, never as one `Value` tree: a tree costs ~20x the header's size.
    let Entries(entries) = serde_json::from_slice(&buf)
        .map_err(|e| Finding::error(rel, format!("header is not valid JSON: {e}")))?;
    drop(buf);
    let mut findings = Vec::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, raw) in entries {
        match raw {
            Ok(raw) => tensors.push(TensorEntry {
                name,
                dtype: raw.dtype,
                shape: raw.shape,
                // Saturating: absurd offsets are reported by `check`, not allowed to wrap.
                start: data_start.saturating_add(raw.data_offsets[0]),
                end: data_start.saturating_add(raw.data_offsets[1]),
            }),
            Err(e) => findings.push(Finding::tensor_error(
                rel,
                name,
                format!("malformed header entry: {e}"),
            )),
        }
    }
    tensors.sort_by(|a, b| (a.start, a.end, &a.name).cmp(&(b.start, b.end, &b.name)));
    Ok((
        ShardHeader {
            file: rel.to_string(),
            file_size,
            data_start,
            tensors,
        },
        findings,
    ))
}

/// Structural checks of one header: dtypes known, dtype × shape equal to each tensor's byte
/// length, offsets contiguous, non-overlapping and inside the file, no trailing bytes.
pub fn check(h: &ShardHeader) -> Vec<Finding> {
    let rel = h.file.as_str();
    let rel_off = |abs: u64| abs - h.data_start;
    let mut out = Vec::new();
    let mut at = h.data_start; // where the next tensor should start
    let mut prev: Option<&TensorEntry> = None;
    for t in &h.tensors {
        if t.end < t.start {
            out.push(Finding::tensor_error(
                rel,
                &t.name,
                format!(
                    "data_offsets [{}, {}] end before they start",
                    rel_off(t.start),
                    rel_off(t.end)
                ),
            ));
            continue;
        }
        match t.expected_len() {
            Ok(want) if want != t.len() => out.push(Finding::tensor_error(
                rel,
                &t.name,
                format!(
                    "dtype {} × shape {:?} is {want} bytes but data_offsets [{}, {}] span {}",
                    t.dtype,
                    t.shape,
                    rel_off(t.start),
                    rel_off(t.end),
                    t.len()
                ),
            )),
            Ok(_) => {}
            Err(why) => out.push(Finding::tensor_error(rel, &t.name, why)),
        }
        if t.start < at {
            let other = prev.map(|p| p.name.as_str()).unwrap_or("?");
            out.push(Finding::tensor_error(
                rel,
                &t.name,
                format!(
                    "data_offsets [{}, {}] overlap tensor {other} (which ends at {})",
                    rel_off(t.start),
                    rel_off(t.end),
                    rel_off(at)
                ),
            ));
        } else if t.start > at {
            out.push(Finding::tensor_error(
                rel,
                &t.name,
                format!(
                    "{} unused bytes before it (data_offsets start at {}, previous data ends at {}): offsets must be contiguous",
                    t.start - at,
                    rel_off(t.start),
                    rel_off(at)
                ),
            ));
        }
        if t.end > at {
            at = t.end;
            prev = Some(t);
        }
    }
    if at > h.file_size {
        // Name the first tensor that does not fit: that is where the file was cut.
        let cut = h
            .tensors
            .iter()
            .find(|t| t.end > h.file_size)
            .map(|t| format!(" (tensor {} is the first past the end)", t.name))
            .unwrap_or_default();
        out.push(Finding::error(
            rel,
            format!(
                "truncated: the header describes {} bytes but the file has {}{cut}",
                at, h.file_size
            ),
        ));
    } else if at < h.file_size {
        out.push(Finding::error(
            rel,
            format!(
                "{} trailing bytes after the last tensor (data ends at {}, file is {} bytes)",
                h.file_size - at,
                at,
                h.file_size
            ),
        ));
    }
    out
}

/// A tensor to lay out in a new safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Bytes of data; dtype × shape for a well-formed file.
    pub len: u64,
}

/// Builds the first bytes of a safetensors file holding `tensors` in the given order: the 8-byte
/// length, the JSON header (padded with spaces to 8 bytes, as the format recommends), and the
/// tensors' absolute positions in the file. Used by the full-scale simulation and by tests that
/// need real headers without writing the data.
pub fn encode(tensors: &[TensorSpec]) -> (Vec<u8>, Vec<TensorEntry>) {
    let mut map = serde_json::Map::new();
    let mut at = 0u64;
    let mut rel = Vec::with_capacity(tensors.len());
    for t in tensors {
        map.insert(
            t.name.clone(),
            serde_json::json!({
                "dtype": t.dtype,
                "shape": t.shape,
                "data_offsets": [at, at + t.len],
            }),
        );
        rel.push((at, at + t.len));
        at += t.len;
    }
    let mut json = serde_json::Value::Object(map).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let data_start = 8 + json.len() as u64;
    let mut bytes = Vec::with_capacity(json.len() + 8);
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&json);
    let entries = tensors
        .iter()
        .zip(rel)
        .map(|(t, (s, e))| TensorEntry {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            shape: t.shape.clone(),
            start: data_start + s,
            end: data_start + e,
        })
        .collect();
    (bytes, entries)
}

/// Bytes one element of `dtype` takes, times 8 (bits); `None` for an unknown dtype.
pub fn dtype_bits(dtype: &str) -> Option<u64> {
    let d: safetensors::Dtype =
        serde_json::from_value(serde_json::Value::String(dtype.to_string())).ok()?;
    Some(d.bitsize() as u64)
}
