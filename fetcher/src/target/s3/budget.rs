//! The memory bound of an S3 upload: part buffers in flight across all files (one semaphore),
//! and the part counters the summary line reports.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// At most `in_flight` part buffers at once, whatever the file.
pub(super) struct PartBudget {
    parts: Arc<Semaphore>,
    pub(super) in_flight: usize,
}

impl PartBudget {
    pub(super) fn new(in_flight: usize) -> PartBudget {
        PartBudget {
            parts: Arc::new(Semaphore::new(in_flight)),
            in_flight,
        }
    }

    /// Room for one more part buffer (held until the part is uploaded).
    pub(super) async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        Arc::clone(&self.parts)
            .acquire_owned()
            .await
            .map_err(|e| Error::Task {
                task: "part budget",
                message: e.to_string(),
            })
    }
}

/// Parts uploaded now and parts kept from an earlier run.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) uploaded: AtomicU64,
    pub(super) kept: AtomicU64,
}
