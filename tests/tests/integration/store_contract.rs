//! The contract of the [`IdempotencyStore`] port, as one suite run against every adapter:
//! the in-memory store, the DynamoDB adapter on the emulator, and the SQLite store
//! `hookgate dev` runs on.
//!
//! The processor's exactly-once effect rests on these answers alone (who holds a claim, what
//! is done, when a record is gone), so the processor's unit tests on the in-memory store
//! prove something about the deployed one only if both keep the same contract, to the
//! boundary instant.
//!
//! Time is passed in, never slept through: every instant is a whole second, the precision
//! every adapter keeps exactly, so the boundaries (a lease that ends at `now`, a record whose
//! retention ends at `now`) are tested where they are.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use hookgate::aws::DynamoStore;
use hookgate::claims::{
    BodySighting, Claim, ClaimRequest, Failure, FirstSeen, HeldClaim, IdempotencyStore,
    MemoryStore, Status, StoreError,
};
use hookgate::idempotency::IdempotencyKey;
use hookgate::provider::Provider;
use hookgate::sqlite::SqliteStore;
use hookgate_tests::contract::{look, ScratchFile};
use hookgate_tests::emulator;
use time::OffsetDateTime;
use tokio::task::JoinSet;

const LEASE: Duration = Duration::from_secs(60);
const RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const FIRST_HASH: &str = "4f5b7e2a9c";
const OTHER_HASH: &str = "d81e03b6f7";

/// An adapter under test, and how to break it.
trait Adapter {
    /// The store, shareable with spawned tasks.
    fn store(&self) -> Arc<dyn IdempotencyStore>;

    /// From now on, the store cannot answer.
    async fn make_unavailable(&self);
}

#[derive(Debug, Default)]
struct Memory(MemoryStore);

impl Adapter for Memory {
    fn store(&self) -> Arc<dyn IdempotencyStore> {
        // Clones share one set of records.
        Arc::new(self.0.clone())
    }

    async fn make_unavailable(&self) {
        self.0.set_unavailable(true);
    }
}

#[derive(Debug)]
struct Dynamo {
    client: aws_sdk_dynamodb::Client,
    table_name: String,
    store: DynamoStore,
}

impl Dynamo {
    /// The adapter on a fresh table of its own.
    async fn new() -> Self {
        let client = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
        let table_name = emulator::create_idempotency_table(&client, "claims")
            .await
            .expect("the emulator creates a table");
        let store = DynamoStore::connect(client.clone(), table_name.clone())
            .await
            .expect("the adapter connects to a table that exists");
        Self {
            client,
            table_name,
            store,
        }
    }

    async fn item(
        &self,
        key: &IdempotencyKey,
    ) -> std::collections::HashMap<String, AttributeValue> {
        self.client
            .get_item()
            .table_name(&self.table_name)
            .key(
                "idempotency_key",
                AttributeValue::S(key.as_str().to_owned()),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("the emulator answers GetItem")
            .item
            .expect("the record exists")
    }
}

impl Adapter for Dynamo {
    fn store(&self) -> Arc<dyn IdempotencyStore> {
        Arc::new(self.store.clone())
    }

    async fn make_unavailable(&self) {
        self.client
            .delete_table()
            .table_name(&self.table_name)
            .send()
            .await
            .expect("the emulator deletes the table");
    }
}

#[derive(Debug)]
struct Sqlite(ScratchFile);

impl Sqlite {
    /// The adapter on a fresh file of its own.
    fn new() -> Self {
        let file = ScratchFile::new("hookgate-store-contract");
        SqliteStore::open(file.path()).expect("the adapter opens a new file");
        Self(file)
    }
}

impl Adapter for Sqlite {
    /// A store on a connection of its own each time, as separate processes would have: the
    /// races below then race through SQLite's locking, not through one connection's mutex.
    fn store(&self) -> Arc<dyn IdempotencyStore> {
        Arc::new(SqliteStore::open(self.0.path()).expect("the file opens again"))
    }

    async fn make_unavailable(&self) {
        look(self.0.path())
            .execute_batch("DROP TABLE claims; DROP TABLE body_sightings")
            .expect("the tables are dropped");
    }
}

/// A whole second: the precision every adapter keeps exactly.
fn start() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds is valid")
}

fn key(id: &str) -> IdempotencyKey {
    IdempotencyKey::from_stable_id(Provider::Github, id).expect("a valid delivery id")
}

fn request<'a>(
    key: &'a IdempotencyKey,
    payload_hash: &'a str,
    now: OffsetDateTime,
) -> ClaimRequest<'a> {
    ClaimRequest {
        key,
        payload_hash,
        now,
        lease: LEASE,
        retention: RETENTION,
        archive: None,
    }
}

/// The record of `key` at `now`, which must exist.
async fn record_of(
    store: &dyn IdempotencyStore,
    key: &IdempotencyKey,
    now: OffsetDateTime,
) -> hookgate::claims::EventRecord {
    store
        .record(key, now)
        .await
        .expect("the store answers")
        .expect("the record exists")
}

fn actions(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

async fn acquire(store: &dyn IdempotencyStore, request: ClaimRequest<'_>) -> HeldClaim {
    match store.claim(request).await {
        Ok(Claim::Acquired(held)) => held,
        other => panic!("expected to acquire the claim, got {other:?}"),
    }
}

fn assert_claim_lost(outcome: Result<(), StoreError>, what: &str) {
    assert!(
        matches!(outcome, Err(StoreError::ClaimLost { .. })),
        "{what} by a holder that lost the claim must be refused, got {outcome:?}"
    );
}

async fn a_record_reads_back_its_status_attempts_actions_and_where_it_is_archived(
    adapter: impl Adapter,
) {
    let store = adapter.store();
    let key = key("d-read");
    let t0 = start();
    assert_eq!(
        store.record(&key, t0).await.expect("the store answers"),
        None
    );

    let archived = ClaimRequest {
        archive: Some("s3://bucket/archive/one.jsonl"),
        ..request(&key, FIRST_HASH, t0)
    };
    let held = acquire(store.as_ref(), archived).await;
    store
        .mark_action_done(&held, "notify")
        .await
        .expect("the holder records its progress");

    let record = record_of(store.as_ref(), &key, t0 + Duration::from_secs(1)).await;
    assert_eq!(record.status, Status::InProgress);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.done_actions, actions(&["notify"]));
    assert_eq!(record.lease_expires_at, Some(t0 + LEASE));
    assert_eq!(record.expires_at, t0 + RETENTION);
    assert_eq!(
        record.archive.as_deref(),
        Some("s3://bucket/archive/one.jsonl")
    );
    assert_eq!(record.last_error, None);
    assert_eq!(record.state(t0 + Duration::from_secs(1)), "in_progress");

    store
        .complete(
            &held,
            Some("ticket"),
            t0 + Duration::from_secs(2),
            RETENTION,
        )
        .await
        .expect("the holder completes");
    let record = record_of(store.as_ref(), &key, t0 + Duration::from_secs(3)).await;
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.done_actions, actions(&["notify", "ticket"]));
    assert_eq!(record.lease_expires_at, None);
    assert_eq!(record.state(t0 + Duration::from_secs(3)), "completed");
    // Past its retention, as absent as it is to a claim.
    let gone = t0 + Duration::from_secs(2) + RETENTION;
    assert_eq!(
        store.record(&key, gone).await.expect("the store answers"),
        None
    );
}

async fn a_release_after_a_failure_keeps_the_failure_as_the_last_error(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-failed");
    let t0 = start();
    let first = acquire(
        store.as_ref(),
        ClaimRequest {
            archive: Some("sqlite:archive/first"),
            ..request(&key, FIRST_HASH, t0)
        },
    )
    .await;

    let failure = Failure {
        reason: "action `agent`: 503 Service Unavailable".to_owned(),
        actions: [("agent".to_owned(), "503 Service Unavailable".to_owned())].into(),
    };
    store
        .release(&first, Some(&failure))
        .await
        .expect("the holder releases");

    let now = t0 + Duration::from_secs(1);
    let record = record_of(store.as_ref(), &key, now).await;
    assert_eq!(
        record.last_error.as_deref(),
        Some("action `agent`: 503 Service Unavailable")
    );
    assert_eq!(record.failed_actions, failure.actions);
    assert_eq!(record.state(now), "failed");
    // A takeover that does not say where its event is archived keeps what the record had;
    // a release without a failure keeps the last one.
    let second = acquire(store.as_ref(), request(&key, FIRST_HASH, now)).await;
    store
        .release(&second, None)
        .await
        .expect("the holder releases");
    let record = record_of(store.as_ref(), &key, now).await;
    assert_eq!(record.attempts, 2);
    assert_eq!(record.archive.as_deref(), Some("sqlite:archive/first"));
    assert_eq!(
        record.last_error.as_deref(),
        Some("action `agent`: 503 Service Unavailable")
    );
    // A long reason is kept cut to a sentence's length.
    let third = acquire(store.as_ref(), request(&key, FIRST_HASH, now)).await;
    let long = Failure {
        reason: "x".repeat(10_000),
        actions: [("agent".to_owned(), "y".repeat(10_000))].into(),
    };
    store
        .release(&third, Some(&long))
        .await
        .expect("the holder releases");
    let record = record_of(store.as_ref(), &key, now).await;
    assert!(
        record.last_error.expect("a last error").len() <= hookgate::dead_letters::MAX_REASON_BYTES
    );
    assert!(record.failed_actions["agent"].len() <= hookgate::dead_letters::MAX_REASON_BYTES);
    // A failure of no action's replaces the last one's actions.
    let fourth = acquire(store.as_ref(), request(&key, FIRST_HASH, now)).await;
    store
        .release(&fourth, Some(&Failure::of("the body store is unavailable")))
        .await
        .expect("the holder releases");
    let record = record_of(store.as_ref(), &key, now).await;
    assert!(record.failed_actions.is_empty(), "{record:?}");
}

async fn a_record_started_afresh_after_its_retention_forgets_the_old_error_and_archive(
    adapter: impl Adapter,
) {
    let store = adapter.store();
    let key = key("d-afresh");
    let t0 = start();
    let old = acquire(
        store.as_ref(),
        ClaimRequest {
            archive: Some("sqlite:archive/old"),
            ..request(&key, FIRST_HASH, t0)
        },
    )
    .await;
    let failure = Failure {
        reason: "action `agent`: timed out".to_owned(),
        actions: [("agent".to_owned(), "timed out".to_owned())].into(),
    };
    store
        .release(&old, Some(&failure))
        .await
        .expect("the holder releases");

    let later = t0 + RETENTION;
    acquire(store.as_ref(), request(&key, OTHER_HASH, later)).await;

    let record = record_of(store.as_ref(), &key, later).await;
    assert_eq!(record.attempts, 1);
    assert_eq!(record.last_error, None);
    assert!(record.failed_actions.is_empty());
    assert_eq!(record.archive, None);
}

// ---- the contract ----

async fn a_first_claim_is_acquired_as_attempt_one_with_nothing_done(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-first");

    let held = acquire(store.as_ref(), request(&key, FIRST_HASH, start())).await;

    assert_eq!(held.key, key);
    assert_eq!(held.attempt, 1);
    assert_eq!(held.done_actions, BTreeSet::new());
    assert_eq!(held.first_payload_hash, FIRST_HASH);
    assert!(!held.holder.is_empty());
}

async fn a_claim_during_a_live_lease_is_in_flight_until_the_lease_ends(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-live");
    let t0 = start();
    acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;

    for later in [Duration::from_secs(10), LEASE - Duration::from_secs(1)] {
        let outcome = store.claim(request(&key, FIRST_HASH, t0 + later)).await;

        assert_eq!(
            outcome.expect("the store answers"),
            Claim::InFlight {
                lease_expires_at: t0 + LEASE
            },
            "{} s into a {} s lease",
            later.as_secs(),
            LEASE.as_secs()
        );
    }
}

async fn a_claim_after_completion_is_a_duplicate(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-done");
    let t0 = start();
    let held = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;
    store
        .complete(&held, None, t0 + Duration::from_secs(5), RETENTION)
        .await
        .expect("the holder completes");

    // Right away, and long after the lease would have run out.
    for later in [Duration::from_secs(5), LEASE * 10] {
        let outcome = store.claim(request(&key, FIRST_HASH, t0 + later)).await;
        assert_eq!(outcome.expect("the store answers"), Claim::Completed);
    }
    // A completed claim is nobody's to write any more, its last holder's included.
    assert_claim_lost(store.mark_action_done(&held, "notify").await, "marking");
    assert_claim_lost(store.release(&held, None).await, "releasing");
    assert_claim_lost(
        store.complete(&held, None, t0, RETENTION).await,
        "completing again",
    );
}

async fn a_released_claim_is_acquired_again_as_attempt_two_keeping_the_actions_done(
    adapter: impl Adapter,
) {
    let store = adapter.store();
    let key = key("d-released");
    let t0 = start();
    let first = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;
    for action in ["notify", "ticket", "notify"] {
        store
            .mark_action_done(&first, action)
            .await
            .expect("the holder records its progress");
    }
    store
        .release(&first, None)
        .await
        .expect("the holder releases");

    let second = acquire(
        store.as_ref(),
        request(&key, FIRST_HASH, t0 + Duration::from_secs(1)),
    )
    .await;

    assert_eq!(second.attempt, 2);
    assert_eq!(second.done_actions, actions(&["notify", "ticket"]));
    assert_ne!(second.holder, first.holder);
}

async fn an_expired_lease_is_taken_over_as_the_next_attempt_keeping_the_actions_done(
    adapter: impl Adapter,
) {
    let store = adapter.store();
    let key = key("d-abandoned");
    let t0 = start();
    let abandoned = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;
    store
        .mark_action_done(&abandoned, "notify")
        .await
        .expect("the holder records its progress");

    // The lease ends at t0 + LEASE: from that instant on, the claim is free.
    let taken = acquire(store.as_ref(), request(&key, FIRST_HASH, t0 + LEASE)).await;

    assert_eq!(taken.attempt, 2);
    assert_eq!(taken.done_actions, actions(&["notify"]));
    assert_ne!(taken.holder, abandoned.holder);
    assert_eq!(
        store
            .claim(request(
                &key,
                FIRST_HASH,
                t0 + LEASE + Duration::from_secs(1)
            ))
            .await
            .expect("the store answers"),
        Claim::InFlight {
            lease_expires_at: t0 + LEASE + LEASE
        },
        "the takeover starts a lease of its own"
    );
}

async fn a_holder_whose_lease_was_taken_over_can_no_longer_write(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-late");
    let t0 = start();
    let late = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;
    let new = acquire(store.as_ref(), request(&key, FIRST_HASH, t0 + LEASE)).await;

    assert_claim_lost(store.mark_action_done(&late, "late").await, "marking");
    assert_claim_lost(store.release(&late, None).await, "releasing");
    assert_claim_lost(
        store.complete(&late, None, t0 + LEASE, RETENTION).await,
        "completing",
    );

    // None of the late writes touched the new holder's claim.
    assert_eq!(
        store
            .claim(request(
                &key,
                FIRST_HASH,
                t0 + LEASE + Duration::from_secs(1)
            ))
            .await
            .expect("the store answers"),
        Claim::InFlight {
            lease_expires_at: t0 + LEASE + LEASE
        }
    );
    store
        .mark_action_done(&new, "notify")
        .await
        .expect("the new holder records its progress");
    store
        .release(&new, None)
        .await
        .expect("the new holder releases");
    let third = acquire(
        store.as_ref(),
        request(&key, FIRST_HASH, t0 + LEASE + Duration::from_secs(2)),
    )
    .await;
    assert_eq!(third.attempt, 3);
    assert_eq!(third.done_actions, actions(&["notify"]));
    store
        .complete(&third, None, t0 + LEASE + Duration::from_secs(3), RETENTION)
        .await
        .expect("the current holder completes");
    assert_eq!(
        store
            .claim(request(&key, FIRST_HASH, t0 + LEASE * 3))
            .await
            .expect("the store answers"),
        Claim::Completed
    );
}

async fn the_first_payload_hash_is_kept_across_claims(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-reused");
    let t0 = start();
    let first = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;
    store
        .release(&first, None)
        .await
        .expect("the holder releases");

    let second = acquire(store.as_ref(), request(&key, OTHER_HASH, t0)).await;
    assert_eq!(second.first_payload_hash, FIRST_HASH);

    // A takeover after an expired lease keeps it too.
    let third = acquire(store.as_ref(), request(&key, OTHER_HASH, t0 + LEASE)).await;
    assert_eq!(third.first_payload_hash, FIRST_HASH);
    assert_eq!(third.attempt, 3);
}

async fn a_completed_record_past_its_retention_counts_as_absent(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-retained");
    let t0 = start();
    let held = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;
    store
        .mark_action_done(&held, "notify")
        .await
        .expect("the holder records its progress");
    store
        .complete(&held, None, t0, RETENTION)
        .await
        .expect("the holder completes");

    assert_eq!(
        store
            .claim(request(
                &key,
                FIRST_HASH,
                t0 + RETENTION - Duration::from_secs(1)
            ))
            .await
            .expect("the store answers"),
        Claim::Completed,
        "a second before its retention ends, the record still stands"
    );
    let fresh = acquire(store.as_ref(), request(&key, OTHER_HASH, t0 + RETENTION)).await;

    assert_eq!(fresh.attempt, 1);
    assert_eq!(fresh.done_actions, BTreeSet::new());
    assert_eq!(fresh.first_payload_hash, OTHER_HASH);
}

async fn an_in_progress_record_past_its_retention_counts_as_absent(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-forgotten");
    let t0 = start();
    let abandoned = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;
    store
        .mark_action_done(&abandoned, "notify")
        .await
        .expect("the holder records its progress");

    let fresh = acquire(store.as_ref(), request(&key, OTHER_HASH, t0 + RETENTION)).await;

    assert_eq!(fresh.attempt, 1);
    assert_eq!(fresh.done_actions, BTreeSet::new());
    assert_eq!(fresh.first_payload_hash, OTHER_HASH);
    assert_claim_lost(store.mark_action_done(&abandoned, "late").await, "marking");
}

const CLAIMANTS: usize = 50;

/// Claims `key` at `now` from fifty tasks at once; asserts that exactly one acquires it and
/// that every other one is told it is in flight until the winner's lease ends.
///
/// DynamoDB applies each conditional write atomically, and the adapter relies on that alone.
/// On the emulator this holds only if it does so too: moto's threaded server checks an
/// `UpdateItem`'s condition and applies the update in separate steps, so unless its DynamoDB
/// calls are serialised, two writers can both pass one condition and this fails for the
/// emulator's sake, not the adapter's.
async fn race(adapter: &impl Adapter, key: &IdempotencyKey, now: OffsetDateTime) -> HeldClaim {
    let mut claimants = JoinSet::new();
    for _ in 0..CLAIMANTS {
        let store = adapter.store();
        let key = key.clone();
        claimants.spawn(async move { store.claim(request(&key, OTHER_HASH, now)).await });
    }

    // Bounded, so that a store that hangs fails the test instead of stalling the run.
    let outcomes = tokio::time::timeout(Duration::from_secs(60), claimants.join_all())
        .await
        .expect("fifty claims finish within a minute");

    let mut winners = outcomes.iter().filter_map(|outcome| match outcome {
        Ok(Claim::Acquired(held)) => Some(held.clone()),
        _ => None,
    });
    let winner = winners.next();
    assert!(
        winners.next().is_none(),
        "more than one winner: {outcomes:?}"
    );
    let in_flight = outcomes
        .iter()
        .filter(|outcome| {
            matches!(outcome, Ok(Claim::InFlight { lease_expires_at }) if *lease_expires_at == now + LEASE)
        })
        .count();
    assert_eq!(in_flight, CLAIMANTS - 1, "{outcomes:?}");
    winner.unwrap_or_else(|| panic!("nobody won: {outcomes:?}"))
}

async fn fifty_concurrent_claims_on_a_new_key_acquire_it_exactly_once(adapter: impl Adapter) {
    let key = key("d-contended");

    let winner = race(&adapter, &key, start()).await;

    assert_eq!(winner.attempt, 1);
}

async fn fifty_concurrent_takeovers_of_an_expired_lease_succeed_exactly_once(
    adapter: impl Adapter,
) {
    let key = key("d-contended-lease");
    let t0 = start();
    acquire(adapter.store().as_ref(), request(&key, FIRST_HASH, t0)).await;

    let winner = race(&adapter, &key, t0 + LEASE).await;

    assert_eq!(winner.attempt, 2);
    assert_eq!(winner.first_payload_hash, FIRST_HASH);
}

async fn fifty_concurrent_claims_on_a_record_past_its_retention_start_it_afresh_exactly_once(
    adapter: impl Adapter,
) {
    let key = key("d-contended-expired");
    let t0 = start();
    let store = adapter.store();
    let held = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;
    store
        .complete(&held, None, t0, RETENTION)
        .await
        .expect("the holder completes");

    let winner = race(&adapter, &key, t0 + RETENTION).await;

    assert_eq!(winner.attempt, 1);
    assert_eq!(winner.first_payload_hash, OTHER_HASH);
}

async fn an_unavailable_store_answers_with_an_error_not_an_outcome(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-unavailable");
    let t0 = start();
    let held = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;

    adapter.make_unavailable().await;

    let claim = store.claim(request(&key, FIRST_HASH, t0)).await;
    assert!(
        matches!(claim, Err(StoreError::Unavailable(_))),
        "{claim:?}"
    );
    // Not ClaimLost: the processor releases and retries on Unavailable, but gives up its
    // claim on ClaimLost, and the claim is not lost, only out of reach.
    for (what, outcome) in [
        ("marking", store.mark_action_done(&held, "notify").await),
        ("releasing", store.release(&held, None).await),
        (
            "completing",
            store.complete(&held, None, t0, RETENTION).await,
        ),
    ] {
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{what}: {outcome:?}"
        );
    }
    let sighting = store.record_body(sighting(&key, BODY_HASH, t0)).await;
    assert!(
        matches!(sighting, Err(StoreError::Unavailable(_))),
        "{sighting:?}"
    );
    let recorded = store.is_recorded(&key, t0).await;
    assert!(
        matches!(recorded, Err(StoreError::Unavailable(_))),
        "{recorded:?}"
    );
}

async fn a_key_is_recorded_from_its_first_claim_until_its_retention_ends(adapter: impl Adapter) {
    let store = adapter.store();
    let key = key("d-recorded");
    let t0 = start();
    assert!(!store
        .is_recorded(&key, t0)
        .await
        .expect("the store answers"));

    let held = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;
    assert!(
        store
            .is_recorded(&key, t0)
            .await
            .expect("the store answers"),
        "in progress"
    );
    store
        .complete(&held, None, t0, RETENTION)
        .await
        .expect("the holder completes");

    let last_second = t0 + RETENTION - Duration::from_secs(1);
    assert!(store
        .is_recorded(&key, last_second)
        .await
        .expect("the store answers"));
    assert!(
        !store
            .is_recorded(&key, t0 + RETENTION)
            .await
            .expect("the store answers"),
        "past its retention a record is as good as gone"
    );
}

// ---- body sightings: a replay under a new id ----

const BODY_HASH: &str = "9c1185a5c5e9fc54612808977ee8f548b2258d31";

fn sighting<'a>(key: &'a IdempotencyKey, body: &'a str, now: OffsetDateTime) -> BodySighting<'a> {
    BodySighting {
        provider: Provider::Github,
        body_sha256: body,
        key,
        now,
        retention: RETENTION,
    }
}

async fn a_body_is_first_seen_in_its_event_and_stays_so_for_its_redeliveries(
    adapter: impl Adapter,
) {
    let store = adapter.store();
    let first = key("d-sighted");
    let t0 = start();

    for now in [
        t0,
        t0 + Duration::from_secs(5),
        t0 + RETENTION - Duration::from_secs(1),
    ] {
        assert_eq!(
            store
                .record_body(sighting(&first, BODY_HASH, now))
                .await
                .expect("the store answers"),
            FirstSeen::ThisEvent,
            "at {now}"
        );
    }
}

async fn a_body_seen_again_under_another_id_names_the_first_event_until_the_retention_ends(
    adapter: impl Adapter,
) {
    let store = adapter.store();
    let (first, replayed) = (key("d-original"), key("d-replayed"));
    let t0 = start();
    store
        .record_body(sighting(&first, BODY_HASH, t0))
        .await
        .expect("the store answers");

    assert_eq!(
        store
            .record_body(sighting(
                &replayed,
                BODY_HASH,
                t0 + RETENTION - Duration::from_secs(1)
            ))
            .await
            .expect("the store answers"),
        FirstSeen::Another(first.clone())
    );
    assert_eq!(
        store
            .record_body(sighting(&replayed, BODY_HASH, t0 + RETENTION))
            .await
            .expect("the store answers"),
        FirstSeen::ThisEvent,
        "past the retention the body is new"
    );
    assert_eq!(
        store
            .record_body(sighting(&first, BODY_HASH, t0 + RETENTION))
            .await
            .expect("the store answers"),
        FirstSeen::Another(replayed)
    );
}

async fn a_sightings_retention_counts_from_the_first_sighting_not_the_last(adapter: impl Adapter) {
    let store = adapter.store();
    let (first, later) = (key("d-kept-once"), key("d-after-the-retention"));
    let t0 = start();
    for now in [t0, t0 + RETENTION - Duration::from_secs(1)] {
        store
            .record_body(sighting(&first, BODY_HASH, now))
            .await
            .expect("the store answers");
    }

    assert_eq!(
        store
            .record_body(sighting(&later, BODY_HASH, t0 + RETENTION))
            .await
            .expect("the store answers"),
        FirstSeen::ThisEvent,
        "a redelivery of the first event does not lengthen the sighting"
    );
}

async fn another_body_or_another_providers_body_is_a_sighting_of_its_own(adapter: impl Adapter) {
    let store = adapter.store();
    let (first, second) = (key("d-one-body"), key("d-another-body"));
    let t0 = start();
    store
        .record_body(sighting(&first, BODY_HASH, t0))
        .await
        .expect("the store answers");

    assert_eq!(
        store
            .record_body(sighting(&second, OTHER_HASH, t0))
            .await
            .expect("the store answers"),
        FirstSeen::ThisEvent
    );
    let shopify = IdempotencyKey::from_stable_id(Provider::Shopify, "d-shop").expect("a usable id");
    let from_shopify = BodySighting {
        provider: Provider::Shopify,
        ..sighting(&shopify, BODY_HASH, t0)
    };
    assert_eq!(
        store
            .record_body(from_shopify)
            .await
            .expect("the store answers"),
        FirstSeen::ThisEvent
    );
}

async fn fifty_concurrent_events_with_one_body_find_exactly_one_first(adapter: impl Adapter) {
    let t0 = start();
    let body = format!("{BODY_HASH}-race-{}", emulator::unique_name("b"));
    let mut tasks = JoinSet::new();
    for n in 0..50 {
        let store = adapter.store();
        let body = body.clone();
        tasks.spawn(async move {
            let key = key(&format!("d-race-{n}"));
            let first = store
                .record_body(sighting(&key, &body, t0))
                .await
                .expect("the store answers");
            (key, first)
        });
    }
    let mut firsts = Vec::new();
    let mut named = std::collections::HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (key, first) = joined.expect("the task finishes");
        match first {
            FirstSeen::ThisEvent => firsts.push(key),
            FirstSeen::Another(first) => {
                named.insert(first);
            }
        }
    }
    assert_eq!(firsts.len(), 1, "{firsts:?}");
    assert_eq!(
        named,
        std::collections::HashSet::from([firsts[0].clone()]),
        "every other event names the one first"
    );
}

/// The whole contract, for one adapter: one test per point, so a failure names both.
macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn a_first_claim_is_acquired_as_attempt_one_with_nothing_done() {
                super::a_first_claim_is_acquired_as_attempt_one_with_nothing_done($make).await;
            }

            #[tokio::test]
            async fn a_claim_during_a_live_lease_is_in_flight_until_the_lease_ends() {
                super::a_claim_during_a_live_lease_is_in_flight_until_the_lease_ends($make).await;
            }

            #[tokio::test]
            async fn a_record_reads_back_its_status_attempts_actions_and_where_it_is_archived() {
                super::a_record_reads_back_its_status_attempts_actions_and_where_it_is_archived(
                    $make,
                )
                .await;
            }

            #[tokio::test]
            async fn a_release_after_a_failure_keeps_the_failure_as_the_last_error() {
                super::a_release_after_a_failure_keeps_the_failure_as_the_last_error($make).await;
            }

            #[tokio::test]
            async fn a_record_started_afresh_after_its_retention_forgets_the_old_error_and_archive(
            ) {
                super::a_record_started_afresh_after_its_retention_forgets_the_old_error_and_archive(
                    $make,
                )
                .await;
            }

            #[tokio::test]
            async fn a_claim_after_completion_is_a_duplicate() {
                super::a_claim_after_completion_is_a_duplicate($make).await;
            }

            #[tokio::test]
            async fn a_released_claim_is_acquired_again_as_attempt_two_keeping_the_actions_done() {
                super::a_released_claim_is_acquired_again_as_attempt_two_keeping_the_actions_done(
                    $make,
                )
                .await;
            }

            #[tokio::test]
            async fn an_expired_lease_is_taken_over_as_the_next_attempt_keeping_the_actions_done() {
                super::an_expired_lease_is_taken_over_as_the_next_attempt_keeping_the_actions_done(
                    $make,
                )
                .await;
            }

            #[tokio::test]
            async fn a_holder_whose_lease_was_taken_over_can_no_longer_write() {
                super::a_holder_whose_lease_was_taken_over_can_no_longer_write($make).await;
            }

            #[tokio::test]
            async fn the_first_payload_hash_is_kept_across_claims() {
                super::the_first_payload_hash_is_kept_across_claims($make).await;
            }

            #[tokio::test]
            async fn a_completed_record_past_its_retention_counts_as_absent() {
                super::a_completed_record_past_its_retention_counts_as_absent($make).await;
            }

            #[tokio::test]
            async fn an_in_progress_record_past_its_retention_counts_as_absent() {
                super::an_in_progress_record_past_its_retention_counts_as_absent($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fifty_concurrent_claims_on_a_new_key_acquire_it_exactly_once() {
                super::fifty_concurrent_claims_on_a_new_key_acquire_it_exactly_once($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fifty_concurrent_takeovers_of_an_expired_lease_succeed_exactly_once() {
                super::fifty_concurrent_takeovers_of_an_expired_lease_succeed_exactly_once($make)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fifty_concurrent_claims_on_a_record_past_its_retention_start_it_afresh_exactly_once(
            ) {
                super::fifty_concurrent_claims_on_a_record_past_its_retention_start_it_afresh_exactly_once(
                    $make,
                )
                .await;
            }

            #[tokio::test]
            async fn an_unavailable_store_answers_with_an_error_not_an_outcome() {
                super::an_unavailable_store_answers_with_an_error_not_an_outcome($make).await;
            }

            #[tokio::test]
            async fn a_key_is_recorded_from_its_first_claim_until_its_retention_ends() {
                super::a_key_is_recorded_from_its_first_claim_until_its_retention_ends($make)
                    .await;
            }

            #[tokio::test]
            async fn a_body_is_first_seen_in_its_event_and_stays_so_for_its_redeliveries() {
                super::a_body_is_first_seen_in_its_event_and_stays_so_for_its_redeliveries($make)
                    .await;
            }

            #[tokio::test]
            async fn a_body_seen_again_under_another_id_names_the_first_event_until_the_retention_ends(
            ) {
                super::a_body_seen_again_under_another_id_names_the_first_event_until_the_retention_ends(
                    $make,
                )
                .await;
            }

                        #[tokio::test]
            async fn a_sightings_retention_counts_from_the_first_sighting_not_the_last() {
                super::a_sightings_retention_counts_from_the_first_sighting_not_the_last($make)
                    .await;
            }

            #[tokio::test]
            async fn another_body_or_another_providers_body_is_a_sighting_of_its_own() {
                super::another_body_or_another_providers_body_is_a_sighting_of_its_own($make)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fifty_concurrent_events_with_one_body_find_exactly_one_first() {
                super::fifty_concurrent_events_with_one_body_find_exactly_one_first($make).await;
            }
        }
    };
}

contract!(memory_store, Memory::default());
contract!(dynamo_store, Dynamo::new().await);
contract!(sqlite_store, Sqlite::new());

// ---- the DynamoDB adapter alone ----

mod dynamo_store_only {
    use super::*;

    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };

    #[tokio::test]
    async fn connecting_to_a_missing_table_fails_naming_it() {
        let client = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
        let table_name = emulator::unique_name("missing");

        let outcome = DynamoStore::connect(client, table_name.clone()).await;

        match outcome {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains(&table_name), "{message}")
            }
            other => panic!("a missing table must fail the connection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn connecting_to_a_table_keyed_otherwise_fails_naming_the_key_it_needs() {
        let client = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
        let table_name = emulator::unique_name("wrong-key");
        client
            .create_table()
            .table_name(&table_name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("a complete definition"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("a complete key"),
            )
            .send()
            .await
            .expect("the emulator creates a table");

        let outcome = DynamoStore::connect(client, table_name.clone()).await;

        match outcome {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains(&table_name), "{message}");
                assert!(message.contains("idempotency_key"), "{message}");
            }
            other => panic!("a table with another key must fail the connection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_makes_the_store_unavailable() {
        // Nothing listens on port 1; no retries and short timeouts keep the test quick.
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(emulator::aws_http_client())
            .endpoint_url("http://127.0.0.1:1")
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "hookgate-tests",
            ))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(500))
                    .operation_timeout(Duration::from_secs(2))
                    .build(),
            )
            .load()
            .await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let key = key("d-unreachable");

        let connected = DynamoStore::connect(client.clone(), "claims".to_owned()).await;
        assert!(
            matches!(connected, Err(StoreError::Unavailable(_))),
            "{connected:?}"
        );
        let claim = DynamoStore::new(client, "claims".to_owned())
            .claim(request(&key, FIRST_HASH, start()))
            .await;
        assert!(
            matches!(claim, Err(StoreError::Unavailable(_))),
            "{claim:?}"
        );
    }

    /// The table's TTL reads `expires_at` as epoch seconds, and people read the rest: the
    /// item must look the way the adapter's documentation says.
    #[tokio::test]
    async fn the_item_is_laid_out_as_documented() {
        let adapter = Dynamo::new().await;
        let store = adapter.store();
        let key = key("d-layout");
        let t0 = start();
        let held = acquire(store.as_ref(), request(&key, FIRST_HASH, t0)).await;

        let item = adapter.item(&key).await;
        let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok()).cloned();
        let number = |name: &str| item.get(name).and_then(|value| value.as_n().ok()).cloned();
        assert_eq!(text("status").as_deref(), Some("IN_PROGRESS"));
        assert_eq!(text("holder"), Some(held.holder.clone()));
        assert_eq!(
            number("lease_expires_at"),
            Some(((t0 + LEASE).unix_timestamp() * 1_000).to_string())
        );
        assert_eq!(
            number("expires_at"),
            Some((t0 + RETENTION).unix_timestamp().to_string())
        );
        assert_eq!(text("payload_hash").as_deref(), Some(FIRST_HASH));
        assert_eq!(number("attempts").as_deref(), Some("1"));
        assert!(number("updated_at").is_some(), "{item:?}");
        assert!(!item.contains_key("done_actions"), "{item:?}");

        store
            .mark_action_done(&held, "notify")
            .await
            .expect("the holder records its progress");
        // The last action is recorded by the completing write itself.
        store
            .complete(&held, Some("ticket"), t0, RETENTION)
            .await
            .expect("the holder completes");

        let item = adapter.item(&key).await;
        let done: BTreeSet<&str> = item
            .get("done_actions")
            .and_then(|value| value.as_ss().ok())
            .map(|actions| actions.iter().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(done, BTreeSet::from(["notify", "ticket"]));
        assert_eq!(
            item.get("status")
                .and_then(|value| value.as_s().ok())
                .map(String::as_str),
            Some("COMPLETED")
        );
        assert!(!item.contains_key("holder"), "{item:?}");
        assert!(!item.contains_key("lease_expires_at"), "{item:?}");
    }
}
