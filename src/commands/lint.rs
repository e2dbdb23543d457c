//! `ferry lint`.

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ferry lint` is not implemented yet")
}
