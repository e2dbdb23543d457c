//! One problem found in a model directory, named precisely enough to act on.
//!
//! Validation and verification collect every finding instead of stopping at the first, so one run
//! tells an operator everything that is wrong with a 163-shard checkpoint.

use serde::{Deserialize, Serialize};

/// How bad a finding is: errors fail `ferry verify`, warnings are only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

/// A problem with one file, optionally one tensor inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Path relative to the model directory, `/`-separated.
    pub file: String,
    /// The tensor concerned, when the problem is about one tensor.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tensor: Option<String>,
    /// What is wrong, in words.
    pub problem: String,
}

impl Finding {
    pub fn error(file: impl Into<String>, problem: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            file: file.into(),
            tensor: None,
            problem: problem.into(),
        }
    }

    pub fn warning(file: impl Into<String>, problem: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(file, problem)
        }
    }

    pub fn tensor_error(
        file: impl Into<String>,
        tensor: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Finding {
            tensor: Some(tensor.into()),
            ..Finding::error(file, problem)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tensor {
            Some(t) => write!(f, "{}: tensor {t}: {}", self.file, self.problem),
            None => write!(f, "{}: {}", self.file, self.problem),
        }
    }
}

/// The findings as an indented list for error messages; long lists are cut so that a thoroughly
/// broken checkpoint does not print thousands of lines (`--json` has them all).
pub fn bullet_list(findings: &[Finding]) -> String {
    const SHOWN: usize = 50;
    let mut out: Vec<String> = findings
        .iter()
        .take(SHOWN)
        .map(|f| format!("  - {f}"))
        .collect();
    if findings.len() > SHOWN {
        out.push(format!(
            "  ... and {} more (use --json to see them all)",
            findings.len() - SHOWN
        ));
    }
    out.join("\n")
}
