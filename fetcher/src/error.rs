use std::path::PathBuf;

use ferry_sharder::{ErrorKind, FileHash};

/// Everything that can stop a fetch. Each message names the repo, file or URL (never a token, and
/// never the query string of a signed URL) and says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{source_name} rejected the credentials for {repo}: {message}\n  hint: check the token (--token, {token_env}); it was sent but not accepted")]
    BadToken {
        source_name: &'static str,
        repo: String,
        message: String,
        token_env: &'static str,
    },
    #[error("{repo} needs authentication on {source_name}: {message}\n  hint: pass a token with --token or set {token_env}")]
    NeedsToken {
        source_name: &'static str,
        repo: String,
        message: String,
        token_env: &'static str,
    },
    #[error("{repo} is gated on {source_name}: {message}\n  hint: request access on the model page with the account the token belongs to, then retry")]
    Gated {
        source_name: &'static str,
        repo: String,
        message: String,
    },
    #[error("repository {repo} not found on {source_name} ({endpoint})\n  hint: check the spelling (ORG/NAME, e.g. deepseek-ai/DeepSeek-R1); the hub answers the same for a private repo to anyone without a token that can read it, so if it is private pass --token (or set HF_TOKEN / MODELSCOPE_API_TOKEN)")]
    RepoNotFound {
        source_name: &'static str,
        repo: String,
        endpoint: String,
    },
    #[error("revision {revision:?} not found in {repo}\n  hint: use a branch, tag or full 40-character commit that exists in the repo")]
    RevisionNotFound { repo: String, revision: String },
    #[error("file {path:?} not found in {repo} at {commit}\n  hint: the listing named it but the hub does not serve it; retry later or report it to the hub")]
    FileNotFound {
        repo: String,
        path: String,
        commit: String,
    },
    #[error("no file of {repo} matches the --include/--exclude patterns\n  hint: patterns are globs on repo paths, e.g. --include '*.safetensors' --include 'config.json'")]
    NothingSelected { repo: String },
    #[error("{url}: server answered {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: gave up after {attempts} attempts over {seconds} s: {message}\n  hint: the network or server keeps failing; re-run the same command later and it resumes where it stopped")]
    Network {
        url: String,
        attempts: u32,
        seconds: u64,
        message: String,
    },
    #[error("{url}: unexpected answer: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("cannot reach {endpoint} (endpoint from {from}){via}: {what}{detail}\n  hint: {hint}")]
    Unreachable {
        endpoint: String,
        /// `--endpoint`, `HF_ENDPOINT`, ..., `the default`.
        from: String,
        /// ` through the proxy P (from HTTPS_PROXY)`, or empty.
        via: String,
        what: String,
        /// `; after N attempts over S s`, or empty.
        detail: String,
        hint: String,
        /// A timeout (exit 8) rather than a network failure (exit 6).
        timeout: bool,
    },
    #[error("{url}: rate-limited by {source_name}: {message}\n  hint: many downloads at once share the hub's quota; wait and re-run (it resumes), stagger the pods, use a token (higher limits), or raise --retry-timeout to wait it out")]
    RateLimited {
        url: String,
        source_name: &'static str,
        message: String,
    },
    #[error("the ModelScope listing of {repo} at {revision:?} stops at {cap} entries in {root}, the service's cap, and that directory alone holds at least as many: the listing cannot be proven complete\n  hint: nothing was downloaded; ModelScope cannot list a directory of more than {cap} entries, so fetch this repo from Hugging Face (--source hf) or ask its owner to split the directory")]
    ListingTruncated {
        repo: String,
        revision: String,
        root: String,
        cap: usize,
    },
    #[error("{repo} at {revision:?} changed since it was pinned ({pinned}; the hub lists {now} now)\n  hint: the branch moved while this fetch (or another slice of it) ran; re-run to fetch the new state, or pin a tag that does not move")]
    PinMoved {
        repo: String,
        revision: String,
        pinned: String,
        now: String,
    },
    #[error("offline ({switch}): {what}\n  hint: {hint}")]
    Offline {
        switch: &'static str,
        what: String,
        hint: String,
    },
    #[error("{path:?}: the listing says {listed} bytes, but {url} serves a file of {served} bytes (its Content-Range total)\n  hint: the hub's listing and the server behind it disagree (the file was replaced after the listing, or a proxy or mirror serves another object); retrying cannot fix that, so ferry stopped at once and published nothing under this name. Re-run later; if it repeats, check proxies or mirrors between here and the endpoint, or report it to the hub")]
    SizeMismatch {
        path: String,
        url: String,
        listed: u64,
        served: u64,
    },
    #[error("{path:?}: {algorithm} mismatch on {downloads} download(s): expected {expected}, got {actual}\n  {}\n  hint: nothing was published under this name and the files already in place are kept; {}", .suspect.cause(), .suspect.advice())]
    HashMismatch {
        path: String,
        algorithm: &'static str,
        expected: String,
        /// The hash of each download, comma-separated.
        actual: String,
        downloads: u32,
        suspect: Suspect,
    },
    #[error("{repo}: every file matches the source's hashes, but the checkpoint is not loadable ({count} problem(s)):\n{list}\n  hint: the repo itself is inconsistent; report it to its owner. No completion manifest was written, so ferry-gated engines will not start on it; `ferry verify {dir}` repeats the check")]
    InvalidCheckpoint {
        repo: String,
        dir: String,
        count: usize,
        list: String,
    },
    #[error("refusing file name {path:?} from {repo}: {reason}\n  hint: ferry writes no name that could land outside --to, clobber its own state or garble a terminal; nothing was written. Leave it out with --exclude if the rest of the repo is what you need")]
    HostileName {
        repo: String,
        path: String,
        reason: &'static str,
    },
    #[error("refusing the file listing of {repo}: {path:?} is {reason}\n  hint: no directory can hold this listing as it is; nothing was written. Leave one of the entries out with --exclude, or report the listing to the hub")]
    BadListing {
        repo: String,
        path: String,
        reason: String,
    },
    #[error("{path:?} would be written through the symbolic link {link:?} -> {points_to:?}\n  hint: ferry never writes through a link inside the model directory (it could put hub files anywhere); nothing was written there. Remove the link (or fetch into another --to) and re-run")]
    LinkInDir {
        path: String,
        link: PathBuf,
        points_to: PathBuf,
    },
    #[error("{dir} holds {theirs} (its manifest says so), not {ours}\n  hint: fetching here would mix two models' files; use another --to, or pass --replace to remove the files of {theirs} its manifest lists and fetch {ours} in their place")]
    OtherModel {
        dir: PathBuf,
        theirs: String,
        ours: String,
    },
    #[error("{dir} is locked by another ferry ({holder})\n  hint: wait for it to finish, or stop it; if it died, its lease is taken over once its heartbeat is older than the lease timeout (FERRY_LEASE_TIMEOUT, default 60s); `ferry status {dir}` shows the holder and its heartbeat age")]
    Locked { dir: PathBuf, holder: String },
    #[error("{dir}: lost the lease {lease}: {reason}\n  hint: another ferry took over after this one stalled for longer than the lease timeout; this one stops before publishing anything more. Re-run the same command to check the directory; it resumes or finds it complete")]
    LeaseLost {
        dir: PathBuf,
        lease: String,
        reason: String,
    },
    #[error("not enough space in {dir}: {needed} more bytes needed, {available} available\n  hint: free space or choose another --to; what was downloaded so far is kept and the next run resumes")]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("{path}: disk full while writing\n  hint: free space and re-run the same command; finished ranges are kept and it resumes")]
    DiskFull { path: PathBuf },
    // Named `cause`, not `source`: the message shows it already, and `ferry` prints the whole
    // source chain, which would show the OS error twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("internal error: the {task} failed ({message}); this is a bug in ferry, please report it — re-running resumes")]
    Task { task: &'static str, message: String },
    #[error("no AWS credentials found for S3: {message}\n  hint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where a web identity (Kubernetes service account) or instance role is available")]
    S3NoCredentials { message: String },
    #[error("S3 at {endpoint} rejected the credentials for bucket {bucket:?} ({code}: {message})\n  hint: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile in AWS_PROFILE) and AWS_REGION; the key was sent but not accepted")]
    S3BadCredentials {
        endpoint: String,
        bucket: String,
        code: String,
        message: String,
    },
    #[error("S3 denied {op} on s3://{bucket}/{key} ({message})\n  hint: the credentials were accepted but lack permission; grant {op} on the bucket/prefix to this identity")]
    S3AccessDenied {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("S3 bucket {bucket:?} does not exist at {endpoint}\n  hint: check the bucket name, --s3-endpoint / AWS_ENDPOINT_URL and AWS_REGION; ferry does not create buckets")]
    S3NoSuchBucket { endpoint: String, bucket: String },
    #[error("s3://{bucket}/{key} not found\n  hint: the object vanished or was never there; check the prefix, and re-run if the prefix was being rewritten")]
    S3NoSuchKey { bucket: String, key: String },
    #[error("no objects under {url}\n  hint: check the bucket and prefix (a prefix names a folder: s3://BUCKET/ORG/NAME)")]
    S3EmptyPrefix { url: String },
    #[error("S3 rejected the sha256 checksum of s3://{bucket}/{key}{part} ({code}: {message})\n  hint: the bytes the server received differ from the bytes ferry hashed (corruption on the way); re-run to resume; if it repeats, check proxies between here and the endpoint, or whether this S3-compatible service supports x-amz-checksum-sha256")]
    S3ChecksumRejected {
        bucket: String,
        key: String,
        part: String,
        code: String,
        message: String,
    },
    #[error("{url}: the ferry manifest does not match the objects: {reason}\n  hint: the prefix is being rewritten or was changed after ferry committed it; fetch it again with ferry (it writes the manifest last)")]
    S3ManifestMismatch { url: String, reason: String },
    #[error("cannot reach S3 at {endpoint}: {message}\n  hint: check --s3-endpoint / AWS_ENDPOINT_URL and the network; re-running resumes")]
    S3Unreachable { endpoint: String, message: String },
    #[error("S3 {op} on s3://{bucket}/{key} failed: {message}\n  hint: re-run the same command to resume; uploaded parts and published files are kept")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("{name:?} is not an Ollama model name: {reason}\n  hint: ollama://[HOST/][NAMESPACE/]MODEL[:TAG], e.g. ollama://deepseek-r1:7b or ollama://huihui_ai/deepseek-r1-abliterated:8b (namespace defaults to library, tag to latest)")]
    BadOllamaName { name: String, reason: String },
    #[error("{name} not found on the Ollama registry {registry} ({message})\n  hint: check the model and tag on {library}/tags; a tag that is not listed there does not exist")]
    OllamaNotFound {
        name: String,
        registry: String,
        message: String,
        library: String,
    },
    #[error("the Ollama registry {registry} refused {name} ({message})\n  hint: public models need no credentials; a private one is signed for by the Ollama server's own key, which ferry does not use: check the name, or pull it with `ollama pull`")]
    OllamaAuth {
        name: String,
        registry: String,
        message: String,
    },
    #[error(transparent)]
    Sharder(#[from] ferry_sharder::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Who probably damaged a file whose hash does not match, from how its downloads compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspect {
    /// One download only: it cannot tell.
    Unknown,
    /// Every download hashed the same: the source serves these bytes.
    Source,
    /// The downloads hashed differently: damage on the way.
    Transit,
}

impl Suspect {
    fn cause(self) -> &'static str {
        match self {
            Suspect::Unknown => "the bytes received do not hash to what the source lists",
            Suspect::Source => "every download hashed the same: the source itself serves these bytes, so its copy does not match the hash it lists (a broken upload, or a mirror out of step)",
            Suspect::Transit => "each download hashed differently: the bytes were damaged on the way (a flaky link, a proxy or middlebox rewriting bodies, or bad memory or disk on this node)",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            Suspect::Unknown => "re-run to fetch it again; if it repeats, the source's copy is probably corrupt",
            Suspect::Source => "report it to the repo owner or the mirror; --exclude the file if the rest of the repo is what you need",
            Suspect::Transit => "check the network path (proxies, TLS interception) and this node's disk, then re-run: it fetches only this file",
        }
    }
}

impl Error {
    /// Wraps an I/O error, turning ENOSPC/EDQUOT into the dedicated disk-full error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::DiskFull { path },
            _ => Error::Io {
                path,
                cause: source,
            },
        }
    }

    /// `path` hashed to `actuals` (one per download) instead of `expected`. Whether the
    /// downloads agree says which side is probably at fault.
    pub fn hash_mismatch(path: &str, expected: &FileHash, actuals: &[FileHash]) -> Self {
        let suspect = if actuals.len() < 2 {
            Suspect::Unknown
        } else if actuals.windows(2).all(|w| w[0] == w[1]) {
            Suspect::Source
        } else {
            Suspect::Transit
        };
        Error::HashMismatch {
            path: path.to_string(),
            algorithm: expected.algorithm(),
            expected: expected.hex().to_string(),
            actual: actuals
                .iter()
                .map(|a| a.hex().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            downloads: actuals.len() as u32,
            suspect,
        }
    }

    /// What kind of failure this is; the binary maps kinds to exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadToken { .. } | Error::NeedsToken { .. } | Error::Gated { .. } => {
                ErrorKind::Auth
            }
            Error::RepoNotFound { .. }
            | Error::RevisionNotFound { .. }
            | Error::FileNotFound { .. }
            | Error::NothingSelected { .. } => ErrorKind::NotFound,
            Error::HashMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::HostileName { .. }
            | Error::BadListing { .. }
            | Error::LinkInDir { .. }
            | Error::InvalidCheckpoint { .. } => ErrorKind::Verify,
            Error::Http { .. }
            | Error::Network { .. }
            | Error::BadResponse { .. }
            | Error::RateLimited { .. } => ErrorKind::Network,
            Error::Unreachable { timeout: true, .. } => ErrorKind::Timeout,
            Error::Unreachable { .. } => ErrorKind::Network,
            Error::ListingTruncated { .. } | Error::PinMoved { .. } => ErrorKind::Verify,
            Error::Offline { .. } => ErrorKind::NotFound,
            Error::Locked { .. }
            | Error::LeaseLost { .. }
            | Error::NoSpace { .. }
            | Error::DiskFull { .. }
            | Error::Io { .. } => ErrorKind::Storage,
            Error::Usage(_) | Error::OtherModel { .. } => ErrorKind::Usage,
            Error::Task { .. } => ErrorKind::Other,
            Error::S3NoCredentials { .. }
            | Error::S3BadCredentials { .. }
            | Error::S3AccessDenied { .. } => ErrorKind::Auth,
            Error::S3NoSuchBucket { .. }
            | Error::S3NoSuchKey { .. }
            | Error::S3EmptyPrefix { .. } => ErrorKind::NotFound,
            Error::S3ChecksumRejected { .. } | Error::S3ManifestMismatch { .. } => {
                ErrorKind::Verify
            }
            Error::S3Unreachable { .. } | Error::S3 { .. } => ErrorKind::Network,
            Error::BadOllamaName { .. } => ErrorKind::Usage,
            Error::OllamaNotFound { .. } => ErrorKind::NotFound,
            Error::OllamaAuth { .. } => ErrorKind::Auth,
            Error::Sharder(e) => e.kind(),
        }
    }
}

/// Runs blocking work (disk I/O, hashing) off the async threads; a panic in it becomes a
/// [`Error::Task`] naming `task`.
pub(crate) async fn blocking<T: Send + 'static>(
    task: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task {
            task,
            message: e.to_string(),
        })
}
