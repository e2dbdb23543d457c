//! Buffers reused across ranges, instead of one allocation per range.
//!
//! ferry fixes glibc's mmap threshold (the binary's `alloc.rs`) so that freed buffers go back to
//! the kernel and RSS stays bounded by what is in use. The price of a fresh 1 MiB buffer per
//! range is then an mmap, 256 page faults that zero every page, and an munmap: measured with
//! `perf` on a 1 MiB-range fetch, page faults were 14 % of ferry's CPU, second only to sha256.
//! A pool keeps the buffers of the ranges in flight resident and hands them out again, so
//! memory stays what the connections need at their peak, and no page is faulted twice.

use std::sync::Mutex;

/// Free buffers of one kind, at most `keep` of them.
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
    make: fn() -> Vec<u8>,
}

impl BufferPool {
    /// A pool that makes new buffers with `make` and keeps up to `keep` returned ones.
    pub fn new(keep: usize, make: fn() -> Vec<u8>) -> BufferPool {
        BufferPool {
            free: Mutex::new(Vec::new()),
            keep,
            make,
        }
    }

    /// A buffer as `make` made it, or one given back (with the length it was given back with).
    pub fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        reused.unwrap_or_else(self.make)
    }

    /// Returns `buf` for reuse; past `keep` buffers it is freed.
    pub fn give(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.keep {
                free.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_up_to_keep() {
        let pool = BufferPool::new(1, || Vec::with_capacity(16));
        let a = pool.take();
        let b = pool.take();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        pool.give(a);
        pool.give(b); // past keep: freed
        let c = pool.take();
        assert_eq!(c.as_ptr(), pa, "the kept buffer comes back");
        assert_ne!(c.as_ptr(), pb);
        assert!(c.capacity() >= 16);
        // Empty again: a new one is made.
        assert!(pool.take().capacity() >= 16);
    }
}
