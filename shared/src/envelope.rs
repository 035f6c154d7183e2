//! The envelope: the one versioned message contract between receivers and the processor.
//!
//! It carries the raw body exactly as received (never a re-serialised parse), so a
//! consumer can re-verify or re-hash it, and enough metadata to route and deduplicate
//! without reading provider payloads. Version 1's JSON:
//!
//! ```json
//! {
//!   "version": 1,
//!   "idempotency_key": "github:72d3162e-cc78-11e3-81ab-4c9367dc0958",
//!   "provider": "github",
//!   "event_type": "pull_request.opened",
//!   "delivery_id": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
//!   "received_at": "2026-11-23T09:30:00.123Z",
//!   "source_ip": "192.30.252.10",
//!   "headers": {"x-github-event": "pull_request", "content-type": "application/json"},
//!   "body": {"encoding": "utf8", "data": "{\"action\":\"opened\", ...}"},
//!   "body_sha256": "…"
//! }
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::idempotency::IdempotencyKey;
use crate::provider::Provider;
use crate::verify::VerifiedWebhook;

/// The envelope format this build writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// SQS message attribute names; their values let queue subscribers filter without parsing.
pub mod attribute {
    pub const PROVIDER: &str = "provider";
    pub const EVENT_TYPE: &str = "event_type";
    pub const ENVELOPE_VERSION: &str = "envelope_version";
}

/// A raw body in JSON: UTF-8 text as it is, anything else as standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "encoding", content = "data", rename_all = "lowercase")]
pub enum RawBody {
    Utf8(String),
    Base64(String),
}

impl RawBody {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => RawBody::Utf8(text.to_owned()),
            Err(_) => RawBody::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    /// The exact bytes that were received.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        match self {
            RawBody::Utf8(text) => Ok(text.as_bytes().to_vec()),
            RawBody::Base64(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|error| EnvelopeError::InvalidBody(error.to_string())),
        }
    }
}

/// Version 1 of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeV1 {
    pub idempotency_key: IdempotencyKey,
    pub provider: Provider,
    pub event_type: String,
    /// The provider's own delivery id, when it sends one.
    pub delivery_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub source_ip: Option<IpAddr>,
    /// Allow-listed headers, lowercase names. Signatures are never among them.
    pub headers: BTreeMap<String, String>,
    pub body: RawBody,
    /// Lowercase hex SHA-256 of the raw body bytes.
    pub body_sha256: String,
}

/// The envelope, tagged with its format version so that a processor reading a version it
/// does not know refuses it plainly instead of misreading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum Envelope {
    #[serde(rename = "1")]
    V1(EnvelopeV1),
}

/// An envelope cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the message is not a hookgate envelope: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error("the envelope's body is not valid base64: {0}")]
    InvalidBody(String),
}

impl Envelope {
    /// The envelope for a verified webhook.
    pub fn from_verified(webhook: &VerifiedWebhook) -> Self {
        let body = webhook.body();
        Envelope::V1(EnvelopeV1 {
            idempotency_key: webhook.idempotency_key().clone(),
            provider: webhook.provider(),
            event_type: webhook.event_type().to_owned(),
            delivery_id: webhook.delivery_id().map(str::to_owned),
            received_at: webhook.received_at(),
            source_ip: webhook.source_ip(),
            headers: webhook.headers().clone(),
            body: RawBody::from_bytes(body),
            body_sha256: hex::encode(Sha256::digest(body)),
        })
    }

    /// Reads an envelope from a message body. The version travels as a JSON string or a
    /// number; both are accepted.
    pub fn from_json(json: &str) -> Result<Self, EnvelopeError> {
        let mut value: serde_json::Value = serde_json::from_str(json)?;
        if let Some(version) = value.get_mut("version") {
            if let Some(number) = version.as_u64() {
                *version = serde_json::Value::String(number.to_string());
            }
        }
        Ok(serde_json::from_value(value)?)
    }

    /// The message body: version 1 writes `"version": 1` as a number.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("an envelope always serializes");
        value["version"] = serde_json::Value::from(ENVELOPE_VERSION);
        value.to_string()
    }

    pub fn v1(&self) -> &EnvelopeV1 {
        match self {
            Envelope::V1(v1) => v1,
        }
    }
}

/// A verified webhook ready for the queue: the envelope's JSON and its message attributes.
/// Only [`QueueMessage::from_verified`] builds one, so nothing unverified can be queued.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    idempotency_key: IdempotencyKey,
    provider: Provider,
    event_type: String,
    body: String,
}

impl QueueMessage {
    pub fn from_verified(webhook: &VerifiedWebhook) -> Self {
        Self {
            idempotency_key: webhook.idempotency_key().clone(),
            provider: webhook.provider(),
            event_type: webhook.event_type().to_owned(),
            body: Envelope::from_verified(webhook).to_json(),
        }
    }

    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }
    pub fn provider(&self) -> Provider {
        self.provider
    }
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// The envelope's JSON, the SQS message body.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The message attributes, name and string value.
    pub fn attributes(&self) -> [(&'static str, String); 3] {
        [
            (attribute::PROVIDER, self.provider.to_string()),
            (attribute::EVENT_TYPE, self.event_type.clone()),
            (attribute::ENVELOPE_VERSION, ENVELOPE_VERSION.to_string()),
        ]
    }

    /// The size SQS counts against its message limit: the body plus every attribute's
    /// name, type (`String`) and value.
    pub fn size_in_bytes(&self) -> usize {
        self.body.len()
            + self
                .attributes()
                .iter()
                .map(|(name, value)| name.len() + "String".len() + value.len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_bodies_travel_as_text_and_other_bytes_as_base64() {
        assert_eq!(
            RawBody::from_bytes("héllo".as_bytes()),
            RawBody::Utf8("héllo".into())
        );
        let binary = [0xff, 0x00, 0xfe];
        let body = RawBody::from_bytes(&binary);
        assert_eq!(body, RawBody::Base64("/wD+".into()));
        assert_eq!(body.to_bytes().unwrap(), binary);
    }

    #[test]
    fn an_envelope_of_an_unknown_version_is_refused() {
        let error =
            Envelope::from_json(r#"{"version": 2, "idempotency_key": "github:x"}"#).unwrap_err();
        assert!(error.to_string().contains("unknown variant `2`"), "{error}");
    }

    #[test]
    fn an_envelope_missing_a_field_is_refused() {
        assert!(Envelope::from_json(r#"{"version": 1, "provider": "github"}"#).is_err());
        assert!(Envelope::from_json("not json").is_err());
    }
}
