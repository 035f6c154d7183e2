//! GitLab: the webhook's secret token, sent as it is in `X-Gitlab-Token` and compared in
//! constant time; or, for a webhook with a signing token (`whsec_…`), a Standard Webhooks
//! signature (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`).
//!
//! A secret token proves who sent a delivery but not what: it does not depend on the body,
//! so a captured delivery can be replayed with any body. GitLab's signing tokens (merge
//! requests gitlab-org/gitlab!230944 and !231325; `whsec_` and base64 of a 32-byte key) sign
//! `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 exactly as Standard Webhooks
//! does, so they are checked by [`StandardWebhooks`] itself, window included. `webhook-id`
//! is the delivery's `Idempotency-Key`.
//!
//! The receiver's ring is read with [`KeyEncoding::Raw`], as a secret token is any text; a
//! secret that is a Standard Webhooks key (`whsec_` then base64) is taken for a signing
//! token and decoded here. A ring may hold one of each while moving from a token to a
//! signing token: a delivery with a `webhook-signature` is then held to it (a good token
//! does not rescue a bad signature), one without is held to the token. A ring of signing
//! tokens only refuses a token-only delivery.
//!
//! Deduplication is by `Idempotency-Key` (kept across retries, GitLab 17.4 and later), else
//! `X-Gitlab-Event-UUID`. Neither is covered by a secret token, so the processor also
//! deduplicates by the body. The type is the body's `object_kind` (`push`,
//! `merge_request`…), else the `X-Gitlab-Event` header (`Push Hook`).

use std::time::Duration;

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::standard::StandardWebhooks;
use super::{
    header, json_strings, signature_header, AuthFailure, Delivery, MalformedRequest,
    OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyEncoding, KeyRing, SigningKey};

const TOKEN: &str = "x-gitlab-token";
const EVENT: &str = "x-gitlab-event";
const EVENT_UUID: &str = "x-gitlab-event-uuid";
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const WEBHOOK_SIGNATURE: &str = "webhook-signature";

#[derive(Debug, Clone, Copy, Default)]
pub struct Gitlab;

impl super::sealed::Sealed for Gitlab {}

/// The scheme the provider table names for gitlab.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Gitlab))
}

/// The signing token a configured secret is, decoded, when it is one.
fn signing_token(key: &SigningKey) -> Option<SigningKey> {
    let secret = std::str::from_utf8(key.as_bytes()).ok()?;
    if !secret.starts_with("whsec_") {
        return None;
    }
    SigningKey::parse(secret, KeyEncoding::StandardWebhooks).ok()
}

/// The ring's signing tokens, decoded into a ring of their own, and its secret tokens.
fn split(keys: &KeyRing) -> (Option<KeyRing>, Vec<&SigningKey>) {
    let mut signing = Vec::new();
    let mut tokens = Vec::new();
    for key in keys.keys() {
        match signing_token(key) {
            Some(decoded) => signing.push(decoded),
            None => tokens.push(key),
        }
    }
    let mut signing = signing.into_iter();
    let ring = signing
        .next()
        .map(|current| KeyRing::new(current, signing.next()));
    (ring, tokens)
}

impl SignatureScheme for Gitlab {
    fn provider(&self) -> Provider {
        Provider::Gitlab
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let (signing, tokens) = split(keys);
        if let Some(signing) = signing {
            if tokens.is_empty() || request.header(WEBHOOK_SIGNATURE).is_some() {
                return StandardWebhooks.check_signature(request, &signing, now, tolerance);
            }
        }
        let token = signature_header(request, TOKEN)?;
        if tokens
            .iter()
            .any(|key| bool::from(token.as_bytes().ct_eq(key.as_bytes())))
        {
            Ok(())
        } else {
            Err(AuthFailure::SignatureMismatch)
        }
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let id = request
            .header(IDEMPOTENCY_KEY)
            .or_else(|| request.header(EVENT_UUID))
            .map(str::to_owned);
        let object_kind = json_strings(&request.body, ["object_kind"])
            .ok()
            .and_then(|[kind]| kind);
        let event_type = object_kind
            .or_else(|| request.header(EVENT).map(str::to_owned))
            .ok_or_else(|| MalformedRequest::MissingHeader {
                header: EVENT.to_owned(),
            })?;
        Ok(Delivery::event(id, event_type))
    }

    /// A secret token covers no id; with a signing token `webhook-id` (the
    /// `Idempotency-Key`) is signed, but one ring may hold both kinds, so this cannot be
    /// promised for every delivery.
    fn signs_stable_id(&self) -> bool {
        false
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [
            EVENT,
            EVENT_UUID,
            "x-gitlab-webhook-uuid",
            "x-gitlab-instance",
            IDEMPOTENCY_KEY,
            "webhook-id",
            "webhook-timestamp",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `X-Gitlab-Token` with the secret for a secret token; the Standard Webhooks headers,
    /// with `delivery.id` as `webhook-id`, for a signing token.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        if let Some(signing) = signing_token(key) {
            return StandardWebhooks.sign(delivery, &signing);
        }
        match std::str::from_utf8(key.as_bytes()) {
            Ok(token) => vec![header(TOKEN, token)],
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    const TOKEN_SECRET: &str = "hookgate-unit-gitlab-token";
    const PUSH: &str = r#"{"object_kind":"push","event_name":"push","ref":"refs/heads/main","total_commits_count":1}"#;

    // The Standard Webhooks Rust library's `test_sign` vector: GitLab's signing tokens are
    // that scheme, and GitLab publishes no vector of its own.
    const SIGNING_TOKEN: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SIGNED_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SIGNED_TS: i64 = 1_649_367_553;
    const SIGNED_BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn with_token(token: &str) -> InboundRequest {
        InboundRequest::post(PUSH)
            .with_header("X-Gitlab-Token", token)
            .with_header("X-Gitlab-Event", "Push Hook")
    }

    fn signed(signature: &str) -> InboundRequest {
        InboundRequest::post(SIGNED_BODY)
            .with_header("webhook-id", SIGNED_ID)
            .with_header("webhook-timestamp", &SIGNED_TS.to_string())
            .with_header("webhook-signature", signature)
    }

    fn check(
        request: &InboundRequest,
        current: &str,
        previous: Option<&str>,
    ) -> Result<(), AuthFailure> {
        let ring = KeyRing::from_secrets(current, previous, KeyEncoding::Raw).unwrap();
        Gitlab.check_signature(request, &ring, at(SIGNED_TS), WINDOW)
    }

    #[test]
    fn accepts_the_secret_token() {
        assert_eq!(check(&with_token(TOKEN_SECRET), TOKEN_SECRET, None), Ok(()));
    }

    #[test]
    fn rejects_a_missing_token() {
        let request = InboundRequest::post(PUSH).with_header("X-Gitlab-Event", "Push Hook");
        assert_eq!(
            check(&request, TOKEN_SECRET, None),
            Err(AuthFailure::MissingSignature {
                header: TOKEN.into()
            })
        );
    }

    #[test]
    fn rejects_another_token() {
        for wrong in [
            "hookgate-unit-gitlab-tokeN",
            "hookgate-unit-gitlab-token2",
            "",
            "hookgate",
        ] {
            assert_eq!(
                check(&with_token(wrong), TOKEN_SECRET, None),
                Err(AuthFailure::SignatureMismatch),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn the_previous_token_still_verifies_during_a_rotation() {
        assert_eq!(
            check(
                &with_token(TOKEN_SECRET),
                "hookgate-unit-new-token",
                Some(TOKEN_SECRET)
            ),
            Ok(())
        );
    }

    #[test]
    fn a_token_does_not_cover_the_body() {
        let request = with_one_byte_changed(with_token(TOKEN_SECRET));
        assert_eq!(check(&request, TOKEN_SECRET, None), Ok(()));
    }

    #[test]
    fn accepts_a_standard_webhooks_signature_made_with_the_signing_token() {
        assert_eq!(check(&signed(SIGNATURE), SIGNING_TOKEN, None), Ok(()));
    }

    #[test]
    fn rejects_a_signature_made_with_another_signing_token() {
        assert_eq!(
            check(
                &signed(SIGNATURE),
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                None
            ),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_signed_delivery_whose_body_changed() {
        let mut request = signed(SIGNATURE);
        request.body = bytes::Bytes::from(SIGNED_BODY.replace("test_user", "test_usep"));
        assert_eq!(
            check(&request, SIGNING_TOKEN, None),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_malformed_signature_header() {
        assert!(matches!(
            check(
                &signed("tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="),
                SIGNING_TOKEN,
                None
            ),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_stale_signed_timestamp() {
        let ring = KeyRing::from_secrets(SIGNING_TOKEN, None, KeyEncoding::Raw).unwrap();
        assert!(matches!(
            Gitlab.check_signature(&signed(SIGNATURE), &ring, at(SIGNED_TS + 301), WINDOW),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        ));
    }

    #[test]
    fn rejects_a_future_signed_timestamp() {
        let ring = KeyRing::from_secrets(SIGNING_TOKEN, None, KeyEncoding::Raw).unwrap();
        assert!(matches!(
            Gitlab.check_signature(&signed(SIGNATURE), &ring, at(SIGNED_TS - 301), WINDOW),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        ));
    }

    #[test]
    fn a_signing_token_alone_refuses_a_delivery_with_only_a_secret_token() {
        assert_eq!(
            check(&with_token(SIGNING_TOKEN), SIGNING_TOKEN, None),
            Err(AuthFailure::MissingSignature {
                header: WEBHOOK_SIGNATURE.into()
            })
        );
    }

    #[test]
    fn while_moving_to_a_signing_token_a_token_only_delivery_is_still_accepted() {
        assert_eq!(
            check(&with_token(TOKEN_SECRET), SIGNING_TOKEN, Some(TOKEN_SECRET)),
            Ok(())
        );
        assert_eq!(
            check(&signed(SIGNATURE), SIGNING_TOKEN, Some(TOKEN_SECRET)),
            Ok(())
        );
    }

    #[test]
    fn a_good_token_does_not_rescue_a_bad_signature() {
        let request = signed("v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=")
            .with_header("X-Gitlab-Token", TOKEN_SECRET);
        assert_eq!(
            check(&request, SIGNING_TOKEN, Some(TOKEN_SECRET)),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn a_whsec_secret_that_is_not_base64_is_a_secret_token() {
        let odd = "whsec_not base64!";
        assert_eq!(check(&with_token(odd), odd, None), Ok(()));
    }

    #[test]
    fn signing_with_a_token_sends_the_token() {
        assert_eq!(
            Gitlab.sign(&outgoing(PUSH, SIGNED_TS), &raw_key(TOKEN_SECRET)),
            [(TOKEN.to_owned(), TOKEN_SECRET.to_owned())]
        );
    }

    #[test]
    fn signing_with_a_signing_token_reproduces_the_standard_webhooks_vector() {
        let delivery = OutgoingDelivery {
            id: SIGNED_ID,
            ..outgoing(SIGNED_BODY, SIGNED_TS)
        };
        assert_eq!(
            Gitlab.sign(&delivery, &raw_key(SIGNING_TOKEN)),
            [
                ("webhook-id".to_owned(), SIGNED_ID.to_owned()),
                ("webhook-timestamp".to_owned(), SIGNED_TS.to_string()),
                ("webhook-signature".to_owned(), SIGNATURE.to_owned())
            ]
        );
    }

    #[test]
    fn a_delivery_signed_with_a_signing_token_verifies_until_stale_or_tampered_with() {
        let key = raw_key("whsec_aG9va2dhdGUtdGVzdC1naXRsYWItc2lnbmluZy10b2tlbg==");
        let request = request_with(PUSH, &Gitlab.sign(&outgoing(PUSH, 1_000), &key));
        let ring = KeyRing::new(key, None);
        let check_at =
            |request: &InboundRequest, now| Gitlab.check_signature(request, &ring, at(now), WINDOW);
        assert_eq!(check_at(&request, 1_000), Ok(()));
        assert!(matches!(
            check_at(&request, 1_301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        assert_eq!(
            check_at(&with_one_byte_changed(request), 1_000),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_id_is_the_idempotency_key_else_the_event_uuid() {
        let both = with_token(TOKEN_SECRET)
            .with_header("Idempotency-Key", "0d9ab8f2-4fdc-4c3a-9d8b-23e8f5b3a0c1")
            .with_header(
                "X-Gitlab-Event-UUID",
                "7a3c3f55-2f3c-4f6e-9d1a-8c1f0e2b9d44",
            );
        assert_eq!(
            Gitlab.describe(&both).unwrap(),
            Delivery::event(Some("0d9ab8f2-4fdc-4c3a-9d8b-23e8f5b3a0c1".into()), "push")
        );
        let uuid_only = with_token(TOKEN_SECRET).with_header(
            "X-Gitlab-Event-UUID",
            "7a3c3f55-2f3c-4f6e-9d1a-8c1f0e2b9d44",
        );
        assert_eq!(
            Gitlab.describe(&uuid_only).unwrap().stable_id.as_deref(),
            Some("7a3c3f55-2f3c-4f6e-9d1a-8c1f0e2b9d44")
        );
    }

    #[test]
    fn a_delivery_without_an_id_is_keyed_by_its_body() {
        assert_eq!(
            Gitlab
                .describe(&with_token(TOKEN_SECRET))
                .unwrap()
                .stable_id,
            None
        );
    }

    #[test]
    fn the_type_is_the_object_kind_else_the_event_header() {
        let no_kind = InboundRequest::post(r#"{"ref":"refs/heads/main"}"#)
            .with_header("X-Gitlab-Event", "Push Hook");
        assert_eq!(Gitlab.describe(&no_kind).unwrap().event_type, "Push Hook");
        let not_json =
            InboundRequest::post("ref=main").with_header("X-Gitlab-Event", "System Hook");
        assert_eq!(
            Gitlab.describe(&not_json).unwrap().event_type,
            "System Hook"
        );
    }

    #[test]
    fn a_delivery_with_neither_object_kind_nor_event_header_is_malformed() {
        assert_eq!(
            Gitlab.describe(&InboundRequest::post("{}")),
            Err(MalformedRequest::MissingHeader {
                header: EVENT.into()
            })
        );
    }

    #[test]
    fn the_token_is_never_forwarded() {
        let forwarded = Gitlab.forwarded_headers();
        assert!(!forwarded.iter().any(|name| name == TOKEN), "{forwarded:?}");
        assert!(forwarded.iter().any(|name| name == IDEMPOTENCY_KEY));
    }
}
