//! The receiver service: one inbound request in, exactly one answer out.
//!
//! The checks run cheapest and least revealing first: source address, method, size, then
//! the signature, then what the payload says, and only then the queue. A 2xx is only ever
//! answered after the queue has confirmed it stored the message.

mod answer;
mod config;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use ipnet::IpNet;
use time::OffsetDateTime;
use tracing::{error, info, warn};

pub use answer::Answer;
pub use config::{ReceiverConfig, SecretsConfig};

use crate::envelope::QueueMessage;
use crate::idempotency::IdempotencyKey;
use crate::provider::Provider;
use crate::queue::{EventQueue, QueueError};
use crate::request::InboundRequest;
use crate::secret::{SecretError, SecretSource};
use crate::telemetry::Metrics;
use crate::verify::{self, Handshake, Rejection, SignatureScheme, Verified};

/// The largest message every SQS queue accepts, body and attributes together. Queues can be
/// configured for more, but a receiver must not depend on that.
pub const SQS_MESSAGE_LIMIT: usize = 262_144;

/// The request policy a receiver enforces around the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverSettings {
    /// How far a signed timestamp may be from now, either way.
    pub tolerance: Duration,
    /// The largest raw body accepted.
    pub max_body_bytes: usize,
    /// When set, only these networks may call.
    pub allowed_sources: Option<Vec<IpNet>>,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        Self {
            tolerance: Duration::from_secs(300),
            // The base64 of a 190000-byte binary body, with the envelope around it, still fits
            // SQS's 262144-byte message.
            max_body_bytes: 190_000,
            allowed_sources: None,
        }
    }
}

/// The time source; tests fix it to a sample event's signing time.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// What a receiver accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Verified and durably queued.
    Queued {
        idempotency_key: IdempotencyKey,
        event_type: String,
        message_id: String,
    },
    /// A verified provider handshake, answered directly.
    Handshake(Handshake),
}

/// Why a receiver refused a request. [`Answer`] maps each to its HTTP status, in one place.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the source address {} is not in ALLOWED_SOURCE_CIDRS", .0.map_or("(unknown)".to_owned(), |ip| ip.to_string()))]
    SourceNotAllowed(Option<IpAddr>),
    #[error("method {0} is not allowed; webhooks are POSTed")]
    MethodNotAllowed(Method),
    #[error("the payload is {size} bytes, over the limit of {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("the signing secrets are unavailable: {0}")]
    SecretsUnavailable(#[from] SecretError),
    #[error(transparent)]
    QueueUnavailable(#[from] QueueError),
}

impl ReceiveError {
    /// A short stable label, for metrics and structured logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ReceiveError::SourceNotAllowed(_) => "source_not_allowed",
            ReceiveError::MethodNotAllowed(_) => "method_not_allowed",
            ReceiveError::PayloadTooLarge { .. } => "payload_too_large",
            ReceiveError::Rejected(Rejection::Unauthenticated(failure)) => failure.reason(),
            ReceiveError::Rejected(Rejection::Malformed(_)) => "malformed_request",
            ReceiveError::SecretsUnavailable(_) => "secrets_unavailable",
            ReceiveError::QueueUnavailable(_) => "queue_unavailable",
        }
    }
}

/// A receiver for one provider.
pub struct Receiver {
    scheme: Box<dyn SignatureScheme>,
    secrets: Arc<dyn SecretSource>,
    queue: Arc<dyn EventQueue>,
    settings: ReceiverSettings,
    metrics: Metrics,
    clock: Clock,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("provider", &self.scheme.provider())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    pub fn new(
        scheme: Box<dyn SignatureScheme>,
        secrets: Arc<dyn SecretSource>,
        queue: Arc<dyn EventQueue>,
        settings: ReceiverSettings,
    ) -> Self {
        Self {
            scheme,
            secrets,
            queue,
            settings,
            metrics: Metrics::stdout(),
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn provider(&self) -> Provider {
        self.scheme.provider()
    }

    pub fn settings(&self) -> &ReceiverSettings {
        &self.settings
    }

    /// Handles a request and answers it, logging the outcome and counting it.
    pub async fn answer(&self, request: InboundRequest) -> Answer {
        let provider = self.provider().as_str();
        self.metrics
            .count("Received", &[("Provider", provider)], &[&["Provider"]]);
        let outcome = self.receive(request).await;
        match &outcome {
            Ok(Accepted::Queued {
                idempotency_key,
                event_type,
                message_id,
            }) => {
                info!(provider, idempotency_key = %idempotency_key, event_type, message_id, outcome = "enqueued", "webhook enqueued");
                self.metrics
                    .count("Enqueued", &[("Provider", provider)], &[&["Provider"]]);
            }
            Ok(Accepted::Handshake(_)) => {
                info!(
                    provider,
                    outcome = "handshake",
                    "provider handshake answered"
                );
            }
            Err(refusal) => {
                let reason = refusal.reason();
                match refusal {
                    ReceiveError::SecretsUnavailable(_) | ReceiveError::QueueUnavailable(_) => {
                        error!(provider, outcome = "unavailable", reason, error = %refusal, "webhook not accepted");
                    }
                    _ => {
                        warn!(provider, outcome = "rejected", reason, error = %refusal, "webhook rejected")
                    }
                }
                self.metrics.count(
                    "Rejected",
                    &[("Provider", provider), ("Reason", reason)],
                    &[&["Provider"], &["Provider", "Reason"]],
                );
            }
        }
        Answer::from_outcome(&outcome)
    }

    /// Verifies a request and, if genuine, queues it.
    pub async fn receive(&self, request: InboundRequest) -> Result<Accepted, ReceiveError> {
        if let Some(allowed) = &self.settings.allowed_sources {
            let permitted = request
                .source_ip
                .is_some_and(|ip| allowed.iter().any(|network| network.contains(&ip)));
            if !permitted {
                return Err(ReceiveError::SourceNotAllowed(request.source_ip));
            }
        }
        if request.method != Method::POST {
            return Err(ReceiveError::MethodNotAllowed(request.method));
        }
        if request.body.len() > self.settings.max_body_bytes {
            return Err(ReceiveError::PayloadTooLarge {
                size: request.body.len(),
                limit: self.settings.max_body_bytes,
            });
        }
        let keys = self.secrets.key_ring().await?;
        let now = (self.clock)();
        let webhook = match verify::verify(
            self.scheme.as_ref(),
            &request,
            &keys,
            now,
            self.settings.tolerance,
        )? {
            Verified::Handshake(handshake) => return Ok(Accepted::Handshake(handshake)),
            Verified::Webhook(webhook) => webhook,
        };
        let message = QueueMessage::from_verified(&webhook);
        let size = message.size_in_bytes();
        if size > SQS_MESSAGE_LIMIT {
            // The body passed MAX_BODY_BYTES but escaping made the envelope too big for SQS.
            return Err(ReceiveError::PayloadTooLarge {
                size,
                limit: SQS_MESSAGE_LIMIT,
            });
        }
        let message_id = self.queue.enqueue(&message).await?;
        Ok(Accepted::Queued {
            idempotency_key: webhook.idempotency_key().clone(),
            event_type: webhook.event_type().to_owned(),
            message_id,
        })
    }
}

#[cfg(test)]
mod tests;
