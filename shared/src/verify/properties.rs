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
use super::standard::StandardWebhooks;
use super::{verify, OutgoingDelivery, SignatureScheme};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const WINDOW: Duration = Duration::from_secs(300);
const NOW: i64 = 1_800_000_000;

/// A scheme under test: the key its receiver holds, the key that signs (the private half
/// where the receiver holds a public key), and which body properties it can keep.
struct Case {
    name: String,
    scheme: Box<dyn SignatureScheme>,
    secret: &'static str,
    signing_secret: &'static str,
    /// It signs headers over an arbitrary body: a signed body always verifies. Not Linear
    /// (the window is a field of a JSON body), SNS (the signature is in the body) nor
    /// Microsoft Graph (the `clientState` is).
    signs_any_body: bool,
    /// A changed bit always breaks its signature. Not GitLab's token or Microsoft Graph's
    /// `clientState` (they prove the sender, not the bytes), nor Twilio's form signature
    /// (it signs the decoded parameters: `%4a` and `%4A` are one `J`).
    signature_covers_the_bytes: bool,
}

/// RFC 8032 TEST 1's key pair, hex and Standard Webhooks' base64.
const ED25519_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const ED25519_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// A P-256 key pair made with openssl for these tests.
const P256_PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjAnKa2M3s7Brcz7fVYN+qZhcG4GUwsqouZ1qaAt6vKYtXolVCC9a3gC3S6CqpExhaZiEm6nWwei6jXEeAp3VQQ==";
const P256_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgnnXXh8+Z5HWgv4AW4d+GA1/O0mKmlrBqpSr3G7Nnl22hRANCAASMCcprYzezsGtzPt9Vg36pmFwbgZTCyqi5nWpoC3q8pi1eiVUIL1reALdLoKqkTGFpmISbqdbB6LqNcR4CndVB";

/// Every provider's scheme as the provider table makes it, the generic one in the styles
/// its settings allow and Standard Webhooks with `v1a` keys too.
fn schemes() -> Vec<Case> {
    let generic = |settings: &[(&str, &str)]| -> Box<dyn SignatureScheme> {
        let env: HashMap<&str, &str> = settings.iter().copied().collect();
        Box::new(Generic::from_env(&env).expect("valid generic settings"))
    };
    let no_settings: HashMap<&str, &str> = HashMap::new();
    let mut cases: Vec<Case> = Provider::ALL
        .into_iter()
        .filter(|provider| *provider != Provider::Generic)
        .map(|provider| {
            let (secret, signing_secret) = match provider {
                Provider::Stripe => ("whsec_property", "whsec_property"),
                Provider::Standard => (
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                ),
                Provider::Discord => (ED25519_PUBLIC, ED25519_SEED),
                Provider::Sendgrid => (P256_PUBLIC, P256_PRIVATE),
                Provider::Sns => ("arn:aws:sns:us-east-1:123456789012:property", "unused"),
                _ => ("property-secret", "property-secret"),
            };
            Case {
                name: provider.as_str().into(),
                scheme: provider
                    .scheme(&no_settings)
                    .expect("every scheme has default settings"),
                secret,
                signing_secret,
                signs_any_body: !matches!(
                    provider,
                    Provider::Linear | Provider::Sns | Provider::Msgraph
                ),
                signature_covers_the_bytes: !matches!(
                    provider,
                    Provider::Linear
                        | Provider::Sns
                        | Provider::Gitlab
                        | Provider::Msgraph
                        | Provider::Twilio
                ),
            }
        })
        .collect();
    let standard_v1a = Case {
        name: "standard v1a".into(),
        scheme: Box::new(StandardWebhooks),
        secret: "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        signing_secret: "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=",
        signs_any_body: true,
        signature_covers_the_bytes: true,
    };
    let generic_case = |name: &str, scheme| Case {
        name: name.into(),
        scheme,
        secret: "property-secret",
        signing_secret: "property-secret",
        signs_any_body: true,
        signature_covers_the_bytes: true,
    };
    cases.extend([
        standard_v1a,
        generic_case("generic hex", generic(&[])),
        generic_case(
            "generic base64 with a prefix, a timestamp and a signed id",
            generic(&[
                ("SIGNATURE_ENCODING", "base64"),
                ("SIGNATURE_PREFIX", "v1="),
                ("TIMESTAMP_HEADER", "x-timestamp"),
                ("ID_HEADER", "x-id"),
                ("SIGNED_CONTENT", "{id}:{timestamp}:{body}"),
            ]),
        ),
    ]);
    cases
}

/// The URL the signed requests are sent to, which Square, HubSpot and Twilio sign.
const URL: &str = "https://hooks.example.com/webhooks/property";

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

/// The request a provider sends: `body` signed now, as the case signs.
fn signed(case: &Case, body: &[u8]) -> InboundRequest {
    let scheme = case.scheme.as_ref();
    let key = SigningKey::parse(case.signing_secret, scheme.signing_key_encoding())
        .expect("a usable signing key");
    let headers = scheme.sign(
        &OutgoingDelivery {
            body,
            signed_at: now(),
            id: "msg_property",
            url: URL,
        },
        &key,
    );
    headers.iter().fold(
        InboundRequest::post(Bytes::copy_from_slice(body)).with_url(URL),
        |request, (name, value)| request.with_header(name, value),
    )
}

fn keys(case: &Case) -> KeyRing {
    KeyRing::from_secrets(case.secret, None, case.scheme.key_encoding()).expect("a usable secret")
}

proptest! {
    #[test]
    fn any_request_is_answered_without_a_panic(
        headers in proptest::collection::vec((any::<usize>(), header_value()), 0..12),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let request = request_of(&headers, body);
        for case in schemes() {
            let _ = verify(case.scheme.as_ref(), &request, &keys(&case), now(), WINDOW);
        }
    }

    #[test]
    fn a_body_signed_as_the_provider_signs_it_always_verifies(
        // Not empty: no provider sends an empty webhook, and Square's scheme refuses one,
        // as its SDKs do.
        body in proptest::collection::vec(any::<u8>(), 1..4096),
    ) {
        for case in schemes().into_iter().filter(|case| case.signs_any_body) {
            let request = signed(&case, &body);
            let checked = case.scheme.check_signature(&request, &keys(&case), now(), WINDOW);
            prop_assert_eq!(checked, Ok(()), "{}", case.name);
        }
    }

    #[test]
    fn a_single_bit_changed_in_a_signed_body_never_verifies(
        body in proptest::collection::vec(any::<u8>(), 1..4096),
        bit in any::<usize>(),
    ) {
        for case in schemes().into_iter().filter(|case| case.signature_covers_the_bytes) {
            let mut request = signed(&case, &body);
            let mut changed = body.clone();
            let bit = bit % (changed.len() * 8);
            changed[bit / 8] ^= 1 << (bit % 8);
            request.body = Bytes::from(changed);
            let checked = case.scheme.check_signature(&request, &keys(&case), now(), WINDOW);
            prop_assert!(checked.is_err(), "{}: a changed body verified", case.name);
        }
    }
}
