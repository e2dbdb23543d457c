//! The S3 client both S3 ends of `ferry fetch` share: `s3://BUCKET/PREFIX` URLs ([`S3Url`]),
//! connecting the AWS way ([`connect`]: the default credential chain, `AWS_REGION`, and
//! `--s3-endpoint` / `AWS_ENDPOINT_URL` for S3-compatible services such as Tencent COS, MinIO or
//! SeaweedFS, path-style), and SDK errors turned into errors that say what to do
//! ([`S3::error`]). The origin is [`crate::origin::s3`], the target [`crate::target::s3`].

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;

use crate::error::{Error, Result};

/// The SDK, for tests and tools that talk to the same bucket with the same configuration.
pub use aws_sdk_s3;

/// Where ferry keeps its objects inside a prefix: the manifest and upload checkpoints.
pub const STATE_DIR: &str = ferry_sharder::layout::STATE_DIR;
/// The completion manifest object, relative to the prefix; the same JSON (and the same
/// relative path, [`ferry_sharder::layout::manifest_path`]) as a directory's manifest.
pub const MANIFEST: &str = ".ferry/manifest.json";

/// `s3://BUCKET/PREFIX`, with the prefix normalized to no leading and no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    pub fn is_s3(s: &str) -> bool {
        s.starts_with("s3://")
    }

    pub fn parse(s: &str) -> Result<S3Url> {
        let rest = s.strip_prefix("s3://").ok_or_else(|| {
            Error::Usage(format!(
                "{s:?} is not an S3 URL; expected s3://BUCKET/PREFIX"
            ))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        if !bucket_ok {
            return Err(Error::Usage(format!(
                "{s:?}: {bucket:?} is not a valid bucket name (3-63 lowercase letters, digits, '-', '.')"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == ".." || p == ".") || prefix.contains("//") {
            return Err(Error::Usage(format!(
                "{s:?}: the prefix must not contain '.', '..' or empty path segments"
            )));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The object key of a repo-relative path under this prefix.
    pub fn key(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    /// The listing prefix: the "folder", with its trailing slash.
    pub fn list_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The S3 endpoint: the flag, else the AWS SDKs' own variables (service-specific first).
pub fn endpoint_from_env(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_string)
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
}

/// A connected client and what errors need to name.
#[derive(Clone)]
pub struct S3 {
    pub client: Client,
    /// The endpoint for messages: the custom one, or `AWS S3 (REGION)`.
    pub endpoint: String,
}

/// Builds an S3 client the way the AWS CLI would: default credential chain (env, profile, web
/// identity, container and instance roles), `AWS_REGION` / profile region, and a custom endpoint
/// with path-style addressing (what S3-compatible services expect; us-east-1 when no region is
/// set, since such services ignore it but SigV4 needs one). Credentials are resolved once here so
/// that "no credentials" is a clear error before any transfer starts.
pub async fn connect(endpoint_flag: Option<&str>, max_connections: usize) -> Result<S3> {
    let http = https_client(max_connections);
    let custom = endpoint_from_env(endpoint_flag);
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if custom.is_some() {
        // An S3-compatible service has no use for the EC2 metadata region lookup, which only
        // costs time (and a warning) off AWS: environment, then profile, then us-east-1.
        use aws_config::meta::region::RegionProviderChain;
        loader = loader.region(
            RegionProviderChain::first_try(
                aws_config::environment::EnvironmentVariableRegionProvider::new(),
            )
            .or_else(aws_config::profile::ProfileFileRegionProvider::new())
            .or_else(Region::new("us-east-1")),
        );
    }
    let sdk = loader.load().await;
    if let Some(e) = &custom {
        url::Url::parse(e).map_err(|err| {
            Error::Usage(format!(
                "bad S3 endpoint {e:?}: {err}; expected e.g. https://cos.ap-shanghai.myqcloud.com"
            ))
        })?;
    }
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| Error::S3NoCredentials {
            message: "no credential provider is configured".into(),
        })?;
    {
        use aws_sdk_s3::config::ProvideCredentials;
        provider
            .provide_credentials()
            .await
            .map_err(|e| Error::S3NoCredentials { message: chain(&e) })?;
    }
    let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
        // The SDK retries throttling and 5xx itself; a long transfer deserves more patience
        // than the default 3 attempts.
        .retry_config(RetryConfig::standard().with_max_attempts(8))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(15))
                .build(),
        );
    let endpoint = match &custom {
        Some(e) => {
            conf = conf.endpoint_url(e).force_path_style(true);
            if sdk.region().is_none() {
                conf = conf.region(Region::new("us-east-1"));
            }
            e.clone()
        }
        None => {
            if sdk.region().is_none() {
                conf = conf.region(Region::new("us-east-1"));
            }
            format!(
                "AWS S3 ({})",
                sdk.region().map(|r| r.as_ref()).unwrap_or("us-east-1")
            )
        }
    };
    Ok(S3 {
        client: Client::from_conf(conf.build()),
        endpoint,
    })
}

/// rustls on ring, the TLS stack reqwest already brings, and a pool as large as our concurrency
/// so parts do not queue for connections.
fn https_client(max_connections: usize) -> aws_sdk_s3::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .pool_max_idle_per_host(max_connections.max(8))
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// A client for a custom endpoint with fixed credentials, bypassing the environment: for tests
/// and tools that prepare or inspect a bucket next to a ferry run.
pub fn connect_static(endpoint: &str, access_key: &str, secret_key: &str) -> S3 {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(https_client(16))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            access_key, secret_key, None, None, "static",
        ))
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    S3 {
        client: Client::from_conf(conf),
        endpoint: endpoint.to_string(),
    }
}

impl S3 {
    /// Turns an SDK failure into the error that says what happened and what to do.
    pub fn error<E>(&self, op: &'static str, bucket: &str, key: &str, err: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().unwrap_or("").to_string();
        // The server's <Message> only: the raw body of a signature error can echo the access key
        // id and the string to sign.
        let message = err
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| match status {
                Some(s) => format!("HTTP {s}"),
                None => chain(&err),
            });
        if matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
        ) {
            let message = chain(&err);
            if message.contains("credentials") {
                return Error::S3NoCredentials { message };
            }
            return Error::S3Unreachable {
                endpoint: self.endpoint.clone(),
                message,
            };
        }
        match (code.as_str(), status) {
            (
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "ExpiredToken"
                | "TokenRefreshRequired"
                | "AuthorizationHeaderMalformed"
                | "InvalidSecurity",
                _,
            ) => Error::S3BadCredentials {
                endpoint: self.endpoint.clone(),
                bucket: bucket.to_string(),
                code,
                message,
            },
            ("AccessDenied" | "AllAccessDisabled", _) | ("", Some(403)) => Error::S3AccessDenied {
                op,
                bucket: bucket.to_string(),
                key: key.to_string(),
                message,
            },
            ("NoSuchBucket", _) => Error::S3NoSuchBucket {
                endpoint: self.endpoint.clone(),
                bucket: bucket.to_string(),
            },
            ("NoSuchKey" | "NotFound", _) | ("", Some(404)) => Error::S3NoSuchKey {
                bucket: bucket.to_string(),
                key: key.to_string(),
            },
            (
                "BadDigest"
                | "InvalidDigest"
                | "XAmzContentSHA256Mismatch"
                | "XAmzContentChecksumMismatch"
                | "InvalidChecksum",
                _,
            ) => Error::S3ChecksumRejected {
                bucket: bucket.to_string(),
                key: key.to_string(),
                part: String::new(),
                code,
                message,
            },
            _ => Error::S3 {
                op,
                bucket: bucket.to_string(),
                key: key.to_string(),
                message: if code.is_empty() {
                    message
                } else {
                    format!("{code}: {message}")
                },
            },
        }
    }

    /// Checks that the bucket exists and the credentials work, so a typo fails in a second with
    /// the right message instead of after the first transfer.
    pub async fn check_bucket(&self, bucket: &str) -> Result<()> {
        // ListObjectsV2 rather than HeadBucket: a HEAD answer has no body, so a wrong secret and
        // a missing permission would look the same.
        self.client
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("s3:ListBucket", bucket, "", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = S3Url::parse("s3://models/deepseek-ai/DeepSeek-R1/").unwrap();
        assert_eq!(u.bucket, "models");
        assert_eq!(u.prefix, "deepseek-ai/DeepSeek-R1");
        assert_eq!(u.key("config.json"), "deepseek-ai/DeepSeek-R1/config.json");
        assert_eq!(u.list_prefix(), "deepseek-ai/DeepSeek-R1/");
        let root = S3Url::parse("s3://models").unwrap();
        assert_eq!(root.key("a"), "a");
        assert_eq!(root.list_prefix(), "");
        assert!(S3Url::parse("s3://Bad_Bucket/x").is_err());
        assert!(S3Url::parse("s3://models/a/../b").is_err());
        assert!(S3Url::parse("/local/dir").is_err());
    }
}

/// An error and its causes on one line, each said once (SDK errors nest the same text).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !msg.contains(&m) {
            msg.push_str(": ");
            msg.push_str(&m);
        }
        src = s.source();
    }
    msg
}

/// Standard base64 with padding, the encoding of S3's `x-amz-checksum-sha256`.
pub fn b64_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; None on anything else.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod b64_tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64_encode(raw), enc);
            assert_eq!(b64_decode(enc).unwrap(), raw);
        }
        assert!(b64_decode("a*b").is_none());
    }
}
