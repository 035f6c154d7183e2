//! A receiver's settings, read once from the environment at start.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `QUEUE_URL` | the SQS queue envelopes are sent to | required |
//! | `WEBHOOK_SECRET` | the signing secret (local use) | required unless `WEBHOOK_SECRET_ARN` |
//! | `WEBHOOK_SECRET_PREVIOUS` | the previous secret, accepted during a rotation | none |
//! | `WEBHOOK_SECRET_ARN` | a Secrets Manager secret: the plain secret or `{"current","previous"}` | none |
//! | `SECRET_REFRESH_SECS` | how long a Secrets Manager value is cached | 300 |
//! | `SIGNATURE_TOLERANCE_SECS` | the replay window, either way, for timestamped schemes | 300 |
//! | `BODY_BUCKET` | an S3 bucket for bodies too large for a queue message | none: such bodies get 413 |
//! | `MAX_BODY_BYTES` | the largest body accepted, at most 4706304 (what Lambda can be handed) | 4706304 with `BODY_BUCKET`, else 772608 |
//! | `ALLOWED_SOURCE_CIDRS` | comma-separated networks allowed to call; unset allows all | none |

use std::time::Duration;

use ipnet::IpNet;

use super::{ReceiverSettings, MAX_REQUEST_BODY_BYTES};
use crate::config::{parsed_or, required, ConfigError, Env};
use crate::secret::{KeyEncoding, KeyRing, SecretError};

/// Where the signing secrets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsConfig {
    /// Fixed secrets from the environment.
    Environment(KeyRing),
    /// A Secrets Manager secret, re-read after `refresh` so a rotation needs no deploy.
    SecretsManager {
        secret_id: String,
        refresh: Duration,
    },
}

/// Everything a receiver reads from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    pub queue_url: String,
    pub secrets: SecretsConfig,
    /// The bucket bodies too large for a queue message are stored in.
    pub body_bucket: Option<String>,
    pub settings: ReceiverSettings,
}

impl ReceiverConfig {
    /// Reads and checks every setting; the error names the first bad variable.
    pub fn from_env(env: &dyn Env, encoding: KeyEncoding) -> Result<Self, ConfigError> {
        let queue_url = required(env, "QUEUE_URL")?;
        if !queue_url.starts_with("https://") && !queue_url.starts_with("http://") {
            return Err(ConfigError::invalid(
                "QUEUE_URL",
                format!("`{queue_url}` is not a queue URL"),
            ));
        }
        let body_bucket = env
            .get("BODY_BUCKET")
            .map(|bucket| bucket.trim().to_owned());
        Ok(Self {
            queue_url,
            secrets: secrets_config(env, encoding)?,
            settings: ReceiverSettings {
                tolerance: tolerance(env)?,
                max_body_bytes: max_body_bytes(env, body_bucket.is_some())?,
                allowed_sources: allowed_sources(env)?,
            },
            body_bucket,
        })
    }
}

fn secrets_config(env: &dyn Env, encoding: KeyEncoding) -> Result<SecretsConfig, ConfigError> {
    if let Some(secret_id) = env.get("WEBHOOK_SECRET_ARN") {
        if env.get("WEBHOOK_SECRET").is_some() {
            return Err(ConfigError::invalid(
                "WEBHOOK_SECRET",
                "set either WEBHOOK_SECRET or WEBHOOK_SECRET_ARN, not both",
            ));
        }
        if env.get("WEBHOOK_SECRET_PREVIOUS").is_some() {
            return Err(ConfigError::invalid(
                "WEBHOOK_SECRET_PREVIOUS",
                "with WEBHOOK_SECRET_ARN, store {\"current\": …, \"previous\": …} in the secret instead",
            ));
        }
        let refresh = Duration::from_secs(parsed_or(env, "SECRET_REFRESH_SECS", 300)?);
        if refresh.is_zero() {
            return Err(ConfigError::invalid(
                "SECRET_REFRESH_SECS",
                "must be at least 1",
            ));
        }
        return Ok(SecretsConfig::SecretsManager { secret_id, refresh });
    }
    let current = env.get("WEBHOOK_SECRET").ok_or(ConfigError::Missing {
        name: "WEBHOOK_SECRET",
    })?;
    let previous = env.get("WEBHOOK_SECRET_PREVIOUS");
    let keys = KeyRing::from_secrets(&current, previous.as_deref(), encoding).map_err(|error| {
        let name = match &error {
            SecretError::InField {
                field: "previous", ..
            } => "WEBHOOK_SECRET_PREVIOUS",
            _ => "WEBHOOK_SECRET",
        };
        ConfigError::invalid(name, error)
    })?;
    Ok(SecretsConfig::Environment(keys))
}

fn tolerance(env: &dyn Env) -> Result<Duration, ConfigError> {
    let seconds: u64 = parsed_or(env, "SIGNATURE_TOLERANCE_SECS", 300)?;
    // Zero would refuse every delivery from a sender whose clock is a second off.
    if seconds == 0 || seconds > 3_600 {
        return Err(ConfigError::invalid(
            "SIGNATURE_TOLERANCE_SECS",
            format!("{seconds} is not between 1 and 3600"),
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// The default follows the body store: without one, only bodies that fit a queue message.
fn max_body_bytes(env: &dyn Env, has_body_store: bool) -> Result<usize, ConfigError> {
    let default = if has_body_store {
        ReceiverSettings::with_body_store()
    } else {
        ReceiverSettings::default()
    };
    let limit: usize = parsed_or(env, "MAX_BODY_BYTES", default.max_body_bytes)?;
    if limit == 0 || limit > MAX_REQUEST_BODY_BYTES {
        return Err(ConfigError::invalid(
            "MAX_BODY_BYTES",
            format!(
                "{limit} is not between 1 and {MAX_REQUEST_BODY_BYTES} (the largest body \
                 Lambda can be handed through API Gateway)"
            ),
        ));
    }
    Ok(limit)
}

fn allowed_sources(env: &dyn Env) -> Result<Option<Vec<IpNet>>, ConfigError> {
    let Some(list) = env.get("ALLOWED_SOURCE_CIDRS") else {
        return Ok(None);
    };
    let networks = list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::invalid(
                        "ALLOWED_SOURCE_CIDRS",
                        format!("`{entry}` is not a CIDR or an IP address"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if networks.is_empty() {
        // A list of nothing would refuse every caller; unset the variable to allow all.
        return Err(ConfigError::invalid(
            "ALLOWED_SOURCE_CIDRS",
            format!("`{list}` lists no network"),
        ));
    }
    Ok(Some(networks))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(settings: &[(&str, &str)]) -> Result<ReceiverConfig, ConfigError> {
        let env: HashMap<&str, &str> = settings.iter().copied().collect();
        ReceiverConfig::from_env(&env, KeyEncoding::Raw)
    }

    const QUEUE: (&str, &str) = ("QUEUE_URL", "http://127.0.0.1:5000/123456789012/hookgate");

    #[test]
    fn the_defaults_need_only_a_queue_and_a_secret() {
        let config = config(&[QUEUE, ("WEBHOOK_SECRET", "s")]).unwrap();
        assert_eq!(config.settings, ReceiverSettings::default());
        assert_eq!(config.body_bucket, None);
        assert!(matches!(config.secrets, SecretsConfig::Environment(_)));
    }

    #[test]
    fn a_missing_queue_or_secret_is_named() {
        assert_eq!(
            config(&[("WEBHOOK_SECRET", "s")]),
            Err(ConfigError::Missing { name: "QUEUE_URL" })
        );
        assert_eq!(
            config(&[QUEUE]),
            Err(ConfigError::Missing {
                name: "WEBHOOK_SECRET"
            })
        );
    }

    #[test]
    fn a_secret_arn_selects_secrets_manager_with_its_refresh() {
        let config = config(&[
            QUEUE,
            (
                "WEBHOOK_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:gh",
            ),
            ("SECRET_REFRESH_SECS", "60"),
        ])
        .unwrap();
        assert_eq!(
            config.secrets,
            SecretsConfig::SecretsManager {
                secret_id: "arn:aws:secretsmanager:us-east-1:1:secret:gh".into(),
                refresh: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn a_previous_secret_beside_a_secret_arn_is_refused() {
        let error = config(&[
            QUEUE,
            ("WEBHOOK_SECRET_ARN", "arn"),
            ("WEBHOOK_SECRET_PREVIOUS", "old"),
        ])
        .unwrap_err();
        assert!(
            error.to_string().starts_with("WEBHOOK_SECRET_PREVIOUS"),
            "{error}"
        );
    }

    #[test]
    fn both_a_secret_and_a_secret_arn_is_ambiguous() {
        let error = config(&[
            QUEUE,
            ("WEBHOOK_SECRET", "s"),
            ("WEBHOOK_SECRET_ARN", "arn"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("not both"));
    }

    #[test]
    fn a_bad_previous_secret_names_its_own_variable() {
        let env: HashMap<&str, &str> = [
            QUEUE,
            ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ("WEBHOOK_SECRET_PREVIOUS", "whsec_!!"),
        ]
        .into();
        let error = ReceiverConfig::from_env(&env, KeyEncoding::StandardWebhooks).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("WEBHOOK_SECRET_PREVIOUS is invalid"),
            "{error}"
        );
    }

    #[test]
    fn with_a_body_bucket_bodies_up_to_what_lambda_takes_are_accepted_by_default() {
        let config = config(&[
            QUEUE,
            ("WEBHOOK_SECRET", "s"),
            ("BODY_BUCKET", "hookgate-bodies"),
        ])
        .unwrap();
        assert_eq!(config.body_bucket.as_deref(), Some("hookgate-bodies"));
        assert_eq!(config.settings.max_body_bytes, MAX_REQUEST_BODY_BYTES);
        assert_eq!(MAX_REQUEST_BODY_BYTES, 4_706_304);
        assert_eq!(super::super::INLINE_BODY_BYTES, 772_608);
    }

    #[test]
    fn source_networks_accept_cidrs_and_bare_addresses() {
        let config = config(&[
            QUEUE,
            ("WEBHOOK_SECRET", "s"),
            (
                "ALLOWED_SOURCE_CIDRS",
                "192.30.252.0/22, 2001:db8::/32,10.1.2.3",
            ),
        ])
        .unwrap();
        let networks = config.settings.allowed_sources.unwrap();
        assert_eq!(networks.len(), 3);
        assert!(networks[2].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable() {
        let cases = [
            ("ALLOWED_SOURCE_CIDRS", "192.30.252.0/33"),
            ("MAX_BODY_BYTES", "0"),
            ("MAX_BODY_BYTES", "4706305"),
            ("SIGNATURE_TOLERANCE_SECS", "-1"),
            ("SIGNATURE_TOLERANCE_SECS", "0"),
            ("ALLOWED_SOURCE_CIDRS", " , "),
            ("QUEUE_URL", "hookgate-queue"),
        ];
        for (name, value) in cases {
            let error = config(&[QUEUE, ("WEBHOOK_SECRET", "s"), (name, value)]).unwrap_err();
            assert!(
                error.to_string().starts_with(name),
                "{name}={value}: {error}"
            );
        }
    }
}
