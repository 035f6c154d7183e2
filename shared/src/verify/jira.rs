//! Jira (admin webhooks with a secret, Cloud and Data Center): `X-Hub-Signature:
//! sha256=<hex>`, HMAC-SHA256 of the raw body with the webhook's secret, in WebSub's
//! `method=signature` form (developer.atlassian.com, "Secure admin webhooks";
//! confluence.atlassian.com, "Managing webhooks").
//!
//! Jira signs with SHA-256 only, so any other method is malformed. Atlassian says nothing of
//! the hex's case and ships no verifier; the digest is compared as bytes, either case. Jira
//! signs no timestamp: the body's `timestamp` is the event's time, which retries (up to
//! 30 min later) keep, so it can bound no window. A webhook registered without a secret
//! (as Connect apps' are, authenticated by a JWT instead) carries no `X-Hub-Signature` and is
//! refused.
//!
//! Deliveries are deduplicated by `X-Atlassian-Webhook-Identifier`, which names the delivery
//! and which Jira's retries (after a 408, 409, 425, 429, 5xx or a timeout, counted by
//! `X-Atlassian-Webhook-Retry`) keep; it is outside the signature. The type is the body's
//! `webhookEvent` (`jira:issue_created`, `comment_created`).

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    check_hmac, decode_hex, header, hmac_sha256, json_body_strings, signature_header, AuthFailure,
    Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-hub-signature";
const METHOD: &str = "sha256=";
const IDENTIFIER: &str = "x-atlassian-webhook-identifier";
const RETRY: &str = "x-atlassian-webhook-retry";
const FLOW: &str = "x-atlassian-webhook-flow";

#[derive(Debug, Clone, Copy, Default)]
pub struct Jira;

impl super::sealed::Sealed for Jira {}

/// The scheme the provider table names for jira.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Jira))
}

impl SignatureScheme for Jira {
    fn provider(&self) -> Provider {
        Provider::Jira
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
            .strip_prefix(METHOD)
            .and_then(decode_hex)
            .ok_or_else(|| AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            })?;
        check_hmac(keys, &[signature], &[&request.body])
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let [event] = json_body_strings(request, ["webhookEvent"])?;
        let event = event.ok_or_else(|| MalformedRequest::MissingField("webhookEvent".into()))?;
        let identifier = request.header(IDENTIFIER).map(str::to_owned);
        Ok(Delivery::event(identifier, event))
    }

    /// `X-Atlassian-Webhook-Identifier` is a header the signature does not cover.
    fn signs_stable_id(&self) -> bool {
        false
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [IDENTIFIER, RETRY, FLOW].map(str::to_owned).to_vec()
    }

    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let signature = hmac_sha256(key.as_bytes(), &[delivery.body]);
        vec![header(
            SIGNATURE,
            format!("{METHOD}{}", hex::encode(signature)),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // Atlassian publishes no test vector: this one is computed from the documented algorithm
    // with python3's hmac.
    const SECRET: &str = "It0ld8VFgYwcfF1OzZyQ";
    const BODY: &str = r#"{"timestamp":1714478400000,"webhookEvent":"jira:issue_created","issue_event_type_name":"issue_created","issue":{"id":"10002","key":"KAN-3"}}"#;
    const KNOWN: &str = "sha256=ed92e4ef3bed8a3dd4880e0416f5e04da130793f02d083880febb84732a92487";

    fn request(signature: &str) -> InboundRequest {
        InboundRequest::post(BODY).with_header("X-Hub-Signature", signature)
    }

    fn check(request: &InboundRequest, secret: &str) -> Result<(), AuthFailure> {
        Jira.check_signature(request, &keys(secret), at(0), WINDOW)
    }

    #[test]
    fn accepts_the_known_answer_vector() {
        assert_eq!(check(&request(KNOWN), SECRET), Ok(()));
    }

    #[test]
    fn signing_reproduces_the_known_answer_vector() {
        let headers = Jira.sign(&outgoing(BODY, 0), &raw_key(SECRET));
        assert_eq!(headers, [(SIGNATURE.to_owned(), KNOWN.to_owned())]);
    }

    #[test]
    fn a_signed_delivery_verifies_and_fails_once_tampered_with() {
        let request = request_with(BODY, &Jira.sign(&outgoing(BODY, 0), &raw_key(SECRET)));
        assert_eq!(check(&request, SECRET), Ok(()));
        assert_eq!(
            check(&with_one_byte_changed(request), SECRET),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn accepts_the_digest_in_uppercase_hex() {
        let upper = format!("{METHOD}{}", KNOWN[METHOD.len()..].to_uppercase());
        assert_eq!(check(&request(&upper), SECRET), Ok(()));
    }

    #[test]
    fn rejects_a_missing_signature_as_from_a_webhook_without_a_secret() {
        assert!(matches!(
            check(&InboundRequest::post(BODY), SECRET),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_without_its_method() {
        assert!(matches!(
            check(&request(&KNOWN[METHOD.len()..]), SECRET),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_method_other_than_sha256() {
        let sha1 = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";
        assert!(matches!(
            check(&request(sha1), SECRET),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_digest_that_is_not_64_hex_digits() {
        for bad in [&KNOWN[..70], "sha256=not-hex"] {
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
            check(&request(KNOWN), "another-webhook-secret"),
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
    fn the_key_is_the_webhook_identifier_and_the_type_the_webhook_event() {
        let request = request(KNOWN)
            .with_header(
                "X-Atlassian-Webhook-Identifier",
                "3b5d6f1a-9c2e-4e8b-a7d4-0f6c1e2b9a85",
            )
            .with_header("X-Atlassian-Webhook-Retry", "1");
        assert_eq!(
            Jira.describe(&request).unwrap(),
            Delivery::event(
                Some("3b5d6f1a-9c2e-4e8b-a7d4-0f6c1e2b9a85".into()),
                "jira:issue_created"
            )
        );
    }

    #[test]
    fn without_an_identifier_the_key_falls_back_to_the_body() {
        assert_eq!(Jira.describe(&request(KNOWN)).unwrap().stable_id, None);
    }

    #[test]
    fn an_event_without_a_webhook_event_or_not_json_is_malformed() {
        let untyped = InboundRequest::post(r#"{"timestamp":1714478400000}"#);
        assert_eq!(
            Jira.describe(&untyped),
            Err(MalformedRequest::MissingField("webhookEvent".into()))
        );
        assert!(matches!(
            Jira.describe(&InboundRequest::post("webhookEvent=jira:issue_created")),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }
}
