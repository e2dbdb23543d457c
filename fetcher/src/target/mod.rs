//! Where a fetch puts the snapshot. The command line names a target ([`TargetSpec`]); each kind
//! implements [`Target`]: say whether it already holds the snapshot, withdraw its old manifest,
//! sort out what it holds already, stage and publish the rest (each file verified before it
//! appears under its final name), validate, and commit the manifest last.
//!
//! - [`dir`]: a directory (partial files, journal, atomic rename; [`publish`]);
//! - [`cache`]: a hub client's own cache (Hugging Face or ModelScope layout), which engines read
//!   offline;
//! - [`s3`]: an `s3://BUCKET/PREFIX`, by multipart uploads streamed from the origin;
//! - [`ollama`]: an Ollama models directory, a directory whose tag manifest is written last.

pub mod cache;
pub mod dir;
pub mod ollama;
pub mod publish;
pub mod s3;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::meter::Meter;
use crate::origin::Ranges;
use crate::s3::S3Url;
use crate::snapshot::{RemoteFile, Snapshot};

/// The target of a fetch, as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Dir(PathBuf),
    S3(S3Url),
    /// The root of a hub cache (`HF_HUB_CACHE`, `MODELSCOPE_CACHE`), written in the layout of
    /// the origin's own client.
    HubCache(PathBuf),
}

impl TargetSpec {
    /// `s3://BUCKET/PREFIX`, else a directory.
    pub fn parse(s: &str) -> crate::Result<TargetSpec> {
        if s.starts_with("s3://") {
            return Ok(TargetSpec::S3(S3Url::parse(s)?));
        }
        Ok(TargetSpec::Dir(PathBuf::from(s)))
    }
}

/// One kind of target; the stages of [`crate::pipeline`] call these in order.
pub trait Target: Send + Sync {
    /// Where it is, for the summary and messages.
    fn location(&self) -> PathBuf;
    /// Where the progress heartbeat for `ferry status` goes, if this target has one.
    fn heartbeat(&self) -> Option<PathBuf>;
    /// True when a committed manifest names this snapshot (from `source`) and every file is in
    /// place.
    fn is_complete(
        &self,
        snapshot: &Snapshot,
        source: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Withdraws an old manifest: from here files may change, so readers must not trust it.
    fn withdraw(&self) -> impl Future<Output = Result<()>> + Send;
    /// Splits `files` into those already in place and verified, and those to transfer.
    fn reuse(
        &self,
        snapshot: &Snapshot,
        files: &[RemoteFile],
    ) -> impl Future<Output = Result<(Vec<RemoteFile>, Vec<RemoteFile>)>> + Send;
    /// Stages `todo` from the origin and publishes each file once its hash is verified.
    fn transfer(
        &self,
        ranges: Arc<dyn Ranges>,
        snapshot: &Arc<Snapshot>,
        todo: Vec<RemoteFile>,
        meter: &Arc<Meter>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Checks that what was published loads (headers, index); with `filtered` (a selection that
    /// may leave files out on purpose) findings are warnings only.
    fn validate(
        &self,
        snapshot: &Snapshot,
        filtered: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Commits the manifest: the last write, after which readers trust the target.
    fn commit(&self, snapshot: &Snapshot, source: &str) -> impl Future<Output = Result<()>> + Send;
}
