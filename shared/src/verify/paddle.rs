//! Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]`, HMAC-SHA256 of
//! `{ts}:{body}` with the notification destination's secret key (`pdl_ntfset_…`) as its
//! literal bytes, in lowercase hex.
//!
//! "Signatures contain at least one `h1`": any may match, which is how a destination's
//! secret rotation overlaps (paddle-python-sdk tries each; paddle-node-sdk 3.8 keeps only the
//! last, which would refuse a genuine delivery whose matching `h1` comes first). An `h1` that
//! is not 64 lowercase hex digits is kept out of the candidates rather than spoiling the
//! header (the SDKs compare it as text with the lowercase digest, so it could never match);
//! keys other than `ts` and `h1` are ignored, leaving room for a later algorithm, as
//! paddle-node-sdk ignores them and paddle-python-sdk does not. The timestamp
//! must lie within the receiver's `tolerance` either way; Paddle's SDKs allow only five
//! seconds of lateness, which a Lambda cold start or a retry queue can exceed.
//!
//! Deliveries are deduplicated by the body's `event_id` (the same on every retry and for
//! every destination; `notification_id` is per destination) and typed by `event_type`
//! (`transaction.completed`). Paddle sends no other header worth forwarding: `Paddle-Version`
//! is a header of requests *to* Paddle's API, not of its webhooks.
//!
//! Sources: developer.paddle.com/webhooks/about/signature-verification and
//! developer.paddle.com/webhooks/about/how-webhooks-work, and `PaddleSignature` in
//! paddle-python-sdk (`paddle_billing/Notifications/PaddleSignature.py`), whose tests give
//! the vectors below.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    check_hmac, check_window, header, hmac_sha256, json_body_strings, parse_timestamped_signatures,
    signature_header, AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "paddle-signature";

#[derive(Debug, Clone, Copy, Default)]
pub struct Paddle;

impl super::sealed::Sealed for Paddle {}

/// The scheme the provider table names for paddle.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Paddle))
}

impl SignatureScheme for Paddle {
    fn provider(&self) -> Provider {
        Provider::Paddle
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let parsed = parse_timestamped_signatures(header, ';', "ts", "h1").ok_or_else(|| {
            AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            }
        })?;
        check_window(parsed.unix, now, tolerance)?;
        let timestamp = parsed.unix.to_string();
        let signed = [timestamp.as_bytes(), b":", &request.body];
        check_hmac(keys, &parsed.signatures, &signed)
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let [id, event_type] = json_body_strings(request, ["event_id", "event_type"])?;
        let id = id.ok_or_else(|| MalformedRequest::MissingField("event_id".into()))?;
        let event_type =
            event_type.ok_or_else(|| MalformedRequest::MissingField("event_type".into()))?;
        Ok(Delivery::event(Some(id), event_type))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// One `h1`, as Paddle sends outside a secret rotation.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let timestamp = delivery.signed_at.unix_timestamp().to_string();
        let signature = hmac_sha256(key.as_bytes(), &[timestamp.as_bytes(), b":", delivery.body]);
        vec![header(
            SIGNATURE,
            format!("ts={timestamp};h1={}", hex::encode(signature)),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // paddle-python-sdk, tests/Unit/Notification/test_Verifier.py, "Standard payload" (the
    // fixture `_fixtures/standard_payload.json`, less its final newline).
    const SDK_SECRET: &str =
        "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_GrOWLNef+vmtjJYq4mSnHNzvc8uWoJ1I";
    const SDK_BODY: &str = r#"{"data":{"id":"ctm_01hs0tqf76sxmp7ba5e4mw1sc8","name":"John Doe","email":"blackhole+verification2@paddle.com","locale":"en","status":"active","created_at":"2024-03-15T10:32:37.862Z","updated_at":"2024-03-15T10:32:37.862Z","custom_data":null,"import_meta":null,"marketing_consent":false},"event_id":"evt_01hs0tqfme2xwb2hvwv87p8y3w","event_type":"customer.created","occurred_at":"2024-03-15T10:32:38.286848Z","notification_id":"ntf_01hs0tqfrhgkyp39x4wyvy7h6n"}"#;
    const SDK_TS: i64 = 1_710_498_758;
    const SDK_H1: &str = "558bf93944dbeb4790c7a8af6cb2ea435c8ca9c8396aafc1a4e37424ac132744";

    fn request(header: &str) -> InboundRequest {
        InboundRequest::post(SDK_BODY).with_header("Paddle-Signature", header)
    }

    fn check_at(request: &InboundRequest, secret: &str, now: i64) -> Result<(), AuthFailure> {
        Paddle.check_signature(request, &keys(secret), at(now), WINDOW)
    }

    fn sdk_header() -> String {
        format!("ts={SDK_TS};h1={SDK_H1}")
    }

    #[test]
    fn accepts_the_paddle_sdk_vector() {
        assert_eq!(
            check_at(&request(&sdk_header()), SDK_SECRET, SDK_TS),
            Ok(())
        );
    }

    #[test]
    fn accepts_the_paddle_sdk_vector_with_non_ascii_escapes() {
        // The SDK's "Special characters payload": `\u00dc…` escapes, kept as sent.
        let body = r#"{"data":{"id":"ctm_01hs0t94g83hs5jdw282ztqa4z","name":"\u00dc\u00c4\u00c5\u00e5\u00d6\u00dc\u00c4\u00c5\u00e5\u00d6","email":"blackhole+verification1@paddle.com","locale":"en","status":"active","created_at":"2024-03-15T10:24:48.136Z","updated_at":"2024-03-15T10:24:48.136Z","custom_data":null,"import_meta":null,"marketing_consent":false},"event_id":"evt_01hs0t94tjvtv62azjmkbeysz7","event_type":"customer.created","occurred_at":"2024-03-15T10:24:48.466759Z","notification_id":"ntf_01hs0t94ws0ay8keh5t4rq70ht"}"#;
        let request = InboundRequest::post(body).with_header(
            SIGNATURE,
            "ts=1710498288;h1=38219b3ba1578184e625c29d201a27cd25bd69e2ec9c3ab87dcb90d87ff73a41",
        );
        assert_eq!(check_at(&request, SDK_SECRET, 1_710_498_288), Ok(()));
    }

    #[test]
    fn accepts_when_any_of_several_h1_matches_and_any_key_of_the_ring() {
        // The SDK's rotation test: `h1=dummy` beside the valid one, three secrets of which
        // the last signed.
        let request = InboundRequest::post("hello-world").with_header(
            SIGNATURE,
            "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02",
        );
        let ring = KeyRing::from_secrets(
            "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_vB/yIOnTOCWIvpBadM5jzBZPHc7OmdSo",
            Some("pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh"),
            crate::secret::KeyEncoding::Raw,
        )
        .unwrap();
        assert_eq!(
            Paddle.check_signature(&request, &ring, at(1_696_195_954), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn accepts_the_vector_of_the_provider_facts() {
        // /work/shared/provider-vectors.md, self-derived from Paddle's documented algorithm
        // with its documentation's example secret.
        let request = InboundRequest::post(
            r#"{"event_id":"evt_01gks14ge726w50ce2m29ge2ex","event_type":"transaction.paid"}"#,
        )
        .with_header(
            SIGNATURE,
            "ts=1671552777;h1=c29a22e9525b6549e64222ab41e09fe1a2cbab0abd2997ee673a4f01c1659dbb",
        );
        assert_eq!(
            check_at(
                &request,
                "pdl_ntfset_01gkpjp8bkm3tm53kdgkx6sms7_6h3qd3uFSi9YCD3OLYAShQI90XTI5vEI",
                1_671_552_777
            ),
            Ok(())
        );
    }

    #[test]
    fn ignores_keys_it_does_not_know() {
        let header = format!("ts={SDK_TS};h2=abc;h1={SDK_H1}");
        assert_eq!(check_at(&request(&header), SDK_SECRET, SDK_TS), Ok(()));
    }

    #[test]
    fn rejects_a_missing_header() {
        assert!(matches!(
            check_at(&InboundRequest::post(SDK_BODY), SDK_SECRET, SDK_TS),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_header_without_an_h1() {
        assert!(matches!(
            check_at(&request(&format!("ts={SDK_TS}")), SDK_SECRET, SDK_TS),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_header_without_a_timestamp_or_with_two() {
        for header in [
            format!("h1={SDK_H1}"),
            format!("ts={SDK_TS};ts={SDK_TS};h1={SDK_H1}"),
            format!("ts=yesterday;h1={SDK_H1}"),
        ] {
            assert!(
                matches!(
                    check_at(&request(&header), SDK_SECRET, SDK_TS),
                    Err(AuthFailure::MalformedSignature { .. })
                ),
                "{header}"
            );
        }
    }

    #[test]
    fn rejects_an_item_that_is_not_key_equals_value() {
        let header = format!("ts={SDK_TS};{SDK_H1}");
        assert!(matches!(
            check_at(&request(&header), SDK_SECRET, SDK_TS),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_an_uppercase_signature_as_paddles_sdks_do() {
        let header = format!("ts={SDK_TS};h1={}", SDK_H1.to_uppercase());
        assert_eq!(
            check_at(&request(&header), SDK_SECRET, SDK_TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_stale_timestamp() {
        assert_eq!(
            check_at(&request(&sdk_header()), SDK_SECRET, SDK_TS + 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
    }

    #[test]
    fn rejects_a_timestamp_from_the_future() {
        assert_eq!(
            check_at(&request(&sdk_header()), SDK_SECRET, SDK_TS - 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
    }

    #[test]
    fn rejects_a_signature_made_for_another_timestamp() {
        let header = format!("ts={};h1={SDK_H1}", SDK_TS + 1);
        assert_eq!(
            check_at(&request(&header), SDK_SECRET, SDK_TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_another_secret() {
        assert_eq!(
            check_at(&request(&sdk_header()), "pdl_ntfset_other", SDK_TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_body_with_one_byte_changed() {
        assert_eq!(
            check_at(
                &with_one_byte_changed(request(&sdk_header())),
                SDK_SECRET,
                SDK_TS
            ),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn signing_reproduces_the_paddle_sdk_vector() {
        assert_eq!(
            Paddle.sign(&outgoing(SDK_BODY, SDK_TS), &raw_key(SDK_SECRET)),
            [(SIGNATURE.to_owned(), sdk_header())]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let request = request_with(
            SDK_BODY,
            &Paddle.sign(&outgoing(SDK_BODY, 1_000), &raw_key("s")),
        );
        assert_eq!(check_at(&request, "s", 1_000), Ok(()));
        assert!(matches!(
            check_at(&request, "s", 1_301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        assert_eq!(
            check_at(&with_one_byte_changed(request), "s", 1_000),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_key_is_the_event_id_and_the_type_its_event_type() {
        assert_eq!(
            Paddle.describe(&InboundRequest::post(SDK_BODY)),
            Ok(Delivery::event(
                Some("evt_01hs0tqfme2xwb2hvwv87p8y3w".into()),
                "customer.created"
            ))
        );
    }

    #[test]
    fn an_event_without_an_id_or_a_type_or_not_json_is_malformed() {
        assert_eq!(
            Paddle.describe(&InboundRequest::post(
                r#"{"event_type":"transaction.completed"}"#
            )),
            Err(MalformedRequest::MissingField("event_id".into()))
        );
        assert_eq!(
            Paddle.describe(&InboundRequest::post(r#"{"event_id":"evt_1"}"#)),
            Err(MalformedRequest::MissingField("event_type".into()))
        );
        assert!(matches!(
            Paddle.describe(&InboundRequest::post("event_id=evt_1")),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }
}
