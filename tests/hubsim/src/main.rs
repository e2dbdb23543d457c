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
    Generate(hubsim::generate::GenerateArgs),

    /// Serve the repositories under a directory over the Hugging Face and ModelScope protocols.
    Serve(Box<hubsim::serve::ServeArgs>),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Generate(args) => match hubsim::generate::run(&args) {
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
