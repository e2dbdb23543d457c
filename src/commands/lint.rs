//! `ferry lint`: checks Kubernetes manifests for the known traps of serving LLMs (rules in
//! ferry-deploy). Exits non-zero when any finding is an error.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context as _;
use ferry_deploy::lint::{self, Finding, Options, Severity};

#[derive(clap::Args)]
#[command(after_help = crate::help::LINT)]
pub struct Args {
    /// Manifests: files, directories (a directory with a kustomization.yaml is built with
    /// `kubectl kustomize`), or `-` for stdin (e.g. `kubectl kustomize DIR | ferry lint -`).
    #[arg(required_unless_present = "list_rules")]
    inputs: Vec<PathBuf>,
    /// Print findings as JSON.
    #[arg(long)]
    json: bool,
    /// Fail on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    /// The least startupProbe budget, in seconds, an engine needs to load its model.
    #[arg(long, default_value_t = Options::default().min_startup_seconds)]
    min_startup_seconds: u64,
    /// List the rules and exit.
    #[arg(long)]
    list_rules: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.list_rules {
        return list_rules(args.json);
    }
    let stdin = if args.inputs.iter().any(|p| p.as_os_str() == "-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read manifests from stdin")?;
        s
    } else {
        String::new()
    };
    let sets = ferry_deploy::load::load_inputs(&args.inputs, &stdin)?;
    let options = Options {
        min_startup_seconds: args.min_startup_seconds,
        ..Options::default()
    };
    let objects: usize = sets.iter().map(Vec::len).sum();
    let findings: Vec<Finding> = sets
        .iter()
        .flat_map(|set| lint::lint(set, &options))
        .collect();
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    if args.json {
        let out = serde_json::json!({
            "objects": objects,
            "errors": errors,
            "warnings": warnings,
            "findings": findings,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for f in &findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let ns = f
                .namespace
                .as_deref()
                .map(|n| format!(" (namespace {n})"))
                .unwrap_or_default();
            outln!("{sev}[{}] {}{ns} in {}", f.rule, f.object, f.source);
            outln!("  field: {}", f.field);
            outln!("  {}", f.message);
            outln!("  fix: {}", f.fix);
            outln!();
        }
        outln!("{objects} objects checked: {errors} errors, {warnings} warnings");
    }
    if errors > 0 || (args.deny_warnings && warnings > 0) {
        anyhow::bail!("ferry lint: {errors} errors, {warnings} warnings");
    }
    Ok(())
}

fn list_rules(json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(lint::RULES)?);
        return Ok(());
    }
    for r in lint::RULES {
        let sev = match r.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        outln!(
            "{:<32} {sev:<8} {}",
            r.id,
            r.summary.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    Ok(())
}
