//! A SHA-256 whose state can be saved and restored, so an upload resumed after kill -9 can go on
//! hashing where it stopped instead of downloading the uploaded prefix again just to hash it.
//!
//! The state after whole 64-byte blocks is eight words plus the length; multipart part sizes are
//! whole MiB, so every part boundary is a block boundary and a checkpoint needs no buffered tail.

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

#[derive(Clone)]
pub struct ResumableSha256 {
    state: [u32; 8],
    /// Bytes compressed into `state` (a multiple of 64).
    len: u64,
    tail: Vec<u8>,
}

/// A saved state: valid only at a 64-byte boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub state: [u32; 8],
    pub len: u64,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl ResumableSha256 {
    pub fn new() -> Self {
        ResumableSha256 {
            state: H0,
            len: 0,
            tail: Vec::with_capacity(64),
        }
    }

    pub fn restore(saved: Saved) -> Self {
        ResumableSha256 {
            state: saved.state,
            len: saved.len,
            tail: Vec::with_capacity(64),
        }
    }

    /// The state, when at a block boundary (no buffered tail).
    pub fn save(&self) -> Option<Saved> {
        self.tail.is_empty().then_some(Saved {
            state: self.state,
            len: self.len,
        })
    }

    /// Bytes hashed so far.
    pub fn position(&self) -> u64 {
        self.len + self.tail.len() as u64
    }

    pub fn update(&mut self, mut data: &[u8]) {
        if !self.tail.is_empty() {
            let take = (64 - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < 64 {
                return;
            }
            let block = *GenericArray::from_slice(&self.tail[..]);
            sha2::compress256(&mut self.state, &[block]);
            self.len += 64;
            self.tail.clear();
        }
        let whole = data.len() / 64 * 64;
        // Compress in batches so the accelerated block function sees many blocks per call.
        const BATCH: usize = 256;
        let mut blocks: Vec<GenericArray<u8, sha2::digest::consts::U64>> =
            Vec::with_capacity(BATCH);
        for chunk in data[..whole].chunks_exact(64) {
            blocks.push(*GenericArray::from_slice(chunk));
            if blocks.len() == BATCH {
                sha2::compress256(&mut self.state, &blocks);
                blocks.clear();
            }
        }
        if !blocks.is_empty() {
            sha2::compress256(&mut self.state, &blocks);
        }
        self.len += whole as u64;
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// The digest, lowercase hex.
    pub fn finish(mut self) -> String {
        let bits = self.position() * 8;
        let mut pad = std::mem::take(&mut self.tail);
        pad.push(0x80);
        while pad.len() % 64 != 56 {
            pad.push(0);
        }
        pad.extend_from_slice(&bits.to_be_bytes());
        for chunk in pad.chunks_exact(64) {
            sha2::compress256(&mut self.state, &[*GenericArray::from_slice(chunk)]);
        }
        let mut out = [0u8; 32];
        for (i, w) in self.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        hex::encode(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn matches_sha2_across_splits_and_restores() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let want = hex::encode(sha2::Sha256::digest(&data));
        for split in [0, 1, 63, 64, 65, 640, 4096, 9_999, 10_000] {
            let mut h = ResumableSha256::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finish(), want, "split at {split}");
        }
        // Save at a block boundary, restore in a "new process", finish: same digest.
        let mut h = ResumableSha256::new();
        h.update(&data[..4096]);
        let saved = h.save().expect("block boundary");
        let json = serde_json::to_string(&saved).unwrap();
        let mut r = ResumableSha256::restore(serde_json::from_str(&json).unwrap());
        r.update(&data[4096..]);
        assert_eq!(r.finish(), want);
        let mut h = ResumableSha256::new();
        h.update(&data[..100]);
        assert!(h.save().is_none(), "mid-block state is not saveable");
        assert_eq!(
            ResumableSha256::new().finish(),
            hex::encode(sha2::Sha256::digest(b""))
        );
    }
}
