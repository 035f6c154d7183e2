//! The providers' own SDKs against hookgate, for every provider that publishes one with a
//! webhook signer or verifier on PyPI (`tests/official_sdks/official.py`, run with the
//! project's `.venv`, where `scripts/test` installs the pinned SDKs) or npm
//! (`tests/official_sdks/official.mjs`, run with Node.js on the packages `scripts/test`
//! installs from `package-lock.json`):
//!
//! - a delivery the SDK signs is answered by hookgate's receiver and queued on the
//!   emulator's SQS, body byte for byte;
//! - a delivery hookgate signs (as `hookgate send` and the samples do) passes the SDK's own
//!   verifier, and the same delivery with one byte of its body changed does not.
//!
//! Providers without such an SDK (Shopify, Intercom, Zendesk, PagerDuty, whose verifier is
//! Go's, Calendly, Sentry, Jira, GitLab and Microsoft Graph publish none) are covered by their
//! documented vectors in their schemes' unit tests. SNS's validator on npm (`sns-validator`)
//! fetches the signing certificate from SNS itself, which these tests cannot reach.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hookgate::envelope::Envelope;
use hookgate::provider::Provider;
use hookgate::request::InboundRequest;
use hookgate_samples::{SampleDelivery, SampleEvent, Variant};
use time::OffsetDateTime;

use super::receivers_sqs::Harness;

/// Where a provider's SDK runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sdk {
    /// PyPI's, through `official.py`.
    Python,
    /// npm's, through `official.mjs`.
    Node,
}

use Sdk::{Node, Python};

/// The providers whose SDK signs, and those whose SDK verifies: each script must offer
/// exactly these, so an SDK left out cannot pass unnoticed.
const SIGNED_BY_THEIR_SDK: [(Provider, Sdk); 6] = [
    (Provider::Github, Node),
    (Provider::Hubspot, Python),
    (Provider::Paddle, Python),
    (Provider::Slack, Python),
    (Provider::Standard, Python),
    (Provider::Twilio, Python),
];
const VERIFIED_BY_THEIR_SDK: [(Provider, Sdk); 11] = [
    (Provider::Discord, Python),
    (Provider::Github, Node),
    (Provider::Hubspot, Python),
    (Provider::Linear, Node),
    (Provider::Paddle, Python),
    (Provider::Sendgrid, Python),
    (Provider::Slack, Python),
    (Provider::Square, Python),
    (Provider::Standard, Python),
    (Provider::Stripe, Python),
    (Provider::Twilio, Python),
];

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

/// Runs the SDK's script with `arguments` and `input` on stdin; its stdout as JSON.
fn official(sdk: Sdk, arguments: &[&str], input: &serde_json::Value) -> serde_json::Value {
    let scripts = repository().join("tests/official_sdks");
    let (program, script) = match sdk {
        Python => (
            std::env::var_os("HOOKGATE_TEST_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| repository().join(".venv/bin/python")),
            scripts.join("official.py"),
        ),
        Node => (PathBuf::from("node"), scripts.join("official.mjs")),
    };
    let mut child = Command::new(&program)
        .arg(&script)
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {} (scripts/test installs what it needs): {error}",
                program.display()
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
        "{} {arguments:?} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

/// The sorted names of the providers of `table` whose SDK runs in `sdk`.
fn names(table: &[(Provider, Sdk)], sdk: Sdk) -> serde_json::Value {
    let mut names: Vec<&str> = table
        .iter()
        .filter(|(_, runs_in)| *runs_in == sdk)
        .map(|(provider, _)| provider.as_str())
        .collect();
    names.sort_unstable();
    serde_json::json!(names)
}

#[test]
fn the_scripts_offer_exactly_the_sdks_these_tests_expect() {
    for sdk in [Python, Node] {
        let offered = official(sdk, &["providers"], &serde_json::json!({}));
        assert_eq!(offered["sign"], names(&SIGNED_BY_THEIR_SDK, sdk), "{sdk:?}");
        assert_eq!(
            offered["verify"],
            names(&VERIFIED_BY_THEIR_SDK, sdk),
            "{sdk:?}"
        );
    }
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
    for (provider, sdk) in SIGNED_BY_THEIR_SDK {
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
            sdk,
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
    for (provider, sdk) in VERIFIED_BY_THEIR_SDK {
        let sample = sample(provider);
        let delivery = sample.delivery(OffsetDateTime::now_utc());
        let check = |body: &str| {
            let verdict = official(
                sdk,
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
