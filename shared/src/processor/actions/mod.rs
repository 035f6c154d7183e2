//! Port: invoking an agent action, and the event an agent receives; and the adapters that
//! run each kind of action.
//!
//! - [`HttpActions`]: `http` actions, a signed POST to an agent's URL;
//! - [`LogActions`]: `log` actions, the event written to the log;
//! - [`crate::aws::LambdaActions`]: `lambda` actions, an agent function invoked;
//! - [`ActionDispatcher`]: the one [`ActionInvoker`] the processor holds, built from the
//!   routes at init (resolving every signing secret there, so a bad action fails the init),
//!   which hands each action to the adapter of its kind.

// The adapters that reach agents (HTTP, Lambda) and set them up from the routes: only in
// the builds that run actions (the processor's feature), so that a receiver links no HTTP
// client and no Lambda SDK.
#[cfg(feature = "processor")]
mod dispatch;
#[cfg(feature = "processor")]
mod http;
mod log;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::envelope::{EnvelopeV1, RawBody};
use crate::idempotency::IdempotencyKey;
use crate::provider::Provider;
use crate::routes::ActionSpec;
use crate::secret::SecretError;

#[cfg(feature = "processor")]
pub use self::dispatch::{ActionDispatcher, DispatcherFactory, ACTION_SECRET_REFRESH};
#[cfg(feature = "processor")]
pub use self::http::{HttpActions, MAX_RETRY_AFTER, USER_AGENT};
pub use self::log::LogActions;

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
    /// Set on a forced replay (`hookgate replay --force`): which generation, of which
    /// event. Absent from the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<crate::envelope::Replay>,
}

impl NormalizedEvent {
    /// The event of `envelope`, whose raw body is `body`: the envelope's own, or the bytes
    /// fetched from where it was stored.
    pub fn new(envelope: &EnvelopeV1, body: RawBody) -> Self {
        let payload = match &body {
            RawBody::Utf8(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
            RawBody::Base64(_) | RawBody::Stored(_) => serde_json::Value::Null,
        };
        Self {
            idempotency_key: envelope.idempotency_key.clone(),
            provider: envelope.provider,
            event_type: envelope.event_type.clone(),
            delivery_id: envelope.delivery_id.clone(),
            received_at: envelope.received_at,
            payload,
            body,
            replay: envelope.replay.clone(),
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

/// The most of an agent's answer (an error body, a function's error payload) that a failure
/// reason quotes: enough to recognise the error, short enough for a log line and a
/// dead-letter message attribute.
#[cfg(feature = "processor")]
pub(crate) const EXCERPT_CHARS: usize = 200;

/// At most [`EXCERPT_CHARS`] characters of `text`, on one line (an answer's line breaks would
/// split a log line), marked with `…` when cut.
#[cfg(feature = "processor")]
pub(crate) fn excerpt(text: &str) -> String {
    let mut words = text.split_whitespace();
    let mut out = String::new();
    let mut cut = false;
    if let Some(first) = words.next() {
        out.push_str(first);
    }
    for word in words {
        out.push(' ');
        out.push_str(word);
        if out.chars().count() > EXCERPT_CHARS {
            break;
        }
    }
    if let Some((index, _)) = out.char_indices().nth(EXCERPT_CHARS) {
        out.truncate(index);
        cut = true;
    }
    if cut {
        out.push('…');
    }
    out
}

/// An action cannot be set up. The message names the action and what to fix; it never
/// includes a secret.
#[derive(Debug, thiserror::Error)]
pub enum ActionSetupError {
    #[error("action `{action}`: its signing secret variable {variable} is not set")]
    MissingSecretVariable { action: String, variable: String },
    #[error("action `{action}`: the signing secret in {origin}: {source}")]
    Secret {
        action: String,
        /// Where the secret was read: the variable or the Secrets Manager secret.
        origin: String,
        #[source]
        source: SecretError,
    },
    #[error("action `{action}`: {what} needs AWS, and this processor runs without it")]
    NeedsAws { action: String, what: &'static str },
    #[error("the HTTP client for http actions cannot be built: {0}")]
    HttpClient(String),
}

#[cfg(all(test, feature = "processor"))]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_keeps_a_short_answer_whole_on_one_line() {
        assert_eq!(
            excerpt("  missing field\n`type`\r\n"),
            "missing field `type`"
        );
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn an_excerpt_cuts_a_long_answer_at_a_character_boundary() {
        let long = "é".repeat(1_000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
