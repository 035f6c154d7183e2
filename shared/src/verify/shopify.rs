//! Shopify: `X-Shopify-Hmac-Sha256: <base64>`, HMAC-SHA256 of the raw body with the app's
//! client secret.
//!
//! Shopify signs no timestamp. Deliveries are deduplicated by `X-Shopify-Webhook-Id`, or
//! `X-Shopify-Event-Id` where only that is sent; the type is `X-Shopify-Topic`.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    check_hmac, decode_base64, encode_base64, header, hmac_sha256, signature_header, AuthFailure,
    Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-shopify-hmac-sha256";
const WEBHOOK_ID: &str = "x-shopify-webhook-id";
const EVENT_ID: &str = "x-shopify-event-id";
const TOPIC: &str = "x-shopify-topic";

#[derive(Debug, Clone, Copy, Default)]
pub struct Shopify;

impl super::sealed::Sealed for Shopify {}

/// The scheme the provider table names for shopify.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Shopify))
}

impl SignatureScheme for Shopify {
    fn provider(&self) -> Provider {
        Provider::Shopify
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        _now: OffsetDateTime,
        _tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signature = decode_base64(header).ok_or_else(|| AuthFailure::MalformedSignature {
            header: SIGNATURE.to_owned(),
        })?;
        check_hmac(keys, &[signature], &[&request.body])
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let topic = request
            .header(TOPIC)
            .ok_or_else(|| MalformedRequest::MissingHeader {
                header: TOPIC.to_owned(),
            })?;
        let id = request
            .header(WEBHOOK_ID)
            .or_else(|| request.header(EVENT_ID));
        Ok(Delivery::event(id.map(str::to_owned), topic))
    }

    /// The delivery id is a header the signature does not cover.
    fn signs_stable_id(&self) -> bool {
        false
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [
            WEBHOOK_ID,
            EVENT_ID,
            TOPIC,
            "x-shopify-shop-domain",
            "x-shopify-api-version",
            "x-shopify-triggered-at",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let signature = hmac_sha256(key.as_bytes(), &[delivery.body]);
        vec![header(SIGNATURE, encode_base64(&signature))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    const BODY: &str = r#"{"id":820982911946154508,"email":"jon@doe.ca"}"#;
    const KNOWN: &str = "fp5HwmAHEVGQQwJU1KRpk57Ts2YHF6/TLOCczCtB5bs=";

    fn check(request: &InboundRequest, secret: &str) -> Result<(), AuthFailure> {
        Shopify.check_signature(request, &keys(secret), at(0), WINDOW)
    }

    fn request(signature: &str) -> InboundRequest {
        InboundRequest::post(BODY)
            .with_header("X-Shopify-Hmac-Sha256", signature)
            .with_header("X-Shopify-Topic", "orders/create")
    }

    #[test]
    fn accepts_the_known_answer_vector() {
        assert_eq!(check(&request(KNOWN), "hush"), Ok(()));
    }

    #[test]
    fn rejects_a_missing_or_non_base64_signature() {
        assert!(matches!(
            check(&InboundRequest::post(BODY), "hush"),
            Err(AuthFailure::MissingSignature { .. })
        ));
        assert!(matches!(
            check(&request("not base64!"), "hush"),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_hex_signature_where_base64_is_expected() {
        let hex_signature = hex_hmac("hush", BODY.as_bytes());
        assert!(check(&request(&hex_signature), "hush").is_err());
    }

    #[test]
    fn rejects_another_secret_and_a_changed_body() {
        assert_eq!(
            check(&request(KNOWN), "hush!"),
            Err(AuthFailure::SignatureMismatch)
        );
        let mut changed = request(KNOWN);
        changed.body = bytes::Bytes::from(BODY.replace("jon", "jan"));
        assert_eq!(check(&changed, "hush"), Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn signing_reproduces_the_known_answer_vector() {
        let headers = Shopify.sign(&outgoing(BODY, 0), &raw_key("hush"));
        assert_eq!(headers, [(SIGNATURE.to_owned(), KNOWN.to_owned())]);
    }

    #[test]
    fn a_signed_delivery_verifies_and_fails_once_tampered_with() {
        let request = request_with(BODY, &Shopify.sign(&outgoing(BODY, 0), &raw_key("hush")));
        assert_eq!(check(&request, "hush"), Ok(()));
        assert_eq!(
            check(&with_one_byte_changed(request), "hush"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_key_prefers_the_webhook_id_then_the_event_id() {
        let both = request(KNOWN)
            .with_header("X-Shopify-Webhook-Id", "b54557e4")
            .with_header("X-Shopify-Event-Id", "98880550");
        assert_eq!(
            Shopify.describe(&both).unwrap().stable_id.as_deref(),
            Some("b54557e4")
        );
        let event_only = request(KNOWN).with_header("X-Shopify-Event-Id", "98880550");
        assert_eq!(
            Shopify.describe(&event_only).unwrap().stable_id.as_deref(),
            Some("98880550")
        );
        assert_eq!(Shopify.describe(&request(KNOWN)).unwrap().stable_id, None);
    }

    #[test]
    fn the_type_is_the_topic_and_is_required() {
        assert_eq!(
            Shopify.describe(&request(KNOWN)).unwrap().event_type,
            "orders/create"
        );
        let untyped = InboundRequest::post(BODY);
        assert!(matches!(
            Shopify.describe(&untyped),
            Err(MalformedRequest::MissingHeader { .. })
        ));
    }
}
