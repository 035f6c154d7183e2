//! Square: `x-square-hmacsha256-signature: <base64>`, HMAC-SHA256 of the notification URL
//! followed by the raw body, with the subscription's signature key as its literal bytes.
//!
//! The URL is the subscription's `notification_url` exactly as configured at Square: the
//! request's own, or `WEBHOOK_URL` where a custom domain or proxy stands in front
//! ([`public_url`](super::public_url)). Square signs no timestamp, so a captured delivery
//! verifies for ever; deliveries are deduplicated by the body's `event_id` ("a generated
//! idempotency value", the same on every retry) and typed by its `type`
//! (`payment.created`). An empty body is refused as Square's SDKs refuse it.
//!
//! The legacy `x-square-signature` (HMAC-SHA1, for subscriptions made before the SHA-256
//! header existed) is not checked: every subscription has a signature key that signs the
//! SHA-256 header, and accepting the weaker one beside it would only widen what a forger
//! can aim at.
//!
//! Sources: developer.squareup.com/docs/webhooks/step3validate and step2subscribe (headers),
//! and `verify_signature` in square-python-sdk (`src/square/utils/webhooks_helper.py`),
//! whose tests give the vectors below.

use std::time::Duration;

use time::OffsetDateTime;

use super::public_url::PublicUrl;
use super::{
    any_signature_matches, decode_base64, encode_base64, header, hmac_sha256, json_body_strings,
    signature_header, AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-square-hmacsha256-signature";

#[derive(Debug, Clone, Default)]
pub struct Square {
    url: PublicUrl,
}

impl super::sealed::Sealed for Square {}

/// The scheme the provider table names for square: `WEBHOOK_URL`, when set, is the
/// subscription's notification URL.
pub(crate) fn scheme(
    env: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Square {
        url: PublicUrl::from_env(env)?,
    }))
}

impl SignatureScheme for Square {
    fn provider(&self) -> Provider {
        Provider::Square
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
        let url = self.url.signed_url(request)?;
        if !request.body.is_empty()
            && any_signature_matches(keys, &[signature], &[url.as_bytes(), &request.body])
        {
            Ok(())
        } else {
            Err(AuthFailure::SignatureMismatch)
        }
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let [id, event_type] = json_body_strings(request, ["event_id", "type"])?;
        let id = id.ok_or_else(|| MalformedRequest::MissingField("event_id".into()))?;
        let event_type = event_type.ok_or_else(|| MalformedRequest::MissingField("type".into()))?;
        Ok(Delivery::event(Some(id), event_type))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [
            "square-environment",
            "square-initial-delivery-timestamp",
            "square-retry-number",
            "square-retry-reason",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let signature = hmac_sha256(key.as_bytes(), &[delivery.url.as_bytes(), delivery.body]);
        vec![header(SIGNATURE, encode_base64(&signature))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // square-python-sdk, tests/utilities/test_webhooks_helper.py.
    const SDK_KEY: &str = "Ibxx_5AKakO-3qeNVR61Dw";
    const SDK_URL: &str = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9";
    const SDK_BODY: &str = r#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;
    const SDK_SIGNATURE: &str = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=";

    fn request(body: &str, url: &str, signature: &str) -> InboundRequest {
        InboundRequest::post(body.to_owned())
            .with_url(url)
            .with_header("X-Square-HmacSha256-Signature", signature)
    }

    fn sdk_request() -> InboundRequest {
        request(SDK_BODY, SDK_URL, SDK_SIGNATURE)
    }

    fn check(request: &InboundRequest, key: &str) -> Result<(), AuthFailure> {
        Square::default().check_signature(request, &keys(key), at(0), WINDOW)
    }

    #[test]
    fn accepts_the_square_sdk_vector() {
        assert_eq!(check(&sdk_request(), SDK_KEY), Ok(()));
    }

    #[test]
    fn accepts_the_square_sdk_vector_whose_body_has_characters_json_could_escape() {
        let request = request(
            r#"{"data":{"type":"webhooks","id":">id<"}}"#,
            "https://webhook.site/webhooks",
            "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U=",
        );
        assert_eq!(check(&request, "signature-key"), Ok(()));
    }

    #[test]
    fn accepts_the_sdk_vector_behind_a_proxy_given_the_configured_url() {
        let behind_proxy = request(
            SDK_BODY,
            "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/webhooks/square",
            SDK_SIGNATURE,
        );
        let square = Square {
            url: PublicUrl::configured(SDK_URL).unwrap(),
        };
        assert_eq!(
            square.check_signature(&behind_proxy, &keys(SDK_KEY), at(0), WINDOW),
            Ok(())
        );
        assert_eq!(
            check(&behind_proxy, SDK_KEY),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_missing_signature() {
        let unsigned = InboundRequest::post(SDK_BODY).with_url(SDK_URL);
        assert!(matches!(
            check(&unsigned, SDK_KEY),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_that_is_not_base64_of_32_bytes() {
        let hex = hex_hmac(SDK_KEY, format!("{SDK_URL}{SDK_BODY}").as_bytes());
        for bad in ["not base64!", "1z2n3DEJJiUPKcPzQo1ftvbxGdw=", hex.as_str()] {
            assert!(
                matches!(
                    check(&request(SDK_BODY, SDK_URL, bad), SDK_KEY),
                    Err(AuthFailure::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_a_signature_made_for_another_url() {
        // The SDK's test drops one character of the URL.
        let other = request(
            SDK_BODY,
            "https://webhook.site/79a4f3a-dcfa-49ee-bac5-9d0edad886b9",
            SDK_SIGNATURE,
        );
        assert_eq!(check(&other, SDK_KEY), Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn rejects_another_signature_key() {
        assert_eq!(
            check(&sdk_request(), "MCmhFRxGX82xMwg5FsaoQA"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_changed_or_reformatted_body() {
        let changed = SDK_BODY.replace("2022-07-13", "2022-06-13");
        let reformatted = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(SDK_BODY).unwrap(),
        )
        .unwrap();
        for body in [changed, reformatted] {
            assert_eq!(
                check(&request(&body, SDK_URL, SDK_SIGNATURE), SDK_KEY),
                Err(AuthFailure::SignatureMismatch)
            );
        }
    }

    #[test]
    fn rejects_an_empty_body_as_squares_sdk_does() {
        let url_only = encode_base64(&hmac_sha256(SDK_KEY.as_bytes(), &[SDK_URL.as_bytes()]));
        assert_eq!(
            check(&request("", SDK_URL, &url_only), SDK_KEY),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_request_whose_url_cannot_be_known() {
        let relative = InboundRequest::post(SDK_BODY).with_header(SIGNATURE, SDK_SIGNATURE);
        assert_eq!(
            check(&relative, SDK_KEY),
            Err(AuthFailure::MissingSignedHeader {
                header: "host".into()
            })
        );
    }

    #[test]
    fn signing_reproduces_the_square_sdk_vector() {
        let delivery = OutgoingDelivery {
            url: SDK_URL,
            ..outgoing(SDK_BODY, 0)
        };
        assert_eq!(
            Square::default().sign(&delivery, &raw_key(SDK_KEY)),
            [(SIGNATURE.to_owned(), SDK_SIGNATURE.to_owned())]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_and_fails_once_tampered_with() {
        let delivery = outgoing(SDK_BODY, 0);
        let signed = request_with(SDK_BODY, &Square::default().sign(&delivery, &raw_key("k")))
            .with_url(delivery.url);
        assert_eq!(check(&signed, "k"), Ok(()));
        assert_eq!(
            check(&with_one_byte_changed(signed), "k"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_key_is_the_event_id_and_the_type_its_type() {
        assert_eq!(
            Square::default().describe(&sdk_request()),
            Ok(Delivery::event(
                Some("ac3ac95b-f97d-458c-a6e6-18981597e05f".into()),
                "webhooks.test_notification"
            ))
        );
    }

    #[test]
    fn an_event_without_an_id_or_a_type_or_not_json_is_malformed() {
        let square = Square::default();
        assert_eq!(
            square.describe(&InboundRequest::post(r#"{"type":"payment.created"}"#)),
            Err(MalformedRequest::MissingField("event_id".into()))
        );
        assert_eq!(
            square.describe(&InboundRequest::post(r#"{"event_id":"e-1"}"#)),
            Err(MalformedRequest::MissingField("type".into()))
        );
        assert!(matches!(
            square.describe(&InboundRequest::post("event_id=e-1")),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }

    #[test]
    fn a_bad_webhook_url_is_a_configuration_error() {
        let env = std::collections::HashMap::from([("WEBHOOK_URL", "/webhooks/square")]);
        let error = scheme(&env).unwrap_err().to_string();
        assert!(error.starts_with("WEBHOOK_URL is invalid"), "{error}");
    }
}
