//! Properties every scheme keeps, whatever it is given (proptest, on stable, in the normal
//! suite; `fuzz/` runs the same questions under a coverage-guided fuzzer):
//!
//! - any headers and any body: verification answers, and never panics;
//! - a body signed as the provider signs it always verifies;
//! - a single bit changed anywhere in that body never does.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use time::OffsetDateTime;

use super::generic::Generic;
use super::github::Github;
use super::shopify::Shopify;
use super::slack::Slack;
use super::standard::StandardWebhooks;
use super::stripe::Stripe;
use super::{verify, OutgoingDelivery, SignatureScheme};
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const WINDOW: Duration = Duration::from_secs(300);
const NOW: i64 = 1_800_000_000;

/// Every scheme, the generic one in the styles its settings allow, each with a secret.
fn schemes() -> Vec<(String, Box<dyn SignatureScheme>, &'static str)> {
    let generic = |settings: &[(&str, &str)]| -> Box<dyn SignatureScheme> {
        let env: HashMap<&str, &str> = settings.iter().copied().collect();
        Box::new(Generic::from_env(&env).expect("valid generic settings"))
    };
    vec![
        ("github".into(), Box::new(Github), "property-secret"),
        ("stripe".into(), Box::new(Stripe), "whsec_property"),
        ("shopify".into(), Box::new(Shopify), "property-secret"),
        ("slack".into(), Box::new(Slack), "property-secret"),
        (
            "standard".into(),
            Box::new(StandardWebhooks),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("generic hex".into(), generic(&[]), "property-secret"),
        (
            "generic base64 with a prefix, a timestamp and a signed id".into(),
            generic(&[
                ("SIGNATURE_ENCODING", "base64"),
                ("SIGNATURE_PREFIX", "v1="),
                ("TIMESTAMP_HEADER", "x-timestamp"),
                ("ID_HEADER", "x-id"),
                ("SIGNED_CONTENT", "{id}:{timestamp}:{body}"),
            ]),
            "property-secret",
        ),
    ]
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time")
}

/// Header names any scheme reads, and a few no scheme does.
const NAMES: [&str; 20] = [
    "x-hub-signature-256",
    "x-github-delivery",
    "x-github-event",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-shopify-topic",
    "x-shopify-webhook-id",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-signature",
    "x-signature",
    "x-timestamp",
    "x-id",
    "content-type",
    "user-agent",
    "x-unrelated",
    "authorization",
];

/// A header value: text shaped like signatures and timestamps, or any bytes.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "(sha256=|v0=|v1,|v1=|t=[0-9]{1,12},v1=)?[0-9a-fA-F+/=]{0,80}".prop_map(String::into_bytes),
        "[0-9]{0,20}".prop_map(String::into_bytes),
        "(application/json|Application/X-WWW-Form-Urlencoded; charset=utf-8)"
            .prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

fn request_of(headers: &[(usize, Vec<u8>)], body: Vec<u8>) -> InboundRequest {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(HeaderName::from_static(NAMES[name % NAMES.len()]), value);
        }
    }
    let mut request = InboundRequest::post(Bytes::from(body));
    request.headers = map;
    request.received_at = now();
    request
}

/// The request a provider sends: `body` signed now with `secret`.
fn signed(scheme: &dyn SignatureScheme, secret: &str, body: &[u8]) -> InboundRequest {
    let key = SigningKey::parse(secret, scheme.key_encoding()).expect("a usable secret");
    let headers = scheme.sign(
        &OutgoingDelivery {
            body,
            signed_at: now(),
            id: "msg_property",
            url: "https://hooks.example.com/webhooks/property",
        },
        &key,
    );
    headers.iter().fold(
        InboundRequest::post(Bytes::copy_from_slice(body)),
        |request, (name, value)| request.with_header(name, value),
    )
}

fn keys(scheme: &dyn SignatureScheme, secret: &str) -> KeyRing {
    KeyRing::from_secrets(secret, None, scheme.key_encoding()).expect("a usable secret")
}

proptest! {
    #[test]
    fn any_request_is_answered_without_a_panic(
        headers in proptest::collection::vec((any::<usize>(), header_value()), 0..12),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let request = request_of(&headers, body);
        for (_, scheme, secret) in schemes() {
            let _ = verify(scheme.as_ref(), &request, &keys(scheme.as_ref(), secret), now(), WINDOW);
        }
    }

    #[test]
    fn a_body_signed_as_the_provider_signs_it_always_verifies(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        for (name, scheme, secret) in schemes() {
            let request = signed(scheme.as_ref(), secret, &body);
            let checked = scheme.check_signature(&request, &keys(scheme.as_ref(), secret), now(), WINDOW);
            prop_assert_eq!(checked, Ok(()), "{}", name);
        }
    }

    #[test]
    fn a_single_bit_changed_in_a_signed_body_never_verifies(
        body in proptest::collection::vec(any::<u8>(), 1..4096),
        bit in any::<usize>(),
    ) {
        for (name, scheme, secret) in schemes() {
            let mut request = signed(scheme.as_ref(), secret, &body);
            let mut changed = body.clone();
            let bit = bit % (changed.len() * 8);
            changed[bit / 8] ^= 1 << (bit % 8);
            request.body = Bytes::from(changed);
            let checked = scheme.check_signature(&request, &keys(scheme.as_ref(), secret), now(), WINDOW);
            prop_assert!(checked.is_err(), "{}: a changed body verified", name);
        }
    }
}
