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

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::idempotency::IdempotencyKey;

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

/// Port: claims and their progress.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + fmt::Debug {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError>;

    /// Records that `action` succeeded, so a retry skips it.
    async fn mark_action_done(&self, claim: &HeldClaim, action: &str) -> Result<(), StoreError>;

    /// Marks the event completed; later deliveries are duplicates until the record expires.
    async fn complete(
        &self,
        claim: &HeldClaim,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<(), StoreError>;

    /// Gives the claim up (its lease ends now), keeping the actions done, so the next
    /// delivery can take it at once.
    async fn release(&self, claim: &HeldClaim) -> Result<(), StoreError>;
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
}

#[derive(Debug, Clone)]
struct MemoryRecord {
    status: Status,
    holder: String,
    lease_expires_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    payload_hash: String,
    attempts: u32,
    done_actions: BTreeSet<String>,
}

/// An in-memory store for unit tests of the processor; it passes the same contract tests as
/// the DynamoDB adapter. It can be told to be unreachable.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<MemoryState>>,
}

#[derive(Debug, Default)]
struct MemoryState {
    records: HashMap<IdempotencyKey, MemoryRecord>,
    unavailable: bool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, fail (`true`) or answer (`false`) every call.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_held<T>(
        &self,
        claim: &HeldClaim,
        change: impl FnOnce(&mut MemoryRecord) -> T,
    ) -> Result<T, StoreError> {
        let mut state = self.lock();
        if state.unavailable {
            return Err(StoreError::Unavailable(
                "the in-memory store is set to be unavailable".into(),
            ));
        }
        match state.records.get_mut(&claim.key) {
            Some(record)
                if record.status == Status::InProgress && record.holder == claim.holder =>
            {
                Ok(change(record))
            }
            _ => Err(StoreError::ClaimLost {
                key: claim.key.clone(),
            }),
        }
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        let mut state = self.lock();
        if state.unavailable {
            return Err(StoreError::Unavailable(
                "the in-memory store is set to be unavailable".into(),
            ));
        }
        let lease_expires_at = request.now + request.lease;
        let expires_at = request.now + request.retention;
        let holder = new_holder();
        let record = match state.records.get_mut(request.key) {
            // A record past its retention is as good as absent, as DynamoDB's TTL makes it.
            Some(record) if record.expires_at > request.now => {
                match record.status {
                    Status::Completed => return Ok(Claim::Completed),
                    Status::InProgress if record.lease_expires_at > request.now => {
                        return Ok(Claim::InFlight {
                            lease_expires_at: record.lease_expires_at,
                        })
                    }
                    Status::InProgress => {}
                }
                record.holder = holder;
                record.lease_expires_at = lease_expires_at;
                record.expires_at = expires_at;
                record.attempts += 1;
                record.clone()
            }
            _ => {
                let record = MemoryRecord {
                    status: Status::InProgress,
                    holder,
                    lease_expires_at,
                    expires_at,
                    payload_hash: request.payload_hash.to_owned(),
                    attempts: 1,
                    done_actions: BTreeSet::new(),
                };
                state.records.insert(request.key.clone(), record.clone());
                record
            }
        };
        Ok(Claim::Acquired(HeldClaim {
            key: request.key.clone(),
            holder: record.holder,
            attempt: record.attempts,
            done_actions: record.done_actions,
            first_payload_hash: record.payload_hash,
        }))
    }

    async fn mark_action_done(&self, claim: &HeldClaim, action: &str) -> Result<(), StoreError> {
        self.with_held(claim, |record| {
            record.done_actions.insert(action.to_owned());
        })
    }

    async fn complete(
        &self,
        claim: &HeldClaim,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.with_held(claim, |record| {
            record.status = Status::Completed;
            record.expires_at = now + retention;
        })
    }

    async fn release(&self, claim: &HeldClaim) -> Result<(), StoreError> {
        self.with_held(claim, |record| {
            record.lease_expires_at = OffsetDateTime::UNIX_EPOCH;
        })
    }
}
