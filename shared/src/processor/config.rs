//! The processor's settings, read once from the environment at start.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TABLE_NAME` | the DynamoDB idempotency table | required |
//! | `QUEUE_URL` | the queue the processor consumes (for retry delays) | required |
//! | `DLQ_URL` | the dead-letter queue for permanent failures | required |
//! | `ROUTES_FILE` | a routes file to use instead of the bundled `routes.toml` | bundled |
//! | `ROUTES_SOURCE` | `s3://BUCKET/KEY`: routes read while the processor runs, the bundled (or `ROUTES_FILE`) ones until some are published there | none |
//! | `ROUTES_REFRESH_SECS` | how often `ROUTES_SOURCE` is checked for a new version | 30 |
//! | `BODY_BUCKET` | the S3 bucket the receivers store bodies too large for a message in | none |
//! | `ARCHIVE_BUCKET` | the S3 bucket every batch is archived in, under `archive/` (`hookgate events`, `hookgate replay`) | none: no archive |
//! | `ARCHIVE_DAYS` | how long the bucket keeps the archive (its lifecycle rule expires it) | 30 |
//! | `BODY_RETENTION_DAYS` | how long the bucket keeps bodies; with an archive, at least `ARCHIVE_DAYS`, so that an archived event's body outlives it | none |
//! | `IDEMPOTENCY_TTL_DAYS` | how long idempotency records are kept; at least the dead-letter queue's retention plus the longest retry delay | 16 |
//! | `LEASE_SECS` | how long a claim is exclusive; must exceed every action timeout | longest action timeout + 30; with `ROUTES_SOURCE`, the longest allowed (30) + 30 |
//! | `BACKOFF_BASE_SECS` | the first retry's delay step | 10 |
//! | `BACKOFF_CAP_SECS` | the largest delay step | 900 |
//! | `BATCH_SIZE` | the most messages an invocation brings (the event source's `BatchSize`): init opens as many connections to the table, since a batch claims its events at once | 10 |

use std::time::Duration;

use super::backoff::{Backoff, MAX_VISIBILITY};
use super::ProcessorSettings;
use crate::config::{parsed_or, required, ConfigError, Env};
use crate::routes::{RouteTable, MAX_ACTION_TIMEOUT};

/// The routes compiled into the processor, used unless `ROUTES_FILE` names another file.
pub const BUNDLED_ROUTES: &str = include_str!("../../../functions/processor/routes.toml");

/// SQS event sources' default batch size, which the template sets.
pub const DEFAULT_BATCH_SIZE: usize = 10;

/// The largest batch connections are warmed for: SQS's largest batch without a batching
/// window. Larger batches (up to 10,000 with a window) open the rest on demand.
const MAX_WARMED_BATCH: usize = 10;

/// The margin a lease keeps over the longest action timeout, for recording the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How long idempotency records are kept by default: longer than the stack's dead-letter
/// queue keeps a message (14 days, SQS's longest) plus the longest retry delay (12 hours),
/// with a day to spare, so that redriving anything still in the dead-letter queue finds
/// its record, and runs only the actions that had not succeeded.
pub const DEFAULT_RETENTION_DAYS: u64 = 16;

/// Refuses a retention a redrive could outlast: a dead letter kept `dead_letter_retention`
/// and redriven at the last moment, after a message put off by the longest retry delay
/// before it was dead-lettered, must still find its event's record, or the actions that
/// had succeeded run again.
pub fn check_redrive_retention(
    retention: Duration,
    dead_letter_retention: Duration,
) -> Result<(), ConfigError> {
    let needed = dead_letter_retention + MAX_VISIBILITY;
    if retention >= needed {
        return Ok(());
    }
    let day = 86_400;
    Err(ConfigError::invalid(
        "IDEMPOTENCY_TTL_DAYS",
        format!(
            "{} days is shorter than the dead-letter queue keeps messages ({} days) plus the \
             longest retry delay ({} h {} min): an event redriven late would run its \
             completed actions again; set it to at least {}",
            retention.as_secs() / day,
            dead_letter_retention.as_secs() / day,
            MAX_VISIBILITY.as_secs() / 3_600,
            MAX_VISIBILITY.as_secs() % 3_600 / 60,
            needed.as_secs().div_ceil(day)
        ),
    ))
}

/// How long the archive is kept by default.
pub const DEFAULT_ARCHIVE_DAYS: u64 = 30;

/// Refuses bodies that expire before the archive that refers to them: an archived event
/// whose body was stored by the claim check keeps only its reference, and replaying it
/// after the body expired would dead-letter it as gone.
fn check_archive_retention(env: &dyn Env) -> Result<(), ConfigError> {
    let archive_days: u64 = parsed_or(env, "ARCHIVE_DAYS", DEFAULT_ARCHIVE_DAYS)?;
    if env.get("BODY_RETENTION_DAYS").is_none() {
        return Ok(());
    }
    let body_days: u64 = parsed_or(env, "BODY_RETENTION_DAYS", 0)?;
    if body_days >= archive_days {
        return Ok(());
    }
    Err(ConfigError::invalid(
        "BODY_RETENTION_DAYS",
        format!(
            "{body_days} days is shorter than the archive is kept (ARCHIVE_DAYS, \
             {archive_days}): an archived event whose body is in the body bucket could not be \
             replayed once its body expired; set it to at least {archive_days}"
        ),
    ))
}

/// How often a routes source is checked by default: a pushed change is in force within
/// half a minute, at one conditional read per half minute of activity per container.
pub const DEFAULT_ROUTES_REFRESH: Duration = Duration::from_secs(30);

/// Routes read while the processor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutesSourceConfig {
    pub bucket: String,
    pub key: String,
    pub refresh: Duration,
}

/// Everything the processor reads from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorConfig {
    pub table_name: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub body_bucket: Option<String>,
    /// Where every batch is archived, when it is.
    pub archive_bucket: Option<String>,
    /// The bundled routes, or `ROUTES_FILE`'s: the routes, or, with a source, the routes
    /// until the source has some.
    pub routes: RouteTable,
    pub routes_source: Option<RoutesSourceConfig>,
    pub settings: ProcessorSettings,
    /// How many connections to the table init opens: one per event a batch claims at once.
    pub warm_connections: usize,
}

impl ProcessorConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let table_name = required(env, "TABLE_NAME")?;
        let queue_url = required(env, "QUEUE_URL")?;
        let dlq_url = required(env, "DLQ_URL")?;
        let routes = routes_from_env(env)?;
        let routes_source = routes_source_from_env(env)?;
        // Routes that change while the processor runs may have any timeout allowed; the
        // lease is set once, at start.
        let longest = match routes_source {
            Some(_) => MAX_ACTION_TIMEOUT,
            None => routes.longest_action_timeout(),
        };
        let settings = settings_from_env(env, longest)?;
        let batch_size: usize = parsed_or(env, "BATCH_SIZE", DEFAULT_BATCH_SIZE)?;
        if !(1..=10_000).contains(&batch_size) {
            return Err(ConfigError::invalid(
                "BATCH_SIZE",
                format!("{batch_size} is not between 1 and 10000, the SQS event source's range"),
            ));
        }
        let archive_bucket = env
            .get("ARCHIVE_BUCKET")
            .map(|bucket| bucket.trim().to_owned());
        if archive_bucket.is_some() {
            check_archive_retention(env)?;
        }
        Ok(Self {
            warm_connections: batch_size.min(MAX_WARMED_BATCH),
            archive_bucket,
            table_name,
            queue_url,
            dlq_url,
            body_bucket: env
                .get("BODY_BUCKET")
                .map(|bucket| bucket.trim().to_owned()),
            routes,
            routes_source,
            settings,
        })
    }
}

/// `ROUTES_SOURCE` and `ROUTES_REFRESH_SECS`.
pub fn routes_source_from_env(env: &dyn Env) -> Result<Option<RoutesSourceConfig>, ConfigError> {
    let Some(uri) = env.get("ROUTES_SOURCE") else {
        return Ok(None);
    };
    let (bucket, key) = crate::routes_source::parse_s3_uri(&uri)
        .map_err(|error| ConfigError::invalid("ROUTES_SOURCE", error))?;
    let refresh = parsed_or(env, "ROUTES_REFRESH_SECS", DEFAULT_ROUTES_REFRESH.as_secs())?;
    if !(1..=3_600).contains(&refresh) {
        return Err(ConfigError::invalid(
            "ROUTES_REFRESH_SECS",
            format!("{refresh} is not between 1 and 3600"),
        ));
    }
    Ok(Some(RoutesSourceConfig {
        bucket,
        key,
        refresh: Duration::from_secs(refresh),
    }))
}

/// The routes `ROUTES_FILE` names, or the bundled ones.
pub fn routes_from_env(env: &dyn Env) -> Result<RouteTable, ConfigError> {
    match env.get("ROUTES_FILE") {
        None => RouteTable::parse(BUNDLED_ROUTES, "the bundled routes.toml")
            .map_err(|error| ConfigError::invalid("ROUTES_FILE", error)),
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|error| {
                ConfigError::invalid("ROUTES_FILE", format!("cannot read {path}: {error}"))
            })?;
            RouteTable::parse(&text, &path)
                .map_err(|error| ConfigError::invalid("ROUTES_FILE", error))
        }
    }
}

/// The lease, retention and backoff the environment sets, checked against the longest
/// action timeout the routes may have (the lease must outlive every action's timeout).
pub fn settings_from_env(
    env: &dyn Env,
    longest: Duration,
) -> Result<ProcessorSettings, ConfigError> {
    let ttl_days: u64 = parsed_or(env, "IDEMPOTENCY_TTL_DAYS", DEFAULT_RETENTION_DAYS)?;
    if ttl_days == 0 || ttl_days > 365 {
        return Err(ConfigError::invalid(
            "IDEMPOTENCY_TTL_DAYS",
            format!("{ttl_days} is not between 1 and 365"),
        ));
    }
    let default_lease = (longest + LEASE_MARGIN).as_secs();
    let lease = Duration::from_secs(parsed_or(env, "LEASE_SECS", default_lease)?);
    if lease <= longest {
        return Err(ConfigError::invalid(
            "LEASE_SECS",
            format!(
                "{} s does not outlive the longest action timeout ({} s)",
                lease.as_secs(),
                longest.as_secs()
            ),
        ));
    }
    let base = Duration::from_secs(parsed_or(env, "BACKOFF_BASE_SECS", 10)?);
    let cap = Duration::from_secs(parsed_or(env, "BACKOFF_CAP_SECS", 900)?);
    if base.is_zero() || cap < base || cap > MAX_VISIBILITY {
        return Err(ConfigError::invalid(
            "BACKOFF_CAP_SECS",
            format!(
                "the backoff needs 0 < BACKOFF_BASE_SECS ({}) <= BACKOFF_CAP_SECS ({}) <= {}",
                base.as_secs(),
                cap.as_secs(),
                MAX_VISIBILITY.as_secs()
            ),
        ));
    }
    Ok(ProcessorSettings {
        lease,
        retention: Duration::from_secs(ttl_days * 86_400),
        backoff: Backoff { base, cap },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const REQUIRED: [(&str, &str); 3] = [
        ("TABLE_NAME", "hookgate-idempotency"),
        ("QUEUE_URL", "http://127.0.0.1:5000/123456789012/q"),
        ("DLQ_URL", "http://127.0.0.1:5000/123456789012/dlq"),
    ];

    fn config(extra: &[(&str, &str)]) -> Result<ProcessorConfig, ConfigError> {
        let env: HashMap<&str, &str> = REQUIRED.iter().chain(extra).copied().collect();
        ProcessorConfig::from_env(&env)
    }

    #[test]
    fn the_bundled_routes_are_valid_and_the_defaults_hold() {
        let config = config(&[]).unwrap();
        assert_eq!(config.settings.retention, Duration::from_secs(16 * 86_400));
        check_redrive_retention(config.settings.retention, FOURTEEN_DAYS)
            .expect("the default retention covers a redrive from the stack's dead-letter queue");
        assert!(config.settings.lease > config.routes.longest_action_timeout());
        assert_eq!(config.settings.backoff.base, Duration::from_secs(10));
    }

    #[test]
    fn an_archive_is_on_with_a_bucket_and_its_bodies_must_outlive_it() {
        assert_eq!(config(&[]).unwrap().archive_bucket, None);
        let on = config(&[("ARCHIVE_BUCKET", "hookgate-bodies")]).unwrap();
        assert_eq!(on.archive_bucket.as_deref(), Some("hookgate-bodies"));
        let kept = [
            ("ARCHIVE_BUCKET", "hookgate-bodies"),
            ("ARCHIVE_DAYS", "30"),
            ("BODY_RETENTION_DAYS", "30"),
        ];
        config(&kept).expect("bodies kept as long as the archive");

        let error = config(&[
            ("ARCHIVE_BUCKET", "hookgate-bodies"),
            ("ARCHIVE_DAYS", "60"),
            ("BODY_RETENTION_DAYS", "30"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("BODY_RETENTION_DAYS is invalid")
                && error.contains("set it to at least 60"),
            "{error}"
        );
        // Without an archive, nothing to outlive.
        config(&[("ARCHIVE_DAYS", "60"), ("BODY_RETENTION_DAYS", "30")])
            .expect("no archive, no constraint");
    }

    #[test]
    fn init_warms_a_connection_per_event_of_a_batch_up_to_ten() {
        assert_eq!(config(&[]).unwrap().warm_connections, 10);
        assert_eq!(config(&[("BATCH_SIZE", "3")]).unwrap().warm_connections, 3);
        assert_eq!(
            config(&[("BATCH_SIZE", "500")]).unwrap().warm_connections,
            10
        );
        for bad in ["0", "10001", "ten"] {
            let error = config(&[("BATCH_SIZE", bad)]).unwrap_err();
            assert!(
                error.to_string().starts_with("BATCH_SIZE is invalid"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn each_required_variable_is_named_when_missing() {
        for (name, _) in REQUIRED {
            let env: HashMap<&str, &str> = REQUIRED
                .iter()
                .copied()
                .filter(|(n, _)| *n != name)
                .collect();
            assert_eq!(
                ProcessorConfig::from_env(&env),
                Err(ConfigError::Missing { name })
            );
        }
    }

    #[test]
    fn a_lease_shorter_than_an_action_timeout_is_refused() {
        let dir = std::env::temp_dir().join(format!("hookgate-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("routes.toml");
        std::fs::write(&path, "[action.slow]\ntype = \"log\"\ntimeout_secs = 25\n").unwrap();
        let error = config(&[
            ("ROUTES_FILE", path.to_str().unwrap()),
            ("LEASE_SECS", "20"),
        ])
        .unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            error
                .to_string()
                .starts_with("LEASE_SECS is invalid: 20 s does not outlive"),
            "{error}"
        );
    }

    #[test]
    fn an_unreadable_or_invalid_routes_file_is_refused_naming_it() {
        let error = config(&[("ROUTES_FILE", "/nonexistent/routes.toml")]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot read /nonexistent/routes.toml"),
            "{error}"
        );
    }

    #[test]
    fn a_routes_source_is_an_s3_object_checked_every_30_s_and_its_lease_fits_any_timeout() {
        let config = config(&[("ROUTES_SOURCE", "s3://hookgate-routes/routes.toml")]).unwrap();
        assert_eq!(
            config.routes_source,
            Some(RoutesSourceConfig {
                bucket: "hookgate-routes".to_owned(),
                key: "routes.toml".to_owned(),
                refresh: Duration::from_secs(30),
            })
        );
        assert_eq!(config.settings.lease, MAX_ACTION_TIMEOUT + LEASE_MARGIN);
        assert_eq!(
            config.routes.route_count(),
            1,
            "the bundled routes serve until some are published"
        );
    }

    #[test]
    fn a_routes_source_that_is_not_an_s3_object_or_a_bad_refresh_is_refused_naming_it() {
        let error = config(&[("ROUTES_SOURCE", "https://example.com/routes.toml")]).unwrap_err();
        assert!(
            error.to_string().starts_with("ROUTES_SOURCE is invalid"),
            "{error}"
        );
        for refresh in ["0", "3601", "soon"] {
            let error = config(&[
                ("ROUTES_SOURCE", "s3://hookgate-routes/routes.toml"),
                ("ROUTES_REFRESH_SECS", refresh),
            ])
            .unwrap_err();
            assert!(
                error.to_string().starts_with("ROUTES_REFRESH_SECS"),
                "{refresh}: {error}"
            );
        }
    }

    const FOURTEEN_DAYS: Duration = Duration::from_secs(14 * 86_400);

    #[test]
    fn a_retention_a_redrive_could_outlast_is_refused_saying_how_long_it_must_be() {
        let error =
            check_redrive_retention(Duration::from_secs(14 * 86_400), FOURTEEN_DAYS).unwrap_err();
        let error = error.to_string();
        assert!(
            error.starts_with("IDEMPOTENCY_TTL_DAYS is invalid: 14 days"),
            "{error}"
        );
        assert!(error.ends_with("set it to at least 15"), "{error}");
        assert!(check_redrive_retention(Duration::from_secs(15 * 86_400), FOURTEEN_DAYS).is_ok());
    }

    #[test]
    fn bad_ttls_and_backoffs_are_refused_naming_the_variable() {
        assert!(config(&[("IDEMPOTENCY_TTL_DAYS", "0")])
            .unwrap_err()
            .to_string()
            .starts_with("IDEMPOTENCY_TTL_DAYS"));
        assert!(
            config(&[("BACKOFF_BASE_SECS", "100"), ("BACKOFF_CAP_SECS", "10")])
                .unwrap_err()
                .to_string()
                .starts_with("BACKOFF_CAP_SECS")
        );
    }
}
