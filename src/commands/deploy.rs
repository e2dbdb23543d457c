//! `ferry deploy render`.

#[derive(clap::Subcommand)]
pub enum DeployCommand {
    /// Render a consistent set of manifests from a few parameters.
    Render {},
}

pub async fn run(_cmd: DeployCommand) -> anyhow::Result<()> {
    anyhow::bail!("`ferry deploy` is not implemented yet")
}
