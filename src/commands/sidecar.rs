//! `ferry sidecar`.

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ferry sidecar` is not implemented yet")
}
