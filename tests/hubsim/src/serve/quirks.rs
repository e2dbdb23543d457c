//! "Like the real hub" behaviours: what the real Hugging Face and ModelScope services do that the
//! official clients special-case (hub-protocols.md §2.8). Each is a knob, all off by default (so
//! the plain server stays the simple, strict one); [`Quirks::realistic`] turns on every behaviour
//! the real services show by default.
//!
//! Quirks live in the fault set (`"quirks": {...}` of `POST /_hubsim/faults`, `--quirks JSON`,
//! `--realistic`), so a test can switch them at run time; counted knobs count down like rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every quirk; absent fields are off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quirks {
    /// ModelScope: no commit id anywhere but the listing's per-file fields: `/revisions` answers
    /// names and times only, downloads carry no `X-Repo-Commit`, repo info no `Revision`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ms_no_commit_ids: bool,
    /// ModelScope listing: each file's `Revision` (and `CommitId`) is the commit that last changed
    /// that file (a per-file 40-hex id), not one snapshot commit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ms_per_file_revision: bool,
    /// ModelScope: a 40-hex `Revision=` (listing or download) answers 404; only branch and tag
    /// names are accepted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ms_revision_names_only: bool,
    /// ModelScope: non-LFS files answer `200` with the whole body whatever the `Range`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ms_small_files_ignore_range: bool,
    /// ModelScope `repo/files`: after `skip` successful listings, the next `count` answer 403.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms_listing_403: Option<Intermittent>,
    /// ModelScope `repo/files` stops after this many entries, directories included (the real
    /// service: 3000); a `Root=DIR` listing is capped the same way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms_listing_cap: Option<usize>,
    /// ModelScope listing shapes the client also accepts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ms_listing_variants: Vec<MsVariant>,
    /// Hugging Face: `RateLimit: "resolvers";r=2999;t=172` and `RateLimit-Policy` on every
    /// answer (informational: not a limit unless a 429 says `r=0`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hf_ratelimit_headers: bool,
    /// Hugging Face: API calls (repo info / revision, tree) answer `429` with
    /// `RateLimit: "api";r=0;t=SECS` and `Retry-After: SECS`, `count` times (absent: forever).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hf_api_429: Option<ApiRateLimit>,
    /// Hugging Face: resolves of non-LFS files answer `307` with a relative
    /// `Location: /api/resolve-cache/models/{repo}/{commit}/{path}` (served too).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hf_resolve_cache_redirect: bool,
    /// Hugging Face: resolves of LFS files answer `302` to the signed `/_cdn` URL on the other
    /// origin (the `redirect` rule, for HF LFS files only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hf_lfs_cdn_redirect: bool,
    /// Hugging Face: a repo id in the wrong case answers a relative `307` to the canonical one
    /// (API and resolve alike).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hf_case_redirect: bool,
    /// Hugging Face: renamed repos, old id -> current id; the old id answers a relative `307`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hf_renamed: BTreeMap<String, String>,
    /// gzip JSON answers and whole non-LFS file bodies when `Accept-Encoding` allows gzip.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gzip: bool,
    /// Every request not addressed to this origin answers `307` to the same path and query on
    /// it: `"other"` (the other loopback name of this port: `localhost` <-> `127.0.0.1`) or a
    /// `host:port`. A mirror that hands clients over to another host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_redirect: Option<String>,
}

/// A counted window: the first `skip` matching calls pass, the next `count` are hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Intermittent {
    pub skip: u64,
    pub count: u64,
}

/// `hf_api_429`: how many calls (absent: all), the `t=` / `Retry-After` seconds, and which
/// API calls (default both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default = "one")]
    pub secs: u64,
    #[serde(default)]
    pub calls: ApiCalls,
}

/// Which HF API calls `hf_api_429` hits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiCalls {
    /// Repo info / `revision/{rev}` and `tree`.
    #[default]
    All,
    /// Only `tree` listings.
    Tree,
    /// Only repo info / `revision/{rev}`.
    Revision,
}

fn one() -> u64 {
    1
}

/// A ModelScope listing variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsVariant {
    /// `sha256`, `size`, `path`, `type` in lower case.
    LowercaseKeys,
    /// No `Path`: `Name` holds the repo-relative path.
    NameOnly,
    /// `Data` is the bare list of entries, not `{"Files": [...]}`.
    BareList,
    /// `Sha256` is empty; the download's `X-Linked-ETag` carries the hash.
    EmptySha256,
}

impl Quirks {
    /// Every behaviour the real services show by default, with test-sized numbers: one 403 after
    /// the first good listing, the 3000-entry cap, one API 429 of 1 s on a tree listing
    /// (huggingface_hub 2.4 retries a 429 on `tree` but not on repo info, where the real hub
    /// sends them too: set `"calls": "all"` to show that).
    pub fn realistic() -> Self {
        Quirks {
            ms_no_commit_ids: true,
            ms_per_file_revision: true,
            ms_revision_names_only: true,
            ms_small_files_ignore_range: true,
            ms_listing_403: Some(Intermittent { skip: 1, count: 1 }),
            ms_listing_cap: Some(3000),
            ms_listing_variants: Vec::new(),
            hf_ratelimit_headers: true,
            hf_api_429: Some(ApiRateLimit {
                count: Some(1),
                secs: 1,
                calls: ApiCalls::Tree,
            }),
            hf_resolve_cache_redirect: true,
            hf_lfs_cdn_redirect: true,
            hf_case_redirect: true,
            hf_renamed: BTreeMap::new(),
            gzip: true,
            origin_redirect: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.ms_listing_cap == Some(0) {
            return Err("quirks.ms_listing_cap must be at least 1".into());
        }
        for (from, to) in &self.hf_renamed {
            for id in [from, to] {
                if id.split('/').count() != 2 {
                    return Err(format!("quirks.hf_renamed: {id:?} is not ORG/NAME"));
                }
            }
        }
        Ok(())
    }

    pub fn has(&self, v: MsVariant) -> bool {
        self.ms_listing_variants.contains(&v)
    }
}

/// Whether an `Accept-Encoding` value allows gzip (a `q=0` refuses it).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|v| {
        v.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    == Some(0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip(Some("gzip, deflate")));
        assert!(accepts_gzip(Some("br;q=1, GZIP;q=0.5")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn realistic_round_trips_as_json() {
        let q = Quirks::realistic();
        let text = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<Quirks>(&text).unwrap(), q);
        assert!(q.validate().is_ok());
    }
}
