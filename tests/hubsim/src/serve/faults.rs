//! Fault injection: what can go wrong, on which requests, how often.
//!
//! The whole set is one [`FaultConfig`] (CLI flags at start, `POST /_hubsim/faults` at run time,
//! which replaces it). Rules carry their own scope: `count` (fire on the next K matching requests,
//! then disarm, so a client's retry can succeed), `probability`, `path_contains`, and `api`
//! (also hit API listing calls, not only file requests).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::quirks::Quirks;

/// The full, replaceable fault set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Cap on all file bodies together, bytes/s (absent or 0: unlimited).
    pub bandwidth_total_bps: Option<u64>,
    /// Cap on each file body, bytes/s (absent or 0: unlimited).
    pub bandwidth_per_body_bps: Option<u64>,
    /// Added before the response headers of every request (file and API).
    pub latency_ms: u64,
    /// What happens when more than `max_bodies` file bodies stream at once.
    pub body_limit: Option<BodyLimit>,
    /// Lifetime of signed `/_cdn` URLs handed out by redirects (default 3600).
    pub cdn_expiry_secs: Option<u64>,
    /// Scoped faults, checked in order.
    pub rules: Vec<FaultRule>,
    /// Paths added to every file listing (HF tree and siblings, ModelScope files) as 1-byte files
    /// that are not served: a hostile hub naming `../x` or `/etc/x`, for clients' path checks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_listing_paths: Vec<String>,
    /// "Like the real hub" behaviours (see quirks.rs); all off by default.
    #[serde(skip_serializing_if = "is_default")]
    pub quirks: Quirks,
}

fn is_default(q: &Quirks) -> bool {
    *q == Quirks::default()
}

/// Connection-over-limit behaviour, for testing adaptive clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyLimit {
    pub max_bodies: usize,
    /// `throttle`: while over the limit every body is held to `throttle_bps`;
    /// `reject`: a new body over the limit gets 429 + Retry-After.
    pub mode: OverLimit,
    /// bytes/s per body in `throttle` mode (default 65536).
    #[serde(default)]
    pub throttle_bps: Option<u64>,
    /// Retry-After seconds in `reject` mode (default 1).
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    Throttle,
    Reject,
}

/// One scoped fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Fire on the next `count` matching requests, then disarm (absent: forever). The current
    /// remaining count is what `GET /_hubsim/faults` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Chance (0..=1) that a matching request is hit (absent: always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Only requests whose percent-decoded path+query contains this string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// Also hit API calls (repo info, tree, file listings), not only file requests.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api: bool,
    /// Active only during the first `for_secs` seconds after this fault set was installed (at
    /// start or by `POST /_hubsim/faults`): a storm that ends by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_secs: Option<u64>,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Sleep `ms` before the response headers.
    Latency { ms: u64 },
    /// Answer `status` (e.g. 500, 503) instead.
    Status { status: u16 },
    /// Answer 429 with `Retry-After` and `RateLimit: "resolvers";r=0;t=N`.
    RateLimit {
        #[serde(default = "one")]
        retry_after_secs: u64,
    },
    /// Send nothing for `secs` (default 3600): before the headers, or after `after_bytes` of body.
    Stall {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_bytes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secs: Option<u64>,
    },
    /// Abort the connection after `after_bytes` body bytes (the body stream errors).
    Reset { after_bytes: u64 },
    /// End the body after `after_bytes` although Content-Length promised more.
    Truncate { after_bytes: u64 },
    /// Flip the byte at file offset `offset` (fires only on bodies that contain it).
    Corrupt { offset: u64 },
    /// Answer resolves of LFS files (HF) and file downloads (ModelScope) with 302 to a signed
    /// `/_cdn/` URL on the other origin (`localhost` <-> `127.0.0.1`).
    Redirect,
    /// Ignore the `Range` header: `200` with the whole body.
    IgnoreRange,
    /// Answer a ranged request with a `206` that is `missing_bytes` (default 1) shorter than
    /// asked (Content-Range and Content-Length agree with what is sent).
    ShortPartial {
        #[serde(default = "one")]
        missing_bytes: u64,
    },
    /// A `206` whose Content-Range total is the file size plus `delta` (the listing disagrees).
    WrongTotal { delta: i64 },
}

fn one() -> u64 {
    1
}

impl FaultKind {
    /// Name used in `faults_fired`.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Latency { .. } => "latency",
            FaultKind::Status { .. } => "status",
            FaultKind::RateLimit { .. } => "rate_limit",
            FaultKind::Stall { .. } => "stall",
            FaultKind::Reset { .. } => "reset",
            FaultKind::Truncate { .. } => "truncate",
            FaultKind::Corrupt { .. } => "corrupt",
            FaultKind::Redirect => "redirect",
            FaultKind::IgnoreRange => "ignore_range",
            FaultKind::ShortPartial { .. } => "short_partial",
            FaultKind::WrongTotal { .. } => "wrong_total",
        }
    }
}

impl FaultConfig {
    /// Checks values a handler could not act on.
    pub fn validate(&self) -> Result<(), String> {
        for r in &self.rules {
            if let Some(p) = r.probability {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("probability {p} is not within 0..=1"));
                }
            }
            if let FaultKind::Status { status } = r.kind {
                if !(400..=599).contains(&status) {
                    return Err(format!(
                        "status {status} is not an error status (400..=599)"
                    ));
                }
            }
        }
        if let Some(l) = &self.body_limit {
            if l.max_bodies == 0 {
                return Err("body_limit.max_bodies must be at least 1".into());
            }
        }
        self.quirks.validate()
    }

    pub fn cdn_expiry(&self) -> Duration {
        Duration::from_secs(self.cdn_expiry_secs.unwrap_or(3600))
    }
}

/// The request a fault decision is about.
pub struct Target<'a> {
    /// Percent-decoded path and query.
    pub text: &'a str,
    /// A file request (resolve, ModelScope file GET, /_cdn), as opposed to an API call.
    pub file: bool,
}

/// What to do before the headers.
#[derive(Debug, Default)]
pub struct PreHeader {
    pub latency: Duration,
    pub action: Option<PreAction>,
}

#[derive(Debug)]
pub enum PreAction {
    Status(u16),
    RateLimit(u64),
    Stall(Duration),
}

/// Faults to apply while streaming one body.
#[derive(Debug, Default, Clone)]
pub struct BodyFaults {
    pub reset_after: Option<u64>,
    pub truncate_after: Option<u64>,
    pub stall_after: Option<(u64, Duration)>,
    /// File offset of the byte to flip.
    pub corrupt_at: Option<u64>,
}

#[cfg(test)]
impl BodyFaults {
    pub fn is_empty(&self) -> bool {
        self.reset_after.is_none()
            && self.truncate_after.is_none()
            && self.stall_after.is_none()
            && self.corrupt_at.is_none()
    }
}

const DEFAULT_STALL: Duration = Duration::from_secs(3600);

/// How a ranged file answer is bent (issue-15 faults), decided once per request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Shape {
    pub ignore_range: bool,
    pub short_by: Option<u64>,
    pub total_delta: Option<i64>,
}

/// The live fault set; every decision takes the lock briefly and decrements counts atomically.
pub struct Faults {
    config: Mutex<(FaultConfig, Instant)>,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            config: Mutex::new((config, Instant::now())),
        }
    }

    pub fn get(&self) -> FaultConfig {
        self.lock().0.clone()
    }

    pub fn set(&self, config: FaultConfig) {
        *self.lock() = (config, Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (FaultConfig, Instant)> {
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<R>(&self, f: impl FnOnce(&FaultConfig) -> R) -> R {
        f(&self.lock().0)
    }

    /// A copy of the quirks (their counters may be stale by the time it is read).
    pub fn quirks(&self) -> Quirks {
        self.lock().0.quirks.clone()
    }

    /// Counts one ModelScope listing against `ms_listing_403`; true if this one answers 403.
    pub fn ms_listing_403(&self) -> bool {
        let mut g = self.lock();
        let Some(w) = g.0.quirks.ms_listing_403.as_mut() else {
            return false;
        };
        if w.skip > 0 {
            w.skip -= 1;
            return false;
        }
        if w.count > 0 {
            w.count -= 1;
            return true;
        }
        false
    }

    /// Counts one HF API call (`tree` or repo info) against `hf_api_429`; `Some(secs)` if this
    /// one answers 429.
    pub fn hf_api_429(&self, tree: bool) -> Option<u64> {
        use super::quirks::ApiCalls;
        let mut g = self.lock();
        let r = g.0.quirks.hf_api_429.as_mut()?;
        match (r.calls, tree) {
            (ApiCalls::Tree, false) | (ApiCalls::Revision, true) => return None,
            _ => {}
        }
        match r.count.as_mut() {
            Some(0) => None,
            Some(c) => {
                *c -= 1;
                Some(r.secs)
            }
            None => Some(r.secs),
        }
    }

    /// Fires every rule in scope (count left, path filter, probability roll) whose `pick`
    /// accepts it at this stage; `pick` is only called for rules that will fire, so it may
    /// record what it took.
    fn fire<T>(
        &self,
        target: &Target,
        mut pick: impl FnMut(&FaultKind) -> Option<T>,
    ) -> Vec<(&'static str, T)> {
        let mut guard = self.lock();
        let age = guard.1.elapsed();
        let cfg = &mut guard.0;
        let mut out = Vec::new();
        let mut rng = rand::rng();
        for rule in cfg.rules.iter_mut() {
            if !(target.file || rule.api) || rule.count == Some(0) {
                continue;
            }
            if rule.for_secs.is_some_and(|s| age >= Duration::from_secs(s)) {
                continue;
            }
            if let Some(p) = &rule.path_contains {
                if !target.text.contains(p.as_str()) {
                    continue;
                }
            }
            if let Some(p) = rule.probability {
                if rng.random::<f64>() >= p {
                    continue;
                }
            }
            let Some(value) = pick(&rule.kind) else {
                continue;
            };
            if let Some(c) = rule.count.as_mut() {
                *c -= 1;
            }
            out.push((rule.kind.name(), value));
        }
        out
    }

    /// Global latency plus latency rules, and the first terminal pre-header fault.
    pub fn pre_header(&self, target: &Target) -> (PreHeader, Vec<&'static str>) {
        let mut pre = PreHeader {
            latency: Duration::from_millis(self.with(|c| c.latency_ms)),
            action: None,
        };
        let mut action = None;
        let fired = self.fire(target, |k| match *k {
            FaultKind::Latency { ms } => Some(Duration::from_millis(ms)),
            FaultKind::Status { status } if action.is_none() => {
                action = Some(PreAction::Status(status));
                Some(Duration::ZERO)
            }
            FaultKind::RateLimit { retry_after_secs } if action.is_none() => {
                action = Some(PreAction::RateLimit(retry_after_secs));
                Some(Duration::ZERO)
            }
            FaultKind::Stall {
                after_bytes: None,
                secs,
            } if action.is_none() => {
                action = Some(PreAction::Stall(
                    secs.map_or(DEFAULT_STALL, Duration::from_secs),
                ));
                Some(Duration::ZERO)
            }
            _ => None,
        });
        pre.action = action;
        let mut names = Vec::new();
        for (name, latency) in fired {
            names.push(name);
            pre.latency += latency;
        }
        (pre, names)
    }

    /// Whether this LFS resolve / file download should be redirected to the CDN origin.
    pub fn redirect(&self, target: &Target) -> bool {
        !self
            .fire(target, |k| matches!(k, FaultKind::Redirect).then_some(()))
            .is_empty()
    }

    /// Body faults for a body covering file bytes `start..end` (exclusive end).
    pub fn body(&self, target: &Target, start: u64, end: u64) -> (BodyFaults, Vec<&'static str>) {
        let mut faults = BodyFaults::default();
        let len = end - start;
        let fired = self.fire(target, |k| match *k {
            FaultKind::Reset { after_bytes }
                if faults.reset_after.is_none() && after_bytes < len =>
            {
                faults.reset_after = Some(after_bytes);
                Some(())
            }
            FaultKind::Truncate { after_bytes }
                if faults.truncate_after.is_none() && after_bytes < len =>
            {
                faults.truncate_after = Some(after_bytes);
                Some(())
            }
            FaultKind::Stall {
                after_bytes: Some(n),
                secs,
            } if faults.stall_after.is_none() && n < len => {
                faults.stall_after = Some((n, secs.map_or(DEFAULT_STALL, Duration::from_secs)));
                Some(())
            }
            FaultKind::Corrupt { offset }
                if faults.corrupt_at.is_none() && (start..end).contains(&offset) =>
            {
                faults.corrupt_at = Some(offset);
                Some(())
            }
            _ => None,
        });
        (faults, fired.into_iter().map(|(n, ())| n).collect())
    }

    /// How to bend a ranged answer of a file of `total` bytes; `ranged`: the client asked for a
    /// range that was parsed (`len` bytes).
    pub fn shape(&self, target: &Target, ranged: bool, len: u64) -> (Shape, Vec<&'static str>) {
        let mut shape = Shape::default();
        if !ranged {
            return (shape, Vec::new());
        }
        let fired = self.fire(target, |k| match *k {
            // An ignored range leaves nothing for the other two to bend: they wait.
            FaultKind::IgnoreRange
                if !shape.ignore_range
                    && shape.short_by.is_none()
                    && shape.total_delta.is_none() =>
            {
                shape.ignore_range = true;
                Some(())
            }
            FaultKind::ShortPartial { missing_bytes }
                if !shape.ignore_range
                    && shape.short_by.is_none()
                    && missing_bytes > 0
                    && missing_bytes < len =>
            {
                shape.short_by = Some(missing_bytes);
                Some(())
            }
            FaultKind::WrongTotal { delta }
                if !shape.ignore_range && shape.total_delta.is_none() && delta != 0 =>
            {
                shape.total_delta = Some(delta);
                Some(())
            }
            _ => None,
        });
        (shape, fired.into_iter().map(|(n, ())| n).collect())
    }

    /// (total cap, per-body cap) in bytes/s; 0 means unlimited.
    pub fn bandwidth(&self) -> (u64, u64) {
        self.with(|c| {
            (
                c.bandwidth_total_bps.unwrap_or(0),
                c.bandwidth_per_body_bps.unwrap_or(0),
            )
        })
    }

    pub fn extra_listing_paths(&self) -> Vec<String> {
        self.with(|c| c.extra_listing_paths.clone())
    }

    pub fn body_limit(&self) -> Option<BodyLimit> {
        self.with(|c| c.body_limit.clone())
    }

    pub fn cdn_expiry(&self) -> Duration {
        self.with(FaultConfig::cdn_expiry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Target<'_> {
        Target { text, file: true }
    }

    #[test]
    fn count_disarms_and_scope_filters() {
        let cfg: FaultConfig = serde_json::from_str(
            r#"{"rules":[{"kind":"status","status":503,"count":2,"path_contains":"shard"}]}"#,
        )
        .unwrap();
        let f = Faults::new(cfg);
        let api = Target {
            text: "/api/models/a/b/shard",
            file: false,
        };
        assert!(
            f.pre_header(&api).0.action.is_none(),
            "API calls are not hit without api:true"
        );
        assert!(f
            .pre_header(&file("/a/b/resolve/main/x"))
            .0
            .action
            .is_none());
        for _ in 0..2 {
            assert!(matches!(
                f.pre_header(&file("/a/b/resolve/main/shard1")).0.action,
                Some(PreAction::Status(503))
            ));
        }
        assert!(f
            .pre_header(&file("/a/b/resolve/main/shard1"))
            .0
            .action
            .is_none());
        assert_eq!(f.get().rules[0].count, Some(0));
    }

    #[test]
    fn body_faults_fire_only_where_they_fit() {
        let cfg: FaultConfig = serde_json::from_str(
            r#"{"rules":[{"kind":"corrupt","offset":100,"count":1},{"kind":"reset","after_bytes":10}]}"#,
        )
        .unwrap();
        let f = Faults::new(cfg);
        let (b, fired) = f.body(&file("x"), 0, 50);
        assert_eq!(b.corrupt_at, None);
        assert_eq!(b.reset_after, Some(10));
        assert_eq!(fired, vec!["reset"]);
        let (b, _) = f.body(&file("x"), 90, 200);
        assert_eq!(b.corrupt_at, Some(100));
        assert_eq!(f.get().rules[0].count, Some(0));
    }

    #[test]
    fn probability_zero_never_fires() {
        let cfg: FaultConfig = serde_json::from_str(
            r#"{"rules":[{"kind":"reset","after_bytes":1,"probability":0.0}]}"#,
        )
        .unwrap();
        let f = Faults::new(cfg);
        for _ in 0..100 {
            assert!(f.body(&file("x"), 0, 10).0.is_empty());
        }
    }
}
