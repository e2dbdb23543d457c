//! Where a snapshot comes from. The command line names an origin ([`OriginSpec`]); each kind
//! implements [`Origin`]: resolve a revision to a [`Snapshot`] (one commit and its files with
//! sizes and hashes), then open it for ranged reads ([`Ranges`]), which is all the transfer
//! stage needs.
//!
//! - [`hub`]: Hugging Face ([`hf`]) and ModelScope ([`modelscope`]) repos, `ORG/NAME[@REV]`;
//! - [`s3`]: an `s3://BUCKET/PREFIX`, listed and read through presigned URLs;
//! - [`ollama`]: a model on the Ollama registry, `ollama://[HOST/][NAMESPACE/]MODEL[:TAG]`.

mod api;
pub mod hf;
pub mod hub;
pub mod hub_origin;
pub mod modelscope;
pub mod ollama;
pub mod ollama_name;
pub mod s3;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use reqwest::header::HeaderMap;
use url::Url;

use crate::error::Error;
use crate::error::Result;
use crate::http::Http;
use crate::s3::S3Url;
use crate::snapshot::{RemoteFile, Snapshot};

pub use hub::{HubKind, HubRepo};

/// The origin of a fetch, as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginSpec {
    /// A repo on Hugging Face or ModelScope.
    Hub(HubRepo),
    /// An S3 prefix.
    S3(S3Url),
    /// A tag on an Ollama registry.
    Ollama(ollama::OllamaName),
}

impl OriginSpec {
    /// `s3://BUCKET/PREFIX`, `ollama://NAME` (`endpoint`: the registry URL), else a hub repo
    /// `ORG/NAME[@REV]` on `kind`.
    pub fn parse(spec: &str, kind: HubKind, endpoint: Option<String>) -> Result<OriginSpec> {
        if spec.starts_with("ollama://") {
            return Ok(OriginSpec::Ollama(ollama::OllamaName::parse(
                spec, endpoint,
            )?));
        }
        if spec.starts_with("s3://") {
            return Ok(OriginSpec::S3(S3Url::parse(spec)?));
        }
        Ok(OriginSpec::Hub(HubRepo::parse(spec, kind, endpoint)?))
    }
}

impl std::fmt::Display for OriginSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OriginSpec::Hub(h) => f.write_str(&h.repo),
            OriginSpec::S3(u) => write!(f, "{u}"),
            OriginSpec::Ollama(n) => write!(f, "ollama://{n}"),
        }
    }
}

/// One kind of origin.
pub trait Origin: Send + Sync {
    /// The manifest's `source`: `hf`, `modelscope`, `s3`, `ollama`.
    fn id(&self) -> &'static str;
    /// For messages: `Hugging Face`, `S3`.
    fn name(&self) -> &'static str;
    /// The repo the manifest records: `ORG/NAME`, or the S3 URL.
    fn repo(&self) -> String;
    /// The revision the user asked for, if any.
    fn revision(&self) -> Option<&str>;
    /// Write huggingface_hub's `local_dir` metadata beside published files.
    fn hf_metadata(&self) -> bool {
        false
    }
    /// The snapshot at the asked revision, or at `pinned` (a commit another process resolved).
    fn resolve(&self, pinned: Option<&str>) -> impl Future<Output = Result<Snapshot>> + Send;
    /// The selected files with every hash known: a hub may list some without one (ModelScope's
    /// empty `Sha256`), which is looked up for the selected files only.
    fn complete(&self, snapshot: Snapshot) -> impl Future<Output = Result<Snapshot>> + Send {
        async move { Ok(snapshot) }
    }
    /// Ranged reads of the snapshot's files.
    fn open(&self, snapshot: &Snapshot) -> impl Future<Output = Result<Arc<dyn Ranges>>> + Send;
}

/// An origin opened for ranged reads: where each file's bytes are, with which client, and how to
/// explain a refusal.
pub trait Ranges: Send + Sync {
    fn http(&self) -> &Http;
    fn file_url(&self, file: &RemoteFile) -> Url;
    fn refusal(&self, r: &Refused<'_>) -> Error;
}

/// Each file's own URL, for origins that get one per file rather than by a path rule (presigned
/// S3 GETs, registry blobs by digest), and the URL a path not among them is sent to.
pub struct FileUrls {
    by_path: HashMap<String, Url>,
    fallback: Url,
}

impl FileUrls {
    pub fn new(by_path: HashMap<String, Url>, fallback: Url) -> FileUrls {
        FileUrls { by_path, fallback }
    }

    /// The URL of `file`'s bytes ([`Ranges::file_url`]).
    pub fn get(&self, file: &RemoteFile) -> Url {
        self.by_path
            .get(&file.path)
            .cloned()
            .unwrap_or_else(|| self.fallback.clone())
    }
}

/// A non-success answer, with what is needed to explain it.
pub struct Refused<'a> {
    /// The file asked for, when the request was for a file's bytes.
    pub path: Option<&'a str>,
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a str,
    pub url: &'a Url,
}
