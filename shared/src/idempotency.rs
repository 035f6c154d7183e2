//! The idempotency key: one per event, stable across a provider's retries.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::provider::Provider;

/// The longest stable id accepted from a provider. DynamoDB allows 2048 bytes in a partition
/// key; real ids are far shorter (a GUID, `evt_…`), so anything longer is a malformed request.
pub const MAX_STABLE_ID_LEN: usize = 512;

/// Characters that may not appear in an id or event type: control characters, and the
/// noncharacters U+FFFE and U+FFFF, which SQS refuses in message attributes.
pub(crate) fn is_unusable_text_char(c: char) -> bool {
    c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}'
}

/// `{provider}:{stable id}`, where the stable id is what the provider keeps across its own
/// retries (GitHub's delivery GUID, Stripe's `evt_…`, …), or `sha256:{hex}` of the raw body
/// for a delivery that carries none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

/// A provider's id cannot serve as part of a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidStableId {
    #[error("the id is empty")]
    Empty,
    #[error("the id is longer than {MAX_STABLE_ID_LEN} bytes")]
    TooLong,
    #[error("the id contains a control character or a noncharacter")]
    ControlCharacter,
    #[error("`{0}` is not of the form {{provider}}:{{id}} with a known provider")]
    NotAKey(String),
}

impl IdempotencyKey {
    /// The key for a provider's own id.
    pub fn from_stable_id(provider: Provider, stable_id: &str) -> Result<Self, InvalidStableId> {
        let stable_id = stable_id.trim();
        if stable_id.is_empty() {
            return Err(InvalidStableId::Empty);
        }
        if stable_id.len() > MAX_STABLE_ID_LEN {
            return Err(InvalidStableId::TooLong);
        }
        if stable_id.chars().any(is_unusable_text_char) {
            return Err(InvalidStableId::ControlCharacter);
        }
        Ok(Self(format!("{provider}:{stable_id}")))
    }

    /// The fallback key for a delivery without a stable id: the SHA-256 of its raw body, so
    /// that byte-identical retries still collapse into one event.
    pub fn from_body_hash(provider: Provider, body: &[u8]) -> Self {
        Self::from_body_sha256(provider, &hex::encode(Sha256::digest(body)))
    }

    /// [`IdempotencyKey::from_body_hash`], for a body whose lowercase hex SHA-256 is known.
    pub fn from_body_sha256(provider: Provider, sha256: &str) -> Self {
        Self(format!("{provider}:sha256:{sha256}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The provider named by the key's prefix.
    pub fn provider(&self) -> Provider {
        self.0
            .split_once(':')
            .and_then(|(provider, _)| provider.parse().ok())
            .expect("a key is only ever built with a known provider prefix")
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> Self {
        key.0
    }
}

impl std::str::FromStr for IdempotencyKey {
    type Err = InvalidStableId;

    /// A key as printed: `{provider}:{id}`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::try_from(text.to_owned())
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidStableId;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let (provider, stable_id) = value
            .split_once(':')
            .ok_or_else(|| InvalidStableId::NotAKey(value.clone()))?;
        let provider: Provider = provider
            .parse()
            .map_err(|_| InvalidStableId::NotAKey(value.clone()))?;
        Self::from_stable_id(provider, stable_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_the_provider_and_its_stable_id() {
        let key = IdempotencyKey::from_stable_id(Provider::Github, "72d3162e-cc78").unwrap();
        assert_eq!(key.as_str(), "github:72d3162e-cc78");
        assert_eq!(key.provider(), Provider::Github);
    }

    #[test]
    fn a_delivery_without_an_id_is_keyed_by_the_sha256_of_its_body() {
        let key = IdempotencyKey::from_body_hash(Provider::Generic, b"abc");
        assert_eq!(
            key.as_str(),
            "generic:sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn empty_overlong_and_control_character_ids_are_refused() {
        assert_eq!(
            IdempotencyKey::from_stable_id(Provider::Stripe, "  "),
            Err(InvalidStableId::Empty)
        );
        let long = "x".repeat(MAX_STABLE_ID_LEN + 1);
        assert_eq!(
            IdempotencyKey::from_stable_id(Provider::Stripe, &long),
            Err(InvalidStableId::TooLong)
        );
        assert_eq!(
            IdempotencyKey::from_stable_id(Provider::Stripe, "evt\n1"),
            Err(InvalidStableId::ControlCharacter)
        );
    }

    #[test]
    fn a_key_round_trips_through_its_serialized_form() {
        let key = IdempotencyKey::from_stable_id(Provider::Slack, "Ev123").unwrap();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"slack:Ev123\"");
        assert_eq!(serde_json::from_str::<IdempotencyKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<IdempotencyKey>("\"nobody:x\"").is_err());
    }
}
