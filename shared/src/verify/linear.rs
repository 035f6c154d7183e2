//! Linear: `Linear-Signature: <hex>`, HMAC-SHA256 of the raw body with the webhook's signing
//! secret, lowercase hex; the body's `webhookTimestamp`, unix **milliseconds**, must be within
//! the window of now (linear.app/developers/webhooks, "Securing webhooks").
//!
//! The timestamp is not in a header but in the signed JSON body, so it is read only once the
//! signature holds, and compared to the millisecond. Linear's docs recommend, and its SDK
//! (`@linear/sdk/webhooks`, `LinearWebhookClient.verify`) enforces, one minute either way;
//! hookgate applies the receiver's tolerance instead. A body without `webhookTimestamp` is
//! refused, as the SDK does since linear/linear#1268: it could be replayed for ever. Linear
//! also sends a `Linear-Timestamp` header, which the SDK read for a while; it is signed by
//! nothing, so a replayed body could carry a fresh one, and the SDK went back to the body's
//! field (linear/linear#1140): so does hookgate. The SDK compares the hex text, so an
//! uppercase signature, which it refuses, is refused too.
//!
//! Deliveries are deduplicated by `Linear-Delivery`, "a UUID (v4) uniquely identifying this
//! payload"; it is a header the signature does not cover. The type is the body's `type` (the
//! entity: `Issue`, `Comment`, also in `Linear-Event`) and `action` (`create`, `update`,
//! `remove`, or an event's own such as `set`), as `Issue.create`.
//!
//! Linear wants a delivery answered `200`: its docs count "a non-200 HTTP status code" as a
//! failed delivery, to be retried, so a queued event is acknowledged `200 OK`, as Linear's SDK
//! answers, rather than with hookgate's `202`.
//!
//! Linear retries after 1 min, 1 h and 6 h. Whether a retry is signed anew with a fresh
//! `webhookTimestamp` is not documented; integrators report retries that carry the first
//! attempt's body, which any receiver holding Linear's window refuses once the tolerance has
//! passed, hookgate included.

use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    any_signature_matches, decode_lowercase_hex, header, hmac_sha256, json_body_strings,
    signature_header, AuthFailure, Delivery, Handshake, MalformedRequest, OutgoingDelivery,
    SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "linear-signature";
const DELIVERY: &str = "linear-delivery";
const EVENT: &str = "linear-event";
/// The body field holding the signing time, named where a header name would be.
const TIMESTAMP_FIELD: &str = "webhookTimestamp";

/// The answer to a queued delivery: a `200`, which is what Linear counts as delivered.
fn acknowledgement() -> Handshake {
    Handshake {
        content_type: "text/plain",
        body: "OK".to_owned(),
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Linear;

impl super::sealed::Sealed for Linear {}

/// The scheme the provider table names for linear.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Linear))
}

/// The one field of the body the signature check needs; the rest is skipped unparsed.
#[derive(Deserialize)]
struct SentAt {
    #[serde(rename = "webhookTimestamp")]
    webhook_timestamp: Option<i64>,
}

/// The body's `webhookTimestamp`, in unix milliseconds. A body that is not JSON, or whose
/// field is not an integer, has a malformed timestamp; one without the field has none.
fn sent_at_millis(body: &[u8]) -> Result<i64, AuthFailure> {
    let sent: SentAt =
        serde_json::from_slice(body).map_err(|_| AuthFailure::MalformedTimestamp {
            header: TIMESTAMP_FIELD.to_owned(),
        })?;
    sent.webhook_timestamp
        .ok_or_else(|| AuthFailure::MissingTimestamp {
            header: TIMESTAMP_FIELD.to_owned(),
        })
}

/// [`super::check_window`] to the millisecond: Linear's timestamp has them, and rounding it to
/// seconds would stretch the window by up to one.
fn check_window_millis(
    sent_at_ms: i64,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<(), AuthFailure> {
    let now_ms = now.unix_timestamp_nanos() / 1_000_000;
    let skew_ms = now_ms - i128::from(sent_at_ms);
    if skew_ms.unsigned_abs() > tolerance.as_millis() {
        let skew_secs =
            i64::try_from(skew_ms / 1000).unwrap_or(if skew_ms < 0 { i64::MIN } else { i64::MAX });
        return Err(AuthFailure::TimestampOutsideWindow { skew_secs });
    }
    Ok(())
}

impl SignatureScheme for Linear {
    fn provider(&self) -> Provider {
        Provider::Linear
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signature =
            decode_lowercase_hex(header).ok_or_else(|| AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            })?;
        // The timestamp is only worth reading from a body known to be Linear's.
        if !any_signature_matches(keys, &[signature], &[&request.body]) {
            return Err(AuthFailure::SignatureMismatch);
        }
        check_window_millis(sent_at_millis(&request.body)?, now, tolerance)
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let [entity, action] = json_body_strings(request, ["type", "action"])?;
        let entity = entity.ok_or_else(|| MalformedRequest::MissingField("type".into()))?;
        let event_type = match action {
            Some(action) => format!("{entity}.{action}"),
            None => entity,
        };
        let delivery = request.header(DELIVERY).map(str::to_owned);
        Ok(Delivery {
            acknowledgement: Some(acknowledgement()),
            ..Delivery::event(delivery, event_type)
        })
    }

    /// `Linear-Delivery` is a header the signature does not cover.
    fn signs_stable_id(&self) -> bool {
        false
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [EVENT, DELIVERY].map(str::to_owned).to_vec()
    }

    /// The signature only: the body already holds its `webhookTimestamp`, which is the
    /// caller's to set to the signing time, as Linear does.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let signature = hmac_sha256(key.as_bytes(), &[delivery.body]);
        vec![header(SIGNATURE, hex::encode(signature))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // Not published by Linear (its docs show a signature without the secret and body that
    // made it): computed from the documented algorithm with python3's hmac, and kept in
    // /work/shared/provider-vectors.md.
    const SECRET: &str = "lin_wh_test_secret";
    const BODY: &str = r#"{"action":"create","type":"Issue","webhookTimestamp":1676056940508}"#;
    const KNOWN: &str = "c2a5cb7a103f68b326d2879fbeb9594c159485c04622dc094a5fa0bc99b68a84";
    /// The body's `webhookTimestamp`, in milliseconds.
    const SENT_MS: i64 = 1_676_056_940_508;

    fn at_millis(ms: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
    }

    fn request(signature: &str) -> InboundRequest {
        InboundRequest::post(BODY).with_header("Linear-Signature", signature)
    }

    fn check_at_ms(request: &InboundRequest, secret: &str, now_ms: i64) -> Result<(), AuthFailure> {
        Linear.check_signature(request, &keys(secret), at_millis(now_ms), WINDOW)
    }

    fn signed_body(body: &str, secret: &str) -> InboundRequest {
        request_with(body, &Linear.sign(&outgoing(body, 0), &raw_key(secret)))
    }

    #[test]
    fn accepts_the_known_answer_vector() {
        assert_eq!(check_at_ms(&request(KNOWN), SECRET, SENT_MS), Ok(()));
    }

    #[test]
    fn signing_reproduces_the_known_answer_vector() {
        let headers = Linear.sign(&outgoing(BODY, 0), &raw_key(SECRET));
        assert_eq!(headers, [(SIGNATURE.to_owned(), KNOWN.to_owned())]);
    }

    #[test]
    fn a_signed_delivery_verifies_and_fails_once_tampered_with() {
        let request = signed_body(BODY, SECRET);
        assert_eq!(check_at_ms(&request, SECRET, SENT_MS), Ok(()));
        let mut tampered = request;
        tampered.body = bytes::Bytes::from(BODY.replace("Issue", "Issuf"));
        assert_eq!(
            check_at_ms(&tampered, SECRET, SENT_MS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_missing_signature() {
        assert!(matches!(
            check_at_ms(&InboundRequest::post(BODY), SECRET, SENT_MS),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_that_is_not_64_hex_digits() {
        for bad in [
            "sha256=".to_owned() + KNOWN,
            KNOWN[..62].to_owned(),
            "zz".repeat(32),
        ] {
            assert!(
                matches!(
                    check_at_ms(&request(&bad), SECRET, SENT_MS),
                    Err(AuthFailure::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_an_uppercase_signature_as_linears_sdk_does() {
        assert!(matches!(
            check_at_ms(&request(&KNOWN.to_uppercase()), SECRET, SENT_MS),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_made_with_another_secret() {
        assert_eq!(
            check_at_ms(&request(KNOWN), "lin_wh_other_secret", SENT_MS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_body_with_one_byte_changed() {
        assert_eq!(
            check_at_ms(&with_one_byte_changed(request(KNOWN)), SECRET, SENT_MS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn accepts_a_timestamp_at_the_edge_of_the_window_either_side() {
        let window_ms = 300_000;
        assert_eq!(
            check_at_ms(&request(KNOWN), SECRET, SENT_MS + window_ms),
            Ok(())
        );
        assert_eq!(
            check_at_ms(&request(KNOWN), SECRET, SENT_MS - window_ms),
            Ok(())
        );
    }

    #[test]
    fn rejects_a_stale_timestamp_to_the_millisecond() {
        assert_eq!(
            check_at_ms(&request(KNOWN), SECRET, SENT_MS + 300_001),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 300 })
        );
    }

    #[test]
    fn rejects_a_timestamp_from_the_future() {
        assert_eq!(
            check_at_ms(&request(KNOWN), SECRET, SENT_MS - 301_000),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
    }

    #[test]
    fn a_fresh_unsigned_timestamp_header_does_not_renew_a_stale_body() {
        let now = SENT_MS + 3_600_000;
        let replayed = request(KNOWN).with_header("Linear-Timestamp", &now.to_string());
        assert!(matches!(
            check_at_ms(&replayed, SECRET, now),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
    }

    #[test]
    fn rejects_a_signed_body_without_a_timestamp() {
        let body = r#"{"action":"create","type":"Issue"}"#;
        assert!(matches!(
            check_at_ms(&signed_body(body, SECRET), SECRET, SENT_MS),
            Err(AuthFailure::MissingTimestamp { .. })
        ));
    }

    #[test]
    fn rejects_a_timestamp_that_is_not_an_integer_of_milliseconds() {
        for body in [
            r#"{"type":"Issue","webhookTimestamp":"1676056940508"}"#,
            r#"{"type":"Issue","webhookTimestamp":1676056940.508}"#,
            "webhookTimestamp=1676056940508",
        ] {
            assert!(
                matches!(
                    check_at_ms(&signed_body(body, SECRET), SECRET, SENT_MS),
                    Err(AuthFailure::MalformedTimestamp { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn a_timestamp_in_seconds_is_decades_stale() {
        let body = r#"{"type":"Issue","webhookTimestamp":1676056940}"#;
        assert!(matches!(
            check_at_ms(&signed_body(body, SECRET), SECRET, SENT_MS),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
    }

    #[test]
    fn the_signature_is_checked_before_the_timestamp_is_read() {
        let unsigned = r#"{"type":"Issue"}"#;
        let request = InboundRequest::post(unsigned).with_header(SIGNATURE, KNOWN);
        assert_eq!(
            check_at_ms(&request, SECRET, SENT_MS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_key_is_the_delivery_header_and_the_type_the_entity_and_action() {
        let request = request(KNOWN)
            .with_header("Linear-Delivery", "234d1a4e-b617-4388-90fe-adc3633d6b72")
            .with_header("Linear-Event", "Issue");
        let delivery = Linear.describe(&request).unwrap();
        assert_eq!(
            delivery.stable_id.as_deref(),
            Some("234d1a4e-b617-4388-90fe-adc3633d6b72")
        );
        assert_eq!(delivery.event_type, "Issue.create");
    }

    #[test]
    fn a_queued_event_is_acknowledged_with_a_200_as_linear_expects() {
        let delivery = Linear.describe(&request(KNOWN)).unwrap();
        assert_eq!(delivery.handshake, None);
        assert_eq!(delivery.acknowledgement, Some(acknowledgement()));
    }

    #[test]
    fn without_a_delivery_header_the_key_falls_back_to_the_body() {
        assert_eq!(Linear.describe(&request(KNOWN)).unwrap().stable_id, None);
    }

    #[test]
    fn an_event_without_an_action_is_typed_by_its_entity() {
        let request = InboundRequest::post(r#"{"type":"OAuthApp","webhookTimestamp":1}"#);
        assert_eq!(Linear.describe(&request).unwrap().event_type, "OAuthApp");
    }

    #[test]
    fn an_event_without_a_type_or_not_json_is_malformed() {
        let untyped = InboundRequest::post(r#"{"action":"create"}"#);
        assert_eq!(
            Linear.describe(&untyped),
            Err(MalformedRequest::MissingField("type".into()))
        );
        assert!(matches!(
            Linear.describe(&InboundRequest::post("type=Issue")),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }
}
