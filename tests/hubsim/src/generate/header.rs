//! safetensors headers, written byte for byte as the reference writer (Rust `safetensors`, which
//! Python's package also uses) writes them: an 8-byte little-endian length, then compact JSON with
//! `__metadata__` first and tensors in data order, padded with spaces to a multiple of 8 bytes.
//!
//! Lengths are also computed arithmetically, so that the size search can estimate header bytes
//! for ~90,000 tensors without building strings.

use std::fmt::Write as _;

use super::tensor::{decimal_len, Dtype};

/// Start of every header: the metadata the PyTorch writer stores.
const PREFIX: &str = r#"{"__metadata__":{"format":"pt"}"#;
/// The header length prefix.
pub const LEN_PREFIX: u64 = 8;

/// Bytes that `push_entry` appends for one tensor (`,"NAME":{...}`).
pub fn entry_len(name_len: usize, dtype: Dtype, shape: &[u64], start: u64, end: u64) -> usize {
    // ,"":{"dtype":"","shape":[],"data_offsets":[,]}
    const FIXED: usize = 46;
    let dims: usize =
        shape.iter().map(|&d| decimal_len(d)).sum::<usize>() + shape.len().saturating_sub(1);
    FIXED + name_len + dtype.as_str().len() + dims + decimal_len(start) + decimal_len(end)
}

/// Builds one file's header.
pub struct HeaderBuilder {
    json: String,
}

impl HeaderBuilder {
    pub fn new() -> Self {
        HeaderBuilder {
            json: String::from(PREFIX),
        }
    }

    /// Appends a tensor whose data lies at `start..end` of the data region. Names are
    /// ASCII identifiers with dots, which JSON needs no escaping for.
    pub fn push_entry(&mut self, name: &str, dtype: Dtype, shape: &[u64], start: u64, end: u64) {
        debug_assert!(name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        let before = self.json.len();
        // Writing to a String cannot fail.
        let _ = write!(
            self.json,
            r#","{name}":{{"dtype":"{}","shape":["#,
            dtype.as_str()
        );
        for (i, d) in shape.iter().enumerate() {
            if i > 0 {
                self.json.push(',');
            }
            let _ = write!(self.json, "{d}");
        }
        let _ = write!(self.json, r#"],"data_offsets":[{start},{end}]}}"#);
        debug_assert_eq!(
            self.json.len() - before,
            entry_len(name.len(), dtype, shape, start, end)
        );
    }

    /// The complete header: length prefix, JSON, padding.
    pub fn finish(mut self) -> Vec<u8> {
        self.json.push('}');
        let padded = padded_len(self.json.len());
        let mut out = Vec::with_capacity(LEN_PREFIX as usize + padded);
        out.extend_from_slice(&(padded as u64).to_le_bytes());
        out.extend_from_slice(self.json.as_bytes());
        out.resize(LEN_PREFIX as usize + padded, b' ');
        out
    }
}

/// Header bytes outside the tensor entries, before padding: prefix JSON and closing brace.
pub fn fixed_json_len() -> usize {
    PREFIX.len() + 1
}

/// JSON length rounded up to the 8-byte alignment the reference writer pads to.
pub fn padded_len(json_len: usize) -> usize {
    json_len.next_multiple_of(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_reference_format() {
        let mut h = HeaderBuilder::new();
        h.push_entry("a.weight", Dtype::Bf16, &[2, 3], 0, 12);
        h.push_entry("b", Dtype::F32, &[1], 12, 16);
        let bytes = h.finish();
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        assert!(n.is_multiple_of(8));
        assert_eq!(bytes.len(), 8 + n);
        let json = std::str::from_utf8(&bytes[8..]).expect("utf-8");
        assert_eq!(
            json.trim_end(),
            r#"{"__metadata__":{"format":"pt"},"a.weight":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#
        );
        assert!(json[json.trim_end().len()..].bytes().all(|b| b == b' '));
    }

    #[test]
    fn entry_len_counts_scalars_and_big_numbers() {
        let mut h = HeaderBuilder::new();
        let before = h.json.len();
        h.push_entry("x", Dtype::F8E4M3, &[], 1_853_358_080, 1_853_358_081);
        assert_eq!(
            h.json.len() - before,
            entry_len(1, Dtype::F8E4M3, &[], 1_853_358_080, 1_853_358_081)
        );
    }
}
