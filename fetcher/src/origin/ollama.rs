//! The Ollama registry (`registry.ollama.ai`, a Docker distribution v2 registry) as an
//! [`Origin`]: `ollama://[HOST/][NAMESPACE/]MODEL[:TAG]`.
//!
//! Read from the Ollama server's own source (ollama v0.33.0-rc2, and the same code in v0.12.6,
//! the image `deploy/base/ollama` runs):
//! - names (`types/model/name.go`, `ParseNameBare`, `isValidPart`): the tag is cut at the last
//!   `:` when it comes after the last `/`, then the model, namespace and host at `/` from the
//!   right; defaults `registry.ollama.ai`, `library`, `latest`, https;
//! - the pull (`server/images.go` `pullModelManifest`, `server/download.go`): `GET
//!   /v2/NAMESPACE/MODEL/manifests/TAG` with `Accept:
//!   application/vnd.docker.distribution.manifest.v2+json`, then each layer and the config by
//!   `GET /v2/NAMESPACE/MODEL/blobs/sha256:HEX`, which redirects to a CDN on another origin;
//! - the models directory (`manifest/paths.go`, `Name.Filepath`): the manifest, byte for byte
//!   as the registry sent it, at `manifests/HOST/NAMESPACE/MODEL/TAG`, each blob at
//!   `blobs/sha256-HEX` ([`OllamaName::manifest_path`], [`blob_path`]).
//!
//! A [`Snapshot`] of a tag is its blobs (sha256 = the digest, so the transfer verifies each) and
//! the manifest file itself, whose hash is the manifest digest (the snapshot's commit); the
//! directory target ([`crate::target::ollama`]) writes that file last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_sharder::FileHash;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::Method;
use serde::Deserialize;
use url::Url;

use super::{FileUrls, Origin, Ranges, Refused};
use crate::error::{Error, Result};
use crate::http::{display_url, Http};
use crate::snapshot::{RemoteFile, Snapshot};

pub use super::ollama_name::{blob_path, OllamaName, DEFAULT_HOST, REGISTRY_ENV};

/// What the Ollama server asks for; other manifest types are not Ollama models.
pub const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A manifest larger than this is not an Ollama manifest (one layer is ~150 bytes).
const MAX_MANIFEST: usize = 16 << 20;
const API_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Option<Layer>,
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(default)]
    digest: String,
    size: u64,
}

/// One tag as the registry described it.
#[derive(Clone)]
pub struct Pulled {
    /// The manifest, byte for byte.
    pub bytes: Arc<[u8]>,
    /// Its sha256: the snapshot's commit.
    pub digest: String,
    /// The models-directory path of each blob, with its digest.
    blobs: HashMap<String, String>,
}

/// A tag on an Ollama registry as the origin of a fetch.
pub struct OllamaOrigin {
    name: OllamaName,
    base: Url,
    http: Http,
    /// The manifest the last resolve read, for the target to write.
    pulled: Mutex<Option<Pulled>>,
}

impl OllamaOrigin {
    /// No credentials: the public registry needs none, and private ones sign requests with
    /// the Ollama server's key, which ferry does not hold. Nothing is sent that could leak.
    pub fn new(name: OllamaName) -> Result<OllamaOrigin> {
        let (base, http) = Http::for_endpoint(&name.registry(), &[], None, None)?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::BadOllamaName {
                name: name.to_string(),
                reason: format!(
                    "the registry {} is not an http(s) URL (from --endpoint or {REGISTRY_ENV})",
                    display_url(&base)
                ),
            });
        }
        Ok(OllamaOrigin {
            name,
            base,
            http,
            pulled: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &OllamaName {
        &self.name
    }

    /// The manifest the last [`Origin::resolve`] read.
    pub fn pulled(&self) -> Option<Pulled> {
        self.pulled.lock().ok().and_then(|p| p.clone())
    }

    fn url(&self, tail: &str) -> Url {
        let path = format!("v2/{}/{}/{tail}", self.name.namespace, self.name.model);
        // Every part was checked to be URL-safe: joining cannot fail in practice, and the base
        // itself is the fallback that makes a failure visible.
        self.base.join(&path).unwrap_or_else(|_| self.base.clone())
    }

    /// `GET /v2/NS/MODEL/manifests/TAG`, with retries on network errors, 429 and 5xx.
    async fn get_manifest(&self) -> Result<Vec<u8>> {
        use backon::{ExponentialBuilder, Retryable};
        let url = self.url(&format!("manifests/{}", self.name.tag));
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_TYPE));
        let attempt = || async {
            let answer = self
                .http
                .send_with(Method::GET, url.clone(), None, &headers, API_TIMEOUT)
                .await
                .map_err(|e| Attempt::Retry(e.to_string()))?;
            let status = answer.response.status();
            let body = tokio::time::timeout(API_TIMEOUT, answer.response.bytes())
                .await
                .map_err(|_| Attempt::Retry("body timed out".into()))?
                .map_err(|e| Attempt::Retry(crate::http::describe_reqwest(&e.without_url())))?;
            if status.as_u16() == 429 || status.is_server_error() {
                return Err(Attempt::Retry(format!("server answered {status}")));
            }
            if !status.is_success() {
                return Err(Attempt::Final(self.refused_manifest(
                    status.as_u16(),
                    &String::from_utf8_lossy(&body),
                    &answer.url,
                )));
            }
            Ok(body.to_vec())
        };
        let started = std::time::Instant::now();
        let mut attempts = 1u32;
        let result = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(8))
                    .with_max_times(5)
                    .with_jitter(),
            )
            .when(|e| matches!(e, Attempt::Retry(_)))
            .notify(|e, dur| {
                attempts += 1;
                if let Attempt::Retry(m) = e {
                    tracing::warn!(
                        "{}: {m}; retrying in {:.1} s",
                        display_url(&url),
                        dur.as_secs_f64()
                    );
                }
            })
            .await;
        result.map_err(|e| match e {
            Attempt::Final(e) => e,
            Attempt::Retry(message) => Error::Network {
                url: display_url(&url),
                attempts,
                seconds: started.elapsed().as_secs(),
                message,
            },
        })
    }

    fn refused_manifest(&self, status: u16, body: &str, url: &Url) -> Error {
        let message = registry_message(body).unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            404 => Error::OllamaNotFound {
                name: self.name.to_string(),
                registry: display_url(&self.base),
                message,
                library: format!(
                    "https://ollama.com/{}/{}",
                    self.name.namespace, self.name.model
                ),
            },
            401 | 403 => Error::OllamaAuth {
                name: self.name.to_string(),
                registry: display_url(&self.base),
                message,
            },
            _ => Error::Http {
                url: display_url(url),
                status,
                message,
            },
        }
    }

    /// The snapshot of a manifest: its blobs, each once, then the manifest file.
    fn snapshot(&self, bytes: Vec<u8>, url: &Url) -> Result<(Snapshot, Pulled)> {
        use sha2::Digest;
        let bad = |reason: String| Error::BadResponse {
            url: display_url(url),
            reason,
        };
        if bytes.len() > MAX_MANIFEST {
            return Err(bad(format!(
                "a {}-byte manifest is not an Ollama manifest",
                bytes.len()
            )));
        }
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("not the manifest JSON expected: {e}")))?;
        if !m.media_type.is_empty() && m.media_type != MANIFEST_TYPE {
            return Err(bad(format!(
                "a {} manifest, not the {MANIFEST_TYPE} the Ollama server pulls",
                m.media_type
            )));
        }
        if m.layers.is_empty() {
            return Err(bad("the manifest lists no layers".into()));
        }
        let mut files: Vec<RemoteFile> = Vec::new();
        let mut blobs = HashMap::new();
        // The config is optional (`mf.Config.Digest != ""` in PullModel); a digest two layers
        // share is one blob.
        for layer in m
            .layers
            .iter()
            .chain(m.config.iter().filter(|c| !c.digest.is_empty()))
        {
            let hex = layer
                .digest
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| bad(format!("layer digest {:?} is not sha256:HEX", layer.digest)))?;
            let path = blob_path(&layer.digest);
            if blobs.insert(path.clone(), layer.digest.clone()).is_none() {
                files.push(RemoteFile {
                    path,
                    size: layer.size,
                    hash: FileHash::Sha256(hex.to_ascii_lowercase()),
                });
            }
        }
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        files.push(RemoteFile {
            path: self.name.manifest_path(),
            size: bytes.len() as u64,
            hash: FileHash::Sha256(digest.clone()),
        });
        let snapshot = Snapshot {
            repo: self.name.repo(),
            revision: self.name.tag.clone(),
            commit: digest.clone(),
            files,
        };
        let pulled = Pulled {
            bytes: Arc::from(bytes),
            digest,
            blobs,
        };
        Ok((snapshot, pulled))
    }
}

/// The first `errors[].message` of a registry error body.
fn registry_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let e = v.get("errors")?.get(0)?;
    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
    Some(
        format!("{code}: {message}")
            .trim_matches([' ', ':'])
            .to_string(),
    )
}

enum Attempt {
    Retry(String),
    Final(Error),
}

impl Origin for OllamaOrigin {
    fn id(&self) -> &'static str {
        "ollama"
    }

    fn name(&self) -> &'static str {
        "Ollama registry"
    }

    fn repo(&self) -> String {
        self.name.repo()
    }

    fn revision(&self) -> Option<&str> {
        Some(&self.name.tag)
    }

    async fn resolve(&self, pinned: Option<&str>) -> Result<Snapshot> {
        if pinned.is_some() {
            return Err(Error::Usage(
                "an ollama:// model is fetched by one process; --slice/--slices do not apply"
                    .into(),
            ));
        }
        let bytes = self.get_manifest().await?;
        let url = self.url(&format!("manifests/{}", self.name.tag));
        let (snapshot, pulled) = self.snapshot(bytes, &url)?;
        if let Ok(mut p) = self.pulled.lock() {
            *p = Some(pulled);
        }
        Ok(snapshot)
    }

    async fn open(&self, snapshot: &Snapshot) -> Result<Arc<dyn Ranges>> {
        let pulled = self
            .pulled()
            .filter(|p| p.digest == snapshot.commit)
            .ok_or_else(|| Error::Task {
                task: "ollama open",
                message: "no manifest resolved for this snapshot".into(),
            })?;
        let urls = pulled
            .blobs
            .iter()
            .map(|(path, digest)| (path.clone(), self.url(&format!("blobs/{digest}"))))
            .collect();
        let manifest_url = self.url(&format!("manifests/{}", self.name.tag));
        Ok(Arc::new(OllamaRanges {
            http: self.http.clone(),
            name: self.name.to_string(),
            urls: FileUrls::new(urls, manifest_url.clone()),
            manifest_url,
        }))
    }
}

/// The blobs of one manifest: `/v2/NS/MODEL/blobs/sha256:HEX`, followed to the CDN by the
/// transfer (which carries no credentials anywhere: there are none).
struct OllamaRanges {
    http: Http,
    name: String,
    manifest_url: Url,
    urls: FileUrls,
}

impl Ranges for OllamaRanges {
    fn http(&self) -> &Http {
        &self.http
    }

    fn file_url(&self, file: &RemoteFile) -> Url {
        // Only blobs are transferred; the manifest file is written from the bytes resolved.
        self.urls.get(file)
    }

    fn refusal(&self, r: &Refused<'_>) -> Error {
        let message = registry_message(r.body).unwrap_or_else(|| format!("HTTP {}", r.status));
        match r.status {
            404 => Error::FileNotFound {
                repo: self.name.clone(),
                path: r.path.unwrap_or("?").into(),
                commit: format!("manifest {}", display_url(&self.manifest_url)),
            },
            401 | 403 => Error::OllamaAuth {
                name: self.name.clone(),
                registry: display_url(r.url),
                message,
            },
            status => Error::Http {
                url: display_url(r.url),
                status,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> OllamaName {
        OllamaName::parse(s, None).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn names_take_the_ollama_servers_defaults() {
        let n = parse("ollama://deepseek-r1:7b");
        assert_eq!(
            (
                n.host.as_str(),
                n.namespace.as_str(),
                n.model.as_str(),
                n.tag.as_str()
            ),
            ("registry.ollama.ai", "library", "deepseek-r1", "7b")
        );
        assert_eq!(
            n.manifest_path(),
            "manifests/registry.ollama.ai/library/deepseek-r1/7b"
        );
        assert_eq!(n.to_string(), "deepseek-r1:7b");
        let n = parse("deepseek-r1");
        assert_eq!(n.tag, "latest");
        let n = parse("ollama://huihui_ai/deepseek-r1-abliterated:8b-llama-distill-q4_K_M");
        assert_eq!(n.namespace, "huihui_ai");
        assert_eq!(n.tag, "8b-llama-distill-q4_K_M");
        assert_eq!(
            n.to_string(),
            "huihui_ai/deepseek-r1-abliterated:8b-llama-distill-q4_K_M"
        );
        // A port is the host's, not a tag: the tag is cut only after the last '/'.
        let n = parse("ollama://localhost:5000/team/qwen2.5");
        assert_eq!(
            (n.host.as_str(), n.tag.as_str()),
            ("localhost:5000", "latest")
        );
        assert_eq!(
            n.manifest_path(),
            "manifests/localhost:5000/team/qwen2.5/latest"
        );
        assert_eq!(n.to_string(), "localhost:5000/team/qwen2.5:latest");
        assert_eq!(n.registry(), "https://localhost:5000");
    }

    #[test]
    fn bad_names_are_refused_with_the_rule_broken() {
        for (bad, says) in [
            ("ollama://", "model"),
            ("ollama://deepseek-r1:", "tag"),
            ("ollama:///deepseek-r1", "namespace"),
            ("ollama://a/b/c/d", "host"),
            ("ollama://deep seek", "model"),
            ("ollama://../x", "namespace"),
            ("ollama://ns.dot/model", "namespace"),
            ("ollama://-x", "model"),
            ("ollama://model:t/a", "namespace"),
            ("ollama://model@sha256:abc", "digest"),
            ("ollama://http://host/ns/m", "--endpoint"),
        ] {
            let err = OllamaName::parse(bad, None).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains("hint:"), "{bad}: {err}");
        }
    }

    #[test]
    fn blobs_are_named_as_the_server_names_them() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(blob_path(&d), format!("blobs/sha256-{}", "ab".repeat(32)));
    }
}
