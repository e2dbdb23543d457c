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

    /// The completion manifest for this snapshot, stamped now; `source` is `hf`, `modelscope`
    /// or `s3`.
    pub fn manifest(&self, source: &str) -> ferry_sharder::Manifest {
        ferry_sharder::Manifest {
            selection: None,
            format: ferry_sharder::manifest::FORMAT,
            repo: self.repo.clone(),
            source: source.to_string(),
            revision: self.revision.clone(),
            commit: self.commit.clone(),
            ferry_version: env!("CARGO_PKG_VERSION").to_string(),
            completed_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string(),
            files: self
                .files
                .iter()
                .map(|f| ferry_sharder::ManifestFile {
                    path: f.path.clone(),
                    size: f.size,
                    hash: f.hash.clone(),
                })
                .collect(),
        }
    }
}
