//! The providers' own SDKs against hookgate, for every provider that publishes one with a
//! webhook signer or verifier on PyPI (`tests/official_sdks/official.py`, run with the
//! project's `.venv`, where `scripts/test` installs the pinned SDKs):
//!
//! - a delivery the SDK signs is answered 202 by hookgate's receiver and queued on the
//!   emulator's SQS, body byte for byte;
//! - a delivery hookgate signs (as `hookgate send` and the samples do) passes the SDK's own
//!   verifier, and the same delivery with one byte of its body changed does not.
//!
//! Providers without such an SDK (GitHub's is on npm; Shopify, Linear, Intercom, Zendesk,
//! PagerDuty, Calendly, Sentry, Jira, GitLab, SNS and Microsoft Graph publish none on PyPI)
//! are covered by their documented vectors in their schemes' unit tests.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hookgate::envelope::Envelope;
use hookgate::provider::Provider;
use hookgate::request::InboundRequest;
use hookgate_samples::{SampleDelivery, SampleEvent, Variant};
use time::OffsetDateTime;

use super::receivers_sqs::Harness;

/// The providers whose SDK signs, and those whose SDK verifies: the script must offer
/// exactly these, so an SDK left out cannot pass unnoticed.
const SIGNED_BY_THEIR_SDK: [Provider; 5] = [
    Provider::Hubspot,
    Provider::Paddle,
    Provider::Slack,
    Provider::Standard,
    Provider::Twilio,
];
const VERIFIED_BY_THEIR_SDK: [Provider; 9] = [
    Provider::Discord,
    Provider::Hubspot,
    Provider::Paddle,
    Provider::Sendgrid,
    Provider::Slack,
    Provider::Square,
    Provider::Standard,
    Provider::Stripe,
    Provider::Twilio,
];

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

/// Runs the script with `arguments` and `input` on stdin; its stdout as JSON.
fn official(arguments: &[&str], input: &serde_json::Value) -> serde_json::Value {
    let python = std::env::var_os("HOOKGATE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join(".venv/bin/python"));
    let script = repository().join("tests/official_sdks/official.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {} (scripts/test installs it): {error}",
                python.display()
            )
        });
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(input.to_string().as_bytes())
        .expect("the script reads its input");
    let output = child.wait_with_output().expect("the script ends");
    assert!(
        output.status.success(),
        "official.py {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

fn names(providers: &[Provider]) -> serde_json::Value {
    let mut names: Vec<&str> = providers.iter().map(|p| p.as_str()).collect();
    names.sort_unstable();
    serde_json::json!(names)
}

#[test]
fn the_script_offers_exactly_the_sdks_these_tests_expect() {
    let offered = official(&["providers"], &serde_json::json!({}));
    assert_eq!(offered["sign"], names(&SIGNED_BY_THEIR_SDK));
    assert_eq!(offered["verify"], names(&VERIFIED_BY_THEIR_SDK));
}

/// The provider's first genuine sample.
fn sample(provider: Provider) -> SampleEvent {
    SampleEvent::all()
        .into_iter()
        .find(|event| event.provider() == provider && event.variant() == Variant::Genuine)
        .expect("every provider has a genuine sample")
}

/// The names of the headers hookgate's own signer sets for `provider`, which the SDK's
/// replace: none of hookgate's signature may remain for the SDK's to lean on.
fn signature_header_names(provider: Provider, delivery: &SampleDelivery) -> Vec<String> {
    let scheme = hookgate_samples::sample_scheme(provider);
    let key = hookgate::secret::SigningKey::parse(
        hookgate_samples::signing_secret(provider),
        scheme.signing_key_encoding(),
    )
    .expect("the samples' key is valid");
    scheme
        .sign(
            &hookgate::verify::OutgoingDelivery {
                body: delivery.body.as_bytes(),
                signed_at: OffsetDateTime::now_utc(),
                id: "msg_probe",
                url: &delivery.url,
            },
            &key,
        )
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

fn request_of(
    body: &str,
    url: &str,
    headers: &serde_json::Map<String, serde_json::Value>,
) -> InboundRequest {
    headers.iter().fold(
        InboundRequest::post(body.to_owned()).with_url(url),
        |request, (name, value)| request.with_header(name, value.as_str().expect("a text header")),
    )
}

#[tokio::test]
async fn a_delivery_signed_by_the_providers_own_sdk_is_queued() {
    for provider in SIGNED_BY_THEIR_SDK {
        let sample = sample(provider);
        let now = OffsetDateTime::now_utc();
        let ours = sample.delivery(now);
        let secret = hookgate_samples::signing_secret(provider);
        let id = ours
            .headers
            .get("webhook-id")
            .cloned()
            .unwrap_or_else(|| "msg_official_sdk".to_owned());
        let signed = official(
            &["sign", provider.as_str()],
            &serde_json::json!({
                "secret": secret,
                "body": ours.body,
                "url": ours.url,
                "timestamp": now.unix_timestamp(),
                "id": id,
            }),
        );
        let mut headers: serde_json::Map<String, serde_json::Value> = ours
            .headers
            .iter()
            .filter(|(name, _)| !signature_header_names(provider, &ours).contains(name))
            .map(|(name, value)| (name.clone(), value.clone().into()))
            .collect();
        headers.extend(
            signed["headers"]
                .as_object()
                .expect("the SDK's headers")
                .clone(),
        );
        let url = signed["url"].as_str().expect("the URL signed");
        let harness = Harness::new(provider, hookgate_samples::test_secret(provider)).await;
        let answer = harness.answer(request_of(&ours.body, url, &headers)).await;
        assert!(
            answer.status.is_success(),
            "{provider}: a delivery its SDK signed must be accepted: {answer:?}"
        );
        let message = harness.the_queued_message().await;
        let envelope = Envelope::from_json(message.body().unwrap_or_default())
            .expect("the message body is an envelope");
        assert_eq!(
            envelope.v1().body.to_bytes().expect("the body decodes"),
            ours.body.as_bytes(),
            "{provider}: the body travels byte for byte"
        );
    }
}

#[test]
fn a_delivery_hookgate_signs_passes_the_providers_own_verifier_and_a_changed_one_fails() {
    for provider in VERIFIED_BY_THEIR_SDK {
        let sample = sample(provider);
        let delivery = sample.delivery(OffsetDateTime::now_utc());
        let check = |body: &str| {
            let verdict = official(
                &["verify", provider.as_str()],
                &serde_json::json!({
                    "secret": hookgate_samples::test_secret(provider),
                    "headers": delivery.headers,
                    "body": body,
                    "url": delivery.url,
                }),
            );
            verdict["valid"].as_bool().expect("a verdict")
        };
        assert!(
            check(&delivery.body),
            "{provider}: its SDK must accept what hookgate signs"
        );
        let changed = with_one_digit_changed(&delivery.body);
        assert!(
            !check(&changed),
            "{provider}: its SDK must refuse a changed body (else this test proves nothing)"
        );
    }
}

/// The body with its first digit changed: one byte, and still JSON or a form.
fn with_one_digit_changed(body: &str) -> String {
    let at = body
        .find(|c: char| c.is_ascii_digit())
        .expect("every sample body has a digit");
    let digit = body.as_bytes()[at];
    let next = if digit == b'9' {
        '0'
    } else {
        char::from(digit + 1)
    };
    format!("{}{next}{}", &body[..at], &body[at + 1..])
}
