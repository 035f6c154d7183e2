//! The SQLite adapter of [`EventArchive`]: `hookgate dev`'s archive, in the same file as
//! its queue and store, one row per archived envelope in `archived_events`, the rows of
//! one batch sharing a location.
//!
//! A batch is committed in one transaction before `append` answers. Nothing expires (the
//! file is for one machine's development traffic); deleting the file starts afresh.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::params;
use time::OffsetDateTime;

use super::database::{immediate, Database, DbError};
use crate::archive::{
    first_copies, from_json_lines, to_json_lines, ArchiveError, ArchiveQuery, ArchivedEvent,
    EventArchive,
};
use crate::envelope::Envelope;

const SCHEME: &str = "sqlite:archive/";

/// The archive in one SQLite file. Clones share one connection; archives opened separately
/// on the same file share its events.
#[derive(Debug, Clone)]
pub struct SqliteArchive {
    database: Database,
}

impl SqliteArchive {
    /// Opens the archive in the file at `path`, creating the file, its directories and the
    /// schema if missing. The error names the path and what failed.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let database = Database::open(path).map_err(|error| {
            ArchiveError::Unavailable(format!(
                "cannot open the SQLite archive {}: {error}",
                path.display()
            ))
        })?;
        Ok(Self { database })
    }

    async fn run<T, F>(&self, operation: &'static str, call: F) -> Result<T, ArchiveError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.database.run(call).await.map_err(|error| {
            ArchiveError::Unavailable(format!(
                "the SQLite archive {}: {operation} failed: {error}",
                self.database.path().display()
            ))
        })
    }
}

fn millis(instant: OffsetDateTime) -> i64 {
    i64::try_from(instant.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

/// The rows' lines as one entry's text, for [`from_json_lines`].
fn lines_of(rows: impl IntoIterator<Item = String>) -> String {
    rows.into_iter().fold(String::new(), |mut text, line| {
        text.push_str(&line);
        text.push('\n');
        text
    })
}

#[async_trait]
impl EventArchive for SqliteArchive {
    async fn append(
        &self,
        envelopes: &[&Envelope],
        now: OffsetDateTime,
    ) -> Result<Option<String>, ArchiveError> {
        if envelopes.is_empty() {
            return Ok(None);
        }
        let location = format!("{SCHEME}{}", uuid::Uuid::new_v4());
        let rows: Vec<_> = envelopes
            .iter()
            .map(|envelope| {
                let v1 = envelope.v1();
                (
                    v1.idempotency_key.to_string(),
                    v1.provider.as_str(),
                    v1.event_type.clone(),
                    millis(v1.received_at),
                    to_json_lines(&[*envelope], now).trim_end().to_owned(),
                )
            })
            .collect();
        let archived_ns = i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        let at = location.clone();
        self.run("archiving a batch", move |connection| {
            immediate(connection, |transaction| {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO archived_events (location, idempotency_key, provider, event_type, \
                     received_at_ms, archived_at_ns, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for (key, provider, event_type, received_ms, line) in &rows {
                    insert.execute(params![
                        at,
                        key,
                        provider,
                        event_type,
                        received_ms,
                        archived_ns,
                        line
                    ])?;
                }
                Ok(())
            })
        })
        .await?;
        Ok(Some(location))
    }

    async fn read(&self, location: &str) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let at = location.to_owned();
        let rows = self
            .run("reading an archive entry", move |connection| {
                let mut select = connection.prepare_cached(
                    "SELECT line FROM archived_events WHERE location = ?1 ORDER BY seq",
                )?;
                let rows = select
                    .query_map(params![at], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        if rows.is_empty() {
            return Err(ArchiveError::Missing(location.to_owned()));
        }
        from_json_lines(&lines_of(rows), location)
    }

    async fn list(
        &self,
        query: &ArchiveQuery,
        max: usize,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        // SQL narrows by what it has columns for; the query itself decides.
        let since = millis(query.since);
        let until = query.until.map_or(i64::MAX, millis);
        let provider = query.provider.map(|provider| provider.as_str());
        let key = query.key.as_ref().map(ToString::to_string);
        let archived_since = query.archived_since.map_or(i64::MIN, |instant| {
            i64::try_from(instant.unix_timestamp_nanos()).unwrap_or(i64::MAX)
        });
        let rows = self
            .run("listing archived events", move |connection| {
                let mut select = connection.prepare_cached(
                    "SELECT location, line FROM archived_events \
                     WHERE received_at_ms >= ?1 AND received_at_ms <= ?2 \
                       AND (?3 IS NULL OR provider = ?3) \
                       AND (?4 IS NULL OR idempotency_key = ?4) \
                       AND archived_at_ns >= ?5 \
                     ORDER BY seq",
                )?;
                let rows = select
                    .query_map(
                        params![since, until, provider, key, archived_since],
                        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let mut copies = Vec::new();
        for (location, line) in rows {
            copies.extend(
                from_json_lines(&line, &location)?
                    .into_iter()
                    .filter(|copy| query.takes(copy)),
            );
        }
        Ok(first_copies(copies, max))
    }
}
