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

use crate::bodies::{BodyStore, BodyStoreError};
use crate::dead_letters::DEAD_LETTER_OVERHEAD;
use crate::envelope::QueueMessage;
use crate::idempotency::IdempotencyKey;
use crate::provider::Provider;
use crate::queue::{EventQueue, QueueError, SQS_MAX_MESSAGE_BYTES};
use crate::request::InboundRequest;
use crate::secret::{SecretError, SecretSource};
use crate::telemetry::Metrics;
use crate::verify::{
    self, Handshake, ProviderUnavailable, Rejection, SignatureScheme, Verified, VerifiedWebhook,
};

/// The largest body a receiver can be handed at all: Lambda takes a request of 6 MiB
/// (6,291,456 bytes), API Gateway passes a body that is not text as base64 (4 bytes for 3),
/// and 16 KiB go to the headers and request context around it. The default `MAX_BODY_BYTES`
/// with a body store, and the most it may be.
pub const MAX_REQUEST_BODY_BYTES: usize = (6_291_456 - 16_384) / 4 * 3;

/// Room an envelope needs besides its body: the key, type, ids and forwarded headers.
const ENVELOPE_FIELDS_BYTES: usize = 16_384;

/// The largest body whose envelope surely fits an SQS message (1 MiB), even as base64, with
/// room left for the dead-letter attributes: the default `MAX_BODY_BYTES` without a body
/// store. Larger text bodies may still fit; each envelope is measured.
pub const INLINE_BODY_BYTES: usize =
    (SQS_MAX_MESSAGE_BYTES - DEAD_LETTER_OVERHEAD - ENVELOPE_FIELDS_BYTES) / 4 * 3;

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
    /// For a receiver without a body store: bodies up to what surely fits a queue message.
    fn default() -> Self {
        Self {
            tolerance: Duration::from_secs(300),
            max_body_bytes: INLINE_BODY_BYTES,
            allowed_sources: None,
        }
    }
}

impl ReceiverSettings {
    /// For a receiver with a body store: bodies up to what Lambda can be handed.
    pub fn with_body_store() -> Self {
        Self {
            max_body_bytes: MAX_REQUEST_BODY_BYTES,
            ..Self::default()
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
        /// What the provider expects in the answer, where it expects its own (Discord,
        /// Linear, Twilio).
        acknowledgement: Option<Handshake>,
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
    #[error("the large body could not be stored: {0}")]
    BodyStoreUnavailable(#[from] BodyStoreError),
    #[error(transparent)]
    QueueUnavailable(#[from] QueueError),
    /// A call the scheme makes to the provider (SNS's certificate, its subscription
    /// confirmation) failed, and may succeed when the provider retries.
    #[error(transparent)]
    ProviderUnavailable(#[from] ProviderUnavailable),
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
            ReceiveError::BodyStoreUnavailable(_) => "body_store_unavailable",
            ReceiveError::QueueUnavailable(_) => "queue_unavailable",
            ReceiveError::ProviderUnavailable(_) => "provider_unavailable",
        }
    }
}

/// A receiver for one provider.
pub struct Receiver {
    scheme: Box<dyn SignatureScheme>,
    secrets: Arc<dyn SecretSource>,
    queue: Arc<dyn EventQueue>,
    /// Where a body too large for a queue message is stored first, if anywhere.
    bodies: Option<Arc<dyn BodyStore>>,
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
            bodies: None,
            settings,
            metrics: Metrics::stdout(),
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    /// Stores bodies too large for a queue message in `bodies` and queues a reference.
    pub fn with_body_store(mut self, bodies: Arc<dyn BodyStore>) -> Self {
        self.bodies = Some(bodies);
        self
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
                ..
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
                // A genuine delivery hookgate could not take (answered 503) is an incident of
                // its own, counted apart from deliveries it refused.
                let metric = match refusal {
                    ReceiveError::SecretsUnavailable(_)
                    | ReceiveError::BodyStoreUnavailable(_)
                    | ReceiveError::QueueUnavailable(_)
                    | ReceiveError::ProviderUnavailable(_) => {
                        error!(provider, outcome = "unavailable", reason, error = %refusal, "webhook not accepted");
                        "Unavailable"
                    }
                    _ => {
                        warn!(provider, outcome = "rejected", reason, error = %refusal, "webhook rejected");
                        "Rejected"
                    }
                };
                self.metrics.count(
                    metric,
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
        // What the check needs from the provider (SNS's certificate) is fetched first: the
        // check itself is synchronous.
        self.scheme.prepare(&request, &keys).await?;
        let now = (self.clock)();
        let webhook = match verify::verify(
            self.scheme.as_ref(),
            &request,
            &keys,
            now,
            self.settings.tolerance,
        )? {
            Verified::Handshake(handshake) => {
                self.scheme.complete_handshake(&request).await?;
                return Ok(Accepted::Handshake(handshake));
            }
            Verified::Webhook(webhook) => webhook,
        };
        let message = self.queue_message(&webhook).await?;
        let message_id = self.queue.enqueue(&message).await?;
        Ok(Accepted::Queued {
            idempotency_key: webhook.idempotency_key().clone(),
            event_type: webhook.event_type().to_owned(),
            message_id,
            acknowledgement: webhook.acknowledgement().cloned(),
        })
    }
}

impl Receiver {
    /// The message for a verified webhook: its body in the envelope when the envelope fits
    /// the queue with room to spare for the dead-letter attributes; otherwise the body
    /// stored first (the claim check) and a reference in the envelope. Without a body
    /// store, a body that does not fit is too large.
    async fn queue_message(&self, webhook: &VerifiedWebhook) -> Result<QueueMessage, ReceiveError> {
        let limit = self
            .queue
            .max_message_bytes()
            .saturating_sub(DEAD_LETTER_OVERHEAD);
        let body = webhook.body();
        // JSON never makes a body shorter: one over the limit is not serialised to find out.
        let inline = (body.len() <= limit).then(|| QueueMessage::from_verified(webhook));
        let inline_size = match inline {
            Some(message) if message.size_in_bytes() <= limit => return Ok(message),
            Some(message) => message.size_in_bytes(),
            None => body.len(),
        };
        let Some(bodies) = &self.bodies else {
            return Err(ReceiveError::PayloadTooLarge {
                size: inline_size,
                limit,
            });
        };
        let reference = bodies.put(body, webhook.body_sha256()).await?;
        self.metrics.count(
            "LargeBodies",
            &[("Provider", self.provider().as_str())],
            &[&["Provider"]],
        );
        let message = QueueMessage::with_stored_body(webhook, reference);
        let size = message.size_in_bytes();
        if size > limit {
            // Only headers and ids beyond anything a provider sends could do this.
            return Err(ReceiveError::PayloadTooLarge { size, limit });
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests;
