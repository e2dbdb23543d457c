//! `ferry`: the command line. Parses arguments, sets up logging, calls the libraries, and maps
//! their errors to the exit codes documented in the README.

// ferry_fetcher::Error carries what a network failure message needs (see fetcher's lib.rs).
#![allow(clippy::result_large_err)]

mod alloc;
#[macro_use]
mod output;
mod args;
mod commands;
mod dry_run;
mod exit;
mod fetch_metrics;
mod format;
mod help;
mod progress;
mod rate;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Moves LLM weights from model hubs onto GPU nodes: fetch, verify, warm, gate."
)]
struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Also trust the CA certificates in this PEM file (repeatable), on top of the system's and
    /// SSL_CERT_FILE / SSL_CERT_DIR / REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE: a private mirror's or a
    /// TLS-inspecting proxy's CA.
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Vec<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download a model snapshot (Hugging Face, ModelScope, S3) into a directory or S3, verified and resumable.
    Fetch(commands::fetch::Args),
    /// Check a model directory against its completion manifest (--full re-hashes every byte).
    Verify(commands::verify::Args),
    /// Show a model directory's state, safe while a fetch runs.
    Status(commands::status::Args),
    /// Partition the work: download slices for an Indexed Job, warm plans per node.
    #[command(subcommand)]
    Plan(commands::plan::PlanCommand),
    /// Load a model (or this node's part of it) into the page cache.
    Warm(commands::warm::Args),
    /// Gate an engine pod on a complete model: init container or native sidecar.
    Sidecar(commands::sidecar::Args),
    /// Will this model run on these GPUs with this engine? Checks before the load.
    Doctor(commands::doctor::Args),
    /// Check Kubernetes manifests for the known traps of serving LLMs.
    Lint(commands::lint::Args),
    /// Render the Kubernetes manifests for a deployment.
    #[command(subcommand)]
    Deploy(commands::deploy::DeployCommand),
}

impl Command {
    /// The command was asked for `--json`: its errors are JSON lines too.
    fn json(&self) -> bool {
        match self {
            Command::Fetch(a) => a.json(),
            Command::Verify(a) => a.json(),
            Command::Status(a) => a.json(),
            _ => false,
        }
    }
}

fn main() -> std::process::ExitCode {
    alloc::bound_heap();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Bad flags are usage errors (exit 2); with --json they are a JSON line too.
            if e.use_stderr() && std::env::args().any(|a| a == "--json") {
                let message = e.render().to_string();
                let first = message.lines().next().unwrap_or_default();
                output::emit(
                    "error",
                    serde_json::json!({
                        "kind": exit::kind_name(exit::USAGE),
                        "message": first.trim_start_matches("error: "),
                        "hint": exit::hint(exit::USAGE),
                        "exit_code": exit::USAGE,
                    }),
                );
            }
            e.exit()
        }
    };
    let json = cli.command.json();
    let quiet = matches!(&cli.command, Command::Fetch(a) if a.quiet());
    init_tracing(if quiet { None } else { Some(cli.verbose) });
    ferry_fetcher::net::tls::add_ca_files(cli.ca_cert.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(exit::INTERNAL);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Fetch(a) => commands::fetch::run(a).await,
            Command::Verify(a) => commands::verify::run(a).await,
            Command::Status(a) => commands::status::run(a).await,
            Command::Plan(a) => commands::plan::run(a).await,
            Command::Warm(a) => commands::warm::run(a).await,
            Command::Sidecar(a) => commands::sidecar::run(a).await,
            Command::Doctor(a) => commands::doctor::run(a).await,
            Command::Lint(a) => commands::lint::run(a).await,
            Command::Deploy(a) => commands::deploy::run(a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let code = exit::code_for(&err);
            eprintln!("error: {err:#}");
            if json {
                output::emit(
                    "error",
                    serde_json::json!({
                        "kind": exit::kind_name(code),
                        "message": format!("{err:#}"),
                        "hint": exit::hint(code),
                        "exit_code": code,
                    }),
                );
            }
            std::process::ExitCode::from(code)
        }
    }
}

/// `None`: quiet, warnings and errors only.
fn init_tracing(verbose: Option<u8>) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        None => "warn",
        Some(0) => "info",
        Some(1) => "debug",
        Some(_) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes would garble Kubernetes Job logs.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
