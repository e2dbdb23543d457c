//! `ferry plan slices` and `ferry plan warm`.

#[derive(clap::Subcommand)]
pub enum PlanCommand {
    /// Byte-balanced download slices for an Indexed Job.
    Slices {},
    /// Which bytes each node reads when the engine loads the model.
    Warm {},
}

pub async fn run(_cmd: PlanCommand) -> anyhow::Result<()> {
    anyhow::bail!("`ferry plan` is not implemented yet")
}
