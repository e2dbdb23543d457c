//! Which certificate authorities ferry trusts: the built-in Mozilla roots, the system's store,
//! and the bundles people already set for their other tools (`SSL_CERT_FILE`, `SSL_CERT_DIR`,
//! `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`) or pass with `--ca-cert`. All are added together, so a
//! private mirror's CA never displaces the public roots. Loaded once per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use reqwest::Certificate;

use super::env;
use crate::error::{Error, Result};

static EXTRA: OnceLock<Vec<PathBuf>> = OnceLock::new();
static ROOTS: OnceLock<std::result::Result<Vec<Certificate>, String>> = OnceLock::new();

/// Adds `--ca-cert` files; call before the first HTTP client is built (later calls are ignored).
pub fn add_ca_files(files: Vec<PathBuf>) {
    let _ = EXTRA.set(files);
}

/// Every extra root, loaded once: the system's store, then each bundle named by a variable or
/// `--ca-cert`. A bundle that is named but cannot be read, or holds no certificate, is an error
/// naming where it came from.
pub fn roots() -> Result<&'static [Certificate]> {
    ROOTS
        .get_or_init(load)
        .as_deref()
        .map_err(|e| Error::Usage(e.clone()))
}

fn load() -> std::result::Result<Vec<Certificate>, String> {
    let mut certs = Vec::new();
    // The system's store (also reads SSL_CERT_FILE / SSL_CERT_DIR); a broken system store is
    // not fatal: the built-in roots and the explicit bundles below still apply.
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("system certificate store: {e}");
    }
    certs.extend(
        native
            .certs
            .iter()
            .filter_map(|der| Certificate::from_der(der.as_ref()).ok()),
    );
    for (from, path) in named_bundles() {
        let found = read_bundle(&path).map_err(|e| {
            format!(
                "{from}={}: {e}\n  hint: point {from} at a PEM file of CA certificates, or unset it",
                path.display()
            )
        })?;
        tracing::debug!(
            "trusting {} certificate(s) from {from}={}",
            found.len(),
            path.display()
        );
        certs.extend(found);
    }
    if let Some(dirs) = env::get(env::SSL_CERT_DIR) {
        for dir in std::env::split_paths(&dirs) {
            certs.extend(read_dir(&dir));
        }
    }
    Ok(certs)
}

/// The bundles named explicitly, each with the variable or flag that named it.
fn named_bundles() -> Vec<(&'static str, PathBuf)> {
    let mut out: Vec<(&'static str, PathBuf)> = [
        env::SSL_CERT_FILE,
        env::REQUESTS_CA_BUNDLE,
        env::CURL_CA_BUNDLE,
    ]
    .into_iter()
    .filter_map(|name| env::get(name).map(|v| (name, PathBuf::from(v))))
    .collect();
    for f in EXTRA.get().into_iter().flatten() {
        out.push(("--ca-cert", f.clone()));
    }
    out
}

fn read_bundle(path: &Path) -> std::result::Result<Vec<Certificate>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certs = Certificate::from_pem_bundle(&bytes)
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// Every certificate in the files of `dir` (OpenSSL's hashed layout or plain `.pem` files);
/// files that hold none are skipped, as OpenSSL does.
fn read_dir(dir: &Path) -> Vec<Certificate> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!("SSL_CERT_DIR: cannot read {}", dir.display());
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| read_bundle(&e.path()).ok())
        .flatten()
        .collect()
}

/// The variables that add roots, for hints.
pub const HINT_VARS: &str =
    "--ca-cert FILE or SSL_CERT_FILE (REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are read too)";
