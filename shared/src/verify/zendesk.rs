//! Zendesk: `X-Zendesk-Webhook-Signature: <base64>`, HMAC-SHA256 of the
//! `X-Zendesk-Webhook-Signature-Timestamp` header's text followed directly by the raw body
//! (`base64(HMACSHA256(TIMESTAMP + BODY))`, developer.zendesk.com, "Verifying webhook
//! authenticity"), with the webhook's signing secret as its literal bytes.
//!
//! The timestamp is an RFC 3339 time (`2021-05-07T18:57:33Z`), not unix seconds; it is signed
//! as the exact text sent and must be within the window of now. An older revision of
//! Zendesk's page wrote `(BODY)(TIMESTAMP)` and gave an example signed that way; the current
//! page, its code sample and deliveries put the timestamp first (a test keeps the old example
//! refused).
//!
//! A webhook subscribed to Zendesk events gets a JSON event whose `type` starts with
//! `zen:event-type:` and whose `id` is the event's, kept by every retry: that signed `id` is
//! the key, and `type` the type. A webhook connected to a trigger or an automation sends
//! whatever body the admin wrote (JSON, XML or a form, perhaps none), with no event id: it
//! is keyed by the body's hash, which the attempts of one invocation share, the signing time
//! being in a header rather than in the body, and typed `conditional_ticket_events`, the
//! subscription Zendesk gives such webhooks. `X-Zendesk-Webhook-Invocation-Id` is
//! retry-stable too (the Webhooks API lists the attempts of each invocation) but is outside
//! the signature: it is forwarded, not keyed on.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{
    check_hmac, check_window, decode_base64, encode_base64, header, hmac_sha256, json_strings,
    signature_header, AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-zendesk-webhook-signature";
const TIMESTAMP: &str = "x-zendesk-webhook-signature-timestamp";
const INVOCATION: &str = "x-zendesk-webhook-invocation-id";
/// The prefix of the `type` of every Zendesk event payload.
const EVENT_TYPE_PREFIX: &str = "zen:event-type:";
/// The type given to a trigger's or an automation's request, after the subscription Zendesk
/// gives webhooks connected to them.
pub const CONDITIONAL_TICKET_EVENTS: &str = "conditional_ticket_events";

#[derive(Debug, Clone, Copy, Default)]
pub struct Zendesk;

impl super::sealed::Sealed for Zendesk {}

/// The scheme the provider table names for zendesk.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Zendesk))
}

/// `2021-05-07T18:57:33Z`: the signing time to the second, in UTC, as Zendesk writes it.
fn zendesk_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

impl SignatureScheme for Zendesk {
    fn provider(&self) -> Provider {
        Provider::Zendesk
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signature = decode_base64(header).ok_or_else(|| AuthFailure::MalformedSignature {
            header: SIGNATURE.to_owned(),
        })?;
        let timestamp = request
            .header(TIMESTAMP)
            .ok_or_else(|| AuthFailure::MissingTimestamp {
                header: TIMESTAMP.to_owned(),
            })?;
        let signed_at = OffsetDateTime::parse(timestamp, &Rfc3339).map_err(|_| {
            AuthFailure::MalformedTimestamp {
                header: TIMESTAMP.to_owned(),
            }
        })?;
        check_window(signed_at.unix_timestamp(), now, tolerance)?;
        check_hmac(keys, &[signature], &[timestamp.as_bytes(), &request.body])
    }

    /// Never malformed: a trigger's body may be anything, even empty.
    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let [event_type, id] = json_strings(&request.body, ["type", "id"]).unwrap_or_default();
        match event_type {
            Some(event_type) if event_type.starts_with(EVENT_TYPE_PREFIX) => {
                Ok(Delivery::event(id, event_type))
            }
            _ => Ok(Delivery::event(None, CONDITIONAL_TICKET_EVENTS)),
        }
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [
            TIMESTAMP,
            INVOCATION,
            "x-zendesk-webhook-id",
            "x-zendesk-account-id",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let timestamp = zendesk_time(delivery.signed_at);
        let signature = hmac_sha256(key.as_bytes(), &[timestamp.as_bytes(), delivery.body]);
        vec![
            header(TIMESTAMP, timestamp),
            header(SIGNATURE, encode_base64(&signature)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // Not published by Zendesk: computed from the documented algorithm with python3's hmac,
    // and kept in /work/shared/provider-vectors.md.
    const SECRET: &str = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ";
    const TS: &str = "2021-05-07T18:57:33Z";
    const T: i64 = 1_620_413_853;
    const BODY: &str = r#"{"type":"zen:event-type:ticket.created"}"#;
    const KNOWN: &str = "vM38KUmPkqW9KSRzORMdRWk5at4wq7hovsyRA5Kej0M=";

    fn request(signature: &str, timestamp: &str) -> InboundRequest {
        InboundRequest::post(BODY)
            .with_header("X-Zendesk-Webhook-Signature", signature)
            .with_header("X-Zendesk-Webhook-Signature-Timestamp", timestamp)
    }

    fn check_at(request: &InboundRequest, secret: &str, now: i64) -> Result<(), AuthFailure> {
        Zendesk.check_signature(request, &keys(secret), at(now), WINDOW)
    }

    #[test]
    fn the_timestamp_is_the_unix_time_the_vector_was_signed_at() {
        assert_eq!(
            OffsetDateTime::parse(TS, &Rfc3339)
                .unwrap()
                .unix_timestamp(),
            T
        );
    }

    #[test]
    fn accepts_the_known_answer_vector() {
        assert_eq!(check_at(&request(KNOWN, TS), SECRET, T), Ok(()));
    }

    #[test]
    fn signing_reproduces_the_known_answer_vector() {
        let headers = Zendesk.sign(&outgoing(BODY, T), &raw_key(SECRET));
        assert_eq!(
            headers,
            [
                (TIMESTAMP.to_owned(), TS.to_owned()),
                (SIGNATURE.to_owned(), KNOWN.to_owned())
            ]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let request = request_with(BODY, &Zendesk.sign(&outgoing(BODY, T), &raw_key(SECRET)));
        assert_eq!(check_at(&request, SECRET, T), Ok(()));
        assert_eq!(
            check_at(&request, SECRET, T + 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
        let mut tampered = request;
        tampered.body = bytes::Bytes::from(BODY.replace("created", "creates"));
        assert_eq!(
            check_at(&tampered, SECRET, T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn refuses_the_body_then_timestamp_order_of_an_older_revision_of_zendesks_page() {
        // The example that revision gave: its signature is over `{BODY}{TIMESTAMP}`
        // (checked with python3's hmac), the order Zendesk does not sign in.
        let secret = "HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA=";
        let timestamp = "2021-07-25T10:00:00Z";
        let now = OffsetDateTime::parse(timestamp, &Rfc3339)
            .unwrap()
            .unix_timestamp();
        let old_example = InboundRequest::post(r#"{"say": "hello"}"#)
            .with_header(SIGNATURE, "tRDSF7URY8BLCDlaBcQ7FHu051Zk+aAB0NKMP53teMw=")
            .with_header(TIMESTAMP, timestamp);
        assert_eq!(
            check_at(&old_example, secret, now),
            Err(AuthFailure::SignatureMismatch)
        );
        // The same inputs, timestamp first (python3's hmac again).
        let mut timestamp_first = old_example;
        timestamp_first.headers.insert(
            SIGNATURE,
            "Rry/4TtIdFyawtXXp8QdI6tlAUUQ/5kL1OTp5qo/ZIk="
                .parse()
                .unwrap(),
        );
        assert_eq!(check_at(&timestamp_first, secret, now), Ok(()));
    }

    #[test]
    fn rejects_a_missing_signature() {
        let request = InboundRequest::post(BODY).with_header(TIMESTAMP, TS);
        assert!(matches!(
            check_at(&request, SECRET, T),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_that_is_not_base64_of_32_bytes() {
        let hex_signature = hex_hmac(SECRET, format!("{TS}{BODY}").as_bytes());
        for bad in ["not base64!", &KNOWN[..40], hex_signature.as_str()] {
            assert!(
                matches!(
                    check_at(&request(bad, TS), SECRET, T),
                    Err(AuthFailure::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_a_missing_timestamp() {
        let request = InboundRequest::post(BODY).with_header(SIGNATURE, KNOWN);
        assert!(matches!(
            check_at(&request, SECRET, T),
            Err(AuthFailure::MissingTimestamp { .. })
        ));
    }

    #[test]
    fn rejects_a_timestamp_that_is_not_an_rfc_3339_time() {
        for bad in [
            "1620413853",
            "2021-05-07 18:57:33",
            "Fri, 07 May 2021 18:57:33 GMT",
        ] {
            assert!(
                matches!(
                    check_at(&request(KNOWN, bad), SECRET, T),
                    Err(AuthFailure::MalformedTimestamp { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_a_stale_timestamp() {
        assert_eq!(
            check_at(&request(KNOWN, TS), SECRET, T + 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
    }

    #[test]
    fn rejects_a_timestamp_from_the_future() {
        assert_eq!(
            check_at(&request(KNOWN, TS), SECRET, T - 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
    }

    #[test]
    fn rejects_a_signature_made_for_another_timestamp() {
        assert_eq!(
            check_at(&request(KNOWN, "2021-05-07T18:57:34Z"), SECRET, T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_same_instant_written_otherwise_is_another_signed_text() {
        assert_eq!(
            check_at(&request(KNOWN, "2021-05-07T18:57:33+00:00"), SECRET, T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_signature_made_with_another_secret() {
        assert_eq!(
            check_at(&request(KNOWN, TS), "another-signing-secret", T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_body_with_one_byte_changed() {
        let body = r#"{"type":"zen:event-type:ticket.created","account_id":22129848}"#;
        let request = request_with(body, &Zendesk.sign(&outgoing(body, T), &raw_key(SECRET)));
        assert_eq!(
            check_at(&with_one_byte_changed(request), SECRET, T),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn an_event_is_keyed_by_its_id_and_typed_by_its_type() {
        let request = InboundRequest::post(
            r#"{"account_id":22129848,"id":"cbe4028c-7239-495d-b020-f22348516046","subject":"zen:ticket:5158","type":"zen:event-type:ticket.created"}"#,
        )
        .with_header(INVOCATION, "8350205582");
        assert_eq!(
            Zendesk.describe(&request).unwrap(),
            Delivery::event(
                Some("cbe4028c-7239-495d-b020-f22348516046".into()),
                "zen:event-type:ticket.created"
            )
        );
    }

    #[test]
    fn an_event_without_an_id_is_keyed_by_its_body() {
        assert_eq!(
            Zendesk.describe(&InboundRequest::post(BODY)).unwrap(),
            Delivery::event(None, "zen:event-type:ticket.created")
        );
    }

    #[test]
    fn a_triggers_own_body_is_keyed_by_its_hash_whatever_id_it_has() {
        for body in [
            r#"{"id":"5158","type":"incident","status":"open"}"#,
            "<ticket><id>5158</id></ticket>",
            "ticket_id=5158",
            "",
        ] {
            let request = InboundRequest::post(body).with_header(INVOCATION, "8350205582");
            assert_eq!(
                Zendesk.describe(&request).unwrap(),
                Delivery::event(None, CONDITIONAL_TICKET_EVENTS),
                "{body}"
            );
        }
    }
}
