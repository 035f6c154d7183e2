//! Intercom: `X-Hub-Signature: sha1=<hex>`, HMAC-SHA1 of the raw body with the app's
//! `client_secret`, 40 lowercase hex digits (developers.intercom.com, "Signed notifications").
//!
//! SHA-1 is Intercom's choice, not ours: it is computed with ring's
//! `HMAC_SHA1_FOR_LEGACY_USE_ONLY`, ring being linked already for TLS and Ed25519, so no
//! other crate is needed. Intercom signs no timestamp, so there is no replay window.
//! Deliveries are deduplicated by the notification's `id` (`notif_…`), which is in the signed
//! body and which a retry keeps; the body itself does not stay the same, as
//! `delivery_attempts` counts the attempts. The type is the body's `topic`
//! (`conversation.user.created`, `ping`).

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    any_sha1_signature_matches, header, hmac_sha1, json_body_strings, signature_header,
    AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-hub-signature";
const PREFIX: &str = "sha1=";
const SHA1_LEN: usize = 20;

#[derive(Debug, Clone, Copy, Default)]
pub struct Intercom;

impl super::sealed::Sealed for Intercom {}

/// The scheme the provider table names for intercom.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Intercom))
}

/// A 20-byte signature in lowercase hex, as Intercom writes it.
fn decode_sha1_hex(value: &str) -> Option<Vec<u8>> {
    if value.len() != 2 * SHA1_LEN
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    hex::decode(value).ok()
}

impl SignatureScheme for Intercom {
    fn provider(&self) -> Provider {
        Provider::Intercom
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        _now: OffsetDateTime,
        _tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signature = header
            .strip_prefix(PREFIX)
            .and_then(decode_sha1_hex)
            .ok_or_else(|| AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            })?;
        if any_sha1_signature_matches(keys, &[signature], &[&request.body]) {
            Ok(())
        } else {
            Err(AuthFailure::SignatureMismatch)
        }
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let [id, topic] = json_body_strings(request, ["id", "topic"])?;
        let topic = topic.ok_or_else(|| MalformedRequest::MissingField("topic".into()))?;
        Ok(Delivery::event(id, topic))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        Vec::new()
    }

    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let signature = hmac_sha1(key.as_bytes(), &[delivery.body]);
        vec![header(
            SIGNATURE,
            format!("{PREFIX}{}", hex::encode(signature)),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // Intercom's docs show a signature but not the secret that made it: this vector is
    // computed from the documented algorithm with python3's hmac (hashlib.sha1), and kept in
    // /work/shared/provider-vectors.md.
    const SECRET: &str = "intercom_client_secret";
    const BODY: &str = r#"{"type":"notification_event","topic":"ping"}"#;
    const KNOWN: &str = "sha1=4a37c1578001e2cd7b91d44b5ae611ebd8578887";

    fn request(signature: &str) -> InboundRequest {
        InboundRequest::post(BODY).with_header("X-Hub-Signature", signature)
    }

    fn check(request: &InboundRequest, secret: &str) -> Result<(), AuthFailure> {
        Intercom.check_signature(request, &keys(secret), at(0), WINDOW)
    }

    #[test]
    fn hmac_sha1_gives_the_rfc_2202_answers() {
        assert_eq!(
            hex::encode(hmac_sha1(&[0x0b; 20], &[b"Hi There"])),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex::encode(hmac_sha1(b"Jefe", &[b"what do ya want for nothing?"])),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn accepts_the_known_answer_vector() {
        assert_eq!(check(&request(KNOWN), SECRET), Ok(()));
    }

    #[test]
    fn signing_reproduces_the_known_answer_vector() {
        let headers = Intercom.sign(&outgoing(BODY, 0), &raw_key(SECRET));
        assert_eq!(headers, [(SIGNATURE.to_owned(), KNOWN.to_owned())]);
    }

    #[test]
    fn a_signed_delivery_verifies_and_fails_once_tampered_with() {
        let body =
            r#"{"type":"notification_event","id":"notif_1","topic":"ping","delivery_attempts":1}"#;
        let request = request_with(body, &Intercom.sign(&outgoing(body, 0), &raw_key(SECRET)));
        assert_eq!(check(&request, SECRET), Ok(()));
        assert_eq!(
            check(&with_one_byte_changed(request), SECRET),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_missing_signature() {
        assert!(matches!(
            check(&InboundRequest::post(BODY), SECRET),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_without_its_sha1_prefix() {
        assert!(matches!(
            check(&request(KNOWN.trim_start_matches(PREFIX)), SECRET),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_sha256_signature_in_place_of_sha1() {
        let sha256 = format!("sha256={}", hex_hmac(SECRET, BODY.as_bytes()));
        assert!(matches!(
            check(&request(&sha256), SECRET),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_that_is_not_40_lowercase_hex_digits() {
        for bad in [
            &KNOWN[..44],
            "sha1=4A37C1578001E2CD7B91D44B5AE611EBD8578887",
        ] {
            assert!(
                matches!(
                    check(&request(bad), SECRET),
                    Err(AuthFailure::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_a_signature_made_with_another_secret() {
        assert_eq!(
            check(&request(KNOWN), "intercom_other_secret"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_body_changed_after_signing() {
        let mut changed = request(KNOWN);
        changed.body = bytes::Bytes::from(BODY.replace("ping", "pong"));
        assert_eq!(check(&changed, SECRET), Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn the_previous_secret_still_verifies_during_a_rotation() {
        let ring = KeyRing::from_secrets(
            "intercom_new_secret",
            Some(SECRET),
            crate::secret::KeyEncoding::Raw,
        )
        .unwrap();
        assert_eq!(
            Intercom.check_signature(&request(KNOWN), &ring, at(0), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn the_key_is_the_notification_id_and_the_type_its_topic() {
        let request = InboundRequest::post(
            r#"{"type":"notification_event","id":"notif_78c122d0-23ba-11e4-9464-79b01267cc2e","topic":"conversation.user.created","delivery_attempts":2}"#,
        );
        assert_eq!(
            Intercom.describe(&request).unwrap(),
            Delivery::event(
                Some("notif_78c122d0-23ba-11e4-9464-79b01267cc2e".into()),
                "conversation.user.created"
            )
        );
    }

    #[test]
    fn a_notification_without_an_id_is_keyed_by_its_body() {
        assert_eq!(
            Intercom
                .describe(&InboundRequest::post(BODY))
                .unwrap()
                .stable_id,
            None
        );
    }

    #[test]
    fn a_notification_without_a_topic_or_not_json_is_malformed() {
        let untyped = InboundRequest::post(r#"{"type":"notification_event","id":"notif_1"}"#);
        assert_eq!(
            Intercom.describe(&untyped),
            Err(MalformedRequest::MissingField("topic".into()))
        );
        assert!(matches!(
            Intercom.describe(&InboundRequest::post("topic=ping")),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }
}
