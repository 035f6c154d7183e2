//! PagerDuty (v3 webhook subscriptions): `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`,
//! HMAC-SHA256 of the raw body with the subscription's secret as its literal bytes.
//!
//! During a secret rotation PagerDuty signs with each secret and joins the signatures with
//! commas; any `v1` may match, and entries of other versions are skipped, as PagerDuty's
//! "Verifying Signatures" page and its Go library (`go-pagerduty`, `webhookv3`) do. That
//! library decodes the hex, so either case is accepted; a header with no decodable `v1` is
//! malformed, as there. PagerDuty signs no timestamp, so there is no replay window.
//!
//! Deliveries are deduplicated by `X-Webhook-Id`, which PagerDuty's "Behavior" page says "is
//! unique to the webhook but is repeated for each delivery attempt"; it is outside the
//! signature. Where it is missing the body's `event.id` (signed) serves. The type is
//! `event.event_type` (`incident.triggered`, `pagey.ping`).

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    check_hmac, decode_hex, header, hmac_sha256, json_body_strings, signature_header, AuthFailure,
    Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-pagerduty-signature";
const WEBHOOK_ID: &str = "x-webhook-id";
const SUBSCRIPTION: &str = "x-webhook-subscription";
const VERSION: &str = "v1=";

#[derive(Debug, Clone, Copy, Default)]
pub struct Pagerduty;

impl super::sealed::Sealed for Pagerduty {}

/// The scheme the provider table names for pagerduty.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Pagerduty))
}

/// Every `v1` signature of the header that is 64 hex digits. Spaces around an entry are
/// allowed: the header may reach the receiver joined from several, `, ` apart.
fn v1_signatures(value: &str) -> Vec<Vec<u8>> {
    value
        .split(',')
        .filter_map(|entry| entry.trim().strip_prefix(VERSION))
        .filter_map(decode_hex)
        .collect()
}

impl SignatureScheme for Pagerduty {
    fn provider(&self) -> Provider {
        Provider::Pagerduty
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        _now: OffsetDateTime,
        _tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signatures = v1_signatures(header);
        if signatures.is_empty() {
            return Err(AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            });
        }
        check_hmac(keys, &signatures, &[&request.body])
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let [event_id, event_type] = json_body_strings(request, ["event.id", "event.event_type"])?;
        let event_type =
            event_type.ok_or_else(|| MalformedRequest::MissingField("event.event_type".into()))?;
        let id = request.header(WEBHOOK_ID).map(str::to_owned).or(event_id);
        Ok(Delivery::event(id, event_type))
    }

    /// `X-Webhook-Id` is a header the signature does not cover.
    fn signs_stable_id(&self) -> bool {
        false
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [WEBHOOK_ID, SUBSCRIPTION].map(str::to_owned).to_vec()
    }

    /// One `v1` signature, as PagerDuty sends outside a secret rotation.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let signature = hmac_sha256(key.as_bytes(), &[delivery.body]);
        vec![header(
            SIGNATURE,
            format!("{VERSION}{}", hex::encode(signature)),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // go-pagerduty's `webhookv3/webhookv3_test.go`, `TestVerifySignature`: its secret, its
    // body (1655 bytes, kept byte for byte in testdata/), its valid and mismatching
    // signatures.
    const SECRET: &str = "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK";
    const BODY: &str = include_str!("testdata/pagerduty_go_sdk_body.json");
    const BODY_SHA256: &str = "6ef42c69dbbc0feaff02e04ca31f497cb2bcbecf1a038a636f114cd7cdd2e23a";
    const VALID: &str = "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd";
    const MISMATCH: &str = "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5";

    fn request(signature: &str) -> InboundRequest {
        InboundRequest::post(BODY).with_header("X-PagerDuty-Signature", signature)
    }

    fn check(request: &InboundRequest, secret: &str) -> Result<(), AuthFailure> {
        Pagerduty.check_signature(request, &keys(secret), at(0), WINDOW)
    }

    #[test]
    fn the_test_body_is_go_pagerdutys_byte_for_byte() {
        assert_eq!(BODY.len(), 1655);
        assert_eq!(crate::bodies::sha256_hex(BODY.as_bytes()), BODY_SHA256);
    }

    #[test]
    fn accepts_go_pagerdutys_valid_signature() {
        assert_eq!(check(&request(VALID), SECRET), Ok(()));
    }

    #[test]
    fn rejects_go_pagerdutys_mismatching_signature() {
        assert_eq!(
            check(&request(MISMATCH), SECRET),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn signing_reproduces_go_pagerdutys_valid_signature() {
        let headers = Pagerduty.sign(&outgoing(BODY, 0), &raw_key(SECRET));
        assert_eq!(headers, [(SIGNATURE.to_owned(), VALID.to_owned())]);
    }

    #[test]
    fn accepts_any_of_the_signatures_sent_during_a_rotation() {
        for header in [
            format!("{MISMATCH},{VALID}"),
            format!("{VALID},{MISMATCH}"),
            format!("{MISMATCH}, {VALID}"),
            format!("v2=abc,{VALID}"),
        ] {
            assert_eq!(check(&request(&header), SECRET), Ok(()), "{header}");
        }
    }

    #[test]
    fn accepts_a_signature_in_uppercase_hex_as_go_pagerduty_does() {
        let upper = format!("v1={}", VALID[3..].to_uppercase());
        assert_eq!(check(&request(&upper), SECRET), Ok(()));
    }

    #[test]
    fn a_signed_delivery_verifies_and_fails_once_tampered_with() {
        let body = r#"{"event":{"id":"01DXQ7Y7JZ7R6J3M4K1R","event_type":"pagey.ping"}}"#;
        let request = request_with(body, &Pagerduty.sign(&outgoing(body, 0), &raw_key(SECRET)));
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
    fn rejects_a_header_with_no_usable_v1_signature() {
        for bad in [
            &VALID[3..],
            "v0=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd",
            "v1=zz",
            "v1=",
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
            check(&request(VALID), "another-subscription-secret"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_body_with_one_byte_changed() {
        assert_eq!(
            check(&with_one_byte_changed(request(VALID)), SECRET),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_key_is_the_webhook_id_header_and_the_type_the_event_type() {
        let request =
            request(VALID).with_header("X-Webhook-Id", "a3d6149f-7577-4e8c-bc7c-e0e80e123a5b");
        assert_eq!(
            Pagerduty.describe(&request).unwrap(),
            Delivery::event(
                Some("a3d6149f-7577-4e8c-bc7c-e0e80e123a5b".into()),
                "incident.priority_updated"
            )
        );
    }

    #[test]
    fn without_the_webhook_id_header_the_key_is_the_event_id() {
        assert_eq!(
            Pagerduty
                .describe(&request(VALID))
                .unwrap()
                .stable_id
                .as_deref(),
            Some("01BWDWL3NYY7LUFPZCC28QUCMK")
        );
    }

    #[test]
    fn without_either_id_the_key_falls_back_to_the_body() {
        let request = InboundRequest::post(r#"{"event":{"event_type":"pagey.ping"}}"#);
        assert_eq!(Pagerduty.describe(&request).unwrap().stable_id, None);
    }

    #[test]
    fn an_event_without_a_type_or_not_json_is_malformed() {
        let untyped = InboundRequest::post(r#"{"event":{"id":"01BWDWL3NYY7LUFPZCC28QUCMK"}}"#);
        assert_eq!(
            Pagerduty.describe(&untyped),
            Err(MalformedRequest::MissingField("event.event_type".into()))
        );
        assert!(matches!(
            Pagerduty.describe(&InboundRequest::post("event=incident.triggered")),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }
}
