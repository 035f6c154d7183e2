//! Discord interactions: `X-Signature-Ed25519: <hex>` and `X-Signature-Timestamp: <unix>`,
//! an Ed25519 signature of `{timestamp}{body}` (no separator) checked with the application's
//! public key, given in hex as the Developer Portal shows it.
//!
//! Discord's own examples (developers/interactions/overview, "Validating Security Headers")
//! verify with tweetnacl/PyNaCl, which read the signature's hex in either case, and check no
//! timestamp age; hookgate refuses a timestamp outside the receiver's window as well. Discord
//! probes the endpoint with invalid signatures and removes it unless they get a 401, which
//! every [`AuthFailure`] is.
//!
//! An interaction must be answered within 3 seconds (developers/interactions/
//! receiving-and-responding): a verified `PING` (`"type":1`) is answered `{"type":1}` (PONG)
//! and not queued; every other interaction is queued and answered at once with the deferred
//! response for its kind (interaction callback types there), so that the agent handling it can
//! follow up within the token's 15 minutes:
//!
//! | interaction (`type`) | event type | answered |
//! |---|---|---|
//! | `APPLICATION_COMMAND` (2) | `application_command` | `{"type":5}` DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE |
//! | `MESSAGE_COMPONENT` (3) | `message_component` | `{"type":6}` DEFERRED_UPDATE_MESSAGE |
//! | `APPLICATION_COMMAND_AUTOCOMPLETE` (4) | `application_command_autocomplete` | `{"type":8,"data":{"choices":[]}}` |
//! | `MODAL_SUBMIT` (5) | `modal_submit` | `{"type":5}` |
//! | any other `n` | `interaction_type_<n>` | hookgate's own 202 |
//!
//! Autocomplete cannot be deferred: Discord offers no callback that answers it later, so the
//! user is shown no suggestions while the interaction is still queued. An unknown type gets
//! no deferral hookgate cannot know to be valid for it.
//!
//! Deduplication is by the interaction's `id` (a snowflake in the signed body). Discord does
//! not retry an interaction, so the id mostly guards against a replay inside the window.

use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    any_ed25519_key_verifies, ed25519_sign, header, signature_header, timestamp_in_window,
    AuthFailure, Delivery, Handshake, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyEncoding, KeyRing, SigningKey};

const SIGNATURE: &str = "x-signature-ed25519";
const TIMESTAMP: &str = "x-signature-timestamp";

const PING: u64 = 1;
const APPLICATION_COMMAND: u64 = 2;
const MESSAGE_COMPONENT: u64 = 3;
const APPLICATION_COMMAND_AUTOCOMPLETE: u64 = 4;
const MODAL_SUBMIT: u64 = 5;

/// PONG, Discord's answer to a `PING`.
pub const PONG: &str = r#"{"type":1}"#;
/// DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: the user sees "thinking…" until the agent follows up.
pub const DEFERRED_CHANNEL_MESSAGE: &str = r#"{"type":5}"#;
/// DEFERRED_UPDATE_MESSAGE: a component's message is edited later, without a loading state.
pub const DEFERRED_UPDATE_MESSAGE: &str = r#"{"type":6}"#;
/// APPLICATION_COMMAND_AUTOCOMPLETE_RESULT with no choices.
pub const NO_AUTOCOMPLETE_CHOICES: &str = r#"{"type":8,"data":{"choices":[]}}"#;

#[derive(Debug, Clone, Copy, Default)]
pub struct Discord;

impl super::sealed::Sealed for Discord {}

/// The scheme the provider table names for discord.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Discord))
}

/// The fields of an interaction hookgate reads; serde skips the rest.
#[derive(Deserialize)]
struct Interaction {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<u64>,
}

fn json_answer(body: &str) -> Handshake {
    Handshake {
        content_type: "application/json",
        body: body.to_owned(),
    }
}

impl SignatureScheme for Discord {
    fn provider(&self) -> Provider {
        Provider::Discord
    }

    fn key_encoding(&self) -> KeyEncoding {
        KeyEncoding::Ed25519PublicHex
    }

    fn signing_key_encoding(&self) -> KeyEncoding {
        KeyEncoding::Ed25519SeedHex
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signature = hex::decode(header)
            .ok()
            .filter(|bytes| bytes.len() == 64)
            .ok_or_else(|| AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            })?;
        let timestamp = timestamp_in_window(request, TIMESTAMP, now, tolerance)?;
        let signed = [timestamp.as_bytes(), &request.body].concat();
        if any_ed25519_key_verifies(keys, &signed, &signature) {
            Ok(())
        } else {
            Err(AuthFailure::SignatureMismatch)
        }
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let interaction: Interaction = serde_json::from_slice(&request.body)
            .map_err(|error| MalformedRequest::BodyNotJson(error.to_string()))?;
        let kind = interaction
            .kind
            .ok_or_else(|| MalformedRequest::MissingField("type".into()))?;
        let (event_type, acknowledgement) = match kind {
            PING => return Ok(Delivery::handshake("ping", json_answer(PONG))),
            APPLICATION_COMMAND => ("application_command", DEFERRED_CHANNEL_MESSAGE),
            MESSAGE_COMPONENT => ("message_component", DEFERRED_UPDATE_MESSAGE),
            APPLICATION_COMMAND_AUTOCOMPLETE => {
                ("application_command_autocomplete", NO_AUTOCOMPLETE_CHOICES)
            }
            MODAL_SUBMIT => ("modal_submit", DEFERRED_CHANNEL_MESSAGE),
            other => {
                return Ok(Delivery::event(
                    interaction.id,
                    format!("interaction_type_{other}"),
                ))
            }
        };
        Ok(Delivery {
            acknowledgement: Some(json_answer(acknowledgement)),
            ..Delivery::event(interaction.id, event_type)
        })
    }

    fn forwarded_headers(&self) -> Vec<String> {
        vec![TIMESTAMP.to_owned()]
    }

    /// The timestamp and a lowercase hex signature, as Discord sends them; `key` is the seed
    /// of the application's key pair. A key of another kind signs nothing.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let timestamp = delivery.signed_at.unix_timestamp().to_string();
        let signed = [timestamp.as_bytes(), delivery.body].concat();
        match ed25519_sign(key, &signed) {
            Some(signature) => vec![
                header(TIMESTAMP, timestamp),
                header(SIGNATURE, hex::encode(signature)),
            ],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // RFC 8032 TEST 1's key pair. The signature of `1700000000{"type":1}` was computed with
    // Python's `cryptography` Ed25519 from Discord's documented algorithm, not with this code
    // (Discord publishes no vector); the key reproduces RFC 8032's empty-message signature.
    const PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const TS: i64 = 1_700_000_000;
    const PING_BODY: &str = r#"{"type":1}"#;
    const PING_SIGNATURE: &str = "1695961a47c91a1ec033b819b7e87e3dbc583dd0cee6d1fd0216f58ac87b6228ae531ddbf91fb7bc28d7edf7f08604da16f54624f38a6bc0614e4dc13cd47f0f";
    /// RFC 8032 TEST 2's public key: well-formed, not the pair of [`SEED`].
    const OTHER_PUBLIC_KEY: &str =
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    fn ring(public_key: &str) -> KeyRing {
        KeyRing::from_secrets(public_key, None, KeyEncoding::Ed25519PublicHex).unwrap()
    }

    fn seed() -> SigningKey {
        SigningKey::parse(SEED, KeyEncoding::Ed25519SeedHex).unwrap()
    }

    fn ping(signature: &str) -> InboundRequest {
        InboundRequest::post(PING_BODY)
            .with_header("X-Signature-Ed25519", signature)
            .with_header("X-Signature-Timestamp", &TS.to_string())
    }

    fn check_at(request: &InboundRequest, now: i64) -> Result<(), AuthFailure> {
        Discord.check_signature(request, &ring(PUBLIC_KEY), at(now), WINDOW)
    }

    fn interaction(body: &str) -> InboundRequest {
        InboundRequest::post(body.to_owned())
    }

    #[test]
    fn accepts_the_known_answer_vector() {
        assert_eq!(check_at(&ping(PING_SIGNATURE), TS), Ok(()));
    }

    #[test]
    fn accepts_the_signature_in_uppercase_hex_as_discords_examples_do() {
        assert_eq!(check_at(&ping(&PING_SIGNATURE.to_uppercase()), TS), Ok(()));
    }

    #[test]
    fn rejects_a_missing_signature() {
        let mut request = ping(PING_SIGNATURE);
        request.headers.remove(SIGNATURE);
        assert_eq!(
            check_at(&request, TS),
            Err(AuthFailure::MissingSignature {
                header: SIGNATURE.into()
            })
        );
    }

    #[test]
    fn rejects_a_signature_that_is_not_64_bytes_of_hex() {
        for malformed in [
            "",
            "zz",
            &PING_SIGNATURE[..126],
            &format!("{PING_SIGNATURE}00"),
        ] {
            assert_eq!(
                check_at(&ping(malformed), TS),
                Err(AuthFailure::MalformedSignature {
                    header: SIGNATURE.into()
                }),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn rejects_a_missing_timestamp() {
        let mut request = ping(PING_SIGNATURE);
        request.headers.remove(TIMESTAMP);
        assert!(matches!(
            check_at(&request, TS),
            Err(AuthFailure::MissingTimestamp { .. })
        ));
    }

    #[test]
    fn rejects_a_timestamp_that_is_not_unix_seconds() {
        let mut request = ping(PING_SIGNATURE);
        request
            .headers
            .insert(TIMESTAMP, "2023-11-14T22:13:20Z".parse().unwrap());
        assert!(matches!(
            check_at(&request, TS),
            Err(AuthFailure::MalformedTimestamp { .. })
        ));
    }

    #[test]
    fn rejects_a_stale_timestamp() {
        assert_eq!(
            check_at(&ping(PING_SIGNATURE), TS + 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
    }

    #[test]
    fn rejects_a_future_timestamp() {
        assert_eq!(
            check_at(&ping(PING_SIGNATURE), TS - 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
    }

    #[test]
    fn rejects_a_signature_made_for_another_timestamp() {
        let mut request = ping(PING_SIGNATURE);
        request
            .headers
            .insert(TIMESTAMP, (TS + 1).to_string().parse().unwrap());
        assert_eq!(check_at(&request, TS), Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn rejects_a_changed_body() {
        let mut request = ping(PING_SIGNATURE);
        request.body = bytes::Bytes::from_static(br#"{"type":2}"#);
        assert_eq!(check_at(&request, TS), Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn rejects_the_wrong_public_key() {
        assert_eq!(
            Discord.check_signature(
                &ping(PING_SIGNATURE),
                &ring(OTHER_PUBLIC_KEY),
                at(TS),
                WINDOW
            ),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_previous_public_key_still_verifies_during_a_rotation() {
        let keys = KeyRing::from_secrets(
            OTHER_PUBLIC_KEY,
            Some(PUBLIC_KEY),
            KeyEncoding::Ed25519PublicHex,
        )
        .unwrap();
        assert_eq!(
            Discord.check_signature(&ping(PING_SIGNATURE), &keys, at(TS), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn signing_reproduces_the_known_answer_vector() {
        assert_eq!(
            Discord.sign(&outgoing(PING_BODY, TS), &seed()),
            [
                (TIMESTAMP.to_owned(), TS.to_string()),
                (SIGNATURE.to_owned(), PING_SIGNATURE.to_owned())
            ]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let body = r#"{"id":"1234567890123456789","type":2,"data":{"name":"deploy"}}"#;
        let request = request_with(body, &Discord.sign(&outgoing(body, TS), &seed()));
        assert_eq!(check_at(&request, TS), Ok(()));
        assert!(matches!(
            check_at(&request, TS + 301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        assert_eq!(
            check_at(&with_one_byte_changed(request), TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn a_public_key_signs_nothing() {
        let public = SigningKey::parse(PUBLIC_KEY, KeyEncoding::Ed25519PublicHex).unwrap();
        assert_eq!(Discord.sign(&outgoing(PING_BODY, TS), &public), []);
    }

    #[test]
    fn a_ping_is_a_handshake_answered_with_a_pong() {
        let delivery = Discord.describe(&interaction(PING_BODY)).unwrap();
        assert_eq!(
            delivery.handshake,
            Some(Handshake {
                content_type: "application/json",
                body: r#"{"type":1}"#.into()
            })
        );
        assert_eq!(delivery.event_type, "ping");
    }

    #[test]
    fn each_interaction_is_keyed_by_its_id_and_deferred_as_its_type_allows() {
        for (kind, event_type, answer) in [
            (2, "application_command", r#"{"type":5}"#),
            (3, "message_component", r#"{"type":6}"#),
            (
                4,
                "application_command_autocomplete",
                r#"{"type":8,"data":{"choices":[]}}"#,
            ),
            (5, "modal_submit", r#"{"type":5}"#),
        ] {
            let body = format!(r#"{{"id":"1122334455667788990","type":{kind},"token":"t"}}"#);
            assert_eq!(
                Discord.describe(&interaction(&body)).unwrap(),
                Delivery {
                    acknowledgement: Some(json_answer(answer)),
                    ..Delivery::event(Some("1122334455667788990".into()), event_type)
                },
                "{kind}"
            );
        }
    }

    #[test]
    fn an_unknown_interaction_type_is_queued_without_a_deferral() {
        let delivery = Discord
            .describe(&interaction(r#"{"id":"42","type":9}"#))
            .unwrap();
        assert_eq!(
            delivery,
            Delivery::event(Some("42".into()), "interaction_type_9")
        );
    }

    #[test]
    fn an_interaction_without_an_id_is_keyed_by_its_body() {
        let delivery = Discord.describe(&interaction(r#"{"type":2}"#)).unwrap();
        assert_eq!(delivery.stable_id, None);
    }

    #[test]
    fn an_interaction_without_a_numeric_type_is_malformed() {
        for body in [r#"{"id":"42"}"#, r#"{"id":"42","type":"2"}"#] {
            assert!(Discord.describe(&interaction(body)).is_err(), "{body}");
        }
        assert!(matches!(
            Discord.describe(&interaction("type=1")),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }

    #[test]
    fn the_timestamp_is_forwarded_and_the_signature_is_not() {
        assert_eq!(Discord.forwarded_headers(), [TIMESTAMP]);
    }
}
