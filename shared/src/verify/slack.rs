//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{body}`
//! with the app's signing secret; requests older or newer than the window are refused.
//!
//! Events API deliveries are JSON: a verified `url_verification` is answered with its
//! challenge and not queued; `event_callback`s are keyed by `event_id` and typed by
//! `event.type`. Retries (`X-Slack-Retry-Num`) keep the `event_id`, so they collapse into
//! one event downstream. Slash commands and interactivity payloads are form-encoded and have
//! no event id: they are keyed by the body's hash.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    check_hmac, check_window, decode_lowercase_hex, header, hmac_sha256, json_body_strings,
    json_strings, signature_header, unix_timestamp, AuthFailure, Delivery, Handshake,
    MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-slack-signature";
const TIMESTAMP: &str = "x-slack-request-timestamp";

#[derive(Debug, Clone, Copy, Default)]
pub struct Slack;

impl super::sealed::Sealed for Slack {}

/// The scheme the provider table names for slack.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Slack))
}

impl SignatureScheme for Slack {
    fn provider(&self) -> Provider {
        Provider::Slack
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signature = header
            .strip_prefix("v0=")
            .and_then(decode_lowercase_hex)
            .ok_or_else(|| AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            })?;
        let timestamp = unix_timestamp(request, TIMESTAMP)?;
        check_window(timestamp, now, tolerance)?;
        let timestamp = timestamp.to_string();
        let signed = [b"v0:", timestamp.as_bytes(), b":", &request.body];
        check_hmac(keys, &[signature], &signed)
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        if request.is_form_encoded() {
            return Ok(describe_form(request));
        }
        let [kind, challenge, event_type, event_id] =
            json_body_strings(request, ["type", "challenge", "event.type", "event_id"])?;
        let kind = kind.ok_or_else(|| MalformedRequest::MissingField("type".into()))?;
        if kind == "url_verification" {
            let challenge =
                challenge.ok_or_else(|| MalformedRequest::MissingField("challenge".into()))?;
            return Ok(Delivery::handshake(
                kind,
                Handshake {
                    content_type: "application/json",
                    body: serde_json::json!({ "challenge": challenge }).to_string(),
                },
            ));
        }
        Ok(Delivery::event(event_id, event_type.unwrap_or(kind)))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [TIMESTAMP, "x-slack-retry-num", "x-slack-retry-reason"]
            .map(str::to_owned)
            .to_vec()
    }

    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let timestamp = delivery.signed_at.unix_timestamp().to_string();
        let signed = [b"v0:", timestamp.as_bytes(), b":", delivery.body];
        let signature = hmac_sha256(key.as_bytes(), &signed);
        vec![
            header(TIMESTAMP, timestamp),
            header(SIGNATURE, format!("v0={}", hex::encode(signature))),
        ]
    }
}

/// Slash commands (`command=/deploy&…`) and interactivity (`payload={json}`).
fn describe_form(request: &InboundRequest) -> Delivery {
    let mut fields = form_urlencoded::parse(&request.body);
    let event_type = fields
        .find_map(|(name, value)| match name.as_ref() {
            "payload" => json_strings(value.as_bytes(), ["type"])
                .ok()
                .and_then(|[event_type]| event_type),
            "command" => Some("slash_command".to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| "form".to_owned());
    Delivery::event(None, event_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TIMESTAMP: i64 = 1_531_420_618;
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn doc_request() -> InboundRequest {
        InboundRequest::post(DOC_BODY)
            .with_header("X-Slack-Signature", DOC_SIGNATURE)
            .with_header("X-Slack-Request-Timestamp", &DOC_TIMESTAMP.to_string())
            .with_header("Content-Type", "application/x-www-form-urlencoded")
    }

    fn check_at(request: &InboundRequest, secret: &str, now: i64) -> Result<(), AuthFailure> {
        Slack.check_signature(request, &keys(secret), at(now), WINDOW)
    }

    fn signed_json(body: &'static str, timestamp: i64) -> InboundRequest {
        let signature = hex_hmac("s", format!("v0:{timestamp}:{body}").as_bytes());
        InboundRequest::post(body)
            .with_header(SIGNATURE, &format!("v0={signature}"))
            .with_header(TIMESTAMP, &timestamp.to_string())
            .with_header("content-type", "application/json")
    }

    #[test]
    fn accepts_slacks_documented_example_at_its_time() {
        assert_eq!(check_at(&doc_request(), DOC_SECRET, DOC_TIMESTAMP), Ok(()));
    }

    #[test]
    fn refuses_slacks_documented_example_at_the_real_time() {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!(matches!(
            check_at(&doc_request(), DOC_SECRET, now),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
    }

    #[test]
    fn accepts_the_slack_morphism_vector() {
        let request = InboundRequest::post("test-body")
            .with_header(
                SIGNATURE,
                "v0=baa91ef62d346e56607bbdd278a8acd570b91226854f15a382f43d33be42f666",
            )
            .with_header(TIMESTAMP, "1531420618");
        assert_eq!(
            check_at(&request, "fa2c05deeef5a4077494e89f54394de0", 1_531_420_620),
            Ok(())
        );
    }

    #[test]
    fn rejects_a_missing_or_unversioned_signature() {
        let mut request = doc_request();
        request.headers.remove(SIGNATURE);
        assert!(matches!(
            check_at(&request, DOC_SECRET, DOC_TIMESTAMP),
            Err(AuthFailure::MissingSignature { .. })
        ));
        let unversioned = doc_request();
        let mut unversioned = unversioned;
        unversioned.headers.insert(
            SIGNATURE,
            DOC_SIGNATURE.trim_start_matches("v0=").parse().unwrap(),
        );
        assert!(matches!(
            check_at(&unversioned, DOC_SECRET, DOC_TIMESTAMP),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_an_uppercase_signature_as_slack_sdk_does() {
        let mut request = doc_request();
        request.headers.insert(
            SIGNATURE,
            format!(
                "v0={}",
                DOC_SIGNATURE.trim_start_matches("v0=").to_uppercase()
            )
            .parse()
            .unwrap(),
        );
        assert!(check_at(&request, DOC_SECRET, DOC_TIMESTAMP).is_err());
    }

    #[test]
    fn a_media_type_in_capitals_is_still_a_form() {
        let mut request = doc_request();
        request.headers.remove("content-type");
        let request = request.with_header(
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
        );
        assert_eq!(
            Slack.describe(&request).unwrap().event_type,
            "slash_command"
        );
    }

    #[test]
    fn rejects_a_missing_or_malformed_timestamp() {
        let mut request = doc_request();
        request.headers.remove(TIMESTAMP);
        assert!(matches!(
            check_at(&request, DOC_SECRET, DOC_TIMESTAMP),
            Err(AuthFailure::MissingTimestamp { .. })
        ));
        request
            .headers
            .insert(TIMESTAMP, "yesterday".parse().unwrap());
        assert!(matches!(
            check_at(&request, DOC_SECRET, DOC_TIMESTAMP),
            Err(AuthFailure::MalformedTimestamp { .. })
        ));
    }

    #[test]
    fn rejects_stale_and_future_timestamps() {
        assert!(check_at(&doc_request(), DOC_SECRET, DOC_TIMESTAMP + 301).is_err());
        assert!(check_at(&doc_request(), DOC_SECRET, DOC_TIMESTAMP - 301).is_err());
        assert_eq!(
            check_at(&doc_request(), DOC_SECRET, DOC_TIMESTAMP + 300),
            Ok(())
        );
    }

    #[test]
    fn rejects_a_signature_made_for_another_timestamp() {
        let mut request = doc_request();
        request
            .headers
            .insert(TIMESTAMP, (DOC_TIMESTAMP + 1).to_string().parse().unwrap());
        assert_eq!(
            check_at(&request, DOC_SECRET, DOC_TIMESTAMP),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_another_secret_and_a_changed_body() {
        assert_eq!(
            check_at(&doc_request(), "another", DOC_TIMESTAMP),
            Err(AuthFailure::SignatureMismatch)
        );
        let mut changed = doc_request();
        changed.body = bytes::Bytes::from(DOC_BODY.replace("foobar", "foobaz"));
        assert_eq!(
            check_at(&changed, DOC_SECRET, DOC_TIMESTAMP),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn signing_reproduces_slacks_documented_example() {
        let headers = Slack.sign(&outgoing(DOC_BODY, DOC_TIMESTAMP), &raw_key(DOC_SECRET));
        assert_eq!(
            headers,
            [
                (TIMESTAMP.to_owned(), DOC_TIMESTAMP.to_string()),
                (SIGNATURE.to_owned(), DOC_SIGNATURE.to_owned())
            ]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let body = r#"{"type":"event_callback","event_id":"Ev08MFMKH6","event_time":1531420618}"#;
        let request = request_with(body, &Slack.sign(&outgoing(body, 1_000), &raw_key("s")));
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
    fn a_url_verification_is_a_handshake_echoing_the_challenge() {
        let request = signed_json(
            r#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#,
            1,
        );
        let delivery = Slack.describe(&request).unwrap();
        let handshake = delivery.handshake.expect("a handshake");
        assert_eq!(
            handshake.body,
            r#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#
        );
    }

    #[test]
    fn an_event_callback_is_keyed_by_event_id_and_typed_by_its_inner_event() {
        let request = signed_json(
            r#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}"#,
            1,
        );
        assert_eq!(
            Slack.describe(&request).unwrap(),
            Delivery::event(Some("Ev08MFMKH6".into()), "app_mention")
        );
    }

    #[test]
    fn a_slash_command_is_typed_as_such_and_keyed_by_its_body() {
        let delivery = Slack.describe(&doc_request()).unwrap();
        assert_eq!(delivery, Delivery::event(None, "slash_command"));
    }

    #[test]
    fn an_interactivity_payload_is_typed_by_its_payload_type() {
        let request = InboundRequest::post("payload=%7B%22type%22%3A%22block_actions%22%7D")
            .with_header("content-type", "application/x-www-form-urlencoded");
        assert_eq!(
            Slack.describe(&request).unwrap().event_type,
            "block_actions"
        );
    }
}
