//! Standard Webhooks (Svix, OpenAI, Resend, Clerk, Replicate, …): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64> [v1a,<base64> …]` over
//! `{id}.{timestamp}.{body}`.
//!
//! Two signature versions, as the specification defines them (standard-webhooks
//! `spec/standard-webhooks.md`, "Signature scheme" and its symmetric/asymmetric table):
//! `v1` is HMAC-SHA256 with the base64-decoded `whsec_…` secret; `v1a` is Ed25519, checked
//! with a `whpk_…` public key (base64 of the 32-byte key; signed with the matching `whsk_…`
//! secret key). A ring may mix the two kinds, so a sender can move from one to the other:
//! each entry of the header is checked with the keys of its kind. The reference libraries
//! implement `v1` only; the `v1a` vector in the tests was computed from the specification's
//! text with another Ed25519 implementation (Python's `cryptography`).
//!
//! Svix's `svix-id`, `svix-timestamp` and `svix-signature` are read when the `webhook-*`
//! headers are absent. Entries of other versions (`v2`) are skipped, as the reference
//! libraries do, and so are entries of a version no configured key can check: a header with
//! nothing left to check is malformed. Deliveries are deduplicated by `webhook-id`, which a
//! resend keeps.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    any_ed25519_key_verifies, any_signature_matches, check_window, decode_base64, ed25519_sign,
    encode_base64, header, hmac_sha256, json_strings, parse_unix_seconds, AuthFailure, Delivery,
    MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyEncoding, KeyKind, KeyRing, SigningKey};

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

        let has_kind = |kind| keys.keys().any(|key| key.kind() == kind);
        let (hmac, ed25519) = (has_kind(KeyKind::Hmac), has_kind(KeyKind::Ed25519Public));
        let mut v1 = Vec::new();
        let mut v1a = Vec::new();
        let mut checkable = false;
        for entry in header.split_whitespace() {
            match entry.split_once(',') {
                Some(("v1", signature)) if hmac => {
                    checkable = true;
                    v1.extend(decode_base64(signature));
                }
                Some(("v1a", signature)) if ed25519 => {
                    checkable = true;
                    v1a.extend(decode_ed25519_signature(signature));
                }
                _ => {}
            }
        }
        if !checkable {
            return Err(AuthFailure::MalformedSignature {
                header: SIGNATURE[0].to_owned(),
            });
        }
        let signed = [
            id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            &request.body,
        ];
        if any_signature_matches(keys, &v1, &signed) || any_v1a_verifies(keys, &v1a, &signed) {
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

    /// The specification's `webhook-*` headers, with one signature: `v1` for an HMAC key
    /// (the decoded `whsec_…`), `v1a` for an Ed25519 secret key (`whsk_…`), as
    /// [`KeyEncoding::StandardWebhooks`] parses them. A key of another kind signs nothing.
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
        let signature = match key.kind() {
            KeyKind::Hmac => format!(
                "v1,{}",
                encode_base64(&hmac_sha256(key.as_bytes(), &signed))
            ),
            KeyKind::Ed25519Seed => match ed25519_sign(key, &signed.concat()) {
                Some(signature) => format!("v1a,{}", encode_base64(&signature)),
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        vec![
            header(ID[0], id),
            header(TIMESTAMP[0], timestamp),
            header(SIGNATURE[0], signature),
        ]
    }
}

/// A `v1a` entry: standard base64 (padded, as the specification's example is) of a 64-byte
/// Ed25519 signature. Anything else can never verify, and is dropped like an undecodable `v1`.
fn decode_ed25519_signature(value: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .filter(|bytes| bytes.len() == 64)
}

/// Whether any `v1a` candidate is an Ed25519 signature of the signed content by any public
/// key of the ring. Ed25519 signs the message whole, so the parts are joined once.
fn any_v1a_verifies(keys: &KeyRing, candidates: &[Vec<u8>], signed: &[&[u8]]) -> bool {
    if candidates.is_empty() {
        return false;
    }
    let message = signed.concat();
    candidates
        .iter()
        .any(|signature| any_ed25519_key_verifies(keys, &message, signature))
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

    // `v1a`: the RFC 8032 TEST 1 key pair (seed `9d61b1…7f60`, public `d75a98…511a`) in the
    // specification's `whsk_`/`whpk_` serialisation, signing the Rust vector's id, timestamp
    // and body. No reference library implements `v1a`: the signature was computed from the
    // specification's text with Python's `cryptography` Ed25519, not with this code.
    const PUBLIC_KEY: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const SECRET_KEY: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
    const VALID_V1A: &str = "v1a,jfp5j4J3Buv9EPOcc9Bqo8rJqAO1H6lrRl0WZQdzVZI6IttNPT8HSLyPvUvY54dJJt2BQGA01di1ePvigCwlCw==";
    /// RFC 8032 TEST 2's public key: well-formed, not the pair of [`SECRET_KEY`].
    const OTHER_PUBLIC_KEY: &str = "whpk_PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=";

    fn check_with(
        request: &InboundRequest,
        current: &str,
        previous: Option<&str>,
    ) -> Result<(), AuthFailure> {
        let ring = KeyRing::from_secrets(current, previous, KeyEncoding::StandardWebhooks).unwrap();
        StandardWebhooks.check_signature(request, &ring, at(TS), WINDOW)
    }

    #[test]
    fn accepts_the_v1a_vector_with_its_public_key() {
        assert_eq!(
            check_with(&request(VALID_V1A, TS), PUBLIC_KEY, None),
            Ok(())
        );
    }

    #[test]
    fn a_ring_mixing_a_secret_and_a_public_key_accepts_either_signature() {
        for (current, previous) in [(SECRET, PUBLIC_KEY), (PUBLIC_KEY, SECRET)] {
            for signature in [
                VALID,
                VALID_V1A,
                &format!("v1,{} {VALID_V1A}", &VALID[3..10]),
            ] {
                assert_eq!(
                    check_with(&request(signature, TS), current, Some(previous)),
                    Ok(()),
                    "{signature}"
                );
            }
        }
    }

    #[test]
    fn rejects_a_v1a_signature_checked_with_another_public_key() {
        assert_eq!(
            check_with(&request(VALID_V1A, TS), OTHER_PUBLIC_KEY, None),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_v1a_signature_of_another_id_timestamp_or_body() {
        let mut other_id = request(VALID_V1A, TS);
        other_id
            .headers
            .insert("webhook-id", "msg_other".parse().unwrap());
        let other_timestamp = request(VALID_V1A, TS + 1);
        let mut other_body = request(VALID_V1A, TS);
        other_body.body = bytes::Bytes::from(BODY.replace("test_user", "test_usep"));
        for changed in [other_id, other_timestamp, other_body] {
            assert_eq!(
                check_with(&changed, PUBLIC_KEY, None),
                Err(AuthFailure::SignatureMismatch)
            );
        }
    }

    #[test]
    fn a_v1a_entry_that_is_not_a_64_byte_signature_never_matches() {
        let unpadded = VALID_V1A.trim_end_matches('=');
        for malformed in ["v1a,", "v1a,not base64", unpadded, &VALID_V1A[..40]] {
            assert_eq!(
                check_with(&request(malformed, TS), PUBLIC_KEY, None),
                Err(AuthFailure::SignatureMismatch),
                "{malformed}"
            );
        }
    }

    #[test]
    fn rejects_a_list_with_no_v1a_signature_when_the_ring_holds_public_keys_only() {
        assert!(matches!(
            check_with(&request(VALID, TS), PUBLIC_KEY, None),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn a_public_key_is_never_used_as_an_hmac_key() {
        // HMAC-SHA256 of the signed content under the public key's 32 bytes (Python's hmac):
        // anyone can compute it, so it must prove nothing.
        let forged = "v1,COayEI8SGv82kfh2m9s2ekPF9Mp5eNkYRR35qkmGk3w=";
        assert_eq!(
            check_with(&request(forged, TS), SECRET, Some(PUBLIC_KEY)),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn signing_with_a_secret_key_reproduces_the_v1a_vector() {
        let key = SigningKey::parse(SECRET_KEY, KeyEncoding::StandardWebhooks).unwrap();
        let delivery = OutgoingDelivery {
            id: ID_VALUE,
            ..outgoing(BODY, TS)
        };
        assert_eq!(
            StandardWebhooks.sign(&delivery, &key),
            [
                ("webhook-id".to_owned(), ID_VALUE.to_owned()),
                ("webhook-timestamp".to_owned(), TS.to_string()),
                ("webhook-signature".to_owned(), VALID_V1A.to_owned())
            ]
        );
    }

    #[test]
    fn a_v1a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let key = SigningKey::parse(SECRET_KEY, KeyEncoding::StandardWebhooks).unwrap();
        let body = r#"{"type":"response.completed","created_at":1719168000}"#;
        let request = request_with(body, &StandardWebhooks.sign(&outgoing(body, TS), &key));
        let ring = KeyRing::from_secrets(PUBLIC_KEY, None, KeyEncoding::StandardWebhooks).unwrap();
        let check_at = |request: &InboundRequest, now| {
            StandardWebhooks.check_signature(request, &ring, at(now), WINDOW)
        };
        assert_eq!(check_at(&request, TS), Ok(()));
        assert!(matches!(
            check_at(&request, TS + 301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        assert_eq!(
            check_at(&with_one_byte_changed(request), TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn a_public_key_signs_nothing() {
        let key = SigningKey::parse(PUBLIC_KEY, KeyEncoding::StandardWebhooks).unwrap();
        assert_eq!(StandardWebhooks.sign(&outgoing(BODY, TS), &key), []);
    }
}
