//! Port: invoking an agent action, and the event an agent receives.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::envelope::{EnvelopeV1, RawBody};
use crate::idempotency::IdempotencyKey;
use crate::provider::Provider;
use crate::routes::ActionSpec;

/// What every action receives: the event, normalized across providers.
///
/// `payload` is the provider's JSON body when it is JSON (`null` otherwise); `body` is the
/// raw body exactly as received, for agents that re-verify or re-hash it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NormalizedEvent {
    pub idempotency_key: IdempotencyKey,
    pub provider: Provider,
    pub event_type: String,
    pub delivery_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub payload: serde_json::Value,
    pub body: RawBody,
}

impl NormalizedEvent {
    pub fn from_envelope(envelope: &EnvelopeV1) -> Self {
        let payload = match &envelope.body {
            RawBody::Utf8(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
            RawBody::Base64(_) => serde_json::Value::Null,
        };
        Self {
            idempotency_key: envelope.idempotency_key.clone(),
            provider: envelope.provider,
            event_type: envelope.event_type.clone(),
            delivery_id: envelope.delivery_id.clone(),
            received_at: envelope.received_at,
            payload,
            body: envelope.body.clone(),
        }
    }

    /// The JSON an action sends.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a normalized event always serializes")
    }
}

/// Why an action did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// Worth trying again later: a timeout, a connection error, 408, 429, 5xx, a function
    /// error. `retry_after` is the agent's own hint, when it gave one.
    #[error("{reason} (retryable)")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (any other 4xx): the event goes to the dead-letter queue.
    #[error("{reason} (permanent)")]
    Permanent { reason: String },
}

impl ActionError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        ActionError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        ActionError::Permanent {
            reason: reason.into(),
        }
    }
}

/// Port: runs one action for one event. Implementations enforce `action.timeout`
/// themselves where they can; the processor also bounds each call by it.
#[async_trait]
pub trait ActionInvoker: Send + Sync + fmt::Debug {
    async fn invoke(&self, action: &ActionSpec, event: &NormalizedEvent)
        -> Result<(), ActionError>;
}
