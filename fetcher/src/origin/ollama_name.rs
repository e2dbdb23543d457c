//! Ollama model names as the Ollama server reads them (`types/model/name.go`, `ParseNameBare`,
//! `isValidPart`: the tag is cut at the last `:` after the last `/`, then model, namespace and
//! host at `/` from the right), and where a name and a blob live in the models directory
//! (`manifest/paths.go`). The registry origin is [`super::ollama`].

use crate::error::{Error, Result};

/// The registry a name without a host lives on.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// Overrides the URL requests go to (a mirror, or a test registry); the name, and so the path
/// the manifest is written to, keeps its host.
pub const REGISTRY_ENV: &str = "FERRY_OLLAMA_REGISTRY";

/// `[HOST/][NAMESPACE/]MODEL[:TAG]`, every part present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaName {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
    /// Where requests go instead of `https://HOST` (`--endpoint`, else [`REGISTRY_ENV`]).
    pub endpoint: Option<String>,
}

impl OllamaName {
    /// Parses `spec`, with or without the `ollama://` prefix, as the Ollama server does.
    pub fn parse(spec: &str, endpoint: Option<String>) -> Result<OllamaName> {
        let s = spec.strip_prefix("ollama://").unwrap_or(spec);
        let bad = |reason: String| Error::BadOllamaName {
            name: spec.to_string(),
            reason,
        };
        if s.contains('@') {
            return Err(bad(
                "a digest (@sha256:…) cannot be fetched; name a tag".into()
            ));
        }
        if s.contains("://") {
            return Err(bad(
                "a scheme inside the name; give the registry URL with --endpoint".into(),
            ));
        }
        let (rest, tag) = match (s.rfind(':'), s.rfind('/')) {
            (Some(c), slash) if slash.is_none_or(|sl| c > sl) => (&s[..c], &s[c + 1..]),
            _ => (s, "latest"),
        };
        let mut parts: Vec<&str> = rest.rsplitn(3, '/').collect();
        parts.reverse();
        let (host, namespace, model) = match parts.as_slice() {
            [m] => (DEFAULT_HOST, "library", *m),
            [ns, m] => (DEFAULT_HOST, *ns, *m),
            [h, ns, m] => (*h, *ns, *m),
            _ => unreachable!("rsplitn(3) yields 1 to 3 parts"),
        };
        for (kind, part) in [
            (Part::Host, host),
            (Part::Namespace, namespace),
            (Part::Model, model),
            (Part::Tag, tag),
        ] {
            kind.check(part).map_err(bad)?;
        }
        Ok(OllamaName {
            host: host.into(),
            namespace: namespace.into(),
            model: model.into(),
            tag: tag.into(),
            endpoint,
        })
    }

    /// `HOST/NAMESPACE/MODEL`: the repo the ferry manifest records.
    pub fn repo(&self) -> String {
        format!("{}/{}/{}", self.host, self.namespace, self.model)
    }

    /// The manifest's path in the models directory: `manifests/HOST/NAMESPACE/MODEL/TAG`.
    pub fn manifest_path(&self) -> String {
        format!("manifests/{}/{}", self.repo(), self.tag)
    }

    /// The base URL requests go to: the override, else `https://HOST`.
    pub fn registry(&self) -> String {
        self.endpoint
            .clone()
            .or_else(|| std::env::var(REGISTRY_ENV).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| format!("https://{}", self.host))
    }
}

/// How the Ollama server shows a name: `deepseek-r1:7b`, `user/model:tag`, `host/ns/model:tag`.
impl std::fmt::Display for OllamaName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host != DEFAULT_HOST {
            write!(f, "{}/{}/", self.host, self.namespace)?;
        } else if self.namespace != "library" {
            write!(f, "{}/", self.namespace)?;
        }
        write!(f, "{}:{}", self.model, self.tag)
    }
}

/// The parts of a name and their rules (`isValidPart`, `isValidLen` in `types/model/name.go`).
#[derive(Clone, Copy)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
}

impl Part {
    fn check(self, s: &str) -> std::result::Result<(), String> {
        let (what, max) = match self {
            Part::Host => ("host", 350),
            Part::Namespace => ("namespace", 80),
            Part::Model => ("model", 80),
            Part::Tag => ("tag", 80),
        };
        if s.is_empty() || s.len() > max {
            return Err(format!("the {what} must be 1 to {max} characters"));
        }
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let ok = s.chars().enumerate().all(|(i, c)| match c {
            _ if word(c) => true,
            _ if i == 0 => false,
            '-' => true,
            '.' => !matches!(self, Part::Namespace),
            ':' => matches!(self, Part::Host),
            _ => false,
        });
        if ok {
            return Ok(());
        }
        let allowed = match self {
            Part::Host => "letters, digits, _ - . and :port",
            Part::Namespace => "letters, digits, _ and -",
            Part::Model | Part::Tag => "letters, digits, _ - and .",
        };
        Err(format!(
            "the {what} {s:?} may hold only {allowed}, starting with a letter, digit or _"
        ))
    }
}

/// Where a blob lives in the models directory: `blobs/sha256-HEX` (`manifest.BlobsPath`).
pub fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "-", 1))
}
