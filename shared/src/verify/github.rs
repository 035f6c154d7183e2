//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body.
//!
//! GitHub signs no timestamp, so there is no replay window; deliveries are deduplicated by
//! `X-GitHub-Delivery`, which a manual redelivery keeps. The legacy SHA-1
//! `X-Hub-Signature` is deliberately not accepted.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    check_hmac, decode_lowercase_hex, header, hmac_sha256, json_strings, signature_header,
    AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-hub-signature-256";
const DELIVERY: &str = "x-github-delivery";
const EVENT: &str = "x-github-event";

#[derive(Debug, Clone, Copy, Default)]
pub struct Github;

impl super::sealed::Sealed for Github {}

/// The scheme the provider table names for github.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Github))
}

impl SignatureScheme for Github {
    fn provider(&self) -> Provider {
        Provider::Github
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
            .strip_prefix("sha256=")
            .and_then(decode_lowercase_hex)
            .ok_or_else(|| AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            })?;
        check_hmac(keys, &[signature], &[&request.body])
    }

    /// The type is `X-GitHub-Event`, refined by the payload's `action` when it has one
    /// (`pull_request.opened`). Payloads come as JSON or, for hooks set to
    /// `application/x-www-form-urlencoded`, as JSON in a `payload` form field.
    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let delivery = request
            .header(DELIVERY)
            .ok_or_else(|| MalformedRequest::MissingHeader {
                header: DELIVERY.to_owned(),
            })?;
        let event = request
            .header(EVENT)
            .ok_or_else(|| MalformedRequest::MissingHeader {
                header: EVENT.to_owned(),
            })?;
        let event_type = match payload_action(request) {
            Some(action) => format!("{event}.{action}"),
            None => event.to_owned(),
        };
        Ok(Delivery::event(Some(delivery.to_owned()), event_type))
    }

    /// The delivery id is a header the signature does not cover.
    fn signs_stable_id(&self) -> bool {
        false
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [
            DELIVERY,
            EVENT,
            "x-github-hook-id",
            "x-github-hook-installation-target-id",
            "x-github-hook-installation-target-type",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Only `X-Hub-Signature-256`: the legacy SHA-1 header GitHub also sends is not
    /// accepted here, so it is not made either.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let signature = hmac_sha256(key.as_bytes(), &[delivery.body]);
        vec![header(
            SIGNATURE,
            format!("sha256={}", hex::encode(signature)),
        )]
    }
}

fn payload_action(request: &InboundRequest) -> Option<String> {
    let [action] = if request.is_form_encoded() {
        form_urlencoded::parse(&request.body)
            .find(|(name, _)| name == "payload")
            .and_then(|(_, payload)| json_strings(payload.as_bytes(), ["action"]).ok())?
    } else {
        json_strings(&request.body, ["action"]).ok()?
    };
    action
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    fn signed(secret: &str, body: &'static str) -> InboundRequest {
        InboundRequest::post(body)
            .with_header(
                SIGNATURE,
                &format!("sha256={}", hex_hmac(secret, body.as_bytes())),
            )
            .with_header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .with_header("X-GitHub-Event", "pull_request")
    }

    fn check(request: &InboundRequest, secret: &str) -> Result<(), AuthFailure> {
        Github.check_signature(request, &keys(secret), at(0), WINDOW)
    }

    #[test]
    fn accepts_githubs_documented_example() {
        let request = InboundRequest::post("Hello, World!").with_header(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        );
        assert_eq!(check(&request, "It's a Secret to Everybody"), Ok(()));
    }

    #[test]
    fn accepts_the_octokit_vectors_byte_for_byte() {
        let vectors = [
            ("mysecret", "{\"foo\":\"bar\"}", "4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3"),
            ("mysecret", "{\n  \"foo\": \"bar\"\n}\n", "e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f"),
            ("development", "{\n  \"foo\": \"Foo\\n\\u001B[34mbar: ♥♥♥♥♥♥♥♥\\nthis-is-lost\\u001B[0m\\u001B[2K\"\n}\n", "9dacf9003316b09be07df56d86a2d0d6872e42a1e6c72c3bad9ff915a7c5603e"),
            ("development", "{\n  \"foo\": \"\\\\u001b\"\n}\n", "87316067e2011fae39998b18c46a14d83b3e7c3ffdd88fb2ee5afb7d11288e60"),
            ("my_webhook_secret", "{\"action\":\"opened\"}", "a8591b84025410fb80a4c1621f4bf8e9c2576e5c2c7715a04609250612010665"),
        ];
        for (secret, body, signature) in vectors {
            let request =
                InboundRequest::post(body).with_header(SIGNATURE, &format!("sha256={signature}"));
            assert_eq!(check(&request, secret), Ok(()), "{body:?}");
        }
    }

    #[test]
    fn rejects_octokits_negative_vector() {
        let request = InboundRequest::post("{\n  \"foo\": \"bar\"\n}\n").with_header(
            SIGNATURE,
            "sha256=xxxccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f",
        );
        assert!(matches!(
            check(&request, "mysecret"),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_request_without_the_signature_header() {
        let request = InboundRequest::post("{}");
        assert!(matches!(
            check(&request, "s"),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_without_the_sha256_prefix() {
        let body = "{}";
        let request =
            InboundRequest::post(body).with_header(SIGNATURE, &hex_hmac("s", body.as_bytes()));
        assert!(matches!(
            check(&request, "s"),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_an_uppercase_signature_as_octokit_does() {
        let request = InboundRequest::post("Hello, World!").with_header(
            SIGNATURE,
            "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17",
        );
        assert!(matches!(
            check(&request, "It's a Secret to Everybody"),
            Err(AuthFailure::MalformedSignature { .. })
        ));
        let prefix_in_capitals = InboundRequest::post("Hello, World!").with_header(
            SIGNATURE,
            "SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        );
        assert!(check(&prefix_in_capitals, "It's a Secret to Everybody").is_err());
    }

    #[test]
    fn rejects_the_legacy_sha1_header_alone() {
        let request = InboundRequest::post("Hello, World!").with_header(
            "X-Hub-Signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        );
        assert!(matches!(
            check(&request, "It's a Secret to Everybody"),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_made_with_another_secret() {
        let request = signed("other", "{}");
        assert_eq!(
            check(&request, "right"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_body_with_one_byte_changed() {
        let mut request = signed("s", "{\"action\":\"opened\"}");
        request.body = bytes::Bytes::from_static(b"{\"action\":\"openee\"}");
        assert_eq!(check(&request, "s"), Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn signing_reproduces_githubs_documented_example() {
        let key = raw_key("It's a Secret to Everybody");
        assert_eq!(
            Github.sign(&outgoing("Hello, World!", 0), &key),
            [(
                SIGNATURE.to_owned(),
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_and_fails_once_tampered_with() {
        let body = r#"{"action":"opened","number":1347}"#;
        let request = request_with(body, &Github.sign(&outgoing(body, 0), &raw_key("s")));
        assert_eq!(check(&request, "s"), Ok(()));
        assert_eq!(
            check(&request, "another"),
            Err(AuthFailure::SignatureMismatch)
        );
        assert_eq!(
            check(&with_one_byte_changed(request), "s"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_event_type_joins_the_event_header_and_the_payload_action() {
        let delivery = Github
            .describe(&signed("s", "{\"action\":\"opened\"}"))
            .unwrap();
        assert_eq!(delivery.event_type, "pull_request.opened");
        assert_eq!(
            delivery.stable_id.as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
    }

    #[test]
    fn a_ping_without_an_action_is_typed_by_its_event_header() {
        let request = InboundRequest::post("{\"zen\":\"Keep it logically awesome.\"}")
            .with_header(DELIVERY, "d-1")
            .with_header(EVENT, "ping");
        assert_eq!(Github.describe(&request).unwrap().event_type, "ping");
    }

    #[test]
    fn a_form_encoded_payload_is_read_for_its_action() {
        let request = InboundRequest::post("payload=%7B%22action%22%3A%22closed%22%7D")
            .with_header("content-type", "application/x-www-form-urlencoded")
            .with_header(DELIVERY, "d-1")
            .with_header(EVENT, "issues");
        assert_eq!(
            Github.describe(&request).unwrap().event_type,
            "issues.closed"
        );
    }

    #[test]
    fn a_delivery_without_its_delivery_id_is_malformed() {
        let request = InboundRequest::post("{}").with_header(EVENT, "push");
        assert_eq!(
            Github.describe(&request),
            Err(MalformedRequest::MissingHeader {
                header: DELIVERY.to_owned()
            })
        );
    }
}
