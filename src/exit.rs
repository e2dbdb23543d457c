//! Exit codes, one per kind of failure, so scripts and Kubernetes can tell them apart.
//! Documented in the README; keep the two in step.

/// Anything not listed below.
pub const FAILURE: u8 = 1;
/// Bad command line (clap's own code), or parameters that cannot work together.
pub const USAGE: u8 = 2;
/// Missing or wrong token, gated repo without access.
pub const AUTH: u8 = 3;
/// Repo, revision or file not found.
pub const NOT_FOUND: u8 = 4;
/// A file or the checkpoint failed verification or validation.
pub const VERIFY: u8 = 5;
/// The network or the server failed after every retry.
pub const NETWORK: u8 = 6;
/// Local storage: disk full, permission denied, directory locked by another ferry.
pub const STORAGE: u8 = 7;
/// A wait timed out (sidecar gate, lock).
pub const TIMEOUT: u8 = 8;
/// ferry itself failed (a bug, or the runtime could not start).
pub const INTERNAL: u8 = 70;

/// Flags that cannot work together, found after clap parsed them: exit 2 like clap's own.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Maps an error chain to its exit code by the kind of the first library error in it.
pub fn code_for(err: &anyhow::Error) -> u8 {
    use ferry_sharder::ErrorKind;
    if err.chain().any(|cause| cause.is::<Usage>()) {
        return USAGE;
    }
    let kind = err.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<ferry_fetcher::Error>() {
            Some(e.kind())
        } else if let Some(e) = cause.downcast_ref::<ferry_sharder::Error>() {
            Some(e.kind())
        } else if let Some(e) = cause.downcast_ref::<ferry_deploy::Error>() {
            Some(e.kind())
        } else {
            cause
                .downcast_ref::<ferry_sidecar::Error>()
                .map(|e| e.kind())
        }
    });
    match kind {
        Some(ErrorKind::Auth) => AUTH,
        Some(ErrorKind::NotFound) => NOT_FOUND,
        Some(ErrorKind::Verify) => VERIFY,
        Some(ErrorKind::Network) => NETWORK,
        Some(ErrorKind::Storage) => STORAGE,
        Some(ErrorKind::Timeout) => TIMEOUT,
        Some(ErrorKind::Usage) => USAGE,
        Some(ErrorKind::Other) | None => FAILURE,
    }
}

/// The name of an exit code's kind, as `--json` error lines give it.
pub fn kind_name(code: u8) -> &'static str {
    match code {
        USAGE => "usage",
        AUTH => "auth",
        NOT_FOUND => "not_found",
        VERIFY => "verify",
        NETWORK => "network",
        STORAGE => "storage",
        TIMEOUT => "timeout",
        INTERNAL => "internal",
        _ => "other",
    }
}

/// What to do next for a kind of failure, beside what the message itself says.
pub fn hint(code: u8) -> &'static str {
    match code {
        USAGE => "see `ferry COMMAND --help` for the flags and examples",
        AUTH => "pass --token or set HF_TOKEN / MODELSCOPE_API_TOKEN; a gated repo needs access granted on the hub",
        NOT_FOUND => "check ORG/NAME, the revision, and --source / --endpoint",
        VERIFY => "`ferry verify --full DIR` lists what is wrong; re-running `ferry fetch` replaces bad files",
        NETWORK => "check the endpoint, proxy (HTTPS_PROXY) and CA settings; re-running resumes where it stopped",
        STORAGE => "check free space and permissions; `ferry status DIR` names a lock's holder",
        TIMEOUT => "raise the timeout, or look at what it waited for (`ferry status DIR`)",
        INTERNAL => "a bug in ferry: re-run with -vv and report the output",
        _ => "re-run with -v for more detail",
    }
}
