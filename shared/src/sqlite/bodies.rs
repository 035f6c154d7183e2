//! The SQLite adapter of [`BodyStore`]: `hookgate dev`'s large bodies, in the same file as
//! its queue, one row per body in `stored_bodies`, keyed by the body's SHA-256.
//!
//! A body is committed with `synchronous=FULL` before `put` answers, so an envelope that
//! refers to it is never queued ahead of it. Nothing expires bodies (the file is for one
//! machine's development traffic); deleting the file starts afresh.

use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, OptionalExtension};

use super::database::{immediate, wall_clock_ms, Database, DbError};
use crate::bodies::{BodyReference, BodyStore, BodyStoreError};

const SCHEME: &str = "sqlite:";

/// Large bodies in one SQLite file. Clones share one connection; stores opened separately
/// on the same file share its bodies.
#[derive(Debug, Clone)]
pub struct SqliteBodyStore {
    database: Database,
}

impl SqliteBodyStore {
    /// Opens the store in the file at `path`, creating the file, its directories and the
    /// schema if missing. The error names the path and what failed.
    pub fn open(path: &Path) -> Result<Self, BodyStoreError> {
        let database = Database::open(path).map_err(|error| {
            BodyStoreError::Unavailable(format!(
                "cannot open the SQLite body store {}: {error}",
                path.display()
            ))
        })?;
        Ok(Self { database })
    }

    async fn run<T, F>(&self, operation: &'static str, call: F) -> Result<T, BodyStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.database.run(call).await.map_err(|error| {
            BodyStoreError::Unavailable(format!(
                "the SQLite body store {}: {operation} failed: {error}",
                self.database.path().display()
            ))
        })
    }
}

#[async_trait]
impl BodyStore for SqliteBodyStore {
    async fn put(&self, body: &Bytes, sha256: &str) -> Result<BodyReference, BodyStoreError> {
        let (bytes, key) = (body.clone(), sha256.to_owned());
        self.run("storing a body", move |connection| {
            immediate(connection, |transaction| {
                transaction
                    .prepare_cached(
                        "INSERT OR REPLACE INTO stored_bodies (sha256, body, stored_at_ms) \
                         VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![key, bytes.as_ref(), wall_clock_ms()])?;
                Ok(())
            })
        })
        .await?;
        Ok(BodyReference {
            location: format!("{SCHEME}{sha256}"),
            size: body.len() as u64,
        })
    }

    async fn get(&self, reference: &BodyReference) -> Result<Bytes, BodyStoreError> {
        let key = reference
            .location
            .strip_prefix(SCHEME)
            .ok_or_else(|| BodyStoreError::Foreign {
                location: reference.location.clone(),
                store: format!("the SQLite body store {}", self.database.path().display()),
            })?
            .to_owned();
        let body = self
            .run("reading a body", move |connection| {
                Ok(connection
                    .prepare_cached("SELECT body FROM stored_bodies WHERE sha256 = ?1")?
                    .query_row(params![key], |row| row.get::<_, Vec<u8>>(0))
                    .optional()?)
            })
            .await?;
        body.map(Bytes::from)
            .ok_or_else(|| BodyStoreError::Missing(reference.location.clone()))
    }
}
