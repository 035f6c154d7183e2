//! The processor service: queued envelopes in, agent actions run with an exactly-once
//! effect, one disposition per message out.
//!
//! For each batch: archive its readable envelopes in one write ([`crate::archive`]); an
//! archive that cannot be written puts the batch's events off with backoff, acting on none.
//! For each message: read the envelope (unreadable: to the dead-letter queue), find its
//! actions (none: acknowledged), claim its key (done already: a duplicate; held elsewhere:
//! retried when the holder's lease ends), run the actions not yet done, concurrently, each
//! bounded by its timeout and by the invocation's deadline, recording each success, then
//! complete the claim. A retryable failure (an action's, or the idempotency store being
//! unreachable) releases the claim and puts the message off with backoff, seconds rather
//! than the queue's visibility timeout; a permanent one sends it to the dead-letter queue
//! with the reason. So does a retryable failure on the message's last allowed delivery: the
//! dead letter says why, where SQS would move it on without a word.
//!
//! The invocation's deadline (Lambda's, or the visibility a local consumer set) bounds every
//! message: actions are cut short [`RECORD_MARGIN`] before it, so that the successes are
//! recorded in time, and the batch is answered [`ANSWER_MARGIN`] before it whatever happens.
//! A message cut short either way keeps its claim until the claim's lease ends (its agent
//! may still be at work on the request that was dropped), and comes back after that: at the
//! lease's end when the actions were cut, after the queue's visibility timeout when the
//! answer was.

pub mod actions;
pub mod backoff;
mod config;
mod consumer;
mod control;
mod routing;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::{error, info, warn, Instrument};

pub use config::{
    check_redrive_retention, routes_from_env, routes_source_from_env, settings_from_env,
    ProcessorConfig, RoutesSourceConfig, BUNDLED_ROUTES, DEFAULT_BATCH_SIZE,
    DEFAULT_RETENTION_DAYS, DEFAULT_ROUTES_REFRESH,
};
pub use consumer::QueueConsumer;
pub use control::{ControlCall, MemoryQueueControl, QueueControl};
pub use routing::{
    ActionsFactory, RoutesRefused, Routing, RoutingError, RoutingTable, CHECK_TIMEOUT,
    EARLIER_VERSIONS_TRIED,
};

use self::actions::{ActionError, ActionInvoker, NormalizedEvent};
use self::backoff::Backoff;
use crate::archive::{ArchiveError, EventArchive};
use crate::bodies::{fetch_verified, BodyStore};
use crate::claims::{
    BodySighting, Claim, ClaimRequest, Failure, FirstSeen, HeldClaim, IdempotencyStore, StoreError,
};
use crate::envelope::{Envelope, EnvelopeError, EnvelopeV1, RawBody, Replay};
use crate::idempotency::IdempotencyKey;
use crate::routes::{ActionSpec, RouteTable};
use crate::telemetry::Metrics;

/// One message from the queue, as the processor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedDelivery {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times SQS has delivered it, this time included.
    pub receive_count: u32,
}

/// What becomes of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done with: deleted from the queue (its outcome is logged and counted).
    Acknowledge(Outcome),
    /// Reported failed, so SQS delivers it again (after the visibility set, if any).
    Retry(Outcome),
}

/// Why a message was acknowledged or retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Duplicate,
    /// The body was first received in another event, whose id the provider does not sign:
    /// a captured delivery replayed under a fresh id. Acknowledged as a duplicate.
    SuspectedReplay {
        first: IdempotencyKey,
    },
    NoRoute,
    DeadLettered {
        reason: String,
    },
    /// An action failed in a way worth retrying; `reason` says which and how.
    RetryScheduled {
        delay: Duration,
        reason: String,
    },
    InFlightElsewhere,
    /// The idempotency store could not be reached to claim the event or record progress.
    StoreUnavailable {
        reason: String,
    },
    /// The event's body is stored outside its envelope, and the store could not be reached.
    BodyStoreUnavailable {
        reason: String,
    },
    /// The batch could not be archived, so none of its events was acted on.
    ArchiveUnavailable {
        reason: String,
    },
    ClaimLost,
    /// The invocation's deadline came before the message was done.
    DeadlineReached,
    DeadLetterUnavailable,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Duplicate => "duplicate",
            Outcome::SuspectedReplay { .. } => "suspected_replay",
            Outcome::NoRoute => "no_route",
            Outcome::DeadLettered { .. } => "dead_lettered",
            Outcome::RetryScheduled { .. } => "retry_scheduled",
            Outcome::InFlightElsewhere => "in_flight_elsewhere",
            Outcome::StoreUnavailable { .. } => "store_unavailable",
            Outcome::BodyStoreUnavailable { .. } => "body_store_unavailable",
            Outcome::ArchiveUnavailable { .. } => "archive_unavailable",
            Outcome::ClaimLost => "claim_lost",
            Outcome::DeadlineReached => "deadline_reached",
            Outcome::DeadLetterUnavailable => "dead_letter_unavailable",
        }
    }

    /// Why the message is not done, in a sentence, for the dead letter of a message that
    /// failed its last allowed delivery.
    pub fn describe(&self) -> String {
        match self {
            Outcome::RetryScheduled { reason, .. }
            | Outcome::StoreUnavailable { reason }
            | Outcome::BodyStoreUnavailable { reason }
            | Outcome::ArchiveUnavailable { reason } => reason.clone(),
            Outcome::InFlightElsewhere => "another delivery of the event held its claim".to_owned(),
            Outcome::ClaimLost => {
                "its claim was taken over by another worker after the lease ran out".to_owned()
            }
            Outcome::DeadlineReached => {
                "the invocation's deadline came before it was done".to_owned()
            }
            other => other.label().replace('_', " "),
        }
    }
}

/// How long before the invocation's deadline actions are cut short, so that their successes
/// are recorded (a few store calls, each well under a second unless the store is
/// struggling) before the batch must be answered.
pub const RECORD_MARGIN: Duration = Duration::from_secs(5);

/// How long before the invocation's deadline the batch is answered, whatever is still
/// unfinished: a message cut off there is reported failed and comes back.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// How many bytes of stored bodies one processor works on at once: two of the largest a
/// receiver takes, or a dozen of a megabyte. An event with a stored body holds it several
/// times over (the bytes, the parsed JSON, each action's request), tens of MB for the
/// largest, where a batch of ten such at once would outgrow the function's memory. Events
/// wait for their share, within the invocation's deadline; inline bodies never wait.
pub const STORED_BODY_BUDGET_BYTES: u64 = 2 * crate::receiver::MAX_REQUEST_BODY_BYTES as u64;

/// The budget is counted in KiB, as a semaphore's permits.
const BUDGET_UNIT_BYTES: u64 = 1024;

/// When a batch whose invocation ends at `deadline` must be answered.
fn answer_by(deadline: Instant) -> Instant {
    deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline)
}

/// Where a batch was archived: `None` when the archive is off or nothing was readable.
type Archived = Result<Option<String>, ArchiveError>;

/// What processing one message decided, before the queue is told.
#[derive(Debug)]
enum Decision {
    /// Acknowledge.
    Done(Outcome),
    /// Park in the dead-letter queue with this reason.
    DeadLetter(String),
    /// Report failed; the message comes back after `delay`.
    Retry { outcome: Outcome, delay: Duration },
}

/// `bytes` in budget units, rounded up.
fn budget_units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(BUDGET_UNIT_BYTES)).unwrap_or(u32::MAX)
}

/// How long until a lease that ends at `lease_expires_at` has ended, in whole seconds (SQS's
/// granularity), rounded up, at least one second and within SQS's limit.
fn until_lease_ends(now: OffsetDateTime, lease_expires_at: OffsetDateTime) -> Duration {
    let remaining = (lease_expires_at - now).whole_milliseconds().max(0);
    let seconds = u64::try_from((remaining + 999) / 1000)
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_secs(seconds).min(backoff::MAX_VISIBILITY)
}

/// Timing and retention settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorSettings {
    /// How long a claim is exclusive; longer than the longest action timeout.
    pub lease: Duration,
    /// How long idempotency records are kept.
    pub retention: Duration,
    pub backoff: Backoff,
}

/// The processor.
pub struct Processor {
    /// The routes and the actions set up for them, fixed or refreshed from a source.
    routing: Routing,
    store: Arc<dyn IdempotencyStore>,
    control: Arc<dyn QueueControl>,
    /// Where bodies too large for a message are kept, when the receivers store them.
    bodies: Option<Arc<dyn BodyStore>>,
    /// Where every batch is archived, when the archive is on.
    archive: Option<Arc<dyn EventArchive>>,
    /// The share of [`STORED_BODY_BUDGET_BYTES`] not in use, in KiB.
    stored_body_budget: tokio::sync::Semaphore,
    settings: ProcessorSettings,
    metrics: Metrics,
    clock: crate::receiver::Clock,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("routing", &self.routing)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The outcome of running one action.
struct ActionResult<'a> {
    action: &'a ActionSpec,
    result: Result<(), ActionError>,
    /// The action was stopped by the invocation's deadline, not by its own timeout.
    cut_by_deadline: bool,
}

impl Processor {
    /// A processor acting on fixed routes, with `actions` set up for them.
    pub fn new(
        routes: RouteTable,
        store: Arc<dyn IdempotencyStore>,
        actions: Arc<dyn ActionInvoker>,
        control: Arc<dyn QueueControl>,
        settings: ProcessorSettings,
    ) -> Self {
        Self::routed(Routing::fixed(routes, actions), store, control, settings)
    }

    /// A processor acting on `routing`, which may change while it runs.
    pub fn routed(
        routing: Routing,
        store: Arc<dyn IdempotencyStore>,
        control: Arc<dyn QueueControl>,
        settings: ProcessorSettings,
    ) -> Self {
        Self {
            routing,
            store,
            control,
            bodies: None,
            archive: None,
            stored_body_budget: tokio::sync::Semaphore::new(
                budget_units(STORED_BODY_BUDGET_BYTES) as usize
            ),
            settings,
            metrics: Metrics::stdout(),
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    /// Reads bodies stored outside their envelopes from `bodies`.
    pub fn with_body_store(mut self, bodies: Arc<dyn BodyStore>) -> Self {
        self.bodies = Some(bodies);
        self
    }

    /// Archives every batch in `archive` before acting on it.
    pub fn with_archive(mut self, archive: Arc<dyn EventArchive>) -> Self {
        self.archive = Some(archive);
        self
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_clock(mut self, clock: crate::receiver::Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    pub fn settings(&self) -> &ProcessorSettings {
        &self.settings
    }

    /// Processes a batch concurrently; returns the ids of the messages to report failed.
    /// One message's failure never affects its neighbours. With a `deadline` (the end of
    /// the invocation), the answer comes [`ANSWER_MARGIN`] before it.
    pub async fn process_batch(
        &self,
        deliveries: Vec<QueuedDelivery>,
        deadline: Option<Instant>,
    ) -> Vec<String> {
        let envelopes: Vec<_> = deliveries
            .iter()
            .map(|delivery| Envelope::from_json(&delivery.body))
            .collect();
        let archived = self.archive_batch(&envelopes, deadline).await;
        let dispositions = join_all(deliveries.iter().zip(envelopes).map(|(delivery, envelope)| {
            let span = tracing::info_span!("message", message_id = %delivery.message_id, receive_count = delivery.receive_count);
            self.process_within(delivery, envelope, &archived, deadline)
                .instrument(span)
        }))
        .await;
        deliveries
            .into_iter()
            .zip(dispositions)
            .filter_map(|(delivery, disposition)| match disposition {
                Disposition::Retry(_) => Some(delivery.message_id),
                Disposition::Acknowledge(_) => None,
            })
            .collect()
    }

    /// [`Processor::process`], answered [`ANSWER_MARGIN`] before `deadline` whatever
    /// happens: a message cut off there is reported failed and comes back after the queue's
    /// visibility timeout, no delay having been set; its claim, if it took one, frees itself
    /// when its lease ends. Whatever it was doing is dropped mid-call, a store write
    /// included, which the claim's conditions make safe: an unfinished write either
    /// happened or did not.
    async fn process_within(
        &self,
        delivery: &QueuedDelivery,
        envelope: Result<Envelope, EnvelopeError>,
        archived: &Archived,
        deadline: Option<Instant>,
    ) -> Disposition {
        let Some(deadline) = deadline else {
            return self.process_read(delivery, envelope, archived, None).await;
        };
        let answer_by = answer_by(deadline);
        let processed = self.process_read(delivery, envelope, archived, Some(deadline));
        match tokio::time::timeout_at(answer_by, processed).await {
            Ok(disposition) => disposition,
            Err(_) => {
                error!(outcome = "retry", "the invocation's deadline came mid-message; it is reported failed and comes back");
                let outcome = Outcome::DeadlineReached;
                self.count_outcome(&outcome, None);
                Disposition::Retry(outcome)
            }
        }
    }

    /// Processes one message as a batch of its own (archived alone), logging and counting
    /// its outcome. `deadline` is when the invocation ends, if it does.
    pub async fn process(
        &self,
        delivery: &QueuedDelivery,
        deadline: Option<Instant>,
    ) -> Disposition {
        let envelope = Envelope::from_json(&delivery.body);
        let archived = self
            .archive_batch(std::slice::from_ref(&envelope), deadline)
            .await;
        self.process_read(delivery, envelope, &archived, deadline)
            .await
    }

    /// Archives a batch's readable envelopes in one write, when the archive is on, and
    /// answers by [`ANSWER_MARGIN`] before `deadline` whatever S3 does.
    async fn archive_batch(
        &self,
        envelopes: &[Result<Envelope, EnvelopeError>],
        deadline: Option<Instant>,
    ) -> Archived {
        let Some(archive) = &self.archive else {
            return Ok(None);
        };
        let readable: Vec<&Envelope> = envelopes.iter().flatten().collect();
        let append = archive.append(&readable, (self.clock)());
        let archived = match deadline {
            None => append.await,
            Some(deadline) => tokio::time::timeout_at(answer_by(deadline), append)
                .await
                .unwrap_or_else(|_| {
                    Err(ArchiveError::Unavailable(
                        "the invocation's deadline came before the archive answered".into(),
                    ))
                }),
        };
        if let Err(error) = &archived {
            error!(%error, events = readable.len(), "cannot archive the batch; its events are retried");
        }
        archived
    }

    /// Processes one message whose envelope was read (or not) and archived (or not),
    /// logging and counting its outcome.
    async fn process_read(
        &self,
        delivery: &QueuedDelivery,
        envelope: Result<Envelope, EnvelopeError>,
        archived: &Archived,
        deadline: Option<Instant>,
    ) -> Disposition {
        let (decision, provider) = match envelope {
            Ok(envelope) => (
                match archived {
                    Ok(location) => {
                        self.process_envelope(
                            delivery,
                            envelope.v1(),
                            location.as_deref(),
                            deadline,
                        )
                        .await
                    }
                    Err(error) => Decision::Retry {
                        outcome: Outcome::ArchiveUnavailable {
                            reason: error.to_string(),
                        },
                        delay: self.backoff(delivery, None),
                    },
                },
                Some(envelope.v1().provider),
            ),
            Err(error) => {
                warn!(%error, "unreadable envelope");
                (
                    Decision::DeadLetter(format!("unreadable envelope: {error}")),
                    None,
                )
            }
        };
        let disposition = self.settle(delivery, decision).await;
        let (Disposition::Acknowledge(outcome) | Disposition::Retry(outcome)) = &disposition;
        self.count_outcome(outcome, provider);
        disposition
    }

    /// Counts an outcome in all, and by provider when the envelope said which.
    fn count_outcome(&self, outcome: &Outcome, provider: Option<crate::provider::Provider>) {
        match provider {
            Some(provider) => self.metrics.count(
                metric_for(outcome),
                &[("Provider", provider.as_str())],
                &[&[], &["Provider"]],
            ),
            None => self.metrics.count(metric_for(outcome), &[], &[&[]]),
        }
    }

    /// Tells the queue what was decided. A retry on the message's last allowed delivery is
    /// dead-lettered instead, with the reason, so that nothing reaches the dead-letter
    /// queue without one.
    async fn settle(&self, delivery: &QueuedDelivery, decision: Decision) -> Disposition {
        match decision {
            Decision::Done(outcome) => Disposition::Acknowledge(outcome),
            Decision::DeadLetter(reason) => self.dead_letter(delivery, reason).await,
            Decision::Retry { outcome, delay } => {
                if let Some(max) = self
                    .control
                    .max_receive_count()
                    .filter(|max| delivery.receive_count >= *max)
                {
                    let reason = format!(
                        "gave up after {} deliveries (the queue allows {max}); the last failed: {}",
                        delivery.receive_count,
                        outcome.describe()
                    );
                    return self.dead_letter(delivery, reason).await;
                }
                if let Err(error) = self.control.retry_after(delivery, delay).await {
                    warn!(%error, "could not set the retry delay; the queue's visibility timeout applies");
                }
                Disposition::Retry(outcome)
            }
        }
    }

    /// The backoff before the next delivery of a message that failed this one.
    fn backoff(&self, delivery: &QueuedDelivery, retry_after: Option<Duration>) -> Duration {
        self.settings
            .backoff
            .delay(delivery.receive_count, retry_after)
    }

    async fn process_envelope(
        &self,
        delivery: &QueuedDelivery,
        envelope: &EnvelopeV1,
        archived: Option<&str>,
        deadline: Option<Instant>,
    ) -> Decision {
        let key = &envelope.idempotency_key;
        let event_type = envelope.event_type.as_str();
        let provider = envelope.provider.as_str();
        let table = self.routing.current().await;
        let mut actions = table.routes.actions_for(envelope.provider, event_type);
        // A forced replay may name the only actions to run again.
        if let Some(Replay {
            actions: Some(names),
            ..
        }) = &envelope.replay
        {
            actions.retain(|action| names.contains(&action.name));
        }
        if actions.is_empty() {
            info!(idempotency_key = %key, provider, event_type, outcome = "no_route", "no route matches; acknowledged");
            return Decision::Done(Outcome::NoRoute);
        }
        // Actions are cut short this long before the deadline; with less than a second of
        // that left, starting would only take a claim that then waits out its lease.
        let actions_deadline = deadline.map(|deadline| {
            deadline
                .checked_sub(RECORD_MARGIN)
                .unwrap_or_else(Instant::now)
        });
        // Taken before the claim, so that no claim is held while waiting for a turn.
        let _stored_body_share = match &envelope.body {
            RawBody::Stored(reference) => match self
                .stored_body_share(reference.size, actions_deadline)
                .await
            {
                Some(turn) => Some(turn),
                None => {
                    info!(idempotency_key = %key, provider, event_type, outcome = "retry", "other large bodies took the memory until the deadline; the message comes back at once");
                    return Decision::Retry {
                        outcome: Outcome::DeadlineReached,
                        delay: Duration::ZERO,
                    };
                }
            },
            _ => None,
        };
        if actions_deadline.is_some_and(|end| {
            end.saturating_duration_since(Instant::now()) < Duration::from_secs(1)
        }) {
            info!(idempotency_key = %key, provider, event_type, outcome = "retry", "too little of the invocation is left to start; the message comes back at once");
            return Decision::Retry {
                outcome: Outcome::DeadlineReached,
                delay: Duration::ZERO,
            };
        }

        let now = (self.clock)();
        let claim = self
            .store
            .claim(ClaimRequest {
                key,
                payload_hash: &envelope.body_sha256,
                now,
                lease: self.settings.lease,
                retention: self.settings.retention,
                archive: archived,
            })
            .await;
        let held = match claim {
            Ok(Claim::Acquired(held)) => held,
            Ok(Claim::Completed) => {
                info!(idempotency_key = %key, provider, event_type, claim = "completed", outcome = "duplicate", "duplicate delivery acknowledged");
                return Decision::Done(Outcome::Duplicate);
            }
            Ok(Claim::InFlight { lease_expires_at }) => {
                // Come back when the lease ends: by then the holder has completed the event
                // (this delivery is then a duplicate) or died (its claim can be taken over).
                // Without a delay, the message would wait out the queue's whole visibility
                // timeout instead.
                let delay = until_lease_ends(now, lease_expires_at);
                info!(idempotency_key = %key, provider, event_type, claim = "in_flight", %lease_expires_at, delay_ms = delay.as_millis() as u64, outcome = "retry", "another delivery of the event holds the claim; retrying when its lease ends");
                return Decision::Retry {
                    outcome: Outcome::InFlightElsewhere,
                    delay,
                };
            }
            Err(error) => return self.store_unavailable(delivery, key, &error),
        };
        // After the claim, not before: a duplicate, the commonest redelivery, then costs the
        // claim's one conditional write and nothing more.
        // A forced replay carries its event's body under a key of its own on purpose: an
        // operator's, from the archive, not a captured delivery's.
        if !envelope.id_signed && envelope.replay.is_none() {
            match self.first_with_body(envelope, now).await {
                Ok(FirstSeen::ThisEvent) => {}
                Ok(FirstSeen::Another(first)) => {
                    warn!(idempotency_key = %key, first_idempotency_key = %first, provider, event_type, outcome = "suspected_replay", "this body was received before under another id, which its provider does not sign: a replayed delivery; acknowledged as a duplicate");
                    // Completed with nothing run, so that the replay's own redeliveries are
                    // plain duplicates.
                    if let Err(error) = self
                        .store
                        .complete(&held, None, (self.clock)(), self.settings.retention)
                        .await
                    {
                        return self.lost_progress(delivery, &held, error, None).await;
                    }
                    return Decision::Done(Outcome::SuspectedReplay { first });
                }
                Err(error) => {
                    self.release(&held, None).await;
                    return self.store_unavailable(delivery, key, &error);
                }
            }
        }
        if held.first_payload_hash != envelope.body_sha256 {
            warn!(idempotency_key = %key, provider, event_type, "the same key arrived with a different payload; the first one's actions stand");
        }

        let pending: Vec<&ActionSpec> = actions
            .into_iter()
            .filter(|action| !held.done_actions.contains(&action.name))
            .collect();
        let body = match self.body_of(delivery, envelope).await {
            Ok(body) => body,
            Err(decision) => {
                let failure = match &decision {
                    Decision::DeadLetter(reason) => Some(Failure::of(reason.clone())),
                    Decision::Retry { outcome, .. } => Some(Failure::of(outcome.describe())),
                    Decision::Done(_) => None,
                };
                self.release(&held, failure.as_ref()).await;
                return decision;
            }
        };
        let event = NormalizedEvent::new(envelope, body);
        // Each success is recorded as soon as its action ends, not once the slowest action
        // of the event has: a crash in between must not make a finished action run again.
        // A lone action is the exception: its success is recorded by the write that completes
        // the event, which follows at once, so a new event with one action costs two writes
        // (the claim and the completion). A crash between the action and that write runs
        // the action again, exactly as a crash before a separate write would.
        let lone_action = match pending.as_slice() {
            [action] => Some(action.name.as_str()),
            _ => None,
        };
        let outcomes = join_all(pending.iter().map(|action| async {
            let done = self
                .run_action(&*table.actions, action, &event, actions_deadline)
                .await;
            let recorded = match &done.result {
                Ok(()) => {
                    info!(idempotency_key = %key, action = %action.name, attempt = held.attempt, "action succeeded");
                    if lone_action.is_some() {
                        Ok(())
                    } else {
                        self.store.mark_action_done(&held, &action.name).await
                    }
                }
                Err(error) => {
                    warn!(idempotency_key = %key, action = %action.name, attempt = held.attempt, %error, "action failed");
                    Ok(())
                }
            };
            (done, recorded)
        }))
        .await;
        // An action the deadline cut short may still be running at its agent (dropping a
        // request does not stop the work it started): whatever comes next, the claim is
        // kept for the rest of its lease, and the message comes back once it has ended,
        // rather than running the action again beside itself.
        let keep_claim_for = outcomes
            .iter()
            .any(|(done, _)| done.cut_by_deadline)
            .then(|| until_lease_ends((self.clock)(), now + self.settings.lease));
        let mut results = Vec::with_capacity(outcomes.len());
        for (done, recorded) in outcomes {
            if let Err(error) = recorded {
                return self
                    .lost_progress(delivery, &held, error, keep_claim_for)
                    .await;
            }
            results.push(done);
        }

        let permanent = results.iter().find_map(|done| match &done.result {
            Err(ActionError::Permanent { reason }) => Some((done.action, reason)),
            _ => None,
        });
        if let Some((action, reason)) = permanent {
            let reason = format!("action `{}` failed permanently: {reason}", action.name);
            let failure = Failure {
                reason: reason.clone(),
                actions: failed_actions(&results),
            };
            self.let_go(&held, keep_claim_for, failure).await;
            return Decision::DeadLetter(reason);
        }
        let retryable: Vec<&ActionResult<'_>> = results
            .iter()
            .filter(|done| matches!(done.result, Err(ActionError::Retryable { .. })))
            .collect();
        if !retryable.is_empty() {
            let reason = retryable
                .iter()
                .filter_map(|done| {
                    let error = done.result.as_ref().err()?;
                    Some(format!("action `{}`: {error}", done.action.name))
                })
                .collect::<Vec<_>>()
                .join("; ");
            let failure = Failure {
                reason: reason.clone(),
                actions: failed_actions(&results),
            };
            self.let_go(&held, keep_claim_for, failure).await;
            if let (true, Some(delay)) = (
                retryable.iter().all(|done| done.cut_by_deadline),
                keep_claim_for,
            ) {
                info!(idempotency_key = %key, attempt = held.attempt, delay_ms = delay.as_millis() as u64, outcome = "retry", "the invocation's deadline cut the actions short; the message comes back when the claim's lease ends");
                return Decision::Retry {
                    outcome: Outcome::DeadlineReached,
                    delay,
                };
            }
            let retry_after = retryable
                .iter()
                .filter_map(|done| match &done.result {
                    Err(ActionError::Retryable { retry_after, .. }) => *retry_after,
                    _ => None,
                })
                .max();
            let delay = self
                .backoff(delivery, retry_after)
                .max(keep_claim_for.unwrap_or_default());
            info!(idempotency_key = %key, attempt = held.attempt, delay_ms = delay.as_millis() as u64, outcome = "retry", "retry scheduled");
            return Decision::Retry {
                outcome: Outcome::RetryScheduled { delay, reason },
                delay,
            };
        }

        if let Err(error) = self
            .store
            .complete(&held, lone_action, (self.clock)(), self.settings.retention)
            .await
        {
            return self.lost_progress(delivery, &held, error, None).await;
        }
        let latency = (OffsetDateTime::now_utc() - envelope.received_at)
            .whole_milliseconds()
            .max(0);
        self.metrics.emit(
            "EndToEndLatency",
            "Milliseconds",
            latency as f64,
            &[],
            &[&[]],
        );
        info!(idempotency_key = %key, provider, event_type, attempt = held.attempt, outcome = "completed", "event completed");
        Decision::Done(Outcome::Completed)
    }

    /// The event's raw body: the envelope's own, or the bytes stored under its reference,
    /// checked against the size and hash the envelope records. A store that cannot be
    /// reached is retried; a body that is gone or altered is dead-lettered, since trying
    /// again cannot bring it back.
    async fn body_of(
        &self,
        delivery: &QueuedDelivery,
        envelope: &EnvelopeV1,
    ) -> Result<RawBody, Decision> {
        let RawBody::Stored(reference) = &envelope.body else {
            return Ok(envelope.body.clone());
        };
        let Some(bodies) = &self.bodies else {
            return Err(Decision::DeadLetter(format!(
                "the body is stored at {}, and this processor reads no body store (set BODY_BUCKET)",
                reference.location
            )));
        };
        match fetch_verified(bodies.as_ref(), reference, &envelope.body_sha256).await {
            Ok(bytes) => Ok(RawBody::from_bytes(&bytes)),
            Err(error) if error.is_retryable() => {
                let delay = self.backoff(delivery, None);
                warn!(idempotency_key = %envelope.idempotency_key, %error, delay_ms = delay.as_millis() as u64, outcome = "retry", "cannot read the stored body");
                Err(Decision::Retry {
                    outcome: Outcome::BodyStoreUnavailable {
                        reason: error.to_string(),
                    },
                    delay,
                })
            }
            Err(error) => Err(Decision::DeadLetter(format!(
                "the stored body cannot be used: {error}"
            ))),
        }
    }

    /// The share of the stored-body budget an event with a body of `size` bytes needs,
    /// waited for until `until` at most.
    async fn stored_body_share(
        &self,
        size: u64,
        until: Option<Instant>,
    ) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let share = self
            .stored_body_budget
            .acquire_many(budget_units(size.clamp(1, STORED_BODY_BUDGET_BYTES)));
        match until {
            None => share.await.ok(),
            Some(until) => tokio::time::timeout_at(until, share).await.ok()?.ok(),
        }
    }

    /// Records the envelope's body as seen in its event, or learns which event it was first
    /// seen in.
    async fn first_with_body(
        &self,
        envelope: &EnvelopeV1,
        now: OffsetDateTime,
    ) -> Result<FirstSeen, StoreError> {
        self.store
            .record_body(BodySighting {
                provider: envelope.provider,
                body_sha256: &envelope.body_sha256,
                key: &envelope.idempotency_key,
                now,
                retention: self.settings.retention,
            })
            .await
    }

    /// The store could not be reached before anything was claimed. Back after a short
    /// backoff: an unreachable store is usually a blip, and waiting out the queue's
    /// visibility timeout (minutes) would hold every event of the outage back that long.
    fn store_unavailable(
        &self,
        delivery: &QueuedDelivery,
        key: &IdempotencyKey,
        error: &StoreError,
    ) -> Decision {
        let delay = self.backoff(delivery, None);
        error!(idempotency_key = %key, %error, delay_ms = delay.as_millis() as u64, outcome = "retry", "cannot claim the event");
        Decision::Retry {
            outcome: Outcome::StoreUnavailable {
                reason: error.to_string(),
            },
            delay,
        }
    }

    /// Runs one action, bounded by its timeout and by `deadline`, whichever comes first.
    async fn run_action<'a>(
        &self,
        actions: &dyn ActionInvoker,
        action: &'a ActionSpec,
        event: &NormalizedEvent,
        deadline: Option<Instant>,
    ) -> ActionResult<'a> {
        let started = Instant::now();
        let budget = deadline.map_or(action.timeout, |deadline| {
            action
                .timeout
                .min(deadline.saturating_duration_since(started))
        });
        let shortened = budget < action.timeout;
        // An X-Ray subsegment when tracing is on (`telemetry::xray`); nothing otherwise.
        let span = tracing::debug_span!(
            crate::telemetry::xray::ACTION_SPAN,
            xray_name = %action.name,
            error = tracing::field::Empty
        );
        let invoked = tokio::time::timeout(budget, actions.invoke(action, event))
            .instrument(span.clone())
            .await;
        let (result, cut_by_deadline) = match invoked {
            Ok(result) => (result, false),
            Err(_) if shortened => (
                Err(ActionError::retryable(format!(
                    "cut short after {} ms by the invocation's deadline",
                    budget.as_millis()
                ))),
                true,
            ),
            Err(_) => (
                Err(ActionError::retryable(format!(
                    "timed out after {} s",
                    action.timeout.as_secs()
                ))),
                false,
            ),
        };
        let dimensions = [("Action", action.name.as_str())];
        self.metrics.emit(
            "ActionLatency",
            "Milliseconds",
            started.elapsed().as_millis() as f64,
            &dimensions,
            &[&["Action"]],
        );
        let metric = if result.is_ok() {
            "ActionSucceeded"
        } else {
            span.record("error", true);
            "ActionFailed"
        };
        self.metrics.count(metric, &dimensions, &[&["Action"]]);
        ActionResult {
            action,
            result,
            cut_by_deadline,
        }
    }

    /// A claim write failed mid-event. Whatever was recorded stands; the message is retried
    /// after a backoff and the next attempt runs only what is left.
    async fn lost_progress(
        &self,
        delivery: &QueuedDelivery,
        held: &HeldClaim,
        error: StoreError,
        keep_claim_for: Option<Duration>,
    ) -> Decision {
        error!(idempotency_key = %held.key, %error, outcome = "retry", "could not record progress");
        let delay = self
            .backoff(delivery, None)
            .max(keep_claim_for.unwrap_or_default());
        let outcome = match error {
            StoreError::ClaimLost { .. } => Outcome::ClaimLost,
            StoreError::Unavailable(reason) => {
                let reason = format!("the idempotency store is unavailable: {reason}");
                self.let_go(held, keep_claim_for, Failure::of(reason.clone()))
                    .await;
                Outcome::StoreUnavailable { reason }
            }
        };
        Decision::Retry { outcome, delay }
    }

    /// Releases the claim after an attempt that failed for `failure`, unless it is to be
    /// kept (for as long as `keep_claim_for` says) while an agent may still be at work on a
    /// request the deadline dropped.
    async fn let_go(&self, held: &HeldClaim, keep_claim_for: Option<Duration>, failure: Failure) {
        if keep_claim_for.is_none() {
            self.release(held, Some(&failure)).await;
        }
    }

    /// Releasing is a courtesy that lets the next delivery start at once (and tells the
    /// record why the attempt failed); if it fails, the lease simply runs out.
    async fn release(&self, held: &HeldClaim, failure: Option<&Failure>) {
        if let Err(error) = self.store.release(held, failure).await {
            warn!(idempotency_key = %held.key, %error, "could not release the claim; it frees itself when the lease ends");
        }
    }

    async fn dead_letter(&self, delivery: &QueuedDelivery, reason: String) -> Disposition {
        match self.control.dead_letter(delivery, &reason).await {
            Ok(()) => {
                warn!(
                    reason,
                    outcome = "dead_lettered",
                    "sent to the dead-letter queue"
                );
                Disposition::Acknowledge(Outcome::DeadLettered { reason })
            }
            Err(error) => {
                error!(reason, %error, outcome = "retry", "could not send to the dead-letter queue; retrying instead");
                Disposition::Retry(Outcome::DeadLetterUnavailable)
            }
        }
    }
}

/// Each action of an attempt that failed, and its error.
fn failed_actions(results: &[ActionResult<'_>]) -> std::collections::BTreeMap<String, String> {
    results
        .iter()
        .filter_map(|done| {
            let error = done.result.as_ref().err()?;
            Some((done.action.name.clone(), error.to_string()))
        })
        .collect()
}

fn metric_for(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "Processed",
        Outcome::Duplicate => "Duplicates",
        Outcome::SuspectedReplay { .. } => "SuspectedReplays",
        Outcome::NoRoute => "NoRoute",
        Outcome::DeadLettered { .. } => "DeadLettered",
        Outcome::RetryScheduled { .. } => "RetriesScheduled",
        Outcome::InFlightElsewhere => "InFlightElsewhere",
        Outcome::StoreUnavailable { .. }
        | Outcome::BodyStoreUnavailable { .. }
        | Outcome::ArchiveUnavailable { .. }
        | Outcome::ClaimLost
        | Outcome::DeadlineReached
        | Outcome::DeadLetterUnavailable => "ProcessingErrors",
    }
}

#[cfg(test)]
mod tests;
