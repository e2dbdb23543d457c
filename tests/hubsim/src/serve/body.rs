//! Streaming file bodies from disk with throttling and body faults (reset, truncate, stall,
//! corrupt). Memory stays flat: one chunk in flight per body.

use std::sync::Arc;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::faults::{BodyFaults, OverLimit};
use super::stats::BodyGuard;
use super::throttle::{chunk_for, Pacer};
use super::AppState;
use crate::generate::RepoPlan;

/// Largest chunk read from disk and handed to the connection at once.
const CHUNK: usize = 256 * 1024;

/// Where the bytes come from.
pub enum Reader {
    /// A file already positioned at the body's start.
    Disk(tokio::fs::File),
    /// File `index` of a virtual repo's plan, made on the fly at any offset.
    Planned(Arc<RepoPlan>, usize),
    /// A blob in memory.
    Bytes(Arc<[u8]>),
}

/// One body to stream: `len` bytes of the reader from file offset `start`.
pub struct BodySpec {
    pub reader: Reader,
    pub start: u64,
    pub len: u64,
    pub faults: BodyFaults,
    pub stats_key: String,
}

struct State {
    spec: BodySpec,
    sent: u64,
    done: bool,
    throttled_once: bool,
    pacer: Pacer,
    app: Arc<AppState>,
    _guard: BodyGuard,
}

/// Builds the streaming body. An `Err` item makes hyper abort the connection (the reset fault);
/// ending early while Content-Length promised more makes it close the connection (truncate).
pub fn stream(spec: BodySpec, app: Arc<AppState>) -> Body {
    let state = State {
        spec,
        sent: 0,
        done: false,
        throttled_once: false,
        pacer: Pacer::default(),
        _guard: app.stats.body_started(),
        app,
    };
    Body::from_stream(futures_util::stream::unfold(state, next_chunk))
}

async fn next_chunk(mut st: State) -> Option<(std::io::Result<Bytes>, State)> {
    if st.done || st.sent >= st.spec.len {
        return None;
    }
    let faults = &mut st.spec.faults;
    let cut_here = faults.reset_after == Some(st.sent) || faults.truncate_after == Some(st.sent);
    if cut_here && st.sent > 0 {
        // hyper drops what it still buffers when a body ends early, so give it a moment to write
        // the last chunk out: the client then sees exactly N bytes before the cut.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let faults = &mut st.spec.faults;
    if faults.reset_after == Some(st.sent) {
        st.done = true;
        let err = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "hubsim: injected connection reset",
        );
        return Some((Err(err), st));
    }
    if faults.truncate_after == Some(st.sent) {
        return None;
    }
    if let Some((at, how_long)) = faults.stall_after {
        if at == st.sent {
            faults.stall_after = None;
            tokio::time::sleep(how_long).await;
        }
    }

    let mut want = (st.spec.len - st.sent).min(CHUNK as u64);
    // Stop each chunk exactly at a fault position so it fires after precisely N bytes.
    let limits = [
        st.spec.faults.reset_after,
        st.spec.faults.truncate_after,
        st.spec.faults.stall_after.map(|(n, _)| n),
    ];
    for limit in limits.into_iter().flatten() {
        if limit > st.sent {
            want = want.min(limit - st.sent);
        }
    }

    let (total_bps, mut body_bps) = st.app.faults.bandwidth();
    if let Some(limit) = st.app.faults.body_limit() {
        if limit.mode == OverLimit::Throttle && st.app.stats.active_bodies() > limit.max_bodies {
            let hard = limit.throttle_bps.unwrap_or(64 * 1024).max(1);
            body_bps = if body_bps == 0 {
                hard
            } else {
                body_bps.min(hard)
            };
            if !st.throttled_once {
                st.throttled_once = true;
                st.app.stats.fault("over_limit_throttle");
            }
        }
    }
    for cap in [total_bps, body_bps] {
        if cap > 0 {
            want = want.min(chunk_for(cap, CHUNK) as u64);
        }
    }

    let mut buf = BytesMut::zeroed(want as usize);
    match &mut st.spec.reader {
        Reader::Disk(file) => {
            if let Err(e) = file.read_exact(&mut buf).await {
                st.done = true;
                return Some((Err(e), st));
            }
        }
        Reader::Bytes(bytes) => {
            let at = (st.spec.start + st.sent) as usize;
            let n = buf.len();
            buf.copy_from_slice(&bytes[at..at + n]);
        }
        Reader::Planned(plan, index) => {
            let n = plan.files[*index].read_at(st.spec.start + st.sent, &mut buf);
            if n != buf.len() {
                st.done = true;
                let err = std::io::Error::other("hubsim: planned file shorter than listed");
                return Some((Err(err), st));
            }
        }
    }
    if let Some(off) = st.spec.faults.corrupt_at {
        let pos = st.spec.start + st.sent;
        if (pos..pos + want).contains(&off) {
            let i = (off - pos) as usize;
            buf[i] = !buf[i];
        }
    }

    // Only sleep under a cap: even an already-due tokio timer costs up to a 1 ms tick per chunk.
    let mut deadline = None;
    if body_bps > 0 {
        deadline = Some(st.pacer.reserve(want, body_bps));
    }
    if total_bps > 0 {
        let total = st.app.total_pacer.reserve(want, total_bps);
        deadline = Some(deadline.map_or(total, |d: tokio::time::Instant| d.max(total)));
    }
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }

    st.sent += want;
    st.app.stats.bytes(&st.spec.stats_key, want);
    Some((Ok(buf.freeze()), st))
}
