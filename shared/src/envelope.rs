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
//!   "body_sha256": "…",
//!   "id_signed": false
//! }
//! ```
//!
//! Within a version, fields may be added: a reader ignores those it does not know, and a
//! field a writer leaves out has its documented default. A change an older reader would
//! misread bumps the version, which such a reader then refuses plainly.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::bodies::BodyReference;
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

/// A raw body in JSON: UTF-8 text as it is, anything else as standard base64, or, for a
/// body too large for a queue message, where it is stored (the claim check):
/// `{"encoding": "stored", "data": {"location": "s3://…/bodies/<sha256>", "size": 3145728}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "encoding", content = "data", rename_all = "lowercase")]
pub enum RawBody {
    Utf8(String),
    Base64(String),
    Stored(BodyReference),
}

/// Whether UTF-8 `text` holds U+FFFE (`EF BF BE`) or U+FFFF (`EF BF BF`): one vectorised
/// search for their shared first two bytes, rather than a search per character or one that
/// decodes every character.
fn holds_fffe_or_ffff(text: &[u8]) -> bool {
    memchr::memmem::find_iter(text, b"\xEF\xBF")
        .any(|at| matches!(text.get(at + 2), Some(0xBE | 0xBF)))
}

impl RawBody {
    /// UTF-8 text travels as text unless it holds U+FFFE or U+FFFF: JSON leaves those
    /// unescaped and SQS refuses them in a message body, so such text goes as base64 too.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) if !holds_fffe_or_ffff(bytes) => RawBody::Utf8(text.to_owned()),
            _ => RawBody::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    /// The exact bytes that were received, for a body carried in the envelope. A stored
    /// body is fetched from its store instead ([`crate::bodies::fetch_verified`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        match self {
            RawBody::Utf8(text) => Ok(text.as_bytes().to_vec()),
            RawBody::Base64(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|error| EnvelopeError::InvalidBody(error.to_string())),
            RawBody::Stored(reference) => Err(EnvelopeError::StoredBody(reference.clone())),
        }
    }
}

/// Version 1 of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Whether the provider's signature covers the id the key is made of. When it does not
    /// (GitHub, Shopify, a generic sender's unsigned `ID_HEADER`), the processor also
    /// deduplicates the event by its body, so that a captured delivery replayed under a
    /// fresh id does not act again. Written only when `false`: an envelope whose id is
    /// signed is then the same as before the field existed, which a processor of that time
    /// (strict about unknown fields) still reads, in a deploy or a rollback.
    #[serde(default = "signed_unless_said", skip_serializing_if = "is_signed")]
    pub id_signed: bool,
    /// Set when `hookgate replay --force` made this envelope from an archived one, to run
    /// the event's actions again as a new replay generation. Written only then, so every
    /// other envelope is as before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
}

/// A forced replay: an archived event sent again under a key of its own, so that its
/// actions run again (once: the replay's own redeliveries are deduplicated by that key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    /// The replay generation: one per `hookgate replay --force` run.
    pub id: String,
    /// The key of the event replayed, as it first arrived.
    pub of: IdempotencyKey,
    /// The only actions to run again; every action the routes name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
}

impl Replay {
    /// The key a replay generation `id` of the event `of` is claimed under:
    /// `{of}#replay-{id}`. `None` when that would be too long for a key.
    pub fn key(of: &IdempotencyKey, id: &str) -> Option<IdempotencyKey> {
        IdempotencyKey::try_from(format!("{of}#replay-{id}")).ok()
    }
}

fn signed_unless_said() -> bool {
    true
}

fn is_signed(id_signed: &bool) -> bool {
    *id_signed
}

/// The envelope, tagged with its format version (`"version": 1`, a JSON number) so that a
/// processor reading a version it does not know refuses it plainly instead of misreading it.
///
/// Its serde form is the wire form, so it can be read directly (`serde_json::from_str`,
/// `SqsEventObj<Envelope>`) as well as with [`Envelope::from_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    V1(EnvelopeV1),
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            version: u32,
            #[serde(flatten)]
            envelope: &'a EnvelopeV1,
        }
        match self {
            Envelope::V1(envelope) => Tagged {
                version: 1,
                envelope,
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut document = serde_json::Map::deserialize(deserializer)?;
        // Older writers may have sent the version as a string; a number is canonical.
        let version = match document.remove("version") {
            Some(serde_json::Value::Number(number)) => number.as_u64(),
            Some(serde_json::Value::String(text)) => text.parse().ok(),
            Some(_) => None,
            None => return Err(D::Error::missing_field("version")),
        };
        match version {
            Some(1) => serde_json::from_value(serde_json::Value::Object(document))
                .map(Envelope::V1)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(format!(
                "unknown envelope version (this build reads version {ENVELOPE_VERSION})"
            ))),
        }
    }
}

/// An envelope cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the message is not a hookgate envelope: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error("the envelope's body is not valid base64: {0}")]
    InvalidBody(String),
    #[error("the envelope's body is stored at {}, not carried in the envelope", .0.location)]
    StoredBody(BodyReference),
}

impl Envelope {
    /// The envelope for a verified webhook, carrying its body.
    pub fn from_verified(webhook: &VerifiedWebhook) -> Self {
        Self::with_body(webhook, RawBody::from_bytes(webhook.body()))
    }

    /// The envelope for a verified webhook whose body was stored at `reference`.
    pub fn with_stored_body(webhook: &VerifiedWebhook, reference: BodyReference) -> Self {
        Self::with_body(webhook, RawBody::Stored(reference))
    }

    fn with_body(webhook: &VerifiedWebhook, body: RawBody) -> Self {
        Envelope::V1(EnvelopeV1 {
            idempotency_key: webhook.idempotency_key().clone(),
            provider: webhook.provider(),
            event_type: webhook.event_type().to_owned(),
            delivery_id: webhook.delivery_id().map(str::to_owned),
            received_at: webhook.received_at(),
            source_ip: webhook.source_ip(),
            headers: webhook.headers().clone(),
            body,
            body_sha256: webhook.body_sha256().to_owned(),
            id_signed: webhook.id_signed(),
            replay: None,
        })
    }

    /// Reads an envelope from a message body.
    pub fn from_json(json: &str) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_str(json)?)
    }

    /// The message body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serializes")
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
    /// The message for a verified webhook, its body carried in the envelope.
    pub fn from_verified(webhook: &VerifiedWebhook) -> Self {
        Self::of(webhook, Envelope::from_verified(webhook))
    }

    /// The message for a verified webhook whose body was stored at `reference`: small
    /// whatever the body's size.
    pub fn with_stored_body(webhook: &VerifiedWebhook, reference: BodyReference) -> Self {
        Self::of(webhook, Envelope::with_stored_body(webhook, reference))
    }

    fn of(webhook: &VerifiedWebhook, envelope: Envelope) -> Self {
        Self {
            idempotency_key: webhook.idempotency_key().clone(),
            provider: webhook.provider(),
            event_type: webhook.event_type().to_owned(),
            body: envelope.to_json(),
        }
    }

    /// The message that sends an archived envelope through the queue again: as it was
    /// (the idempotency gate then skips what was done), or, as a forced replay, under the
    /// replay's own key; `None` when that key would be too long to be one. The archive holds
    /// only envelopes the processor took from the queue, which only verified deliveries
    /// reach.
    pub fn replayed(
        archived: &crate::archive::ArchivedEvent,
        replay: Option<Replay>,
    ) -> Option<Self> {
        let mut envelope = archived.envelope.clone();
        if let Some(replay) = replay {
            envelope.idempotency_key = Replay::key(&envelope.idempotency_key, &replay.id)?;
            envelope.replay = Some(replay);
        }
        Some(Self {
            idempotency_key: envelope.idempotency_key.clone(),
            provider: envelope.provider,
            event_type: envelope.event_type.clone(),
            body: Envelope::V1(envelope).to_json(),
        })
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
    fn a_replay_is_keyed_by_its_event_and_generation_unless_that_is_too_long_for_a_key() {
        let of = IdempotencyKey::from_stable_id(Provider::Github, "d-1").unwrap();
        assert_eq!(
            Replay::key(&of, "r20261124T090000Z-3f9a").map(String::from),
            Some("github:d-1#replay-r20261124T090000Z-3f9a".to_owned())
        );
        let longest = IdempotencyKey::from_stable_id(
            Provider::Github,
            &"x".repeat(crate::idempotency::MAX_STABLE_ID_LEN),
        )
        .unwrap();
        assert_eq!(Replay::key(&longest, "r1"), None);
    }

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
    fn text_sqs_cannot_carry_travels_as_base64() {
        for text in ["title \u{FFFF} end", "title \u{FFFE} end", "\u{FFFE}"] {
            let body = RawBody::from_bytes(text.as_bytes());
            assert!(matches!(body, RawBody::Base64(_)), "{text:?}");
            assert_eq!(body.to_bytes().unwrap(), text.as_bytes());
        }
        // Their neighbours in UTF-8 are ordinary text.
        for text in [
            "\u{FFFD}",
            "\u{FFEF}",
            "é\u{10FFFF}",
            "\u{FFC2}",
            "x\u{FFFD}",
        ] {
            assert!(
                matches!(RawBody::from_bytes(text.as_bytes()), RawBody::Utf8(_)),
                "{text:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_byte_search_for_fffe_and_ffff_agrees_with_the_characters(text in "\\PC*[\u{FFF0}-\u{FFFF}]?\\PC*") {
            let by_chars = text.chars().any(|c| c == '\u{FFFE}' || c == '\u{FFFF}');
            proptest::prop_assert_eq!(holds_fffe_or_ffff(text.as_bytes()), by_chars);
        }
    }

    #[test]
    fn an_envelope_of_an_unknown_version_is_refused() {
        let error =
            Envelope::from_json(r#"{"version": 2, "idempotency_key": "github:x"}"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown envelope version"),
            "{error}"
        );
    }

    #[test]
    fn the_serde_form_is_the_wire_form_with_a_numeric_version() {
        let envelope = Envelope::V1(EnvelopeV1 {
            idempotency_key: IdempotencyKey::from_stable_id(Provider::Github, "d-1").unwrap(),
            provider: Provider::Github,
            event_type: "ping".into(),
            delivery_id: Some("d-1".into()),
            received_at: OffsetDateTime::UNIX_EPOCH,
            source_ip: None,
            headers: BTreeMap::new(),
            body: RawBody::Utf8("{}".into()),
            body_sha256: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
            id_signed: false,
            replay: None,
        });
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(serde_json::from_value::<Envelope>(json).unwrap(), envelope);
        let mut legacy = serde_json::to_value(&envelope).unwrap();
        legacy["version"] = "1".into();
        assert_eq!(
            serde_json::from_value::<Envelope>(legacy).unwrap(),
            envelope
        );
    }

    #[test]
    fn a_field_added_later_is_ignored_and_one_left_out_has_its_default() {
        let envelope = Envelope::V1(EnvelopeV1 {
            idempotency_key: IdempotencyKey::from_stable_id(Provider::Stripe, "evt_1").unwrap(),
            provider: Provider::Stripe,
            event_type: "invoice.paid".into(),
            delivery_id: Some("evt_1".into()),
            received_at: OffsetDateTime::UNIX_EPOCH,
            source_ip: None,
            headers: BTreeMap::new(),
            body: RawBody::Utf8("{}".into()),
            body_sha256: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
            id_signed: true,
            replay: None,
        });
        let mut json = serde_json::to_value(&envelope).unwrap();
        assert!(
            json.get("id_signed").is_none(),
            "a signed id is the default, left out: {json}"
        );
        json["a_field_of_a_later_build"] = "ignored".into();

        assert_eq!(serde_json::from_value::<Envelope>(json).unwrap(), envelope);
    }

    #[test]
    fn an_envelope_missing_a_field_is_refused() {
        assert!(Envelope::from_json(r#"{"version": 1, "provider": "github"}"#).is_err());
        assert!(Envelope::from_json("not json").is_err());
    }
}
