//! `ferry warm`.

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ferry warm` is not implemented yet")
}
