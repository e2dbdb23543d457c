//! Keeps ferry's heap from growing with the number of threads and connections.
//!
//! Measured at real shard size (docs/BENCHMARKS.md, "At real shard size"): a fetch of 4.3 GB
//! shards peaked at 330–455 MiB RSS with glibc's defaults, though what ferry holds at once is a
//! 1 MiB write buffer per connection. glibc raises its mmap threshold each time a large block is
//! freed, so later 1 MiB buffers come from per-thread arenas (up to 8 per core) whose freed
//! memory stays resident. A fixed threshold sends every larger block to mmap and back to the
//! kernel when freed: 72 MiB peak at 128 KiB, the same speed. The threshold is 512 KiB, above
//! hyper's largest read buffer (~408 KiB): at 128 KiB each of those was a fresh mmap whose pages
//! `recv` faulted in, 5 % of the CPU of a 1 MiB-range fetch (`perf`); ferry's own write and hash
//! buffers are pooled (`fetcher::transfer::buffers`), so they are faulted in once. A user's
//! own `MALLOC_*` settings win.

/// The threshold glibc starts with; fixing it stops the dynamic growth.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 512 * 1024;

pub fn bound_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}
