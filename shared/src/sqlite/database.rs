//! The SQLite file the embedded adapters keep their tables in: opening it durably, its
//! versioned schema, and running each call on its connection away from the async runtime.
//!
//! One schema covers every table, so the queue and the store can share a file (and
//! `PRAGMA user_version`, which is per file, versions them together). Several processes may
//! open the same file: every operation is one `BEGIN IMMEDIATE` transaction, which takes
//! the file's write lock before reading, so a read-then-write (a receive, a claim) is
//! atomic against every other connection; a connection that finds the lock taken waits up
//! to [`BUSY_TIMEOUT`] for it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// The schema version this build writes and understands.
pub(crate) const SCHEMA_VERSION: i32 = 4;

/// How long an operation waits for another connection's transaction to end before failing.
/// Transactions here last milliseconds; seconds of waiting mean something is stuck.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 1. Instants are integers since the Unix epoch: milliseconds by the wall clock in
/// the queue's tables, nanoseconds by the claimant's `now` in `claims` (exact, so the store
/// answers as [`crate::claims::MemoryStore`] does, to the nanosecond).
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    -- The insertion order: receive hands out the oldest visible message first.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    -- The message attributes, as a JSON object of strings.
    attributes TEXT NOT NULL,
    enqueued_at_ms INTEGER NOT NULL,
    -- Hidden until then; a message not yet received is visible from its enqueueing.
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL,
    -- The handle of the latest receive; only it may acknowledge or put the message off.
    receipt_handle TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    -- Why the processor gave up; NULL when the maximum receive count moved it.
    reason TEXT,
    -- The id the message had in queue_messages.
    source_message_id TEXT NOT NULL,
    dead_lettered_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    idempotency_key TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('IN_PROGRESS', 'COMPLETED')),
    holder TEXT NOT NULL,
    lease_expires_at_ns INTEGER NOT NULL,
    -- The retention: from this instant on the record counts as absent.
    expires_at_ns INTEGER NOT NULL,
    payload_hash TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    -- The actions done, as a JSON array of names.
    done_actions TEXT NOT NULL,
    -- The wall clock at the last write, for people reading the table.
    updated_at_ms INTEGER NOT NULL
);
";

/// Version 2 adds what the receivers and the processor keep besides claims: body sightings
/// (the body of an event whose provider does not sign its id, to recognise it replayed
/// under a new id) and bodies too large for a queue message (the claim check).
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS body_sightings (
    -- `body:{provider}:{sha256}`, as `BodySighting::record_name` says.
    body TEXT PRIMARY KEY NOT NULL,
    -- The idempotency key of the event the body was first seen in.
    first_key TEXT NOT NULL,
    -- The retention: from this instant on the sighting counts as absent.
    expires_at_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stored_bodies (
    -- Lowercase hex SHA-256 of the body.
    sha256 TEXT PRIMARY KEY NOT NULL,
    body BLOB NOT NULL,
    stored_at_ms INTEGER NOT NULL
);
";

/// Why the file could not be opened or an operation on it failed. The adapters add the
/// path and the operation.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the directory {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "it holds schema version {found}, newer than the version {SCHEMA_VERSION} this \
         hookgate knows; open it with the hookgate that wrote it, or use another file"
    )]
    NewerSchema { found: i32 },
    #[error("the journal mode is {0}, not wal: the file system may not support WAL")]
    NotWal(String),
    #[error("a row holds what this adapter cannot have written: {0}")]
    Malformed(String),
    #[error("the connection is unusable since a call panicked while holding it")]
    Poisoned,
    #[error("the blocking task running the call failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// One connection to the file, shared by an adapter's clones.
///
/// rusqlite's `Connection` is `Send` but not `Sync`, and every call blocks on disk: the
/// connection sits behind a mutex, and [`Database::run`] calls it on tokio's blocking pool.
#[derive(Clone)]
pub(crate) struct Database {
    connection: Arc<Mutex<Connection>>,
    path: Arc<Path>,
}

impl Database {
    /// Opens `path` (creating it and its parent directories if missing), makes it durable
    /// (WAL, `synchronous=FULL`: a committed transaction survives `kill -9` and power loss)
    /// and brings its schema to [`SCHEMA_VERSION`], refusing a newer one.
    pub(crate) fn open(path: &Path) -> Result<Self, DbError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
        let mut connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // Refused before anything is changed, the journal mode included.
        check_version(&connection)?;
        let mode: String =
            connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::NotWal(mode));
        }
        connection.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut connection)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            path: Arc::from(path),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `call` with the connection on tokio's blocking pool, so the runtime's workers
    /// never wait on the disk or on another connection's lock.
    pub(crate) async fn run<T, F>(&self, call: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let database = self.clone();
        tokio::task::spawn_blocking(move || database.run_blocking(call)).await?
    }

    /// Runs `call` with the connection on this thread, blocking it.
    pub(crate) fn run_blocking<T>(
        &self,
        call: impl FnOnce(&mut Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        // A call that panicked mid-transaction had its transaction rolled back as it
        // unwound, but the panic was a bug: say so on every call rather than carry on.
        let mut connection = self.connection.lock().map_err(|_| DbError::Poisoned)?;
        call(&mut connection)
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Runs `work` in one `BEGIN IMMEDIATE` transaction and commits it; on an error (or a
/// panic) it is rolled back, and nothing of it was written.
pub(crate) fn immediate<T>(
    connection: &mut Connection,
    work: impl FnOnce(&Transaction<'_>) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = work(&transaction)?;
    transaction.commit()?;
    Ok(value)
}

fn user_version(connection: &Connection) -> Result<i32, DbError> {
    Ok(connection.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

fn check_version(connection: &Connection) -> Result<i32, DbError> {
    let found = user_version(connection)?;
    if found > SCHEMA_VERSION {
        return Err(DbError::NewerSchema { found });
    }
    Ok(found)
}

/// Brings the schema up to [`SCHEMA_VERSION`] in one transaction, re-reading the version
/// under the write lock: of several processes opening a new file at once, one creates the
/// tables and the others find them. A file of an older version keeps everything in it and
/// gains the tables it lacks.
fn migrate(connection: &mut Connection) -> Result<(), DbError> {
    if check_version(connection)? == SCHEMA_VERSION {
        return Ok(());
    }
    immediate(connection, |transaction| {
        let found = check_version(transaction)?;
        if found < 1 {
            transaction.execute_batch(SCHEMA_V1)?;
        }
        if found < 2 {
            transaction.execute_batch(SCHEMA_V2)?;
        }
        if found < 3 {
            transaction.execute_batch(SCHEMA_V3)?;
        }
        if found < 4 {
            transaction.execute_batch(SCHEMA_V4)?;
        }
        transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(())
    })
}

/// Version 3 adds the event archive (`hookgate events`, `hookgate replay`), and keeps in
/// each claim the last error and where its event is archived.
const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS archived_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- `sqlite:archive/{batch}`: the events the processor archived in one write.
    location TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    provider TEXT NOT NULL,
    event_type TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    archived_at_ns INTEGER NOT NULL,
    -- One archive line: `{\"archived_at\": …, \"envelope\": …}`.
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS archived_events_by_location ON archived_events (location);
CREATE INDEX IF NOT EXISTS archived_events_by_key ON archived_events (idempotency_key);
CREATE INDEX IF NOT EXISTS archived_events_by_received ON archived_events (received_at_ms);
ALTER TABLE claims ADD COLUMN last_error TEXT;
ALTER TABLE claims ADD COLUMN archive TEXT;
";

/// Version 4 keeps in each claim the actions that failed with its last error (a JSON
/// object of action to error).
const SCHEMA_V4: &str = "
ALTER TABLE claims ADD COLUMN failed_actions TEXT;
";

/// Epoch milliseconds by the wall clock.
pub(crate) fn wall_clock_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos.div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::testing::ScratchFile;

    #[test]
    fn a_new_file_is_created_with_its_directories_durable_and_at_the_current_version() {
        let scratch = ScratchFile::new("fresh");
        let path = scratch.path().join("nested").join("hookgate.sqlite3");

        let database = Database::open(&path).expect("a new file opens");

        assert!(path.exists());
        database
            .run_blocking(|connection| {
                let mode: String =
                    connection.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
                let synchronous: i64 =
                    connection.pragma_query_value(None, "synchronous", |row| row.get(0))?;
                assert_eq!(mode, "wal");
                assert_eq!(synchronous, 2, "FULL");
                assert_eq!(user_version(connection)?, SCHEMA_VERSION);
                Ok(())
            })
            .expect("the pragmas read back");
    }

    #[test]
    fn opening_an_existing_file_again_keeps_its_schema() {
        let scratch = ScratchFile::new("again");
        Database::open(scratch.path()).expect("a new file opens");

        let database = Database::open(scratch.path()).expect("the file opens again");

        database
            .run_blocking(|connection| {
                assert_eq!(user_version(connection)?, SCHEMA_VERSION);
                Ok(())
            })
            .expect("the version reads back");
    }

    #[test]
    fn a_file_of_the_first_version_gains_the_new_tables_and_keeps_its_rows() {
        let scratch = ScratchFile::new("upgrade");
        {
            let connection = Connection::open(scratch.path()).expect("a new file");
            connection.execute_batch(SCHEMA_V1).expect("version 1");
            connection
                .execute(
                    "INSERT INTO dead_letters \
                     (id, body, attributes, reason, source_message_id, dead_lettered_at_ms) \
                     VALUES ('d-1', '{}', '{}', 'kept', 'm-1', 1)",
                    [],
                )
                .expect("a dead letter");
            connection
                .pragma_update(None, "user_version", 1)
                .expect("the version is set");
        }

        let database = Database::open(scratch.path()).expect("an old file opens");

        database
            .run_blocking(|connection| {
                assert_eq!(user_version(connection)?, SCHEMA_VERSION);
                let kept: String = connection.query_row(
                    "SELECT reason FROM dead_letters WHERE id = 'd-1'",
                    [],
                    |row| row.get(0),
                )?;
                assert_eq!(kept, "kept");
                // Version 3's and 4's columns on the claims version 1 made.
                connection.prepare("SELECT last_error, archive, failed_actions FROM claims")?;
                for table in ["body_sightings", "stored_bodies", "archived_events"] {
                    let count: i64 = connection.query_row(
                        &format!("SELECT count(*) FROM {table}"),
                        [],
                        |row| row.get(0),
                    )?;
                    assert_eq!(count, 0, "{table}");
                }
                Ok(())
            })
            .expect("the upgraded file reads back");
    }

    #[test]
    fn a_file_with_a_newer_schema_version_is_refused_and_left_alone() {
        let scratch = ScratchFile::new("newer");
        {
            let connection = Connection::open(scratch.path()).expect("a new file");
            connection
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("the version is set");
        }

        let outcome = Database::open(scratch.path());

        assert!(
            matches!(outcome, Err(DbError::NewerSchema { found }) if found == SCHEMA_VERSION + 1),
            "{outcome:?}"
        );
        let connection = Connection::open(scratch.path()).expect("the file is still there");
        let tables: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .expect("the catalogue reads");
        assert_eq!(
            tables, 0,
            "nothing was created in a file this build does not know"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let scratch = ScratchFile::new("not-a-database");
        std::fs::write(
            scratch.path(),
            "not SQLite, but long enough to have a header".repeat(4),
        )
        .expect("the file is written");

        assert!(Database::open(scratch.path()).is_err());
    }
}
