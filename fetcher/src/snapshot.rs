//! What a source says a revision contains: one commit and its files with sizes and hashes.

use ferry_sharder::FileHash;

/// One file of a snapshot, as listed by the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Repo-relative path, `/`-separated; checked by [`crate::select::check_path`] before use.
    pub path: String,
    pub size: u64,
    pub hash: FileHash,
}

/// A revision resolved to a commit, with the files to fetch.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub repo: String,
    /// The revision the user asked for.
    pub revision: String,
    /// The 40-hex commit every file is taken from, so a branch that moves mid-download cannot mix
    /// files of two commits.
    pub commit: String,
    pub files: Vec<RemoteFile>,
}

impl Snapshot {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}
