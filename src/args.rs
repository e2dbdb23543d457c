//! Argument groups more than one command takes, declared once: the hub a repo lives on
//! (`--source`, `--endpoint`), a repo spec `ORG/NAME[@REV]`, and a node's rank.

use ferry_fetcher::origin::{HubKind, HubRepo};

/// Which hub, for commands that read a repo listing.
#[derive(clap::Args, Debug, Clone)]
pub struct Hub {
    /// The hub: hf or modelscope.
    #[arg(long, alias = "hub", default_value = "hf", value_parser = parse_hub)]
    pub source: HubKind,
    /// The hub URL (default: $HF_ENDPOINT / $MODELSCOPE_ENDPOINT, else the public hub).
    #[arg(long)]
    pub endpoint: Option<String>,
}

impl Hub {
    /// `ORG/NAME[@REV]` on this hub.
    pub fn repo(&self, spec: &str) -> ferry_fetcher::Result<HubRepo> {
        HubRepo::parse(spec, self.source, self.endpoint.clone())
    }
}

pub fn parse_hub(s: &str) -> Result<HubKind, String> {
    HubKind::parse(s).ok_or_else(|| format!("unknown source {s:?}; use hf or modelscope"))
}

/// This node's rank in a warm plan.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeRank {
    /// This node's rank in the plan [default: $NODE_RANK, else $LWS_WORKER_INDEX].
    #[arg(long)]
    pub node_rank: Option<u32>,
}

impl NodeRank {
    /// The flag, else the environment of an LWS pod.
    pub fn get(&self) -> Option<u32> {
        self.node_rank
            .or_else(ferry_sidecar::gate::node_rank_from_env)
    }
}

/// A count of at least 1: `--jobs 0` is a usage error (exit 2), not silently 1.
pub fn positive<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialEq + Default,
    T::Err: std::fmt::Display,
{
    let n: T = s.parse().map_err(|e| format!("{e}"))?;
    if n == T::default() {
        return Err("must be at least 1".into());
    }
    Ok(n)
}
