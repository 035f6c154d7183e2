//! Port: what the reconciler remembers between runs, kept so that runs may overlap and may
//! die at any point without a delivery being asked for twice or forgotten.
//!
//! - A **cursor** per hook: every delivery attempted before `covered_until` has been looked
//!   at, except those of an unfinished **walk**, a run that ran out of pages or time before
//!   it got back to where the last one stopped, which the next run continues from its
//!   page. A cursor is written only by a run that read its current version, so of two
//!   overlapping runs, one moves it and the other leaves it be.
//! - A **redelivery** per event (`guid`): a claim taken with a lease before asking GitHub to
//!   redeliver, and marked requested afterwards, with the attempt asked for. A run that dies
//!   in between leaves a claim whose lease runs out, and a later run asks again. An event is
//!   asked for again only when an attempt GitHub made after the one asked for failed too
//!   (the redelivery itself failed; GitHub numbers attempts in the order it makes them), and
//!   at most a set number of times in all.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::hooks::Hook;

/// Where a hook's reading stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorPosition {
    /// Every attempt delivered before this was looked at (but for the walk's); `None` until
    /// a first run has finished.
    pub covered_until: Option<OffsetDateTime>,
    /// A walk a run did not finish.
    pub walk: Option<Walk>,
}

/// A run's way back through the list that stopped before it was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// The URL of the page to go on from.
    pub next_page: String,
    /// Where the walk ends: attempts delivered before this are covered already.
    pub down_to: OffsetDateTime,
    /// When the walk began: once it is done, everything before this is covered.
    pub started_at: OffsetDateTime,
}

/// A cursor as read, with the version a save must find unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub position: CursorPosition,
    pub version: u64,
}

/// A run's wish to ask GitHub to redeliver an event.
#[derive(Debug, Clone)]
pub struct RedeliveryRequest<'a> {
    pub guid: &'a str,
    /// The id of the event's newest failed attempt, the one to redeliver.
    pub failed_attempt: u64,
    pub now: OffsetDateTime,
    /// How long the claim is this run's alone.
    pub lease: Duration,
    /// The most requests for one event, all runs together.
    pub max_requests: u32,
    /// How long the record is kept: longer than GitHub lets a delivery be redelivered.
    pub retention: Duration,
}

/// May this run ask for the event?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Yes: ask, then [`ReconcilerState::finish_redelivery`] or
    /// [`ReconcilerState::abandon_redelivery`].
    Go(Ticket),
    /// Its newest failed attempt was asked for already: wait for that redelivery.
    AlreadyRequested,
    /// Another run holds the claim now.
    InFlight,
    /// It was asked for as many times as allowed.
    Exhausted { requests: u32 },
}

/// A claim on one event's redelivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub guid: String,
    pub holder: String,
    /// Requests made before this one.
    pub requests: u32,
    /// The attempt this request redelivers.
    pub attempt: u64,
}

/// The state store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the reconciler's state is unavailable: {0}")]
pub struct StateError(pub String);

/// Port: the reconciler's state.
#[async_trait]
pub trait ReconcilerState: Send + Sync + fmt::Debug {
    /// The hook's cursor; a hook never read has the default.
    async fn cursor(&self, hook: &Hook) -> Result<Cursor, StateError>;

    /// Moves the hook's cursor to `next`, if it is still at `read.version`. `Ok(false)`:
    /// another run moved it first, and this run's reading is left to it.
    async fn save_cursor(
        &self,
        hook: &Hook,
        read: &Cursor,
        next: &CursorPosition,
    ) -> Result<bool, StateError>;

    /// Claims the event's redelivery for this run, if it may be asked for.
    async fn begin_redelivery(&self, request: RedeliveryRequest<'_>) -> Result<Begin, StateError>;

    /// Records the request as made (GitHub accepted it, or refused it for good): the
    /// ticket's attempt will not be asked for again.
    async fn finish_redelivery(&self, ticket: &Ticket) -> Result<(), StateError>;

    /// Gives the claim up without a request made: a later run may ask.
    async fn abandon_redelivery(&self, ticket: &Ticket) -> Result<(), StateError>;
}

/// What is kept of one event's redelivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedeliveryRecord {
    pub(crate) requested: bool,
    pub(crate) holder: String,
    pub(crate) lease_expires_at: OffsetDateTime,
    pub(crate) requests: u32,
    /// The attempt the last request redelivered.
    pub(crate) last_requested_attempt: Option<u64>,
}

/// The redelivery rules, for a store that reads the record and writes the outcome in one
/// atomic step:
///
/// - no record: this run asks (the first request);
/// - a claim whose lease has not ended: in flight;
/// - a claim whose lease has ended (its run died or gave up): this run asks;
/// - a request made: exhausted after `max_requests`; otherwise this run asks again only if
///   the newest failed attempt came after the one last asked for.
///
/// Returns the answer and, when the run may ask, the record to write.
pub(crate) fn decide_redelivery(
    found: Option<&RedeliveryRecord>,
    request: &RedeliveryRequest<'_>,
    holder: String,
) -> (Begin, Option<RedeliveryRecord>) {
    let lease_expires_at = request.now + request.lease;
    let take = |record: Option<&RedeliveryRecord>| {
        let requests = record.map_or(0, |record| record.requests);
        let ticket = Ticket {
            guid: request.guid.to_owned(),
            holder: holder.clone(),
            requests,
            attempt: request.failed_attempt,
        };
        let record = RedeliveryRecord {
            requested: false,
            holder: holder.clone(),
            lease_expires_at,
            requests,
            last_requested_attempt: record.and_then(|record| record.last_requested_attempt),
        };
        (Begin::Go(ticket), Some(record))
    };
    match found {
        None => take(None),
        Some(record) if !record.requested => {
            if record.lease_expires_at > request.now {
                (Begin::InFlight, None)
            } else {
                take(Some(record))
            }
        }
        Some(record) if record.requests >= request.max_requests => (
            Begin::Exhausted {
                requests: record.requests,
            },
            None,
        ),
        Some(record) => match record.last_requested_attempt {
            Some(last) if last >= request.failed_attempt => (Begin::AlreadyRequested, None),
            _ => take(Some(record)),
        },
    }
}

/// A write a ticket's holder makes; refused (nothing changes) to anyone else.
pub(crate) fn apply_finish(record: Option<&mut RedeliveryRecord>, ticket: &Ticket) {
    if let Some(record) =
        record.filter(|record| !record.requested && record.holder == ticket.holder)
    {
        record.requested = true;
        record.requests = ticket.requests + 1;
        record.last_requested_attempt = Some(ticket.attempt);
    }
}

pub(crate) fn apply_abandon(record: Option<&mut RedeliveryRecord>, ticket: &Ticket) {
    if let Some(record) =
        record.filter(|record| !record.requested && record.holder == ticket.holder)
    {
        record.lease_expires_at = OffsetDateTime::UNIX_EPOCH;
    }
}

/// A fresh holder token.
pub(crate) fn new_holder() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The in-memory state, for unit tests of the reconciler; it passes the same contract tests
/// as the DynamoDB adapter.
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    cursors: HashMap<String, Cursor>,
    redeliveries: HashMap<String, RedeliveryRecord>,
    unavailable: bool,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, fail (`true`) or answer (`false`) every call.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn available(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, StateError> {
        let inner = self.lock();
        if inner.unavailable {
            return Err(StateError(
                "the in-memory state is set to be unavailable".into(),
            ));
        }
        Ok(inner)
    }
}

#[async_trait]
impl ReconcilerState for MemoryState {
    async fn cursor(&self, hook: &Hook) -> Result<Cursor, StateError> {
        Ok(self
            .available()?
            .cursors
            .get(&hook.to_string())
            .cloned()
            .unwrap_or_default())
    }

    async fn save_cursor(
        &self,
        hook: &Hook,
        read: &Cursor,
        next: &CursorPosition,
    ) -> Result<bool, StateError> {
        let mut inner = self.available()?;
        let stored = inner.cursors.entry(hook.to_string()).or_default();
        if stored.version != read.version {
            return Ok(false);
        }
        *stored = Cursor {
            position: next.clone(),
            version: read.version + 1,
        };
        Ok(true)
    }

    async fn begin_redelivery(&self, request: RedeliveryRequest<'_>) -> Result<Begin, StateError> {
        let mut inner = self.available()?;
        let (begin, write) =
            decide_redelivery(inner.redeliveries.get(request.guid), &request, new_holder());
        if let Some(record) = write {
            inner.redeliveries.insert(request.guid.to_owned(), record);
        }
        Ok(begin)
    }

    async fn finish_redelivery(&self, ticket: &Ticket) -> Result<(), StateError> {
        let mut inner = self.available()?;
        apply_finish(inner.redeliveries.get_mut(&ticket.guid), ticket);
        Ok(())
    }

    async fn abandon_redelivery(&self, ticket: &Ticket) -> Result<(), StateError> {
        let mut inner = self.available()?;
        apply_abandon(inner.redeliveries.get_mut(&ticket.guid), ticket);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    fn request(failed_attempt: u64, now: i64) -> RedeliveryRequest<'static> {
        RedeliveryRequest {
            guid: "g-1",
            failed_attempt,
            now: at(now),
            lease: Duration::from_secs(60),
            max_requests: 3,
            retention: Duration::from_secs(4 * 86_400),
        }
    }

    fn requested(requests: u32, last_attempt: u64) -> RedeliveryRecord {
        RedeliveryRecord {
            requested: true,
            holder: "h".into(),
            lease_expires_at: at(0),
            requests,
            last_requested_attempt: Some(last_attempt),
        }
    }

    #[test]
    fn the_first_request_for_an_event_goes_ahead_under_a_lease() {
        let (begin, record) = decide_redelivery(None, &request(100, 200), "me".into());
        assert!(matches!(begin, Begin::Go(Ticket { requests: 0, .. })));
        let record = record.unwrap();
        assert!(!record.requested);
        assert_eq!(record.lease_expires_at, at(260));
    }

    #[test]
    fn a_live_claim_is_in_flight_and_an_expired_one_is_taken_over() {
        let (_, claim) = decide_redelivery(None, &request(100, 200), "first".into());
        let claim = claim.unwrap();
        assert_eq!(
            decide_redelivery(Some(&claim), &request(100, 259), "second".into()).0,
            Begin::InFlight
        );
        let (begin, _) = decide_redelivery(Some(&claim), &request(100, 260), "second".into());
        assert!(matches!(begin, Begin::Go(Ticket { ref holder, .. }) if holder == "second"));
    }

    #[test]
    fn an_event_asked_for_is_asked_for_again_only_after_a_newer_failed_attempt() {
        let record = requested(1, 300);
        assert_eq!(
            decide_redelivery(Some(&record), &request(300, 400), "me".into()).0,
            Begin::AlreadyRequested
        );
        let (begin, _) = decide_redelivery(Some(&record), &request(301, 400), "me".into());
        assert!(matches!(begin, Begin::Go(Ticket { requests: 1, .. })));
    }

    #[test]
    fn an_event_is_not_asked_for_more_than_the_most_allowed() {
        assert_eq!(
            decide_redelivery(Some(&requested(3, 300)), &request(500, 600), "me".into()).0,
            Begin::Exhausted { requests: 3 }
        );
    }

    #[test]
    fn only_the_holder_finishes_or_abandons_and_finishing_counts_the_request() {
        let (Begin::Go(ticket), Some(mut record)) =
            decide_redelivery(None, &request(100, 200), "me".into())
        else {
            panic!("the first request goes ahead");
        };
        let stranger = Ticket {
            holder: "someone else".into(),
            ..ticket.clone()
        };
        apply_finish(Some(&mut record), &stranger);
        assert!(!record.requested);

        apply_finish(Some(&mut record), &ticket);
        assert!(record.requested);
        assert_eq!(record.requests, 1);
        assert_eq!(record.last_requested_attempt, Some(100));

        let before = record.clone();
        apply_abandon(Some(&mut record), &ticket);
        assert_eq!(record, before, "a finished request is not abandoned");
    }
}
