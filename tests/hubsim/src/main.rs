//! The `hubsim` binary: argument parsing only; the work is in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A local fake model hub for ferry's tests, benchmarks and offline demo.
#[derive(Debug, Parser)]
#[command(name = "hubsim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a synthetic model repository (DeepSeek-R1 or distill layout) into a directory.
    Generate(GenerateCli),

    /// Serve the repositories under a directory over the Hugging Face and ModelScope protocols.
    Serve(Box<hubsim::serve::ServeArgs>),
}

#[derive(Debug, clap::Args)]
struct GenerateCli {
    #[command(flatten)]
    args: hubsim::generate::GenerateArgs,
    /// Write no model files: only DIR/.hubsim-virtual.json (the spec and every file's hashes).
    /// `hubsim serve` then makes every byte on the fly, so full-size shards need no disk.
    #[arg(long = "virtual", conflicts_with = "sparse")]
    virtual_repo: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Generate(g) => match if g.virtual_repo {
            hubsim::generate::run_virtual(&g.args)
        } else {
            hubsim::generate::run(&g.args)
        } {
            Ok(summary) => {
                println!("hubsim generate: {summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hubsim generate: error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => match hubsim::serve::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hubsim serve: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
