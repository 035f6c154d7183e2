//! Standard Webhooks (Svix, OpenAI, Resend, Clerk, Replicate, …): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64> [v1,<base64> …]`, HMAC-SHA256 of
//! `{id}.{timestamp}.{body}` with the base64-decoded `whsec_…` secret.
//!
//! Svix's `svix-id`, `svix-timestamp` and `svix-signature` are read when the `webhook-*`
//! headers are absent. Signature entries of other versions (`v1a`, `v2`) are skipped, as the
//! reference libraries do. Deliveries are deduplicated by `webhook-id`, which a resend keeps.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    any_signature_matches, check_window, decode_base64, encode_base64, header, hmac_sha256,
    json_strings, parse_unix_seconds, AuthFailure, Delivery, MalformedRequest, OutgoingDelivery,
    SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyEncoding, KeyRing, SigningKey};

const ID: [&str; 2] = ["webhook-id", "svix-id"];
const TIMESTAMP: [&str; 2] = ["webhook-timestamp", "svix-timestamp"];
const SIGNATURE: [&str; 2] = ["webhook-signature", "svix-signature"];

/// The event type given to a payload without a `type` field.
pub const UNTYPED_EVENT: &str = "webhook";

#[derive(Debug, Clone, Copy, Default)]
pub struct StandardWebhooks;

/// The first of a header's names that the request carries.
fn first_header<'r>(request: &'r InboundRequest, names: [&str; 2]) -> Option<&'r str> {
    names.into_iter().find_map(|name| request.header(name))
}

impl super::sealed::Sealed for StandardWebhooks {}

/// The scheme the provider table names for standard.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(StandardWebhooks))
}

impl SignatureScheme for StandardWebhooks {
    fn provider(&self) -> Provider {
        Provider::Standard
    }

    fn key_encoding(&self) -> KeyEncoding {
        KeyEncoding::StandardWebhooks
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header =
            first_header(request, SIGNATURE).ok_or_else(|| AuthFailure::MissingSignature {
                header: SIGNATURE[0].to_owned(),
            })?;
        let id = first_header(request, ID).ok_or_else(|| AuthFailure::MissingSignedHeader {
            header: ID[0].to_owned(),
        })?;
        let timestamp =
            first_header(request, TIMESTAMP).ok_or_else(|| AuthFailure::MissingTimestamp {
                header: TIMESTAMP[0].to_owned(),
            })?;
        let signed_at =
            parse_unix_seconds(timestamp).ok_or_else(|| AuthFailure::MalformedTimestamp {
                header: TIMESTAMP[0].to_owned(),
            })?;
        check_window(signed_at, now, tolerance)?;

        let v1_entries: Vec<&str> = header
            .split_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .collect();
        if v1_entries.is_empty() {
            return Err(AuthFailure::MalformedSignature {
                header: SIGNATURE[0].to_owned(),
            });
        }
        let candidates: Vec<Vec<u8>> = v1_entries.into_iter().filter_map(decode_base64).collect();
        let signed = [
            id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            &request.body,
        ];
        if any_signature_matches(keys, &candidates, &signed) {
            Ok(())
        } else {
            Err(AuthFailure::SignatureMismatch)
        }
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let id = first_header(request, ID).ok_or_else(|| MalformedRequest::MissingHeader {
            header: ID[0].to_owned(),
        })?;
        let event_type = json_strings(&request.body, ["type"])
            .ok()
            .and_then(|[event_type]| event_type)
            .unwrap_or_else(|| UNTYPED_EVENT.to_owned());
        Ok(Delivery::event(Some(id.to_owned()), event_type))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [ID[0], TIMESTAMP[0], ID[1], TIMESTAMP[1]]
            .map(str::to_owned)
            .to_vec()
    }

    /// The specification's `webhook-*` headers, with one `v1` signature; `key` is the
    /// decoded secret, as [`KeyEncoding::StandardWebhooks`] parses it.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let timestamp = delivery.signed_at.unix_timestamp().to_string();
        let id = delivery.id;
        let signed = [
            id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            delivery.body,
        ];
        let signature = hmac_sha256(key.as_bytes(), &signed);
        vec![
            header(ID[0], id),
            header(TIMESTAMP[0], timestamp),
            header(SIGNATURE[0], format!("v1,{}", encode_base64(&signature))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // The Standard Webhooks Rust library's `test_sign` vector.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID_VALUE: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1_649_367_553;
    const BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const VALID: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn ring(secret: &str) -> KeyRing {
        KeyRing::from_secrets(secret, None, KeyEncoding::StandardWebhooks).unwrap()
    }

    fn request(signature: &str, timestamp: i64) -> InboundRequest {
        InboundRequest::post(BODY)
            .with_header("webhook-id", ID_VALUE)
            .with_header("webhook-timestamp", &timestamp.to_string())
            .with_header("webhook-signature", signature)
    }

    fn check_at(request: &InboundRequest, now: i64) -> Result<(), AuthFailure> {
        StandardWebhooks.check_signature(request, &ring(SECRET), at(now), WINDOW)
    }

    #[test]
    fn accepts_the_specifications_rust_vector() {
        assert_eq!(check_at(&request(VALID, TS), TS), Ok(()));
    }

    #[test]
    fn accepts_the_specifications_python_vector() {
        let request = InboundRequest::post(r#"{"test": 2432232314}"#)
            .with_header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
            .with_header("webhook-timestamp", "1614265330")
            .with_header(
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            );
        let keys = ring("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            StandardWebhooks.check_signature(&request, &keys, at(1_614_265_330), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn rejects_the_specifications_near_miss_and_wrong_signatures() {
        for wrong in [
            "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkx=",
            "v1,",
            &VALID[..8],
        ] {
            assert!(check_at(&request(wrong, TS), TS).is_err(), "{wrong}");
        }
    }

    #[test]
    fn accepts_a_list_of_signatures_containing_one_valid_and_unknown_versions() {
        let others = "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= v2,abc=";
        assert_eq!(
            check_at(
                &request(
                    &format!("{others} {VALID} v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE="),
                    TS
                ),
                TS
            ),
            Ok(())
        );
        assert_eq!(
            check_at(&request(others, TS), TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_list_with_no_v1_signature() {
        assert!(matches!(
            check_at(&request("v1a,jfp5j4J3Buv9EPOcc9Bqo8rJqAO1H6lrRl0WZQdzVZI6IttNPT8HSLyPvUvY54dJJt2BQGA01di1ePvigCwlCw==", TS), TS),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_timestamps_one_second_outside_the_window_either_way() {
        assert!(matches!(
            check_at(&request(VALID, TS), TS + 301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        assert!(matches!(
            check_at(&request(VALID, TS), TS - 301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_made_for_another_timestamp() {
        assert_eq!(
            check_at(&request(VALID, TS + 1), TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_changed_id_body_or_secret() {
        let mut changed_id = request(VALID, TS);
        changed_id
            .headers
            .insert("webhook-id", "msg_other".parse().unwrap());
        assert_eq!(
            check_at(&changed_id, TS),
            Err(AuthFailure::SignatureMismatch)
        );
        let mut changed_body = request(VALID, TS);
        changed_body.body = bytes::Bytes::from(BODY.replace("test_user", "test_usep"));
        assert_eq!(
            check_at(&changed_body, TS),
            Err(AuthFailure::SignatureMismatch)
        );
        let other_secret = StandardWebhooks.check_signature(
            &request(VALID, TS),
            &ring("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            at(TS),
            WINDOW,
        );
        assert_eq!(other_secret, Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn rejects_missing_headers() {
        let no_signature = InboundRequest::post(BODY)
            .with_header("webhook-id", ID_VALUE)
            .with_header("webhook-timestamp", &TS.to_string());
        assert!(matches!(
            check_at(&no_signature, TS),
            Err(AuthFailure::MissingSignature { .. })
        ));
        let mut no_timestamp = request(VALID, TS);
        no_timestamp.headers.remove("webhook-timestamp");
        assert!(matches!(
            check_at(&no_timestamp, TS),
            Err(AuthFailure::MissingTimestamp { .. })
        ));
        let mut no_id = request(VALID, TS);
        no_id.headers.remove("webhook-id");
        assert!(matches!(
            check_at(&no_id, TS),
            Err(AuthFailure::MissingSignedHeader { .. })
        ));
    }

    #[test]
    fn rejects_a_timestamp_that_is_not_unix_seconds() {
        for bad in ["2022-04-07T21:39:13Z", "1649367553.5", "-1649367553", ""] {
            let mut request = request(VALID, TS);
            request
                .headers
                .insert("webhook-timestamp", bad.parse().unwrap());
            let result = check_at(&request, TS);
            assert!(
                matches!(
                    result,
                    Err(AuthFailure::MalformedTimestamp { .. }
                        | AuthFailure::MissingTimestamp { .. })
                ),
                "{bad:?}: {result:?}"
            );
        }
    }

    #[test]
    fn signing_reproduces_the_specifications_rust_vector() {
        let key = SigningKey::parse(SECRET, KeyEncoding::StandardWebhooks).unwrap();
        let delivery = OutgoingDelivery {
            id: ID_VALUE,
            ..outgoing(BODY, TS)
        };
        assert_eq!(
            StandardWebhooks.sign(&delivery, &key),
            [
                ("webhook-id".to_owned(), ID_VALUE.to_owned()),
                ("webhook-timestamp".to_owned(), TS.to_string()),
                ("webhook-signature".to_owned(), VALID.to_owned())
            ]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let key = SigningKey::parse(SECRET, KeyEncoding::StandardWebhooks).unwrap();
        let body = r#"{"type":"response.completed","created_at":1719168000}"#;
        let request = request_with(body, &StandardWebhooks.sign(&outgoing(body, TS), &key));
        assert_eq!(check_at(&request, TS), Ok(()));
        assert!(matches!(
            check_at(&request, TS + 301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        let mut other_id = request.clone();
        other_id
            .headers
            .insert("webhook-id", "msg_other".parse().unwrap());
        assert_eq!(check_at(&other_id, TS), Err(AuthFailure::SignatureMismatch));
        assert_eq!(
            check_at(&with_one_byte_changed(request), TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn svix_branded_headers_are_accepted() {
        let request = InboundRequest::post(BODY)
            .with_header("svix-id", ID_VALUE)
            .with_header("svix-timestamp", &TS.to_string())
            .with_header("svix-signature", VALID);
        assert_eq!(check_at(&request, TS), Ok(()));
        assert_eq!(
            StandardWebhooks
                .describe(&request)
                .unwrap()
                .stable_id
                .as_deref(),
            Some(ID_VALUE)
        );
    }

    #[test]
    fn the_type_comes_from_the_body_when_present() {
        let typed =
            InboundRequest::post(r#"{"type":"email.sent"}"#).with_header("webhook-id", "msg_1");
        assert_eq!(
            StandardWebhooks.describe(&typed).unwrap(),
            Delivery::event(Some("msg_1".into()), "email.sent")
        );
        let untyped = InboundRequest::post("plain text").with_header("webhook-id", "msg_2");
        assert_eq!(
            StandardWebhooks.describe(&untyped).unwrap().event_type,
            UNTYPED_EVENT
        );
    }
}
