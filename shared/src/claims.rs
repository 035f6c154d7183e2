//! Port: the idempotency store, where a worker claims an event before acting on it.
//!
//! One record per idempotency key. A claim is taken with one conditional write that
//! succeeds only when no record exists or the record is an in-progress claim whose lease has
//! expired (its worker died or released it). Every later write (an action done, completed,
//! released) is conditional on still holding the claim, so a worker whose lease expired and
//! was taken over cannot overwrite the new holder's record.
//!
//! A failed condition is an outcome, not an error: the event is done already
//! ([`Claim::Completed`]) or another worker holds a live lease ([`Claim::InFlight`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::idempotency::IdempotencyKey;
use crate::provider::Provider;

/// What a worker asks for when it claims an event.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub key: &'a IdempotencyKey,
    /// The SHA-256 of the raw body, kept from the first claim to spot a key reused for a
    /// different payload.
    pub payload_hash: &'a str,
    pub now: OffsetDateTime,
    /// How long the claim is exclusively this worker's; it must outlive the longest action.
    pub lease: Duration,
    /// How long the record is kept (the TTL), longer than any provider's retry horizon.
    pub retention: Duration,
    /// Where the event's envelope is archived ([`crate::archive::EventArchive`]), kept in the
    /// record so that `hookgate events show` finds it without searching the archive. A
    /// claim without it keeps what the record had.
    pub archive: Option<&'a str>,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker holds the claim: run the actions not yet done.
    Acquired(HeldClaim),
    /// The event was completed before: a duplicate delivery.
    Completed,
    /// Another worker holds a live lease: try again later.
    InFlight { lease_expires_at: OffsetDateTime },
}

/// A claim this worker holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldClaim {
    pub key: IdempotencyKey,
    /// Unique to this claim; every later write is conditional on it.
    pub holder: String,
    /// How many times the event has been claimed, this claim included.
    pub attempt: u32,
    /// Actions that succeeded in earlier attempts.
    pub done_actions: BTreeSet<String>,
    /// The payload hash recorded by the first claim.
    pub first_payload_hash: String,
}

/// The store could not answer, or the claim was lost.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the idempotency store is unavailable: {0}")]
    Unavailable(String),
    #[error("the claim on {key} was lost: its lease expired and another worker took it over")]
    ClaimLost { key: IdempotencyKey },
}

/// A body seen in an event whose id its provider does not sign (GitHub's
/// `X-GitHub-Delivery`, Shopify's ids, a generic `ID_HEADER` outside the signed content).
#[derive(Debug, Clone)]
pub struct BodySighting<'a> {
    pub provider: Provider,
    /// The SHA-256 of the raw body, lowercase hex.
    pub body_sha256: &'a str,
    /// The event the body arrived in.
    pub key: &'a IdempotencyKey,
    pub now: OffsetDateTime,
    /// How long the sighting is remembered: the idempotency records' retention.
    pub retention: Duration,
}

impl BodySighting<'_> {
    /// The name the sighting is kept under: `body:{provider}:{sha256}`, which no
    /// idempotency key can be (keys begin with a provider).
    pub fn record_name(&self) -> String {
        format!("body:{}:{}", self.provider, self.body_sha256)
    }
}

/// Which event a body was first seen in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstSeen {
    /// This event (now, or in an earlier delivery of it): carry on.
    ThisEvent,
    /// Another event, within the retention: the same signed bytes under a new unsigned id,
    /// which is what a captured delivery replayed with a fresh id looks like.
    Another(IdempotencyKey),
}

/// Port: claims and their progress.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + fmt::Debug {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError>;

    /// Records that the sighting's body was first seen in its event, unless it was first
    /// seen in another within the retention, which it then names. One conditional write:
    /// of two events racing with one body, exactly one is [`FirstSeen::ThisEvent`].
    async fn record_body(&self, sighting: BodySighting<'_>) -> Result<FirstSeen, StoreError>;

    /// Whether `key` has a record within its retention, whatever its status: the event
    /// reached a processor. A strongly consistent read.
    async fn is_recorded(
        &self,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Records that `action` succeeded, so a retry skips it.
    async fn mark_action_done(&self, claim: &HeldClaim, action: &str) -> Result<(), StoreError>;

    /// Marks the event completed, recording `finishing_action` (if any) as done in the same
    /// write; later deliveries are duplicates until the record expires.
    async fn complete(
        &self,
        claim: &HeldClaim,
        finishing_action: Option<&str>,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<(), StoreError>;

    /// Gives the claim up (its lease ends now), keeping the actions done, so the next
    /// delivery can take it at once. `failure` says why, when an attempt failed: the record
    /// keeps it as its last error, and each failed action's error, in place of the last
    /// attempt's (each at most [`crate::dead_letters::MAX_REASON_BYTES`]).
    async fn release(&self, claim: &HeldClaim, failure: Option<&Failure>)
        -> Result<(), StoreError>;

    /// What the store knows of `key` at `now`, for an operator (`hookgate events show`); a
    /// record past its retention is absent. A strongly consistent read.
    async fn record(
        &self,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<EventRecord>, StoreError>;
}

/// Why an attempt failed: in a sentence, and by action where actions failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// Each action that failed, and its error.
    pub actions: BTreeMap<String, String>,
}

impl Failure {
    /// A failure that is no action's (the store, the body, the deadline).
    pub fn of(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            actions: BTreeMap::new(),
        }
    }

    /// The failure as a record keeps it: every text cut to a sentence's length.
    fn bounded(&self) -> Self {
        Self {
            reason: crate::dead_letters::bounded_reason(&self.reason),
            actions: self
                .actions
                .iter()
                .map(|(action, error)| (action.clone(), crate::dead_letters::bounded_reason(error)))
                .collect(),
        }
    }
}

/// An idempotency record as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub status: Status,
    /// How many times the event was claimed.
    pub attempts: u32,
    /// The actions that succeeded.
    pub done_actions: BTreeSet<String>,
    /// While in progress: until when the current claim is exclusive (in the past once it was
    /// released or its worker stopped).
    pub lease_expires_at: Option<OffsetDateTime>,
    /// When the record is gone (the retention).
    pub expires_at: OffsetDateTime,
    /// Why the latest failed attempt failed, if one did.
    pub last_error: Option<String>,
    /// The actions that failed in that attempt, and their errors.
    pub failed_actions: BTreeMap<String, String>,
    /// Where the event is archived, when the processor archived it.
    pub archive: Option<String>,
    /// When the record was last written, where the store keeps it.
    pub updated_at: Option<OffsetDateTime>,
}

impl EventRecord {
    /// Where the event stands at `now`: `completed`, `in_progress` (a claim is live),
    /// `failed` (the latest attempt failed; it is retried or dead-lettered) or `pending`
    /// (claimed before, no claim live and no failure said: its worker stopped).
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        match self.status {
            Status::Completed => "completed",
            Status::InProgress if self.lease_expires_at.is_some_and(|lease| lease > now) => {
                "in_progress"
            }
            Status::InProgress if self.last_error.is_some() => "failed",
            Status::InProgress => "pending",
        }
    }
}

/// A fresh holder token.
pub fn new_holder() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The record's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Completed,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "IN_PROGRESS",
            Status::Completed => "COMPLETED",
        }
    }

    /// The status a stored string names, if it names one.
    pub fn parse(text: &str) -> Option<Self> {
        [Status::InProgress, Status::Completed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// Everything a store knows about one key: what the claim rules decide on, and what they
/// change. Adapters that can hold a record in full (in memory, SQLite) keep exactly this
/// and leave every decision to [`decide_claim`] and [`HeldWrite::apply`], so the rules live
/// in one place; DynamoDB, which decides in its condition expressions, follows the same
/// rules there, and the contract suite holds them all to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimRecord {
    pub(crate) status: Status,
    /// The holder token of the latest claim; it stays after completion, when it no longer
    /// lets anyone write because the status is not in progress.
    pub(crate) holder: String,
    pub(crate) lease_expires_at: OffsetDateTime,
    /// When the record is gone (the retention): from that instant on it counts as absent.
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) payload_hash: String,
    pub(crate) attempts: u32,
    pub(crate) done_actions: BTreeSet<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) failed_actions: BTreeMap<String, String>,
    pub(crate) archive: Option<String>,
}

impl ClaimRecord {
    /// The record as an operator reads it, last written at `updated_at`.
    pub(crate) fn view(&self, updated_at: Option<OffsetDateTime>) -> EventRecord {
        EventRecord {
            status: self.status,
            attempts: self.attempts,
            done_actions: self.done_actions.clone(),
            lease_expires_at: (self.status == Status::InProgress).then_some(self.lease_expires_at),
            expires_at: self.expires_at,
            last_error: self.last_error.clone(),
            failed_actions: self.failed_actions.clone(),
            archive: self.archive.clone(),
            updated_at,
        }
    }

    /// The claim this record gives its holder.
    pub(crate) fn held(&self, key: &IdempotencyKey) -> HeldClaim {
        HeldClaim {
            key: key.clone(),
            holder: self.holder.clone(),
            attempt: self.attempts,
            done_actions: self.done_actions.clone(),
            first_payload_hash: self.payload_hash.clone(),
        }
    }
}

/// What a claim comes to, given the record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimDecision {
    /// Store this record in place of the one found (if any), and answer
    /// [`Claim::Acquired`] with its [`ClaimRecord::held`].
    Take(ClaimRecord),
    /// Write nothing and answer this ([`Claim::Completed`] or [`Claim::InFlight`]).
    Refuse(Claim),
}

/// The claim rules, for a store that reads the record and writes the outcome in one atomic
/// step (a lock, a transaction):
///
/// - no record, or one past its retention (as good as absent, as DynamoDB's TTL makes it):
///   a fresh record, attempt 1, nothing done, this payload hash;
/// - a completed record: a duplicate;
/// - an in-progress record whose lease has not ended: in flight until it ends;
/// - an in-progress record whose lease has ended (at `now` exactly, too): taken over by
///   `holder` as the next attempt, keeping the actions done and the first payload hash.
pub(crate) fn decide_claim(
    found: Option<&ClaimRecord>,
    request: &ClaimRequest<'_>,
    holder: String,
) -> ClaimDecision {
    let lease_expires_at = instant_after(request.now, request.lease);
    let expires_at = instant_after(request.now, request.retention);
    match found {
        Some(record) if record.expires_at > request.now => match record.status {
            Status::Completed => ClaimDecision::Refuse(Claim::Completed),
            Status::InProgress if record.lease_expires_at > request.now => {
                ClaimDecision::Refuse(Claim::InFlight {
                    lease_expires_at: record.lease_expires_at,
                })
            }
            Status::InProgress => ClaimDecision::Take(ClaimRecord {
                holder,
                lease_expires_at,
                expires_at,
                attempts: record.attempts.saturating_add(1),
                archive: request
                    .archive
                    .map(str::to_owned)
                    .or_else(|| record.archive.clone()),
                ..record.clone()
            }),
        },
        _ => ClaimDecision::Take(ClaimRecord {
            status: Status::InProgress,
            holder,
            lease_expires_at,
            expires_at,
            payload_hash: request.payload_hash.to_owned(),
            attempts: 1,
            done_actions: BTreeSet::new(),
            last_error: None,
            failed_actions: BTreeMap::new(),
            archive: request.archive.map(str::to_owned),
        }),
    }
}

/// `start + duration`, or the last representable instant when that is out of range: a
/// lease or retention too long to represent lasts as long as anything can, rather than
/// panicking.
fn instant_after(start: OffsetDateTime, duration: Duration) -> OffsetDateTime {
    time::Duration::try_from(duration)
        .ok()
        .and_then(|duration| start.checked_add(duration))
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}

/// A write after the claim, allowed only to the claim's current holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeldWrite {
    ActionDone(String),
    Complete {
        finishing_action: Option<String>,
        now: OffsetDateTime,
        retention: Duration,
    },
    /// The lease ends now; `failure`, if any, becomes the last error.
    Release {
        failure: Option<Failure>,
    },
}

impl HeldWrite {
    /// Applies the write to `record` if `claim` still holds it: the record is in progress
    /// and its holder is the claim's. Otherwise the claim was lost (completed, taken over,
    /// or replaced after its retention) and nothing changes.
    pub(crate) fn apply(
        &self,
        record: Option<&mut ClaimRecord>,
        claim: &HeldClaim,
    ) -> Result<(), StoreError> {
        let record = match record {
            Some(record)
                if record.status == Status::InProgress && record.holder == claim.holder =>
            {
                record
            }
            _ => {
                return Err(StoreError::ClaimLost {
                    key: claim.key.clone(),
                })
            }
        };
        match self {
            HeldWrite::ActionDone(action) => {
                record.done_actions.insert(action.clone());
            }
            HeldWrite::Complete {
                finishing_action,
                now,
                retention,
            } => {
                record.done_actions.extend(finishing_action.iter().cloned());
                record.status = Status::Completed;
                record.expires_at = instant_after(*now, *retention);
            }
            // The lease ends now, whatever `now` the next claimant brings.
            HeldWrite::Release { failure } => {
                record.lease_expires_at = OffsetDateTime::UNIX_EPOCH;
                if let Some(failure) = failure {
                    let failure = failure.bounded();
                    record.last_error = Some(failure.reason);
                    record.failed_actions = failure.actions;
                }
            }
        }
        Ok(())
    }
}

/// What the store keeps of a body sighting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SightingRecord {
    pub(crate) first_key: IdempotencyKey,
    /// From this instant on the sighting counts as absent.
    pub(crate) expires_at: OffsetDateTime,
}

/// The sighting rules, for a store that reads the record and writes the outcome in one
/// atomic step: a live record names the first event (this one, or another); no record, or
/// one past its retention, is replaced by one naming this event. Returns the answer and,
/// when something is to be written, the record to write.
pub(crate) fn decide_sighting(
    found: Option<&SightingRecord>,
    sighting: &BodySighting<'_>,
) -> (FirstSeen, Option<SightingRecord>) {
    match found {
        Some(record) if record.expires_at > sighting.now => {
            if &record.first_key == sighting.key {
                (FirstSeen::ThisEvent, None)
            } else {
                (FirstSeen::Another(record.first_key.clone()), None)
            }
        }
        _ => (
            FirstSeen::ThisEvent,
            Some(SightingRecord {
                first_key: sighting.key.clone(),
                expires_at: instant_after(sighting.now, sighting.retention),
            }),
        ),
    }
}

/// An in-memory store for unit tests of the processor; it passes the same contract tests as
/// the DynamoDB adapter. It can be told to be unreachable.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<MemoryState>>,
}

#[derive(Debug, Default)]
struct MemoryState {
    records: HashMap<IdempotencyKey, ClaimRecord>,
    sightings: HashMap<String, SightingRecord>,
    unavailable: bool,
    /// Every write asked for, each of which the DynamoDB adapter makes as one conditional
    /// write request, whether its condition holds or not.
    writes: usize,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, fail (`true`) or answer (`false`) every call.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// How many writes the store was asked for (claims, sightings, progress, completions,
    /// releases): what the DynamoDB adapter would pay for as write requests.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn available(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, StoreError> {
        let state = self.lock();
        if state.unavailable {
            return Err(StoreError::Unavailable(
                "the in-memory store is set to be unavailable".into(),
            ));
        }
        Ok(state)
    }

    /// [`Self::available`], counting a write.
    fn writable(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, StoreError> {
        let mut state = self.available()?;
        state.writes += 1;
        Ok(state)
    }

    fn write_held(&self, claim: &HeldClaim, write: HeldWrite) -> Result<(), StoreError> {
        let mut state = self.writable()?;
        write.apply(state.records.get_mut(&claim.key), claim)
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        let mut state = self.writable()?;
        match decide_claim(state.records.get(request.key), &request, new_holder()) {
            ClaimDecision::Refuse(claim) => Ok(claim),
            ClaimDecision::Take(record) => {
                let held = record.held(request.key);
                state.records.insert(request.key.clone(), record);
                Ok(Claim::Acquired(held))
            }
        }
    }

    async fn record_body(&self, sighting: BodySighting<'_>) -> Result<FirstSeen, StoreError> {
        let mut state = self.writable()?;
        let name = sighting.record_name();
        let (first, write) = decide_sighting(state.sightings.get(&name), &sighting);
        if let Some(record) = write {
            state.sightings.insert(name, record);
        }
        Ok(first)
    }

    async fn is_recorded(
        &self,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Ok(self
            .available()?
            .records
            .get(key)
            .is_some_and(|record| record.expires_at > now))
    }

    async fn mark_action_done(&self, claim: &HeldClaim, action: &str) -> Result<(), StoreError> {
        self.write_held(claim, HeldWrite::ActionDone(action.to_owned()))
    }

    async fn complete(
        &self,
        claim: &HeldClaim,
        finishing_action: Option<&str>,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.write_held(
            claim,
            HeldWrite::Complete {
                finishing_action: finishing_action.map(str::to_owned),
                now,
                retention,
            },
        )
    }

    async fn release(
        &self,
        claim: &HeldClaim,
        failure: Option<&Failure>,
    ) -> Result<(), StoreError> {
        self.write_held(
            claim,
            HeldWrite::Release {
                failure: failure.cloned(),
            },
        )
    }

    async fn record(
        &self,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<EventRecord>, StoreError> {
        Ok(self
            .available()?
            .records
            .get(key)
            .filter(|record| record.expires_at > now)
            .map(|record| record.view(None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Provider;

    const LEASE: Duration = Duration::from_secs(60);
    const RETENTION: Duration = Duration::from_secs(3_600);

    fn key() -> IdempotencyKey {
        IdempotencyKey::from_stable_id(Provider::Github, "d-rules").expect("a valid id")
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).expect("a valid instant")
    }

    fn decide(found: Option<&ClaimRecord>, now: OffsetDateTime, hash: &str) -> ClaimDecision {
        let key = key();
        let request = ClaimRequest {
            key: &key,
            payload_hash: hash,
            now,
            lease: LEASE,
            retention: RETENTION,
            archive: None,
        };
        decide_claim(
            found,
            &request,
            format!("holder-at-{}", now.unix_timestamp()),
        )
    }

    fn taken(decision: ClaimDecision) -> ClaimRecord {
        match decision {
            ClaimDecision::Take(record) => record,
            ClaimDecision::Refuse(claim) => panic!("expected a claim to be taken, got {claim:?}"),
        }
    }

    fn in_progress_with_notify_done() -> ClaimRecord {
        let mut record = taken(decide(None, at(0), "first"));
        record.done_actions.insert("notify".to_owned());
        record
    }

    #[test]
    fn a_lease_ending_exactly_now_is_taken_over_keeping_what_the_record_knows() {
        let found = in_progress_with_notify_done();

        let record = taken(decide(Some(&found), at(60), "second"));

        assert_eq!(record.attempts, 2);
        assert_eq!(record.payload_hash, "first");
        assert_eq!(record.done_actions, found.done_actions);
        assert_eq!(record.lease_expires_at, at(120));
        assert_eq!(record.expires_at, at(3_660));
        assert_ne!(record.holder, found.holder);
    }

    #[test]
    fn a_lease_ending_a_second_later_is_in_flight_until_then() {
        let found = in_progress_with_notify_done();

        assert_eq!(
            decide(Some(&found), at(59), "first"),
            ClaimDecision::Refuse(Claim::InFlight {
                lease_expires_at: at(60)
            })
        );
    }

    #[test]
    fn a_record_whose_retention_ends_exactly_now_is_started_afresh() {
        let mut found = in_progress_with_notify_done();
        found.status = Status::Completed;

        assert_eq!(
            decide(Some(&found), at(3_599), "second"),
            ClaimDecision::Refuse(Claim::Completed)
        );
        let record = taken(decide(Some(&found), at(3_600), "second"));
        assert_eq!(record.attempts, 1);
        assert_eq!(record.payload_hash, "second");
        assert!(record.done_actions.is_empty());
    }

    #[test]
    fn only_the_current_holder_of_an_in_progress_record_may_write() {
        let mut record = in_progress_with_notify_done();
        let holder = record.held(&key());
        let mut stranger = holder.clone();
        stranger.holder = "someone-else".to_owned();

        assert!(matches!(
            HeldWrite::Release { failure: None }.apply(Some(&mut record), &stranger),
            Err(StoreError::ClaimLost { .. })
        ));
        assert!(matches!(
            HeldWrite::Release { failure: None }.apply(None, &holder),
            Err(StoreError::ClaimLost { .. })
        ));
        HeldWrite::Complete {
            finishing_action: Some("ticket".to_owned()),
            now: at(1),
            retention: RETENTION,
        }
        .apply(Some(&mut record), &holder)
        .expect("the holder completes");
        assert_eq!(record.expires_at, at(3_601));
        assert_eq!(record.status, Status::Completed);
        assert_eq!(
            record.done_actions,
            BTreeSet::from(["notify".to_owned(), "ticket".to_owned()]),
            "the completing write records the action that finished the event"
        );
        assert!(matches!(
            HeldWrite::ActionDone("late".to_owned()).apply(Some(&mut record), &holder),
            Err(StoreError::ClaimLost { .. })
        ));
    }

    fn sighting<'a>(key: &'a IdempotencyKey, now: OffsetDateTime) -> BodySighting<'a> {
        BodySighting {
            provider: Provider::Github,
            body_sha256: "ab12",
            key,
            now,
            retention: RETENTION,
        }
    }

    #[test]
    fn a_body_first_seen_is_recorded_under_its_event() {
        let first = key();
        let (answer, write) = decide_sighting(None, &sighting(&first, at(0)));
        assert_eq!(answer, FirstSeen::ThisEvent);
        assert_eq!(
            write,
            Some(SightingRecord {
                first_key: first.clone(),
                expires_at: at(3_600)
            })
        );
        assert_eq!(sighting(&first, at(0)).record_name(), "body:github:ab12");
    }

    #[test]
    fn a_body_seen_again_names_its_first_event_until_the_retention_ends() {
        let first = key();
        let replayed = IdempotencyKey::from_stable_id(Provider::Github, "fresh-id").unwrap();
        let record = SightingRecord {
            first_key: first.clone(),
            expires_at: at(3_600),
        };

        assert_eq!(
            decide_sighting(Some(&record), &sighting(&first, at(10))),
            (FirstSeen::ThisEvent, None),
            "a redelivery of the first event is that event"
        );
        assert_eq!(
            decide_sighting(Some(&record), &sighting(&replayed, at(3_599))),
            (FirstSeen::Another(first.clone()), None)
        );
        let (answer, write) = decide_sighting(Some(&record), &sighting(&replayed, at(3_600)));
        assert_eq!(answer, FirstSeen::ThisEvent, "past the retention it is new");
        assert_eq!(write.map(|record| record.first_key), Some(replayed));
    }

    #[test]
    fn a_lease_too_long_to_represent_lasts_as_long_as_anything_can() {
        assert_eq!(
            instant_after(at(0), Duration::MAX),
            time::PrimitiveDateTime::MAX.assume_utc()
        );
    }
}
