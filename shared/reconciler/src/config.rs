//! The reconciler's settings, read once from the environment at start.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `GITHUB_HOOKS` | the hooks to watch: `repo:OWNER/NAME:HOOK_ID`, `org:ORG:HOOK_ID`, comma-separated | required |
//! | `GITHUB_TOKEN_ARN` | a Secrets Manager secret holding the token (or `{"token": "…"}`) | required unless `GITHUB_TOKEN` |
//! | `GITHUB_TOKEN` | the token itself (local runs) | none |
//! | `GITHUB_API_URL` | the REST API's base: `https://HOST/api/v3` for GitHub Enterprise Server | `https://api.github.com` |
//! | `GITHUB_REDELIVERY_DAYS` | how old a delivery GitHub still redelivers: 3 on github.com, 7 on GitHub Enterprise Server | 3 |
//! | `GITHUB_MAX_REDELIVERIES` | how many times one event is asked for, all runs together | 3 |
//! | `STATE_TABLE_NAME` | the reconciler's own DynamoDB table (cursors, redelivery claims) | required |
//! | `TABLE_NAME` | the idempotency table, to skip events hookgate received | required |
//! | `SECRET_REFRESH_SECS` | how long the token is kept before it is read again | 300 |

use std::time::Duration;

use hookgate::config::{parsed_or, required, ConfigError, Env};

use crate::hooks::{parse_hooks, Hook};
use crate::reconcile::Settings;
use crate::token::Token;

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenConfig {
    Fixed(Token),
    SecretsManager {
        secret_id: String,
        refresh: Duration,
    },
}

/// Everything the reconciler reads from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcilerConfig {
    pub hooks: Vec<Hook>,
    pub token: TokenConfig,
    pub api_url: String,
    pub state_table: String,
    pub idempotency_table: String,
    pub settings: Settings,
}

impl ReconcilerConfig {
    /// Reads and checks every setting; the error names the first bad variable.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let hooks = parse_hooks(&required(env, "GITHUB_HOOKS")?)
            .map_err(|error| ConfigError::invalid("GITHUB_HOOKS", error))?;
        if hooks.is_empty() {
            return Err(ConfigError::invalid("GITHUB_HOOKS", "it names no hook"));
        }
        let api_url = env
            .get("GITHUB_API_URL")
            .unwrap_or_else(|| "https://api.github.com".to_owned());
        check_api_url(&api_url)?;
        let days: u64 = parsed_or(env, "GITHUB_REDELIVERY_DAYS", 3)?;
        if !(1..=30).contains(&days) {
            return Err(ConfigError::invalid(
                "GITHUB_REDELIVERY_DAYS",
                format!("{days} is not between 1 and 30"),
            ));
        }
        let max_requests: u32 = parsed_or(env, "GITHUB_MAX_REDELIVERIES", 3)?;
        if max_requests == 0 {
            return Err(ConfigError::invalid(
                "GITHUB_MAX_REDELIVERIES",
                "must be at least 1",
            ));
        }
        let window = Duration::from_secs(days * 86_400);
        Ok(Self {
            hooks,
            token: token_config(env)?,
            api_url,
            state_table: required(env, "STATE_TABLE_NAME")?,
            idempotency_table: required(env, "TABLE_NAME")?,
            settings: Settings {
                window,
                max_requests_per_event: max_requests,
                // A redelivery record outlives the window it can matter in.
                record_retention: window + Duration::from_secs(86_400),
                ..Settings::default()
            },
        })
    }
}

/// The token travels with every request, so the API is reached over HTTPS; plain HTTP is
/// allowed only to this machine, for a local stand-in of the API.
fn check_api_url(api_url: &str) -> Result<(), ConfigError> {
    let invalid = |why: String| ConfigError::invalid("GITHUB_API_URL", why);
    let url = reqwest::Url::parse(api_url)
        .map_err(|error| invalid(format!("`{api_url}` is not a URL: {error}")))?;
    match (url.scheme(), url.host_str()) {
        ("https", Some(_)) => Ok(()),
        ("http", Some("127.0.0.1" | "localhost" | "[::1]")) => Ok(()),
        ("http", _) => Err(invalid(format!(
            "`{api_url}` would send the token unencrypted: use https:// \
             (http:// is for 127.0.0.1, localhost and [::1] only)"
        ))),
        _ => Err(invalid(format!("`{api_url}` is not an https:// URL"))),
    }
}

fn token_config(env: &dyn Env) -> Result<TokenConfig, ConfigError> {
    match (env.get("GITHUB_TOKEN_ARN"), env.get("GITHUB_TOKEN")) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "GITHUB_TOKEN",
            "set either GITHUB_TOKEN or GITHUB_TOKEN_ARN, not both",
        )),
        (Some(secret_id), None) => {
            let refresh = Duration::from_secs(parsed_or(env, "SECRET_REFRESH_SECS", 300)?);
            if refresh.is_zero() {
                return Err(ConfigError::invalid(
                    "SECRET_REFRESH_SECS",
                    "must be at least 1",
                ));
            }
            Ok(TokenConfig::SecretsManager { secret_id, refresh })
        }
        (None, Some(token)) => Token::parse(&token)
            .map(TokenConfig::Fixed)
            .map_err(|error| ConfigError::invalid("GITHUB_TOKEN", error)),
        (None, None) => Err(ConfigError::Missing {
            name: "GITHUB_TOKEN_ARN",
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const REQUIRED: [(&str, &str); 4] = [
        ("GITHUB_HOOKS", "repo:octo/agent:1,org:octo:2"),
        (
            "GITHUB_TOKEN_ARN",
            "arn:aws:secretsmanager:us-east-1:1:secret:gh",
        ),
        ("STATE_TABLE_NAME", "hookgate-reconciler"),
        ("TABLE_NAME", "hookgate-idempotency"),
    ];

    fn config(extra: &[(&str, &str)]) -> Result<ReconcilerConfig, ConfigError> {
        let env: HashMap<&str, &str> = REQUIRED.iter().chain(extra).copied().collect();
        ReconcilerConfig::from_env(&env)
    }

    #[test]
    fn the_defaults_are_githubs() {
        let config = config(&[]).unwrap();
        assert_eq!(config.hooks.len(), 2);
        assert_eq!(config.api_url, "https://api.github.com");
        assert_eq!(config.settings.window, Duration::from_secs(3 * 86_400));
        assert_eq!(config.settings.max_requests_per_event, 3);
        assert!(matches!(config.token, TokenConfig::SecretsManager { .. }));
    }

    #[test]
    fn each_required_variable_is_named_when_missing() {
        for (name, _) in REQUIRED {
            let env: HashMap<&str, &str> = REQUIRED
                .iter()
                .copied()
                .filter(|(n, _)| *n != name)
                .collect();
            let error = ReconcilerConfig::from_env(&env).unwrap_err();
            assert!(error.to_string().starts_with(name), "{name}: {error}");
        }
    }

    #[test]
    fn plain_http_is_allowed_only_to_this_machine() {
        for url in [
            "https://ghe.example.com/api/v3",
            "http://127.0.0.1:9000",
            "http://localhost/api/v3",
            "http://[::1]:9000/",
        ] {
            assert_eq!(config(&[("GITHUB_API_URL", url)]).unwrap().api_url, url);
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable() {
        for (name, value) in [
            ("GITHUB_HOOKS", "octo/agent"),
            ("GITHUB_HOOKS", " , "),
            ("GITHUB_API_URL", "api.github.com"),
            ("GITHUB_API_URL", "http://github.example.com/api/v3"),
            ("GITHUB_API_URL", "http://127.0.0.1.example.com/"),
            ("GITHUB_API_URL", "http://localhost:1@evil.example/"),
            ("GITHUB_API_URL", "ftp://api.github.com"),
            ("GITHUB_REDELIVERY_DAYS", "0"),
            ("GITHUB_MAX_REDELIVERIES", "0"),
            ("GITHUB_TOKEN", "ghp_x"),
        ] {
            let error = config(&[(name, value)]).unwrap_err();
            assert!(
                error.to_string().starts_with(name),
                "{name}={value}: {error}"
            );
        }
    }
}
