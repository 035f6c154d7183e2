//! The processor service: queued envelopes in, agent actions run with an exactly-once
//! effect, one disposition per message out.
//!
//! For each message: read the envelope (unreadable: to the dead-letter queue), find its
//! actions (none: acknowledged), claim its key (done already: a duplicate; held elsewhere:
//! retried later), run the actions not yet done, concurrently, each bounded by its timeout,
//! recording each success, then complete the claim. A retryable failure releases the claim
//! and puts the message off with backoff; a permanent one sends it to the dead-letter queue
//! with the reason.

pub mod actions;
pub mod backoff;
mod config;
mod consumer;
mod control;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use time::OffsetDateTime;
use tracing::{error, info, warn, Instrument};

pub use config::{routes_from_env, settings_from_env, ProcessorConfig, BUNDLED_ROUTES};
pub use consumer::QueueConsumer;
pub use control::{ControlCall, MemoryQueueControl, QueueControl};

use self::actions::{ActionError, ActionInvoker, NormalizedEvent};
use self::backoff::Backoff;
use crate::claims::{Claim, ClaimRequest, HeldClaim, IdempotencyStore, StoreError};
use crate::envelope::{Envelope, EnvelopeV1};
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
    NoRoute,
    DeadLettered { reason: String },
    RetryScheduled { delay: Duration },
    InFlightElsewhere,
    StoreUnavailable,
    ClaimLost,
    DeadLetterUnavailable,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Duplicate => "duplicate",
            Outcome::NoRoute => "no_route",
            Outcome::DeadLettered { .. } => "dead_lettered",
            Outcome::RetryScheduled { .. } => "retry_scheduled",
            Outcome::InFlightElsewhere => "in_flight_elsewhere",
            Outcome::StoreUnavailable => "store_unavailable",
            Outcome::ClaimLost => "claim_lost",
            Outcome::DeadLetterUnavailable => "dead_letter_unavailable",
        }
    }
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
    routes: RouteTable,
    store: Arc<dyn IdempotencyStore>,
    actions: Arc<dyn ActionInvoker>,
    control: Arc<dyn QueueControl>,
    settings: ProcessorSettings,
    metrics: Metrics,
    clock: crate::receiver::Clock,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("routes", &self.routes.route_count())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The outcome of running one action.
struct ActionResult<'a> {
    action: &'a ActionSpec,
    result: Result<(), ActionError>,
}

impl Processor {
    pub fn new(
        routes: RouteTable,
        store: Arc<dyn IdempotencyStore>,
        actions: Arc<dyn ActionInvoker>,
        control: Arc<dyn QueueControl>,
        settings: ProcessorSettings,
    ) -> Self {
        Self {
            routes,
            store,
            actions,
            control,
            settings,
            metrics: Metrics::stdout(),
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_clock(mut self, clock: crate::receiver::Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    pub fn settings(&self) -> &ProcessorSettings {
        &self.settings
    }

    /// Processes a batch concurrently; returns the ids of the messages to report failed.
    /// One message's failure never affects its neighbours.
    pub async fn process_batch(&self, deliveries: Vec<QueuedDelivery>) -> Vec<String> {
        let dispositions = join_all(deliveries.iter().map(|delivery| {
            let span = tracing::info_span!("message", message_id = %delivery.message_id, receive_count = delivery.receive_count);
            self.process(delivery).instrument(span)
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

    /// Processes one message, logging and counting its outcome.
    pub async fn process(&self, delivery: &QueuedDelivery) -> Disposition {
        let disposition = match Envelope::from_json(&delivery.body) {
            Ok(envelope) => self.process_envelope(delivery, envelope.v1()).await,
            Err(error) => {
                warn!(%error, "unreadable envelope");
                self.dead_letter(delivery, format!("unreadable envelope: {error}"))
                    .await
            }
        };
        let (Disposition::Acknowledge(outcome) | Disposition::Retry(outcome)) = &disposition;
        self.metrics.count(metric_for(outcome), &[], &[&[]]);
        disposition
    }

    async fn process_envelope(
        &self,
        delivery: &QueuedDelivery,
        envelope: &EnvelopeV1,
    ) -> Disposition {
        let key = &envelope.idempotency_key;
        let event_type = envelope.event_type.as_str();
        let provider = envelope.provider.as_str();
        let actions = self.routes.actions_for(envelope.provider, event_type);
        if actions.is_empty() {
            info!(idempotency_key = %key, provider, event_type, outcome = "no_route", "no route matches; acknowledged");
            return Disposition::Acknowledge(Outcome::NoRoute);
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
            })
            .await;
        let held = match claim {
            Ok(Claim::Acquired(held)) => held,
            Ok(Claim::Completed) => {
                info!(idempotency_key = %key, provider, event_type, claim = "completed", outcome = "duplicate", "duplicate delivery acknowledged");
                return Disposition::Acknowledge(Outcome::Duplicate);
            }
            Ok(Claim::InFlight { lease_expires_at }) => {
                // Come back when the lease ends: by then the holder has completed the event
                // (this delivery is then a duplicate) or died (its claim can be taken over).
                // Without a delay, the message would wait out the queue's whole visibility
                // timeout instead.
                let delay = until_lease_ends(now, lease_expires_at);
                if let Err(error) = self.control.retry_after(delivery, delay).await {
                    warn!(%error, "could not set the retry delay; SQS's visibility timeout applies");
                }
                info!(idempotency_key = %key, provider, event_type, claim = "in_flight", %lease_expires_at, delay_ms = delay.as_millis() as u64, outcome = "retry", "another delivery of the event holds the claim; retrying when its lease ends");
                return Disposition::Retry(Outcome::InFlightElsewhere);
            }
            Err(error) => {
                error!(idempotency_key = %key, provider, event_type, %error, outcome = "retry", "cannot claim the event");
                return Disposition::Retry(Outcome::StoreUnavailable);
            }
        };
        if held.first_payload_hash != envelope.body_sha256 {
            warn!(idempotency_key = %key, provider, event_type, "the same key arrived with a different payload; the first one's actions stand");
        }

        let pending: Vec<&ActionSpec> = actions
            .into_iter()
            .filter(|action| !held.done_actions.contains(&action.name))
            .collect();
        let event = NormalizedEvent::from_envelope(envelope);
        // Each success is recorded as soon as its action ends, not once the slowest action
        // of the event has: a crash in between must not make a finished action run again.
        let outcomes = join_all(pending.iter().map(|action| async {
            let done = self.run_action(action, &event).await;
            let recorded = match &done.result {
                Ok(()) => {
                    info!(idempotency_key = %key, action = %action.name, attempt = held.attempt, "action succeeded");
                    self.store.mark_action_done(&held, &action.name).await
                }
                Err(error) => {
                    warn!(idempotency_key = %key, action = %action.name, attempt = held.attempt, %error, "action failed");
                    Ok(())
                }
            };
            (done, recorded)
        }))
        .await;
        let mut results = Vec::with_capacity(outcomes.len());
        for (done, recorded) in outcomes {
            if let Err(error) = recorded {
                return self.lost_progress(&held, error).await;
            }
            results.push(done);
        }

        let permanent = results.iter().find_map(|done| match &done.result {
            Err(ActionError::Permanent { reason }) => Some((done.action, reason)),
            _ => None,
        });
        if let Some((action, reason)) = permanent {
            self.release(&held).await;
            return self
                .dead_letter(
                    delivery,
                    format!("action `{}` failed permanently: {reason}", action.name),
                )
                .await;
        }
        let retry_after = results
            .iter()
            .filter_map(|done| match &done.result {
                Err(ActionError::Retryable { retry_after, .. }) => Some(*retry_after),
                _ => None,
            })
            .reduce(Option::max);
        if let Some(retry_after) = retry_after {
            self.release(&held).await;
            let delay = self
                .settings
                .backoff
                .delay(delivery.receive_count, retry_after);
            if let Err(error) = self.control.retry_after(delivery, delay).await {
                warn!(%error, "could not set the retry delay; SQS's visibility timeout applies");
            }
            info!(idempotency_key = %key, attempt = held.attempt, delay_ms = delay.as_millis() as u64, outcome = "retry", "retry scheduled");
            return Disposition::Retry(Outcome::RetryScheduled { delay });
        }

        if let Err(error) = self
            .store
            .complete(&held, (self.clock)(), self.settings.retention)
            .await
        {
            return self.lost_progress(&held, error).await;
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
        Disposition::Acknowledge(Outcome::Completed)
    }

    async fn run_action<'a>(
        &self,
        action: &'a ActionSpec,
        event: &NormalizedEvent,
    ) -> ActionResult<'a> {
        let started = Instant::now();
        let result =
            match tokio::time::timeout(action.timeout, self.actions.invoke(action, event)).await {
                Ok(result) => result,
                Err(_) => Err(ActionError::retryable(format!(
                    "timed out after {} s",
                    action.timeout.as_secs()
                ))),
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
            "ActionFailed"
        };
        self.metrics.count(metric, &dimensions, &[&["Action"]]);
        ActionResult { action, result }
    }

    /// A claim write failed mid-event. Whatever was recorded stands; the message is retried
    /// and the next attempt runs only what is left.
    async fn lost_progress(&self, held: &HeldClaim, error: StoreError) -> Disposition {
        error!(idempotency_key = %held.key, %error, outcome = "retry", "could not record progress");
        match error {
            StoreError::ClaimLost { .. } => Disposition::Retry(Outcome::ClaimLost),
            StoreError::Unavailable(_) => {
                self.release(held).await;
                Disposition::Retry(Outcome::StoreUnavailable)
            }
        }
    }

    /// Releasing is a courtesy that lets the next delivery start at once; if it fails, the
    /// lease simply runs out.
    async fn release(&self, held: &HeldClaim) {
        if let Err(error) = self.store.release(held).await {
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

fn metric_for(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "Processed",
        Outcome::Duplicate => "Duplicates",
        Outcome::NoRoute => "NoRoute",
        Outcome::DeadLettered { .. } => "DeadLettered",
        Outcome::RetryScheduled { .. } => "RetriesScheduled",
        Outcome::InFlightElsewhere => "InFlightElsewhere",
        Outcome::StoreUnavailable | Outcome::ClaimLost | Outcome::DeadLetterUnavailable => {
            "ProcessingErrors"
        }
    }
}

#[cfg(test)]
mod tests;
