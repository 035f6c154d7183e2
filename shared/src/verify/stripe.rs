//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 of `{t}.{body}`.
//!
//! The key is the whole `whsec_…` string as bytes (Stripe does not base64-decode it). Any
//! `v1` may match, which is how Stripe signs during a secret roll; `v0` (test-mode legacy)
//! and unknown schemes are ignored. Deliveries are deduplicated by the event's `id`.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    check_hmac, check_window, header, hmac_sha256, json_body_strings, parse_timestamped_signatures,
    signature_header, AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "stripe-signature";

#[derive(Debug, Clone, Copy, Default)]
pub struct Stripe;

impl super::sealed::Sealed for Stripe {}

/// The scheme the provider table names for stripe.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Stripe))
}

impl SignatureScheme for Stripe {
    fn provider(&self) -> Provider {
        Provider::Stripe
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
        // Stripe's libraries sign the timestamp as the integer they read.
        let timestamp = parsed.unix.to_string();
        let signed = [timestamp.as_bytes(), b".", &request.body];
        check_hmac(keys, &parsed.signatures, &signed)
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let [id, event_type] = json_body_strings(request, ["id", "type"])?;
        let id = id.ok_or_else(|| MalformedRequest::MissingField("id".into()))?;
        let event_type = event_type.ok_or_else(|| MalformedRequest::MissingField("type".into()))?;
        Ok(Delivery::event(Some(id), event_type))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// One `v1` signature, as Stripe sends outside a secret roll.
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

    const SECRET: &str = "whsec_test_secret";
    const BODY: &str = r#"{"id":"evt_test_webhook","object":"event"}"#;
    const T: i64 = 1_492_774_577;
    const KNOWN: &str = "88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a";

    fn request(header: &str) -> InboundRequest {
        InboundRequest::post(BODY).with_header("Stripe-Signature", header)
    }

    fn check_at(request: &InboundRequest, now: i64) -> Result<(), AuthFailure> {
        Stripe.check_signature(request, &keys(SECRET), at(now), WINDOW)
    }

    fn sign(t: i64) -> String {
        hex_hmac(SECRET, format!("{t}.{BODY}").as_bytes())
    }

    #[test]
    fn accepts_the_known_answer_vector() {
        assert_eq!(check_at(&request(&format!("t={T},v1={KNOWN}")), T), Ok(()));
    }

    #[test]
    fn accepts_when_any_of_several_v1_signatures_matches() {
        let wrong = "0".repeat(64);
        let header = format!("t={T},v1={wrong},v1={KNOWN},v0={wrong}");
        assert_eq!(check_at(&request(&header), T), Ok(()));
    }

    #[test]
    fn rejects_a_header_without_a_v1_signature() {
        let header = format!("t={T},v0={KNOWN}");
        assert!(matches!(
            check_at(&request(&header), T),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_an_uppercase_signature_as_stripes_libraries_do() {
        let header = format!("t={T},v1={}", KNOWN.to_uppercase());
        assert_eq!(
            check_at(&request(&header), T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn an_unusable_v1_beside_a_matching_one_does_not_spoil_the_header() {
        let header = format!("t={T},v1={},v1=zz,v1={KNOWN}", KNOWN.to_uppercase());
        assert_eq!(check_at(&request(&header), T), Ok(()));
    }

    #[test]
    fn rejects_a_header_without_a_timestamp() {
        assert!(matches!(
            check_at(&request(&format!("v1={KNOWN}")), T),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_missing_header() {
        assert!(matches!(
            check_at(&InboundRequest::post(BODY), T),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_stripe_signature_older_than_the_tolerance() {
        let result = check_at(&request(&format!("t={T},v1={KNOWN}")), T + 301);
        assert_eq!(
            result,
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
    }

    #[test]
    fn rejects_a_timestamp_from_the_future() {
        let t = T + 301;
        let result = check_at(&request(&format!("t={t},v1={}", sign(t))), T);
        assert_eq!(
            result,
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
    }

    #[test]
    fn rejects_a_signature_made_for_another_timestamp() {
        let header = format!("t={},v1={KNOWN}", T + 1);
        assert_eq!(
            check_at(&request(&header), T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_signature_made_with_another_secret() {
        let result = Stripe.check_signature(
            &request(&format!("t={T},v1={KNOWN}")),
            &keys("whsec_other"),
            at(T),
            WINDOW,
        );
        assert_eq!(result, Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn rejects_a_body_with_one_byte_changed() {
        let mut changed = request(&format!("t={T},v1={KNOWN}"));
        changed.body = bytes::Bytes::from(BODY.replace("evt_test", "evt_tesu"));
        assert_eq!(check_at(&changed, T), Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn signing_reproduces_the_known_answer_vector() {
        let headers = Stripe.sign(&outgoing(BODY, T), &raw_key(SECRET));
        assert_eq!(
            headers,
            [(SIGNATURE.to_owned(), format!("t={T},v1={KNOWN}"))]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let headers = Stripe.sign(&outgoing(BODY, T + 60), &raw_key(SECRET));
        let request = request_with(BODY, &headers);
        assert_eq!(check_at(&request, T + 60), Ok(()));
        assert_eq!(
            check_at(&request, T + 60 + 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
        let tampered = InboundRequest {
            body: bytes::Bytes::from(BODY.replace("evt_test", "evt_tesu")),
            ..request
        };
        assert_eq!(
            check_at(&tampered, T + 60),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_key_is_the_event_id_and_the_type_its_type() {
        let body = r#"{"id":"evt_1","type":"invoice.paid","object":"event"}"#;
        let delivery = Stripe.describe(&InboundRequest::post(body)).unwrap();
        assert_eq!(
            delivery,
            Delivery::event(Some("evt_1".into()), "invoice.paid")
        );
    }

    #[test]
    fn an_event_without_an_id_or_not_json_is_malformed() {
        let no_id = InboundRequest::post(r#"{"type":"invoice.paid"}"#);
        assert_eq!(
            Stripe.describe(&no_id),
            Err(MalformedRequest::MissingField("id".into()))
        );
        let not_json = InboundRequest::post("id=evt_1");
        assert!(matches!(
            Stripe.describe(&not_json),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }
}
