//! Calendly: `Calendly-Webhook-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 of `{t}.{body}`
//! with the webhook signing key as its literal bytes, lowercase hex
//! (developer.calendly.com, "Webhook Signatures").
//!
//! `t` is signed as the exact text sent and must be within the window of now; Calendly's
//! example refuses only a `t` older than three minutes, hookgate applies the receiver's
//! tolerance both ways. Calendly documents one `v1`; several are accepted as Stripe's scheme,
//! whose header this one copies, does. The example compares the hex text, so an uppercase
//! signature is refused.
//!
//! Calendly sends no delivery or event id, in a header or the body (`created_at`,
//! `created_by`, `event`, `payload`). The resource's `payload.uri` does not name the
//! notification: an event type's changes, for one, share their event type's URI. So
//! deliveries are keyed by the body's hash, which every attempt of a retry (for 24 h, after
//! any 3xx, 4xx or 5xx) shares, the time being in the header. The type is the body's
//! `event` (`invitee.created`, `invitee.canceled`).

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    check_hmac, check_window, header, hmac_sha256, json_body_strings, parse_timestamped_signatures,
    signature_header, AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "calendly-webhook-signature";

#[derive(Debug, Clone, Copy, Default)]
pub struct Calendly;

impl super::sealed::Sealed for Calendly {}

/// The scheme the provider table names for calendly.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Calendly))
}

impl SignatureScheme for Calendly {
    fn provider(&self) -> Provider {
        Provider::Calendly
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let parsed = parse_timestamped_signatures(header, ',', "t", "v1").ok_or_else(|| {
            AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            }
        })?;
        check_window(parsed.unix, now, tolerance)?;
        let signed = [parsed.text.as_bytes(), b".", &request.body];
        check_hmac(keys, &parsed.signatures, &signed)
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let [event] = json_body_strings(request, ["event"])?;
        let event = event.ok_or_else(|| MalformedRequest::MissingField("event".into()))?;
        Ok(Delivery::event(None, event))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        Vec::new()
    }

    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let timestamp = delivery.signed_at.unix_timestamp().to_string();
        let signature = hmac_sha256(key.as_bytes(), &[timestamp.as_bytes(), b".", delivery.body]);
        vec![header(
            SIGNATURE,
            format!("t={timestamp},v1={}", hex::encode(signature)),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // Calendly publishes no test vector: this one is computed from the documented algorithm
    // with python3's hmac.
    const SECRET: &str = "calendly-webhook-signing-key-for-tests";
    const T: i64 = 1_606_153_879;
    const BODY: &str = r#"{"created_at":"2020-11-23T17:51:19.000000Z","created_by":"https://api.calendly.com/users/AAAAAAAAAAAAAAAA","event":"invitee.created","payload":{"uri":"https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAAAAAAAAAAAAA"}}"#;
    const KNOWN: &str = "b6d0031eab98cd3e1178b9e8bcbeceeb194082ca488e78fbbf7f961ef103b1e5";

    fn request(header: &str) -> InboundRequest {
        InboundRequest::post(BODY).with_header("Calendly-Webhook-Signature", header)
    }

    fn check_at(request: &InboundRequest, secret: &str, now: i64) -> Result<(), AuthFailure> {
        Calendly.check_signature(request, &keys(secret), at(now), WINDOW)
    }

    fn known_header() -> String {
        format!("t={T},v1={KNOWN}")
    }

    #[test]
    fn accepts_the_known_answer_vector() {
        assert_eq!(check_at(&request(&known_header()), SECRET, T), Ok(()));
    }

    #[test]
    fn signing_reproduces_the_known_answer_vector() {
        let headers = Calendly.sign(&outgoing(BODY, T), &raw_key(SECRET));
        assert_eq!(headers, [(SIGNATURE.to_owned(), known_header())]);
    }

    #[test]
    fn a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let request = request_with(BODY, &Calendly.sign(&outgoing(BODY, T), &raw_key(SECRET)));
        assert_eq!(check_at(&request, SECRET, T), Ok(()));
        assert_eq!(
            check_at(&request, SECRET, T + 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
        assert_eq!(
            check_at(&with_one_byte_changed(request), SECRET, T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn accepts_any_of_several_v1_signatures() {
        let wrong = "0".repeat(64);
        let header = format!("t={T},v1={wrong},v1={KNOWN}");
        assert_eq!(check_at(&request(&header), SECRET, T), Ok(()));
    }

    #[test]
    fn rejects_a_missing_signature() {
        assert!(matches!(
            check_at(&InboundRequest::post(BODY), SECRET, T),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_header_without_a_timestamp() {
        assert!(matches!(
            check_at(&request(&format!("v1={KNOWN}")), SECRET, T),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_header_with_two_timestamps() {
        let header = format!("t={T},t={},v1={KNOWN}", T + 1);
        assert!(matches!(
            check_at(&request(&header), SECRET, T),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_timestamp_that_is_not_unix_seconds() {
        for t in ["2020-11-23T17:51:19Z", "-1606153879", "1606153879.5"] {
            let header = format!("t={t},v1={KNOWN}");
            assert!(
                matches!(
                    check_at(&request(&header), SECRET, T),
                    Err(AuthFailure::MalformedSignature { .. })
                ),
                "{t}"
            );
        }
    }

    #[test]
    fn rejects_a_header_without_a_v1_signature() {
        assert!(matches!(
            check_at(&request(&format!("t={T},v0={KNOWN}")), SECRET, T),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_an_uppercase_signature_as_calendlys_example_does() {
        let header = format!("t={T},v1={}", KNOWN.to_uppercase());
        assert_eq!(
            check_at(&request(&header), SECRET, T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_stale_timestamp() {
        assert_eq!(
            check_at(&request(&known_header()), SECRET, T + 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
    }

    #[test]
    fn rejects_a_timestamp_from_the_future() {
        assert_eq!(
            check_at(&request(&known_header()), SECRET, T - 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
    }

    #[test]
    fn rejects_a_signature_made_for_another_timestamp() {
        let header = format!("t={},v1={KNOWN}", T + 1);
        assert_eq!(
            check_at(&request(&header), SECRET, T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_timestamp_is_signed_as_sent() {
        let header = format!("t=0{T},v1={KNOWN}");
        assert_eq!(
            check_at(&request(&header), SECRET, T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_signature_made_with_another_secret() {
        assert_eq!(
            check_at(&request(&known_header()), "another-signing-key", T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_body_with_one_byte_changed() {
        assert_eq!(
            check_at(&with_one_byte_changed(request(&known_header())), SECRET, T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_type_is_the_event_and_the_key_the_body() {
        assert_eq!(
            Calendly.describe(&InboundRequest::post(BODY)).unwrap(),
            Delivery::event(None, "invitee.created")
        );
    }

    #[test]
    fn an_event_without_its_name_or_not_json_is_malformed() {
        let untyped = InboundRequest::post(r#"{"payload":{}}"#);
        assert_eq!(
            Calendly.describe(&untyped),
            Err(MalformedRequest::MissingField("event".into()))
        );
        assert!(matches!(
            Calendly.describe(&InboundRequest::post("event=invitee.created")),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }
}
