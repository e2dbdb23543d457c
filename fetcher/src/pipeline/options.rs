//! The typed settings of one `ferry fetch`.

use ferry_sharder::slices::SliceSpec;

use crate::origin::OriginSpec;
use crate::target::TargetSpec;
use crate::transfer::TransferOptions;

/// One `ferry fetch`, as typed values (the binary parses the command line into these).
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub origin: OriginSpec,
    pub target: TargetSpec,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub transfer: TransferOptions,
    /// Fetch only slice `index` of `count` of an Indexed Job; the last slice done completes the
    /// directory.
    pub slice: Option<SliceSpec>,
    /// With `slice`: claim pieces from the shared directory as they go ([`super::claims`])
    /// instead of fetching the fixed slice.
    pub dynamic: bool,
    /// S3 endpoint for `s3://` origins and targets (`--s3-endpoint`); None: `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL`, else AWS itself.
    pub s3_endpoint: Option<String>,
    /// A directory holding another model's manifest: remove that model's files and fetch this
    /// one (`--replace`) instead of refusing.
    pub replace: bool,
    /// `--offline`: answer from the target directory alone, no request (`FERRY_OFFLINE` and, for
    /// Hugging Face, `HF_HUB_OFFLINE` turn it on too).
    pub offline: bool,
}

impl FetchOptions {
    /// A selection may leave out shards on purpose: checkpoint findings are only warnings then.
    pub fn filtered(&self) -> bool {
        !self.include.is_empty() || !self.exclude.is_empty()
    }
}
