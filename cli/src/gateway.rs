//! The gateway an operating command works on (`hookgate events`, `tail`, `replay`, `mcp`):
//! its archive, its idempotency records and its queue, on `hookgate dev`'s embedded file, on
//! a deployed stack (`--stack NAME`, from its outputs), or on what `ARCHIVE_BUCKET`,
//! `TABLE_NAME` and `QUEUE_URL` name (`--aws`).

use std::path::PathBuf;
use std::sync::Arc;

use hookgate::archive::{ArchiveError, ArchiveQuery, ArchivedEvent, EventArchive};
use hookgate::aws::{DynamoStore, S3Archive, SqsEventQueue};
use hookgate::claims::{EventRecord, IdempotencyStore, StoreError};
use hookgate::config::{required, ConfigError, ProcessEnv};
use hookgate::idempotency::IdempotencyKey;
use hookgate::queue::{EventQueue, QueueError};
use hookgate::sqlite::{SqliteArchive, SqliteQueue, SqliteQueueSettings, SqliteStore};
use time::OffsetDateTime;

use crate::dev::DATABASE_FILE;
use crate::stack::{AwsOptions, Stack, StackError};

/// Where the command works.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The embedded gateway's directory, as given to `hookgate dev --data-dir`.
    #[arg(long, global = true, default_value = ".hookgate", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Work on AWS rather than on `hookgate dev`'s file: variables name the resources
    /// (ARCHIVE_BUCKET, TABLE_NAME and QUEUE_URL; for `dlq`, DLQ_URL and QUEUE_URL), and the
    /// standard AWS variables say where. Implied by --stack.
    #[arg(long, global = true)]
    pub aws: bool,

    #[command(flatten)]
    pub stack: AwsOptions,
}

/// Why the gateway cannot be worked on.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(
        "{0} does not exist; `hookgate dev --data-dir` creates it (or pass --stack NAME or --aws)"
    )]
    NoLocalGateway(PathBuf),
    #[error(
        "the stack {0} keeps no archive: it was deployed with ArchiveDays 0, or from a \
         template.yaml before the archive"
    )]
    NoArchive(String),
    #[error("the archive: {0}")]
    Archive(#[from] ArchiveError),
    #[error("the idempotency records: {0}")]
    Store(#[from] StoreError),
    #[error("the queue: {0}")]
    Queue(#[from] QueueError),
}

/// How to reach the queue, once a command needs it: replays only.
#[derive(Debug, Clone)]
enum QueueAt {
    Embedded(PathBuf),
    Sqs {
        client: aws_sdk_sqs::Client,
        url: String,
    },
}

/// The archive and records of one gateway, and its queue on demand.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub archive: Arc<dyn EventArchive>,
    pub store: Arc<dyn IdempotencyStore>,
    queue: QueueAt,
    /// What the gateway is, for messages: `the stack hookgate`, `.hookgate/hookgate.sqlite`.
    pub name: String,
}

/// An archived event and what its record says now.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub event: ArchivedEvent,
    pub record: Option<EventRecord>,
}

impl Inspected {
    /// Where the event stands: its record's state, or `unclaimed` without a record (no
    /// route took it, it is still queued, or its record expired).
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        self.record
            .as_ref()
            .map_or(UNCLAIMED, |record| record.state(now))
    }
}

/// The state of an archived event without a record.
pub const UNCLAIMED: &str = "unclaimed";

/// Every state `--status` takes.
pub const STATES: [&str; 5] = ["completed", "in_progress", "failed", "pending", UNCLAIMED];

impl Target {
    /// Opens the gateway: reads the stack, or checks the embedded file exists (opening it
    /// would create an empty one, and a typo would then report "no events").
    pub async fn open(&self) -> Result<Gateway, GatewayError> {
        if let Some(name) = &self.stack.stack {
            let config = self.stack.sdk_config().await;
            let stack = Stack::describe(&config, name).await?;
            let bucket = stack
                .archive_bucket()?
                .ok_or_else(|| GatewayError::NoArchive(name.clone()))?;
            return Self::on_aws(
                &config,
                bucket,
                stack.output("IdempotencyTableName")?.to_owned(),
                stack.output("QueueUrl")?.to_owned(),
                format!("the stack {name}"),
            )
            .await;
        }
        if self.aws {
            let config = self.stack.sdk_config().await;
            let bucket = required(&ProcessEnv, "ARCHIVE_BUCKET")?;
            let table = required(&ProcessEnv, "TABLE_NAME")?;
            let queue = required(&ProcessEnv, "QUEUE_URL")?;
            let name = format!("s3://{bucket}/archive/ and {table}");
            return Self::on_aws(&config, bucket, table, queue, name).await;
        }
        let path = self.data_dir.join(DATABASE_FILE);
        if !path.is_file() {
            return Err(GatewayError::NoLocalGateway(path));
        }
        Ok(Gateway {
            archive: Arc::new(SqliteArchive::open(&path)?),
            store: Arc::new(SqliteStore::open(&path)?),
            name: path.display().to_string(),
            queue: QueueAt::Embedded(path),
        })
    }

    async fn on_aws(
        config: &aws_config::SdkConfig,
        bucket: String,
        table: String,
        queue_url: String,
        name: String,
    ) -> Result<Gateway, GatewayError> {
        let store = DynamoStore::connect(aws_sdk_dynamodb::Client::new(config), table).await?;
        Ok(Gateway {
            archive: Arc::new(S3Archive::new(hookgate::aws::s3_client(config), bucket)),
            store: Arc::new(store),
            queue: QueueAt::Sqs {
                client: aws_sdk_sqs::Client::new(config),
                url: queue_url,
            },
            name,
        })
    }
}

impl Gateway {
    /// The queue the receivers put events on, checked.
    pub async fn queue(&self) -> Result<Arc<dyn EventQueue>, GatewayError> {
        Ok(match &self.queue {
            QueueAt::Embedded(path) => {
                Arc::new(SqliteQueue::open(path, SqliteQueueSettings::default())?)
            }
            QueueAt::Sqs { client, url } => {
                Arc::new(SqsEventQueue::connect(client.clone(), url.clone()).await?)
            }
        })
    }

    /// Each archived event with its record.
    pub async fn inspect(
        &self,
        events: Vec<ArchivedEvent>,
        now: OffsetDateTime,
    ) -> Result<Vec<Inspected>, GatewayError> {
        let mut inspected = Vec::with_capacity(events.len());
        for event in events {
            let record = self
                .store
                .record(&event.envelope.idempotency_key, now)
                .await?;
            inspected.push(Inspected { event, record });
        }
        Ok(inspected)
    }

    /// The event with `key`: from where its record says it is archived, or else from the
    /// archive's events received since `since`. `None` when neither has it.
    pub async fn find(
        &self,
        key: &IdempotencyKey,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<Inspected>, GatewayError> {
        let record = self.store.record(key, now).await?;
        if let Some(location) = record.as_ref().and_then(|record| record.archive.as_deref()) {
            match self.archive.read(location).await {
                Ok(events) => {
                    // The first copy in the entry: the one the record's claim came from.
                    if let Some(event) = events
                        .into_iter()
                        .find(|event| event.envelope.idempotency_key == *key)
                    {
                        return Ok(Some(Inspected { event, record }));
                    }
                }
                // Expired before the record, or written by another archive: search.
                Err(ArchiveError::Missing(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let query = ArchiveQuery {
            key: Some(key.clone()),
            ..ArchiveQuery::since(since)
        };
        let found = self.archive.list(&query, 1).await?.into_iter().next();
        Ok(found.map(|event| Inspected { event, record }))
    }
}

/// An instant as the commands take it: RFC 3339 (`2026-11-24T09:00:00Z`), a day
/// (`2026-11-24`, its midnight UTC), or a time ago (`90s`, `15m`, `6h`, `7d`).
pub fn parse_when(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    if let Ok(instant) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(instant);
    }
    let day_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(day) = time::Date::parse(text, &day_format) {
        return Ok(day.midnight().assume_utc());
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (count, unit) = text.split_at(split);
    let count: i64 = count.parse().map_err(|_| not_an_instant(text))?;
    let ago = match unit {
        "s" => time::Duration::seconds(count),
        "m" => time::Duration::minutes(count),
        "h" => time::Duration::hours(count),
        "d" => time::Duration::days(count),
        _ => return Err(not_an_instant(text)),
    };
    now.checked_sub(ago).ok_or_else(|| not_an_instant(text))
}

fn not_an_instant(text: &str) -> String {
    format!(
        "`{text}` is not an instant: give RFC 3339 (2026-11-24T09:00:00Z), a day \
         (2026-11-24) or a time ago (90s, 15m, 6h, 7d)"
    )
}

/// An instant as the commands print it: RFC 3339, UTC, to the millisecond.
pub fn format_instant(instant: OffsetDateTime) -> String {
    let instant = instant.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    instant
        .format(&format)
        .unwrap_or_else(|_| instant.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_831_199).unwrap()
    }

    #[test]
    fn an_instant_is_rfc_3339_a_day_or_a_time_ago() {
        assert_eq!(
            parse_when("2026-11-24T09:00:00Z", now()).unwrap(),
            OffsetDateTime::from_unix_timestamp(1_795_510_800).unwrap()
        );
        assert_eq!(
            parse_when("2026-11-24", now()).unwrap(),
            OffsetDateTime::from_unix_timestamp(1_795_478_400).unwrap()
        );
        assert_eq!(
            parse_when("90s", now()).unwrap(),
            now() - time::Duration::seconds(90)
        );
        assert_eq!(
            parse_when("7d", now()).unwrap(),
            now() - time::Duration::days(7)
        );
        for bad in ["", "yesterday", "7w", "-3h", "h", "2026-13-01"] {
            let error = parse_when(bad, now()).unwrap_err();
            assert!(error.contains("is not an instant"), "{bad}: {error}");
        }
    }

    #[test]
    fn an_instant_prints_as_utc_to_the_millisecond() {
        assert_eq!(format_instant(now()), "2026-11-28T01:59:59.000Z");
    }
}
