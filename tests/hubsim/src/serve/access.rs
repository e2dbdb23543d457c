//! Token checks for private and gated repos. Each hub turns a [`Denied`] into its own status,
//! error code and body (see hf.rs and modelscope.rs).

use axum::http::HeaderMap;

use super::repo::RepoConfig;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// A token was sent that neither `--token` nor the repo's `authorized_tokens` knows.
    InvalidToken,
    /// Private repo: no token (`no_token`) or a valid token without access.
    Private { no_token: bool },
    /// Gated repo file download: no token (`no_token`) or a valid token without access.
    Gated { no_token: bool },
}

/// The bearer token of a request (`Authorization: Bearer X`), if any.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Checks one request. `file` is true for file downloads (the only thing gating guards).
///
/// Rules: a token must be known (listed by `--token` or the repo's `authorized_tokens`), like the
/// real hub which rejects unknown tokens even on public repos. A known token has access when the
/// repo lists it, or when the repo lists none.
pub fn check(
    config: &RepoConfig,
    tokens: &[String],
    token: Option<&str>,
    file: bool,
) -> Result<(), Denied> {
    let known =
        |t: &str| tokens.iter().any(|k| k == t) || config.authorized_tokens.iter().any(|k| k == t);
    if let Some(t) = token {
        if !known(t) {
            return Err(Denied::InvalidToken);
        }
    }
    let has_access = token.is_some_and(|t| {
        if config.authorized_tokens.is_empty() {
            tokens.iter().any(|k| k == t)
        } else {
            config.authorized_tokens.iter().any(|k| k == t)
        }
    });
    if config.private && !has_access {
        return Err(Denied::Private {
            no_token: token.is_none(),
        });
    }
    if config.gated && file && !has_access {
        return Err(Denied::Gated {
            no_token: token.is_none(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_private_and_gated_rules() {
        let tokens = vec!["alice".to_string(), "bob".to_string()];
        let public = RepoConfig::default();
        assert_eq!(check(&public, &tokens, None, true), Ok(()));
        assert_eq!(check(&public, &tokens, Some("bob"), true), Ok(()));
        assert_eq!(
            check(&public, &tokens, Some("eve"), true),
            Err(Denied::InvalidToken)
        );
        let private = RepoConfig {
            private: true,
            authorized_tokens: vec!["alice".into()],
            ..Default::default()
        };
        assert_eq!(
            check(&private, &tokens, None, false),
            Err(Denied::Private { no_token: true })
        );
        assert_eq!(
            check(&private, &tokens, Some("bob"), false),
            Err(Denied::Private { no_token: false })
        );
        assert_eq!(check(&private, &tokens, Some("alice"), true), Ok(()));
        let gated = RepoConfig {
            gated: true,
            authorized_tokens: vec!["carol".into()],
            ..Default::default()
        };
        assert_eq!(check(&gated, &[], None, false), Ok(()));
        assert_eq!(
            check(&gated, &[], None, true),
            Err(Denied::Gated { no_token: true })
        );
        assert_eq!(
            check(&gated, &tokens, Some("bob"), true),
            Err(Denied::Gated { no_token: false })
        );
        assert_eq!(check(&gated, &tokens, Some("carol"), true), Ok(()));
    }
}
