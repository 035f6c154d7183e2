//! The SQLite adapter of [`IdempotencyStore`]: one row per idempotency key in `claims`.
//!
//! Each call reads the key's record and writes the outcome in one `BEGIN IMMEDIATE`
//! transaction, so the read and the write are one atomic step against every other
//! connection, in this process or another. What the outcome is, it leaves to the rules in
//! [`crate::claims`] ([`decide_claim`], [`HeldWrite`]), which [`crate::claims::MemoryStore`]
//! follows too.
//!
//! Instants are kept as integer nanoseconds since the epoch, taken from the request's
//! `now`, never the wall clock: the store answers exactly as the in-memory one does. An
//! instant past what an `i64` of nanoseconds holds (the year 2262) is kept as the last one
//! it holds. Records past their retention count as absent and are replaced by the next
//! claim; nothing deletes them otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Transaction};
use time::OffsetDateTime;

use super::database::{immediate, wall_clock_ms, Database, DbError};
use crate::claims::{
    decide_claim, decide_sighting, new_holder, BodySighting, Claim, ClaimDecision, ClaimRecord,
    ClaimRequest, EventRecord, Failure, FirstSeen, HeldClaim, HeldWrite, IdempotencyStore,
    SightingRecord, Status, StoreError,
};
use crate::idempotency::IdempotencyKey;

/// The embedded idempotency store, in one SQLite file. Clones share one connection;
/// stores opened separately on the same file (in this process or another) share its
/// records, and of any number of claims racing for one key exactly one acquires it.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    database: Database,
}

impl SqliteStore {
    /// Opens the store in the file at `path`, creating the file, its directories and the
    /// schema if missing. The error names the path and what failed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let database = Database::open(path).map_err(|error| {
            StoreError::Unavailable(format!(
                "cannot open the SQLite store {}: {error}",
                path.display()
            ))
        })?;
        Ok(Self { database })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        self.database.path()
    }

    async fn run<T, F>(&self, operation: &'static str, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.database.run(call).await.map_err(|error| {
            StoreError::Unavailable(format!(
                "the SQLite store {}: {operation} failed: {error}",
                self.database.path().display()
            ))
        })
    }

    /// One write after the claim, made only if `claim` still holds the record.
    async fn write_held(
        &self,
        operation: &'static str,
        claim: &HeldClaim,
        write: HeldWrite,
    ) -> Result<(), StoreError> {
        let claim = claim.clone();
        self.run(operation, move |connection| {
            immediate(connection, |transaction| {
                let mut record = load(transaction, &claim.key)?;
                let outcome = write.apply(record.as_mut(), &claim);
                if let (Ok(()), Some(record)) = (&outcome, &record) {
                    save(transaction, &claim.key, record)?;
                }
                Ok(outcome)
            })
        })
        .await?
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        let key = request.key.clone();
        let payload_hash = request.payload_hash.to_owned();
        let (now, lease, retention) = (request.now, request.lease, request.retention);
        let archive = request.archive.map(str::to_owned);
        self.run("claiming", move |connection| {
            immediate(connection, |transaction| {
                let request = ClaimRequest {
                    key: &key,
                    payload_hash: &payload_hash,
                    now,
                    lease,
                    retention,
                    archive: archive.as_deref(),
                };
                let found = load(transaction, &key)?;
                match decide_claim(found.as_ref(), &request, new_holder()) {
                    ClaimDecision::Refuse(claim) => Ok(claim),
                    ClaimDecision::Take(record) => {
                        save(transaction, &key, &record)?;
                        Ok(Claim::Acquired(record.held(&key)))
                    }
                }
            })
        })
        .await
    }

    async fn record_body(&self, sighting: BodySighting<'_>) -> Result<FirstSeen, StoreError> {
        let name = sighting.record_name();
        let (key, now, retention) = (sighting.key.clone(), sighting.now, sighting.retention);
        let provider = sighting.provider;
        let sha = sighting.body_sha256.to_owned();
        self.run("recording a body sighting", move |connection| {
            immediate(connection, |transaction| {
                let found = transaction
                    .prepare_cached(
                        "SELECT first_key, expires_at_ns FROM body_sightings WHERE body = ?1",
                    )?
                    .query_row(params![name], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                    })
                    .optional()?;
                let found = found
                    .map(|(first, expires_ns)| {
                        let malformed = |column: &str| {
                            DbError::Malformed(format!(
                                "the body sighting {name} has a malformed `{column}`"
                            ))
                        };
                        Ok::<_, DbError>(SightingRecord {
                            first_key: IdempotencyKey::try_from(first)
                                .map_err(|_| malformed("first_key"))?,
                            expires_at: from_ns(expires_ns)
                                .ok_or_else(|| malformed("expires_at_ns"))?,
                        })
                    })
                    .transpose()?;
                let sighting = BodySighting {
                    provider,
                    body_sha256: &sha,
                    key: &key,
                    now,
                    retention,
                };
                let (first, write) = decide_sighting(found.as_ref(), &sighting);
                if let Some(record) = write {
                    transaction
                        .prepare_cached(
                            "INSERT OR REPLACE INTO body_sightings (body, first_key, expires_at_ns) \
                             VALUES (?1, ?2, ?3)",
                        )?
                        .execute(params![
                            name,
                            record.first_key.as_str(),
                            to_ns(record.expires_at)
                        ])?;
                }
                Ok(first)
            })
        })
        .await
    }

    async fn is_recorded(
        &self,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let key = key.clone();
        self.run("reading a claim", move |connection| {
            let expires: Option<i64> = connection
                .prepare_cached("SELECT expires_at_ns FROM claims WHERE idempotency_key = ?1")?
                .query_row(params![key.as_str()], |row| row.get(0))
                .optional()?;
            Ok(expires.is_some_and(|expires| expires > to_ns(now)))
        })
        .await
    }

    async fn mark_action_done(&self, claim: &HeldClaim, action: &str) -> Result<(), StoreError> {
        self.write_held(
            "recording an action done",
            claim,
            HeldWrite::ActionDone(action.to_owned()),
        )
        .await
    }

    async fn complete(
        &self,
        claim: &HeldClaim,
        finishing_action: Option<&str>,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.write_held(
            "completing a claim",
            claim,
            HeldWrite::Complete {
                finishing_action: finishing_action.map(str::to_owned),
                now,
                retention,
            },
        )
        .await
    }

    async fn release(
        &self,
        claim: &HeldClaim,
        failure: Option<&Failure>,
    ) -> Result<(), StoreError> {
        let write = HeldWrite::Release {
            failure: failure.cloned(),
        };
        self.write_held("releasing a claim", claim, write).await
    }

    async fn record(
        &self,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<EventRecord>, StoreError> {
        let key = key.clone();
        self.run("reading a claim", move |connection| {
            let transaction = connection.transaction()?;
            let Some(record) = load(&transaction, &key)? else {
                return Ok(None);
            };
            let updated_ms: i64 = transaction
                .prepare_cached("SELECT updated_at_ms FROM claims WHERE idempotency_key = ?1")?
                .query_row(params![key.as_str()], |row| row.get(0))?;
            let updated_at =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(updated_ms) * 1_000_000).ok();
            Ok((record.expires_at > now).then(|| record.view(updated_at)))
        })
        .await
    }
}

fn load(
    transaction: &Transaction<'_>,
    key: &IdempotencyKey,
) -> Result<Option<ClaimRecord>, DbError> {
    let row = transaction
        .prepare_cached(
            "SELECT status, holder, lease_expires_at_ns, expires_at_ns, payload_hash, attempts, \
                    done_actions, last_error, archive, failed_actions \
             FROM claims WHERE idempotency_key = ?1",
        )?
        .query_row(params![key.as_str()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, u32>(5)?,
                row.get::<_, String>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, Option<String>>(8)?,
                row.get::<_, Option<String>>(9)?,
            ))
        })
        .optional()?;
    let Some((
        status,
        holder,
        lease_ns,
        expires_ns,
        payload_hash,
        attempts,
        done,
        last_error,
        archive,
        failed,
    )) = row
    else {
        return Ok(None);
    };
    let malformed =
        |column: &str| DbError::Malformed(format!("the claim on {key} has a malformed `{column}`"));
    Ok(Some(ClaimRecord {
        status: Status::parse(&status).ok_or_else(|| malformed("status"))?,
        holder,
        lease_expires_at: from_ns(lease_ns).ok_or_else(|| malformed("lease_expires_at_ns"))?,
        expires_at: from_ns(expires_ns).ok_or_else(|| malformed("expires_at_ns"))?,
        payload_hash,
        attempts,
        done_actions: serde_json::from_str::<BTreeSet<String>>(&done)
            .map_err(|_| malformed("done_actions"))?,
        last_error,
        failed_actions: failed
            .map(|failed| serde_json::from_str::<BTreeMap<String, String>>(&failed))
            .transpose()
            .map_err(|_| malformed("failed_actions"))?
            .unwrap_or_default(),
        archive,
    }))
}

fn save(
    transaction: &Transaction<'_>,
    key: &IdempotencyKey,
    record: &ClaimRecord,
) -> Result<(), DbError> {
    let done_actions = serde_json::to_string(&record.done_actions)
        .map_err(|error| DbError::Malformed(format!("the actions done on {key}: {error}")))?;
    let failed_actions = (!record.failed_actions.is_empty())
        .then(|| serde_json::to_string(&record.failed_actions))
        .transpose()
        .map_err(|error| DbError::Malformed(format!("the actions failed on {key}: {error}")))?;
    transaction
        .prepare_cached(
            "INSERT OR REPLACE INTO claims \
             (idempotency_key, status, holder, lease_expires_at_ns, expires_at_ns, payload_hash, \
              attempts, done_actions, updated_at_ms, last_error, archive, failed_actions) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            key.as_str(),
            record.status.as_str(),
            record.holder,
            to_ns(record.lease_expires_at),
            to_ns(record.expires_at),
            record.payload_hash,
            record.attempts,
            done_actions,
            wall_clock_ms(),
            record.last_error,
            record.archive,
            failed_actions,
        ])?;
    Ok(())
}

fn to_ns(instant: OffsetDateTime) -> i64 {
    let nanos = instant.unix_timestamp_nanos();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

fn from_ns(nanos: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Provider;
    use crate::sqlite::testing::ScratchFile;

    const LEASE: Duration = Duration::from_secs(60);
    const RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

    fn key(id: &str) -> IdempotencyKey {
        IdempotencyKey::from_stable_id(Provider::Github, id).expect("a valid delivery id")
    }

    /// Not a whole second: the store keeps nanoseconds.
    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).expect("valid")
    }

    fn request<'a>(key: &'a IdempotencyKey, now: OffsetDateTime) -> ClaimRequest<'a> {
        ClaimRequest {
            key,
            payload_hash: "4f5b7e2a9c",
            now,
            lease: LEASE,
            retention: RETENTION,
            archive: None,
        }
    }

    async fn acquire(store: &SqliteStore, request: ClaimRequest<'_>) -> HeldClaim {
        match store.claim(request).await {
            Ok(Claim::Acquired(held)) => held,
            other => panic!("expected to acquire the claim, got {other:?}"),
        }
    }

    /// A store on `scratch` holding the claim on `key` since [`t0`], its action `notify`
    /// done.
    async fn holding_with_notify_done(
        scratch: &ScratchFile,
        key: &IdempotencyKey,
    ) -> (SqliteStore, HeldClaim) {
        let store = SqliteStore::open(scratch.path()).expect("opens");
        let held = acquire(&store, request(key, t0())).await;
        store
            .mark_action_done(&held, "notify")
            .await
            .expect("recorded");
        (store, held)
    }

    #[tokio::test]
    async fn a_reopened_file_still_holds_the_claim_and_its_progress() {
        let scratch = ScratchFile::new("store-reopened");
        let key = key("d-reopened");
        let (store, held) = holding_with_notify_done(&scratch, &key).await;
        drop(store);

        let reopened = SqliteStore::open(scratch.path()).expect("opens again");

        assert_eq!(
            reopened
                .claim(request(&key, t0() + Duration::from_secs(1)))
                .await
                .expect("answers"),
            Claim::InFlight {
                lease_expires_at: t0() + LEASE
            },
            "to the nanosecond"
        );
        reopened
            .release(&held, None)
            .await
            .expect("the holder releases");
        let next = acquire(&reopened, request(&key, t0())).await;
        assert_eq!(next.attempt, 2);
        assert_eq!(next.done_actions, BTreeSet::from(["notify".to_owned()]));
    }

    /// People read the table while debugging `hookgate dev`: it must look as the schema
    /// says.
    #[tokio::test]
    async fn the_row_is_laid_out_as_the_schema_says() {
        let scratch = ScratchFile::new("store-layout");
        let key = key("d-layout");
        let (store, held) = holding_with_notify_done(&scratch, &key).await;
        store
            .mark_action_done(&held, "ticket")
            .await
            .expect("recorded");
        store
            .complete(&held, None, t0(), RETENTION)
            .await
            .expect("done");

        let connection = rusqlite::Connection::open(scratch.path()).expect("a second look");
        let row = connection
            .query_row(
                "SELECT status, holder, lease_expires_at_ns, expires_at_ns, payload_hash, \
                        attempts, done_actions, updated_at_ms \
                 FROM claims WHERE idempotency_key = ?1",
                params![key.as_str()],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, i64>(5)?,
                        row.get::<_, String>(6)?,
                        row.get::<_, i64>(7)?,
                    ))
                },
            )
            .expect("the row exists");

        assert_eq!(row.0, "COMPLETED");
        assert_eq!(row.1, held.holder);
        assert_eq!(row.2, to_ns(t0() + LEASE));
        assert_eq!(row.3, to_ns(t0() + RETENTION));
        assert_eq!(row.4, "4f5b7e2a9c");
        assert_eq!(row.5, 1);
        assert_eq!(row.6, r#"["notify","ticket"]"#);
        assert!(row.7 > 0);
    }

    #[tokio::test]
    async fn a_row_this_adapter_cannot_have_written_makes_the_store_unavailable() {
        let scratch = ScratchFile::new("store-malformed");
        let key = key("d-malformed");
        let store = SqliteStore::open(scratch.path()).expect("opens");
        acquire(&store, request(&key, t0())).await;
        rusqlite::Connection::open(scratch.path())
            .expect("a second connection")
            .execute("UPDATE claims SET done_actions = 'not json'", [])
            .expect("spoiled");

        let outcome = store.claim(request(&key, t0() + LEASE)).await;

        match outcome {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("done_actions"), "{message}")
            }
            other => panic!("expected the store to be unavailable, got {other:?}"),
        }
    }

    #[test]
    fn a_newer_schema_is_refused_naming_the_file() {
        let scratch = ScratchFile::new("store-newer");
        rusqlite::Connection::open(scratch.path())
            .expect("a new file")
            .pragma_update(None, "user_version", 99)
            .expect("the version is set");

        let error = SqliteStore::open(scratch.path()).expect_err("refused");

        let error = error.to_string();
        assert!(error.contains("schema version 99"), "{error}");
        assert!(
            error.contains(&scratch.path().display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn instants_beyond_what_nanoseconds_hold_are_kept_as_the_last_they_hold() {
        assert_eq!(to_ns(time::PrimitiveDateTime::MAX.assume_utc()), i64::MAX);
        assert_eq!(to_ns(time::PrimitiveDateTime::MIN.assume_utc()), i64::MIN);
        assert_eq!(from_ns(to_ns(t0())), Some(t0()));
    }
}
