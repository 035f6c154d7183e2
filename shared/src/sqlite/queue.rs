//! The SQLite adapter of the queue ports ([`EventQueue`], [`QueueConsumer`],
//! [`QueueControl`], [`DeadLetterQueue`]): SQS's semantics in two tables, `queue_messages`
//! and `dead_letters`.
//!
//! A message is visible from its enqueueing; a receive hides it until `now + visibility`,
//! raises its receive count and gives it a new receipt handle, and only the latest handle
//! can acknowledge it or put it off. A message already received the maximum number of
//! times is moved to `dead_letters` instead of being delivered again, as SQS's redrive
//! policy does. Visibility runs on the wall clock, in whole milliseconds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::database::{immediate, wall_clock_ms, Database, DbError};
use crate::dead_letters::{DeadLetter, DeadLetterQueue, Redrive};
use crate::envelope::QueueMessage;
use crate::processor::{QueueConsumer, QueueControl, QueuedDelivery};
use crate::queue::{EventQueue, QueueError, SQS_MAX_MESSAGE_BYTES};

/// The most messages one receive hands out, as with SQS's `ReceiveMessage`.
const MAX_BATCH: usize = 10;

/// The longest a receive waits for a message, as with SQS's long polling.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// How often a waiting receive looks again. Looking is one read that takes no lock, so
/// waiting receivers cost enqueuers nothing; 50 ms is quick enough for a local loop.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How the queue behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteQueueSettings {
    /// How many times a message is delivered before the next receive moves it to the
    /// dead-letter queue instead; at least 1.
    pub max_receive_count: u32,
}

impl Default for SqliteQueueSettings {
    /// 5, as the deployed queue's redrive policy (`MaxReceiveCount` in `template.yaml`).
    fn default() -> Self {
        Self {
            max_receive_count: 5,
        }
    }
}

/// How many messages the queue holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Ready to be received now.
    pub visible: u64,
    /// Received (or put off) and not yet visible again.
    pub in_flight: u64,
    /// In the dead-letter queue.
    pub dead: u64,
}

/// The embedded queue and its dead-letter queue, in one SQLite file. Clones share one
/// connection; adapters opened separately on the same file (in this process or another)
/// share its messages, and never deliver one message to two receivers at once.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    database: Database,
    settings: SqliteQueueSettings,
}

impl SqliteQueue {
    /// Opens the queue in the file at `path`, creating the file, its directories and the
    /// schema if missing. The error names the path and what failed.
    pub fn open(path: &Path, settings: SqliteQueueSettings) -> Result<Self, QueueError> {
        let refused = |reason: &dyn std::fmt::Display| {
            QueueError::new(format!(
                "cannot open the SQLite queue {}: {reason}",
                path.display()
            ))
        };
        if settings.max_receive_count == 0 {
            return Err(refused(&"max_receive_count must be at least 1"));
        }
        let database = Database::open(path).map_err(|error| refused(&error))?;
        Ok(Self { database, settings })
    }

    /// The file the queue lives in.
    pub fn path(&self) -> &Path {
        self.database.path()
    }

    /// How many messages are visible, in flight and dead, counted in one consistent read.
    /// It blocks the calling thread for that read (it takes no write lock, so it waits on
    /// no other process, only on a call of this adapter's clones in progress).
    pub fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.database
            .run_blocking(|connection| {
                let now = wall_clock_ms();
                let counts = connection
                    .prepare_cached(
                        "SELECT (SELECT count(*) FROM queue_messages WHERE visible_at_ms <= ?1), \
                            (SELECT count(*) FROM queue_messages WHERE visible_at_ms > ?1), \
                            (SELECT count(*) FROM dead_letters)",
                    )?
                    .query_row(params![now], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    })?;
                let count = |value: i64| u64::try_from(value).unwrap_or_default();
                Ok(QueueDepth {
                    visible: count(counts.0),
                    in_flight: count(counts.1),
                    dead: count(counts.2),
                })
            })
            .map_err(|error| self.failed("counting the messages", error))
    }

    async fn run<T, F>(&self, operation: &'static str, call: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.database
            .run(call)
            .await
            .map_err(|error| self.failed(operation, error))
    }

    fn failed(&self, operation: &str, error: impl std::fmt::Display) -> QueueError {
        QueueError::new(format!(
            "the SQLite queue {}: {operation} failed: {error}",
            self.database.path().display()
        ))
    }
}

#[async_trait]
impl EventQueue for SqliteQueue {
    /// `Ok` comes after the insert is committed with `synchronous=FULL`: the message
    /// survives the process being killed and the machine losing power.
    async fn enqueue(&self, message: &QueueMessage) -> Result<String, QueueError> {
        crate::queue::refuse_oversized(message, SQS_MAX_MESSAGE_BYTES)
            .map_err(|error| self.failed("enqueueing", error))?;
        let attributes: BTreeMap<&str, String> = message.attributes().into_iter().collect();
        let attributes = serde_json::to_string(&attributes)
            .map_err(|error| self.failed("encoding the attributes", error))?;
        let body = message.body().to_owned();
        self.run("enqueueing", move |connection| {
            immediate(connection, |transaction| {
                let id = new_id();
                let now = wall_clock_ms();
                transaction
                    .prepare_cached(
                        "INSERT INTO queue_messages \
                         (id, body, attributes, enqueued_at_ms, visible_at_ms, receive_count) \
                         VALUES (?1, ?2, ?3, ?4, ?4, 0)",
                    )?
                    .execute(params![id, body, attributes, now])?;
                Ok(id)
            })
        })
        .await
    }

    /// SQS's largest message, so that `hookgate dev` keeps in its envelopes exactly what a
    /// deployed stack keeps in its queue's, and stores the rest as the stack does.
    fn max_message_bytes(&self) -> usize {
        SQS_MAX_MESSAGE_BYTES
    }
}

#[async_trait]
impl QueueConsumer for SqliteQueue {
    /// `max` is brought within 1 to 10 and `wait` capped at 20 s, SQS's limits.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<QueuedDelivery>, QueueError> {
        let max = max.clamp(1, MAX_BATCH);
        let visibility_ms = whole_ms(visibility);
        let max_receive_count = self.settings.max_receive_count;
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let deliveries = self
                .run("receiving", move |connection| {
                    let now = wall_clock_ms();
                    let any_visible: bool = connection
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE visible_at_ms <= ?1)",
                        )?
                        .query_row(params![now], |row| row.get(0))?;
                    if !any_visible {
                        return Ok(Vec::new());
                    }
                    immediate(connection, |transaction| {
                        receive_visible(transaction, max, visibility_ms, max_receive_count)
                    })
                })
                .await?;
            let now = Instant::now();
            if !deliveries.is_empty() || now >= deadline {
                return Ok(deliveries);
            }
            tokio::time::sleep((deadline - now).min(POLL_INTERVAL)).await;
        }
    }

    /// Deletes the message if `delivery` is its latest receive. A stale receipt handle (the
    /// message became visible again and was received since) deletes nothing and still
    /// answers `Ok`, as SQS does: the newer receive holds the message now, and it is that
    /// receive's to acknowledge. A message already gone is `Ok` too.
    async fn acknowledge(&self, delivery: &QueuedDelivery) -> Result<(), QueueError> {
        let (id, handle) = (delivery.message_id.clone(), delivery.receipt_handle.clone());
        self.run("acknowledging", move |connection| {
            immediate(connection, |transaction| {
                transaction
                    .prepare_cached(
                        "DELETE FROM queue_messages WHERE id = ?1 AND receipt_handle = ?2",
                    )?
                    .execute(params![id, handle])?;
                Ok(())
            })
        })
        .await
    }
}

#[async_trait]
impl QueueControl for SqliteQueue {
    fn max_receive_count(&self) -> Option<u32> {
        Some(self.settings.max_receive_count)
    }

    /// Hides the message until `now + delay` (rounded up to the millisecond, so a delay is
    /// never cut short). Refused, as SQS refuses, when `delivery` is no longer the latest
    /// receive of a message still queued: the message is someone else's to put off.
    async fn retry_after(
        &self,
        delivery: &QueuedDelivery,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let (id, handle) = (delivery.message_id.clone(), delivery.receipt_handle.clone());
        let delay_ms = whole_ms(delay);
        let changed = self
            .run("putting a message off", move |connection| {
                immediate(connection, |transaction| {
                    let visible_at = wall_clock_ms().saturating_add(delay_ms);
                    let changed = transaction
                        .prepare_cached(
                            "UPDATE queue_messages SET visible_at_ms = ?3 \
                             WHERE id = ?1 AND receipt_handle = ?2",
                        )?
                        .execute(params![id, handle, visible_at])?;
                    Ok(changed > 0)
                })
            })
            .await?;
        if changed {
            Ok(())
        } else {
            Err(self.failed(
                "putting a message off",
                format_args!(
                    "the message {} is no longer held under this receipt handle \
                     (it was acknowledged, or received again since)",
                    delivery.message_id
                ),
            ))
        }
    }

    /// Stores a copy of the message, with a new id, the reason, and the original's
    /// attributes while it is still queued; the original stays until the processor
    /// acknowledges it, so a failure between the two loses nothing.
    async fn dead_letter(&self, delivery: &QueuedDelivery, reason: &str) -> Result<(), QueueError> {
        let (source_id, body, reason) = (
            delivery.message_id.clone(),
            delivery.body.clone(),
            crate::dead_letters::bounded_reason(reason),
        );
        self.run("dead-lettering a message", move |connection| {
            immediate(connection, |transaction| {
                transaction
                    .prepare_cached(
                        "INSERT INTO dead_letters \
                         (id, body, attributes, reason, source_message_id, dead_lettered_at_ms) \
                         VALUES (?1, ?2, \
                                 COALESCE((SELECT attributes FROM queue_messages WHERE id = ?4), '{}'), \
                                 ?3, ?4, ?5)",
                    )?
                    .execute(params![new_id(), body, reason, source_id, wall_clock_ms()])?;
                Ok(())
            })
        })
        .await
    }
}

#[async_trait]
impl DeadLetterQueue for SqliteQueue {
    async fn list(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.run("listing the dead letters", move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, body, reason, dead_lettered_at_ms, source_message_id \
                 FROM dead_letters ORDER BY seq LIMIT ?1",
            )?;
            let letters = statement
                .query_map(params![limit], dead_letter)?
                .collect::<Result<_, _>>()?;
            Ok(letters)
        })
        .await
    }

    async fn show(&self, id: &str) -> Result<Option<DeadLetter>, QueueError> {
        let id = id.to_owned();
        self.run("reading a dead letter", move |connection| {
            Ok(connection
                .prepare_cached(
                    "SELECT id, body, reason, dead_lettered_at_ms, source_message_id \
                     FROM dead_letters WHERE id = ?1 OR source_message_id = ?1 \
                     ORDER BY seq LIMIT 1",
                )?
                .query_row(params![id], dead_letter)
                .optional()?)
        })
        .await
    }

    /// Moves every dead letter back, oldest first, in one transaction: visible at once,
    /// received zero times, keeping its id and attributes.
    async fn redrive(&self) -> Result<Redrive, QueueError> {
        let moved = self
            .run("redriving the dead letters", move |connection| {
                immediate(connection, |transaction| {
                    let now = wall_clock_ms();
                    let moved = transaction.execute(
                        "INSERT INTO queue_messages \
                         (id, body, attributes, enqueued_at_ms, visible_at_ms, receive_count) \
                         SELECT id, body, attributes, ?1, ?1, 0 FROM dead_letters ORDER BY seq",
                        params![now],
                    )?;
                    transaction.execute("DELETE FROM dead_letters", [])?;
                    Ok(moved)
                })
            })
            .await?;
        Ok(Redrive::Moved {
            count: u64::try_from(moved).unwrap_or(u64::MAX),
        })
    }
}

/// Hands out up to `max` visible messages, oldest first, moving to the dead-letter table on
/// the way any that already had their last delivery.
fn receive_visible(
    transaction: &Transaction<'_>,
    max: usize,
    visibility_ms: i64,
    max_receive_count: u32,
) -> Result<Vec<QueuedDelivery>, DbError> {
    let now = wall_clock_ms();
    let mut deliveries = Vec::new();
    // Walked by insertion order: with a zero visibility a delivered message stays visible,
    // and must not be handed out twice in one batch.
    let mut after_seq = 0_i64;
    while deliveries.len() < max {
        let wanted = i64::try_from(max - deliveries.len()).unwrap_or(i64::MAX);
        let candidates: Vec<(i64, String, String, u32)> = transaction
            .prepare_cached(
                "SELECT seq, id, body, receive_count FROM queue_messages \
                 WHERE visible_at_ms <= ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?
            .query_map(params![now, after_seq, wanted], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        if candidates.is_empty() {
            break;
        }
        for (seq, message_id, body, receive_count) in candidates {
            after_seq = seq;
            if receive_count >= max_receive_count {
                move_to_dead_letters(transaction, seq, now)?;
                continue;
            }
            let receipt_handle = new_id();
            let receive_count = receive_count.saturating_add(1);
            transaction
                .prepare_cached(
                    "UPDATE queue_messages \
                     SET receive_count = ?2, visible_at_ms = ?3, receipt_handle = ?4 \
                     WHERE seq = ?1",
                )?
                .execute(params![
                    seq,
                    receive_count,
                    now.saturating_add(visibility_ms),
                    receipt_handle
                ])?;
            deliveries.push(QueuedDelivery {
                message_id,
                receipt_handle,
                body,
                receive_count,
            });
        }
    }
    Ok(deliveries)
}

/// The redrive policy's move: the message keeps its id, and has no reason.
fn move_to_dead_letters(transaction: &Transaction<'_>, seq: i64, now: i64) -> Result<(), DbError> {
    transaction
        .prepare_cached(
            "INSERT INTO dead_letters \
             (id, body, attributes, reason, source_message_id, dead_lettered_at_ms) \
             SELECT id, body, attributes, NULL, id, ?2 FROM queue_messages WHERE seq = ?1",
        )?
        .execute(params![seq, now])?;
    transaction
        .prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")?
        .execute(params![seq])?;
    Ok(())
}

fn dead_letter(row: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    let dead_lettered_at_ms: i64 = row.get(3)?;
    let message_id: String = row.get(0)?;
    let source_message_id: String = row.get(4)?;
    Ok(DeadLetter {
        source_message_id: (source_message_id != message_id).then_some(source_message_id),
        message_id,
        body: row.get(1)?,
        reason: row.get(2)?,
        dead_lettered_at: OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(dead_lettered_at_ms) * 1_000_000,
        )
        .ok(),
    })
}

/// A message id or receipt handle: unique without coordination between processes.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `duration` in milliseconds, rounded up.
fn whole_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::sqlite::testing::ScratchFile;

    const VISIBILITY: Duration = Duration::from_secs(30);
    const NO_WAIT: Duration = Duration::ZERO;

    fn open(scratch: &ScratchFile, max_receive_count: u32) -> SqliteQueue {
        SqliteQueue::open(scratch.path(), SqliteQueueSettings { max_receive_count })
            .expect("the queue opens")
    }

    /// A queue message, made the only way there is: from a delivery that passed
    /// verification.
    fn message(delivery_id: &str) -> QueueMessage {
        crate::verify::test_support::verified_github_message(delivery_id)
    }

    async fn receive_one(queue: &SqliteQueue, visibility: Duration) -> QueuedDelivery {
        let mut deliveries = queue
            .receive(1, visibility, NO_WAIT)
            .await
            .expect("the queue answers");
        assert_eq!(deliveries.len(), 1, "{deliveries:?}");
        deliveries.remove(0)
    }

    #[tokio::test]
    async fn a_reopened_file_still_holds_what_was_enqueued() {
        let scratch = ScratchFile::new("reopened");
        let sent = message("d-reopened");
        let id = open(&scratch, 5).enqueue(&sent).await.expect("stored");

        let reopened = open(&scratch, 5);

        let delivery = receive_one(&reopened, VISIBILITY).await;
        assert_eq!(delivery.message_id, id);
        assert_eq!(delivery.body, sent.body());
        assert_eq!(delivery.receive_count, 1);
    }

    #[tokio::test]
    async fn messages_are_received_oldest_first_at_most_ten_at_a_time() {
        let scratch = ScratchFile::new("order");
        let queue = open(&scratch, 5);
        let mut ids = Vec::new();
        for n in 0..12 {
            ids.push(
                queue
                    .enqueue(&message(&format!("d-{n}")))
                    .await
                    .expect("stored"),
            );
        }

        let first = queue
            .receive(50, VISIBILITY, NO_WAIT)
            .await
            .expect("answers");
        let rest = queue
            .receive(50, VISIBILITY, NO_WAIT)
            .await
            .expect("answers");

        let received: Vec<String> = first
            .iter()
            .chain(&rest)
            .map(|delivery| delivery.message_id.clone())
            .collect();
        assert_eq!(first.len(), 10);
        assert_eq!(received, ids);
    }

    #[tokio::test]
    async fn a_received_message_stays_hidden_for_its_visibility() {
        let scratch = ScratchFile::new("hidden");
        let queue = open(&scratch, 5);
        queue.enqueue(&message("d-hidden")).await.expect("stored");
        // Two seconds: the checks below must run inside it even on a loaded machine.
        receive_one(&queue, Duration::from_secs(2)).await;

        assert!(queue
            .receive(10, VISIBILITY, NO_WAIT)
            .await
            .expect("answers")
            .is_empty());
        assert_eq!(
            queue.depth().expect("counted"),
            QueueDepth {
                visible: 0,
                in_flight: 1,
                dead: 0
            }
        );

        let again = queue
            .receive(1, VISIBILITY, Duration::from_secs(5))
            .await
            .expect("answers");
        assert_eq!(again.len(), 1, "visible again once its visibility ran out");
    }

    #[tokio::test]
    async fn each_receive_raises_the_count_and_hands_out_a_new_receipt_handle() {
        let scratch = ScratchFile::new("counts");
        let queue = open(&scratch, 5);
        queue.enqueue(&message("d-counts")).await.expect("stored");

        let mut handles = BTreeSet::new();
        for expected in 1..=3 {
            let delivery = receive_one(&queue, Duration::ZERO).await;
            assert_eq!(delivery.receive_count, expected);
            assert!(handles.insert(delivery.receipt_handle));
        }
    }

    #[tokio::test]
    async fn a_message_received_the_maximum_number_of_times_moves_to_the_dead_letters_without_a_reason(
    ) {
        let scratch = ScratchFile::new("max-receives");
        let queue = open(&scratch, 2);
        let id = queue.enqueue(&message("d-poison")).await.expect("stored");
        let kept = queue.enqueue(&message("d-fine")).await.expect("stored");
        assert_eq!(receive_one(&queue, Duration::ZERO).await.message_id, id);
        assert_eq!(receive_one(&queue, Duration::ZERO).await.message_id, id);

        // The third receive moves the first message and hands out the next one instead.
        let next = receive_one(&queue, VISIBILITY).await;

        assert_eq!(next.message_id, kept);
        let dead = queue.list(10).await.expect("listed");
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].message_id, id);
        assert_eq!(dead[0].reason, None);
        assert!(dead[0].dead_lettered_at.is_some());
        assert_eq!(
            queue.show(&id).await.expect("answers").as_ref(),
            Some(&dead[0])
        );
    }

    #[tokio::test]
    async fn a_stale_receipt_handle_neither_deletes_nor_puts_off_the_message() {
        let scratch = ScratchFile::new("stale");
        let queue = open(&scratch, 5);
        queue.enqueue(&message("d-stale")).await.expect("stored");
        let stale = receive_one(&queue, Duration::ZERO).await;
        let current = receive_one(&queue, VISIBILITY).await;

        queue
            .acknowledge(&stale)
            .await
            .expect("a stale acknowledgement answers Ok, as SQS's does");
        let put_off = queue.retry_after(&stale, Duration::from_secs(600)).await;

        assert!(put_off.is_err(), "{put_off:?}");
        assert_eq!(queue.depth().expect("counted").in_flight, 1);
        queue
            .retry_after(&current, Duration::ZERO)
            .await
            .expect("the latest receive puts it off");
        queue
            .acknowledge(&receive_one(&queue, VISIBILITY).await)
            .await
            .expect("acknowledged");
        assert_eq!(queue.depth().expect("counted"), QueueDepth::default());
    }

    #[tokio::test]
    async fn a_dead_letter_is_a_copy_with_its_own_id_and_the_original_goes_on_acknowledgement() {
        let scratch = ScratchFile::new("copy");
        let queue = open(&scratch, 5);
        let sent = message("d-copy");
        let id = queue.enqueue(&sent).await.expect("stored");
        let delivery = receive_one(&queue, VISIBILITY).await;

        queue
            .dead_letter(&delivery, "action `agent` failed permanently: 400")
            .await
            .expect("stored");
        queue.acknowledge(&delivery).await.expect("acknowledged");

        let dead = queue.list(10).await.expect("listed");
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_ne!(dead[0].message_id, id);
        assert_eq!(dead[0].body, sent.body());
        assert_eq!(
            dead[0].reason.as_deref(),
            Some("action `agent` failed permanently: 400")
        );
        assert_eq!(
            queue.depth().expect("counted"),
            QueueDepth {
                visible: 0,
                in_flight: 0,
                dead: 1
            }
        );
    }

    #[tokio::test]
    async fn a_redrive_moves_every_dead_letter_back_visible_at_once_and_never_received() {
        let scratch = ScratchFile::new("redrive");
        let queue = open(&scratch, 1);
        let first = queue.enqueue(&message("d-1")).await.expect("stored");
        let second = queue.enqueue(&message("d-2")).await.expect("stored");
        receive_one(&queue, Duration::ZERO).await;
        receive_one(&queue, Duration::ZERO).await;
        assert!(queue
            .receive(10, VISIBILITY, NO_WAIT)
            .await
            .expect("answers")
            .is_empty());
        assert_eq!(queue.depth().expect("counted").dead, 2);

        let redrive = queue.redrive().await.expect("redriven");

        assert_eq!(redrive, Redrive::Moved { count: 2 });
        assert!(queue.list(10).await.expect("listed").is_empty());
        let back = queue
            .receive(10, VISIBILITY, NO_WAIT)
            .await
            .expect("answers");
        let ids: Vec<&str> = back.iter().map(|d| d.message_id.as_str()).collect();
        assert_eq!(ids, [first.as_str(), second.as_str()]);
        assert!(back.iter().all(|delivery| delivery.receive_count == 1));
    }

    #[tokio::test]
    async fn a_waiting_receive_answers_as_soon_as_a_message_arrives() {
        let scratch = ScratchFile::new("wait");
        let queue = open(&scratch, 5);
        let sender = queue.clone();
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            sender.enqueue(&message("d-late")).await.expect("stored");
        });

        let deliveries = queue
            .receive(10, VISIBILITY, Duration::from_secs(10))
            .await
            .expect("answers");

        assert_eq!(deliveries.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(5), "answered early");
    }

    #[tokio::test]
    async fn a_waiting_receive_with_nothing_to_receive_answers_empty_after_the_wait() {
        let scratch = ScratchFile::new("empty");
        let queue = open(&scratch, 5);
        let started = std::time::Instant::now();

        let deliveries = queue
            .receive(10, VISIBILITY, Duration::from_millis(300))
            .await
            .expect("answers");

        assert!(deliveries.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn receivers_on_separate_connections_never_get_the_same_message() {
        let scratch = ScratchFile::new("receivers");
        let sender = open(&scratch, 5);
        let mut sent = BTreeSet::new();
        for n in 0..40 {
            sent.insert(
                sender
                    .enqueue(&message(&format!("d-{n}")))
                    .await
                    .expect("stored"),
            );
        }

        let mut receivers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let queue = open(&scratch, 5);
            receivers.spawn(async move {
                let mut received = Vec::new();
                loop {
                    let batch = queue
                        .receive(3, VISIBILITY, NO_WAIT)
                        .await
                        .expect("answers");
                    if batch.is_empty() {
                        return received;
                    }
                    received.extend(batch.into_iter().map(|delivery| delivery.message_id));
                }
            });
        }
        let received: Vec<String> = receivers.join_all().await.into_iter().flatten().collect();

        assert_eq!(received.len(), sent.len(), "each message exactly once");
        assert_eq!(received.into_iter().collect::<BTreeSet<_>>(), sent);
    }

    #[tokio::test]
    async fn the_queue_and_the_store_share_a_file() {
        let scratch = ScratchFile::new("shared-file");
        let queue = open(&scratch, 5);
        crate::sqlite::SqliteStore::open(scratch.path()).expect("the store opens beside it");

        queue.enqueue(&message("d-shared")).await.expect("stored");

        assert_eq!(queue.depth().expect("counted").visible, 1);
    }

    #[test]
    fn a_maximum_receive_count_of_zero_is_refused_naming_the_file() {
        let scratch = ScratchFile::new("zero");

        let error = SqliteQueue::open(
            scratch.path(),
            SqliteQueueSettings {
                max_receive_count: 0,
            },
        )
        .expect_err("refused");

        assert!(error.to_string().contains("max_receive_count"), "{error}");
        assert!(
            error
                .to_string()
                .contains(&scratch.path().display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn a_newer_schema_is_refused_naming_the_file() {
        let scratch = ScratchFile::new("newer-queue");
        rusqlite::Connection::open(scratch.path())
            .expect("a new file")
            .pragma_update(None, "user_version", 99)
            .expect("the version is set");

        let error =
            SqliteQueue::open(scratch.path(), SqliteQueueSettings::default()).expect_err("refused");

        assert!(error.to_string().contains("schema version 99"), "{error}");
        assert!(
            error
                .to_string()
                .contains(&scratch.path().display().to_string()),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_broken_table_is_an_error_naming_the_file_and_the_operation() {
        let scratch = ScratchFile::new("broken");
        let queue = open(&scratch, 5);
        rusqlite::Connection::open(scratch.path())
            .expect("a second connection")
            .execute_batch("DROP TABLE queue_messages")
            .expect("dropped");

        let error = queue
            .enqueue(&message("d-broken"))
            .await
            .expect_err("nothing can be stored");

        let error = error.to_string();
        assert!(error.contains("enqueueing"), "{error}");
        assert!(
            error.contains(&scratch.path().display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn durations_round_up_to_the_millisecond() {
        assert_eq!(whole_ms(Duration::from_millis(700)), 700);
        assert_eq!(whole_ms(Duration::from_micros(700_001)), 701);
        assert_eq!(whole_ms(Duration::ZERO), 0);
        assert_eq!(whole_ms(Duration::MAX), i64::MAX);
    }
}
