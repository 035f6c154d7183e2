//! Sentry (integration platform): `Sentry-Hook-Signature: <hex>`, HMAC-SHA256 of the raw
//! body with the integration's client secret, lowercase hex.
//!
//! From Sentry's own code (`SentryApp.build_signature`, `AppPlatformEvent.sentry_headers` in
//! getsentry/sentry): the secret's UTF-8 bytes are the key, the body alone is signed and the
//! digest is `hexdigest()`; its docs' verifier compares the hex text, so an uppercase
//! signature is refused. `Sentry-Hook-Timestamp` is sent beside it but signed by nothing:
//! anyone replaying a body can set it to now, so it is forwarded, never used as a replay
//! window. There is no window.
//!
//! There is no id to deduplicate on: `Request-ID` is a fresh `uuid4()` each time Sentry's
//! task builds the request, and a retry (up to three, five minutes apart, after a timeout or
//! a 5xx) runs the task again, so each attempt carries its own, as it does its own
//! timestamp. Deliveries are keyed by the body's hash, which the retries share where Sentry
//! re-sends the same data. The type is `Sentry-Hook-Resource` (`issue`, `error`, `comment`,
//! `event_alert`, `metric_alert`, `installation`) and the body's `action`, as
//! `issue.created`, the name Sentry gives the event.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    check_hmac, decode_lowercase_hex, header, hmac_sha256, json_body_strings, signature_header,
    AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "sentry-hook-signature";
const RESOURCE: &str = "sentry-hook-resource";
const TIMESTAMP: &str = "sentry-hook-timestamp";
const REQUEST_ID: &str = "request-id";

#[derive(Debug, Clone, Copy, Default)]
pub struct Sentry;

impl super::sealed::Sealed for Sentry {}

/// The scheme the provider table names for sentry.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Sentry))
}

impl SignatureScheme for Sentry {
    fn provider(&self) -> Provider {
        Provider::Sentry
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        _now: OffsetDateTime,
        _tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signature =
            decode_lowercase_hex(header).ok_or_else(|| AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            })?;
        check_hmac(keys, &[signature], &[&request.body])
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let resource = request
            .header(RESOURCE)
            .ok_or_else(|| MalformedRequest::MissingHeader {
                header: RESOURCE.to_owned(),
            })?;
        let [action] = json_body_strings(request, ["action"])?;
        let event_type = match action {
            Some(action) => format!("{resource}.{action}"),
            None => resource.to_owned(),
        };
        Ok(Delivery::event(None, event_type))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [RESOURCE, TIMESTAMP, REQUEST_ID]
            .map(str::to_owned)
            .to_vec()
    }

    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let signature = hmac_sha256(key.as_bytes(), &[delivery.body]);
        vec![header(SIGNATURE, hex::encode(signature))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // Sentry publishes no test vector: this one is computed from the algorithm in Sentry's
    // code with python3's hmac.
    const SECRET: &str = "b3f4c1d2e5a6978812345678deadbeefcafef00d1234567890abcdef12345678";
    const BODY: &str = r#"{"action":"created","installation":{"uuid":"7a485448-a9e2-4c85-8a3c-4f44175783c9"},"data":{"issue":{"id":"1170820242","shortId":"FRONTEND-R"}},"actor":{"type":"application","id":"sentry","name":"Sentry"}}"#;
    const KNOWN: &str = "c91c5ec5d9a309cf390fe9449a88488d3d5285d6ad2fec88f9842d0d3cd716d4";

    fn request(signature: &str) -> InboundRequest {
        InboundRequest::post(BODY)
            .with_header("Sentry-Hook-Signature", signature)
            .with_header("Sentry-Hook-Resource", "issue")
    }

    fn check(request: &InboundRequest, secret: &str) -> Result<(), AuthFailure> {
        Sentry.check_signature(request, &keys(secret), at(0), WINDOW)
    }

    #[test]
    fn accepts_the_known_answer_vector() {
        assert_eq!(check(&request(KNOWN), SECRET), Ok(()));
    }

    #[test]
    fn signing_reproduces_the_known_answer_vector() {
        let headers = Sentry.sign(&outgoing(BODY, 0), &raw_key(SECRET));
        assert_eq!(headers, [(SIGNATURE.to_owned(), KNOWN.to_owned())]);
    }

    #[test]
    fn a_signed_delivery_verifies_and_fails_once_tampered_with() {
        let request = request_with(BODY, &Sentry.sign(&outgoing(BODY, 0), &raw_key(SECRET)));
        assert_eq!(check(&request, SECRET), Ok(()));
        assert_eq!(
            check(&with_one_byte_changed(request), SECRET),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_unsigned_timestamp_header_opens_no_window() {
        let old = request(KNOWN).with_header("Sentry-Hook-Timestamp", "1600000000");
        assert_eq!(
            Sentry.check_signature(&old, &keys(SECRET), at(1_800_000_000), WINDOW),
            Ok(())
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
    fn rejects_a_signature_that_is_not_64_lowercase_hex_digits() {
        for bad in [
            format!("sha256={KNOWN}"),
            KNOWN.to_uppercase(),
            KNOWN[..63].to_owned(),
        ] {
            assert!(
                matches!(
                    check(&request(&bad), SECRET),
                    Err(AuthFailure::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_a_signature_made_with_another_secret() {
        assert_eq!(
            check(&request(KNOWN), "another-client-secret"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_body_with_one_byte_changed() {
        assert_eq!(
            check(&with_one_byte_changed(request(KNOWN)), SECRET),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_type_is_the_resource_and_action_and_the_key_the_body() {
        let request = request(KNOWN).with_header("Request-ID", "f2b7a1c4d35e4e0b9a6c2d8e1f3a5b7c");
        assert_eq!(
            Sentry.describe(&request).unwrap(),
            Delivery::event(None, "issue.created")
        );
    }

    #[test]
    fn a_body_without_an_action_is_typed_by_its_resource() {
        let request =
            InboundRequest::post(r#"{"data":{}}"#).with_header("Sentry-Hook-Resource", "error");
        assert_eq!(Sentry.describe(&request).unwrap().event_type, "error");
    }

    #[test]
    fn a_delivery_without_its_resource_header_or_not_json_is_malformed() {
        assert_eq!(
            Sentry.describe(&InboundRequest::post(BODY)),
            Err(MalformedRequest::MissingHeader {
                header: RESOURCE.to_owned()
            })
        );
        let form = InboundRequest::post("action=created").with_header(RESOURCE, "issue");
        assert!(matches!(
            Sentry.describe(&form),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }
}
