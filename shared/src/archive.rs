//! Port: the archive of every event the processor takes up, for `hookgate events` (what
//! arrived) and `hookgate replay` (send it through the queue again).
//!
//! The processor appends each batch's readable envelopes in one write before it acts on any
//! of them, so an event is archived before its first action runs, and an archive that
//! cannot be written holds the batch back (it is retried) rather than acting on events that
//! could not be seen or replayed afterwards. Nothing is archived on the receivers' path.
//!
//! An envelope is archived as it was queued: a body too large for a message stays where
//! the receiver stored it (the claim check), referenced and hashed, never copied again.
//! The same event may be archived more than once (each delivery of its message, a
//! redrive): [`EventArchive::list`] names each key once, by its first archived copy.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::envelope::{Envelope, EnvelopeV1};
use crate::idempotency::IdempotencyKey;
use crate::provider::Provider;
use crate::routes::EventPattern;

/// One archived copy of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedEvent {
    pub envelope: EnvelopeV1,
    /// When the processor archived it (its first delivery to the processor, for the first
    /// copy).
    pub archived_at: OffsetDateTime,
    /// The archive entry it is in, which [`EventArchive::read`] reads back:
    /// `s3://{bucket}/archive/…` or `sqlite:archive/{batch}`.
    pub location: String,
}

/// Which events to list: received within `[since, until)`, archived since an instant, of
/// a provider, of event types matching a pattern, or the copies of one key.
#[derive(Debug, Clone)]
pub struct ArchiveQuery {
    pub since: OffsetDateTime,
    pub until: Option<OffsetDateTime>,
    /// Only copies archived at or after this (what `hookgate tail` asks for, each time
    /// from where it left off).
    pub archived_since: Option<OffsetDateTime>,
    pub provider: Option<Provider>,
    pub event_type: Option<EventPattern>,
    pub key: Option<IdempotencyKey>,
}

impl ArchiveQuery {
    /// Every event received since `since`.
    pub fn since(since: OffsetDateTime) -> Self {
        Self {
            since,
            until: None,
            archived_since: None,
            provider: None,
            event_type: None,
            key: None,
        }
    }

    /// Whether the query takes this copy.
    pub fn takes(&self, copy: &ArchivedEvent) -> bool {
        self.archived_since
            .is_none_or(|archived_since| copy.archived_at >= archived_since)
            && self.matches(&copy.envelope)
    }

    /// Whether the query takes this envelope, wherever archived.
    pub fn matches(&self, envelope: &EnvelopeV1) -> bool {
        envelope.received_at >= self.since
            && self.until.is_none_or(|until| envelope.received_at < until)
            && self
                .provider
                .is_none_or(|provider| envelope.provider == provider)
            && self
                .event_type
                .as_ref()
                .is_none_or(|pattern| pattern.matches(&envelope.event_type))
            && self
                .key
                .as_ref()
                .is_none_or(|key| envelope.idempotency_key == *key)
    }
}

/// Why the archive could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// Worth trying again: the archive did not answer, or not in time.
    #[error("the event archive is unavailable: {0}")]
    Unavailable(String),
    /// The location names nothing this archive holds (expired, deleted), or is another's.
    #[error("the archive entry {0} is not there")]
    Missing(String),
    /// An entry holds what no archive writes.
    #[error("the archive entry {location} is unreadable: {reason}")]
    Unreadable { location: String, reason: String },
}

/// Port: the archive.
#[async_trait]
pub trait EventArchive: Send + Sync + fmt::Debug {
    /// Archives one batch's envelopes in one write, all or none, and answers where. `Ok`
    /// means durably stored. An empty batch writes nothing and answers `None`.
    async fn append(
        &self,
        envelopes: &[&Envelope],
        now: OffsetDateTime,
    ) -> Result<Option<String>, ArchiveError>;

    /// The events archived in the entry at `location`, in the order appended.
    async fn read(&self, location: &str) -> Result<Vec<ArchivedEvent>, ArchiveError>;

    /// Up to `max` events that `query` takes, each key once (its first archived copy that
    /// the query takes), oldest received first.
    async fn list(
        &self,
        query: &ArchiveQuery,
        max: usize,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError>;
}

/// Each key once, by its earliest archived copy, oldest received first, at most `max`:
/// what every adapter's `list` answers from the copies it found.
pub(crate) fn first_copies(copies: Vec<ArchivedEvent>, max: usize) -> Vec<ArchivedEvent> {
    let mut first: HashMap<IdempotencyKey, ArchivedEvent> = HashMap::new();
    for copy in copies {
        match first.get(&copy.envelope.idempotency_key) {
            Some(kept) if kept.archived_at <= copy.archived_at => {}
            _ => {
                first.insert(copy.envelope.idempotency_key.clone(), copy);
            }
        }
    }
    let mut events: Vec<ArchivedEvent> = first.into_values().collect();
    events.sort_by(|a, b| {
        (a.envelope.received_at, a.envelope.idempotency_key.as_str())
            .cmp(&(b.envelope.received_at, b.envelope.idempotency_key.as_str()))
    });
    events.truncate(max);
    events
}

/// One line of an archive entry: when it was archived, and the envelope as queued.
#[derive(Serialize, Deserialize)]
pub(crate) struct ArchiveLine<'a> {
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) archived_at: OffsetDateTime,
    pub(crate) envelope: std::borrow::Cow<'a, Envelope>,
}

/// A batch's envelopes as JSON lines, one per envelope.
pub(crate) fn to_json_lines(envelopes: &[&Envelope], now: OffsetDateTime) -> String {
    let mut lines = String::new();
    for envelope in envelopes {
        let line = ArchiveLine {
            archived_at: now,
            envelope: std::borrow::Cow::Borrowed(envelope),
        };
        lines.push_str(&serde_json::to_string(&line).expect("an envelope always serializes"));
        lines.push('\n');
    }
    lines
}

/// The events of an entry written by [`to_json_lines`].
pub(crate) fn from_json_lines(
    text: &str,
    location: &str,
) -> Result<Vec<ArchivedEvent>, ArchiveError> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            let line: ArchiveLine<'_> =
                serde_json::from_str(line).map_err(|error| ArchiveError::Unreadable {
                    location: location.to_owned(),
                    reason: format!("line {}: {error}", index + 1),
                })?;
            let Envelope::V1(envelope) = line.envelope.into_owned();
            Ok(ArchivedEvent {
                envelope,
                archived_at: line.archived_at,
                location: location.to_owned(),
            })
        })
        .collect()
}

/// An in-memory archive for unit tests; it passes the same contract tests as the S3 and
/// SQLite adapters. It can be told to be unreachable, and counts its writes.
#[derive(Debug, Clone, Default)]
pub struct MemoryArchive {
    state: Arc<Mutex<MemoryArchiveState>>,
}

#[derive(Debug, Default)]
struct MemoryArchiveState {
    /// Each entry's location and its JSON lines, in the order appended.
    entries: Vec<(String, String)>,
    unavailable: bool,
}

impl MemoryArchive {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, fail (`true`) or answer (`false`) every call.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// How many entries were written: what S3 would charge as PUT requests.
    pub fn writes(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryArchiveState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn available(&self) -> Result<std::sync::MutexGuard<'_, MemoryArchiveState>, ArchiveError> {
        let state = self.lock();
        if state.unavailable {
            return Err(ArchiveError::Unavailable(
                "the in-memory archive is set to be unavailable".into(),
            ));
        }
        Ok(state)
    }
}

#[async_trait]
impl EventArchive for MemoryArchive {
    async fn append(
        &self,
        envelopes: &[&Envelope],
        now: OffsetDateTime,
    ) -> Result<Option<String>, ArchiveError> {
        if envelopes.is_empty() {
            return Ok(None);
        }
        let mut state = self.available()?;
        let location = format!("memory:archive/{}", uuid::Uuid::new_v4());
        state
            .entries
            .push((location.clone(), to_json_lines(envelopes, now)));
        Ok(Some(location))
    }

    async fn read(&self, location: &str) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let state = self.available()?;
        let (_, lines) = state
            .entries
            .iter()
            .find(|(at, _)| at == location)
            .ok_or_else(|| ArchiveError::Missing(location.to_owned()))?;
        from_json_lines(lines, location)
    }

    async fn list(
        &self,
        query: &ArchiveQuery,
        max: usize,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let entries = self.available()?.entries.clone();
        let mut copies = Vec::new();
        for (location, lines) in &entries {
            copies.extend(
                from_json_lines(lines, location)?
                    .into_iter()
                    .filter(|copy| query.takes(copy)),
            );
        }
        Ok(first_copies(copies, max))
    }
}
