//! The receiver's answers, one test per row of the HTTP table, against the in-memory queue.

use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, StatusCode};

use super::*;
use crate::bodies::MemoryBodyStore;
use crate::dead_letters::DEAD_LETTER_OVERHEAD;
use crate::envelope::{Envelope, EnvelopeV1, RawBody};
use crate::queue::MemoryQueue;
use crate::secret::{KeyEncoding, KeyRing, StaticSecrets};
use crate::telemetry::Metrics;
use crate::verify::{github::Github, hmac_sha256, slack::Slack};

const SECRET: &str = "receiver-test-secret";

struct Fixture {
    receiver: Receiver,
    queue: MemoryQueue,
    metrics: Metrics,
}

fn fixture_with(scheme: Box<dyn SignatureScheme>, settings: ReceiverSettings) -> Fixture {
    fixture_on(scheme, settings, MemoryQueue::new())
}

fn fixture_on(
    scheme: Box<dyn SignatureScheme>,
    settings: ReceiverSettings,
    queue: MemoryQueue,
) -> Fixture {
    let metrics = Metrics::in_memory();
    let keys = KeyRing::from_secrets(SECRET, None, KeyEncoding::Raw).unwrap();
    let receiver = Receiver::new(
        scheme,
        Arc::new(StaticSecrets::new(keys)),
        Arc::new(queue.clone()),
        settings,
    )
    .with_metrics(metrics.clone())
    .with_clock(Arc::new(|| {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }));
    Fixture {
        receiver,
        queue,
        metrics,
    }
}

fn github(settings: ReceiverSettings) -> Fixture {
    fixture_with(Box::new(Github), settings)
}

fn github_delivery(body: &str) -> InboundRequest {
    let signature = hex::encode(hmac_sha256(SECRET.as_bytes(), &[body.as_bytes()]));
    InboundRequest::post(body.to_owned())
        .with_header("X-Hub-Signature-256", &format!("sha256={signature}"))
        .with_header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .with_header("X-GitHub-Event", "pull_request")
        .with_header("Content-Type", "application/json")
}

/// `request`, received at one fixed time: an envelope's `received_at` is as long as its
/// fraction of a second needs, so envelopes compared by size must share it.
fn at_a_fixed_time(mut request: InboundRequest) -> InboundRequest {
    request.received_at = time::macros::datetime!(2026-11-23 09:30:00.123456789 UTC);
    request
}

fn body_json(answer: &Answer) -> serde_json::Value {
    serde_json::from_str(&answer.body).unwrap()
}

#[tokio::test]
async fn a_verified_delivery_is_answered_202_with_its_key_only_once_queued() {
    let fixture = github(ReceiverSettings::default());
    let answer = fixture
        .receiver
        .answer(github_delivery(r#"{"action":"opened"}"#))
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(
        body_json(&answer),
        serde_json::json!({"status": "accepted", "idempotency_key": "github:72d3162e-cc78-11e3-81ab-4c9367dc0958"})
    );
    let messages = fixture.queue.messages();
    assert_eq!(messages.len(), 1);
    let envelope = Envelope::from_json(&messages[0].body).unwrap();
    let envelope = envelope.v1();
    assert_eq!(envelope.event_type, "pull_request.opened");
    assert_eq!(
        envelope.body,
        RawBody::Utf8(r#"{"action":"opened"}"#.into())
    );
    assert_eq!(
        envelope.headers.get("x-github-event").map(String::as_str),
        Some("pull_request")
    );
    assert!(
        !envelope.headers.contains_key("x-hub-signature-256"),
        "signatures never travel"
    );
    assert!(messages[0]
        .attributes
        .contains(&("event_type".into(), "pull_request.opened".into())));
}

#[tokio::test]
async fn a_bad_signature_is_401_with_one_generic_message_and_nothing_queued() {
    let fixture = github(ReceiverSettings::default());
    let mut forged = github_delivery(r#"{"action":"opened"}"#);
    forged.body = bytes::Bytes::from_static(br#"{"action":"closed"}"#);
    let answer = fixture.receiver.answer(forged).await;

    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_json(&answer),
        serde_json::json!({"error": "signature verification failed"})
    );
    assert!(fixture.queue.messages().is_empty());

    let mut unsigned = github_delivery("{}");
    unsigned.headers.remove("x-hub-signature-256");
    let answer = fixture.receiver.answer(unsigned).await;
    assert_eq!(
        answer.body, r#"{"error":"signature verification failed"}"#,
        "the reason stays in the log"
    );
}

#[tokio::test]
async fn a_source_outside_the_allowed_networks_is_403_before_anything_else() {
    let settings = ReceiverSettings {
        allowed_sources: Some(vec!["192.30.252.0/22".parse().unwrap()]),
        ..ReceiverSettings::default()
    };
    let fixture = github(settings);

    let mut outsider = github_delivery("{}");
    outsider.source_ip = Some("203.0.113.9".parse().unwrap());
    outsider.method = Method::GET;
    assert_eq!(
        fixture.receiver.answer(outsider).await.status,
        StatusCode::FORBIDDEN
    );

    let unknown = github_delivery("{}");
    assert_eq!(
        fixture.receiver.answer(unknown).await.status,
        StatusCode::FORBIDDEN,
        "an unknown source is not allowed"
    );

    let mut insider = github_delivery("{}");
    insider.source_ip = Some("192.30.252.10".parse::<IpAddr>().unwrap());
    assert_eq!(
        fixture.receiver.answer(insider).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_method_other_than_post_is_405_naming_post() {
    let fixture = github(ReceiverSettings::default());
    let mut get = github_delivery("{}");
    get.method = Method::GET;
    let answer = fixture.receiver.answer(get).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers, vec![("allow", "POST")]);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_its_signature_is_checked() {
    let settings = ReceiverSettings {
        max_body_bytes: 10,
        ..ReceiverSettings::default()
    };
    let fixture = github(settings);
    let answer = fixture
        .receiver
        .answer(github_delivery(r#"{"action":"opened"}"#))
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(fixture.queue.messages().is_empty());
}

/// What an envelope may take of the small queue below: its limit, less the room kept for the
/// dead-letter attributes.
const ENVELOPE_LIMIT: usize = 4_096;

/// A GitHub receiver on a queue whose messages may be `ENVELOPE_LIMIT` bytes (plus the room
/// for dead-letter attributes), storing larger bodies in `bodies` when given.
fn github_on_a_small_queue(bodies: Option<MemoryBodyStore>) -> (Fixture, MemoryQueue) {
    let queue = MemoryQueue::new().with_max_message_bytes(ENVELOPE_LIMIT + DEAD_LETTER_OVERHEAD);
    let mut fixture = fixture_on(
        Box::new(Github),
        ReceiverSettings::with_body_store(),
        queue.clone(),
    );
    if let Some(bodies) = bodies {
        fixture.receiver = fixture.receiver.with_body_store(Arc::new(bodies));
    }
    (fixture, queue)
}

/// The envelope a receiver queued.
fn queued_envelope(fixture: &Fixture) -> EnvelopeV1 {
    let messages = fixture.queue.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    Envelope::from_json(&messages[0].body).unwrap().v1().clone()
}

#[tokio::test]
async fn a_body_whose_envelope_outgrows_the_queue_is_413_without_a_body_store() {
    // Control characters are escaped to six bytes each in JSON, so a body under the limit
    // can still make an envelope over the queue's.
    let (fixture, _) = github_on_a_small_queue(None);
    let answer = fixture
        .receiver
        .answer(github_delivery(&"\u{1}".repeat(1_000)))
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(fixture.queue.messages().is_empty());
}

#[tokio::test]
async fn an_envelope_exactly_at_the_queues_limit_carries_its_body_and_one_byte_more_is_stored() {
    let bodies = MemoryBodyStore::new();
    // How much an envelope adds to a body of plain letters, which JSON does not escape.
    let (probe, _) = github_on_a_small_queue(None);
    probe
        .receiver
        .answer(at_a_fixed_time(github_delivery("")))
        .await;
    let overhead = probe.queue.messages()[0].body.len()
        + [
            "provider",
            "String",
            "github",
            "event_type",
            "String",
            "pull_request",
        ]
        .concat()
        .len()
        + ["envelope_version", "String", "1"].concat().len();
    let fits = "a".repeat(ENVELOPE_LIMIT - overhead);

    let (fixture, _) = github_on_a_small_queue(Some(bodies.clone()));
    assert_eq!(
        fixture
            .receiver
            .answer(at_a_fixed_time(github_delivery(&fits)))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(queued_envelope(&fixture).body, RawBody::Utf8(fits.clone()));
    assert!(bodies.is_empty());

    let (fixture, _) = github_on_a_small_queue(Some(bodies.clone()));
    let over = format!("{fits}a");
    assert_eq!(
        fixture
            .receiver
            .answer(at_a_fixed_time(github_delivery(&over)))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let envelope = queued_envelope(&fixture);
    let RawBody::Stored(reference) = &envelope.body else {
        panic!("expected a stored body, got {:?}", envelope.body);
    };
    assert_eq!(reference.size, over.len() as u64);
    assert_eq!(
        crate::bodies::fetch_verified(&bodies, reference, &envelope.body_sha256)
            .await
            .unwrap(),
        over.as_bytes()
    );
}

#[tokio::test]
async fn a_binary_body_too_large_for_a_message_is_stored_first_and_queued_by_reference() {
    let bodies = MemoryBodyStore::new();
    let (fixture, _) = github_on_a_small_queue(Some(bodies.clone()));
    let binary: Vec<u8> = (0..50_000_u32)
        .map(|n| (n.wrapping_mul(7919) >> 3) as u8)
        .collect();
    let mut request = github_delivery("");
    let signature = hex::encode(hmac_sha256(SECRET.as_bytes(), &[&binary]));
    request.headers.insert(
        "x-hub-signature-256",
        format!("sha256={signature}").parse().unwrap(),
    );
    request.body = bytes::Bytes::from(binary.clone());

    let answer = fixture.receiver.answer(request).await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let envelope = queued_envelope(&fixture);
    let RawBody::Stored(reference) = &envelope.body else {
        panic!("expected a stored body, got {:?}", envelope.body);
    };
    assert_eq!(envelope.body_sha256, crate::bodies::sha256_hex(&binary));
    let fetched = crate::bodies::fetch_verified(&bodies, reference, &envelope.body_sha256)
        .await
        .unwrap();
    assert_eq!(fetched, binary, "byte for byte");
}

#[tokio::test]
async fn a_body_stored_in_the_bucket_is_counted_as_a_large_body_and_an_inline_one_is_not() {
    let (fixture, _) = github_on_a_small_queue(Some(MemoryBodyStore::new()));
    let large = |metrics: &Metrics| {
        metrics
            .captured()
            .into_iter()
            .filter(|document| document.get("LargeBodies").is_some())
            .collect::<Vec<_>>()
    };

    fixture.receiver.answer(github_delivery("{}")).await;
    assert!(large(&fixture.metrics).is_empty(), "an inline body");

    let answer = fixture
        .receiver
        .answer(github_delivery(&"a".repeat(ENVELOPE_LIMIT * 2)))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let counted = large(&fixture.metrics);
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0]["Provider"], "github");
}

#[tokio::test]
async fn a_body_store_that_cannot_store_is_503_and_nothing_is_queued() {
    let bodies = MemoryBodyStore::new();
    bodies.set_unavailable(true);
    let (fixture, _) = github_on_a_small_queue(Some(bodies));

    let answer = fixture
        .receiver
        .answer(github_delivery(&"a".repeat(ENVELOPE_LIMIT * 2)))
        .await;

    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(fixture.queue.messages().is_empty());
}

#[tokio::test]
async fn a_body_of_exactly_max_body_bytes_is_accepted_and_one_byte_more_is_413() {
    let bodies = MemoryBodyStore::new();
    let (mut fixture, _) = github_on_a_small_queue(Some(bodies));
    fixture.receiver.settings.max_body_bytes = 20_000;

    let at_the_limit = fixture
        .receiver
        .answer(github_delivery(&"a".repeat(20_000)))
        .await;
    let over = fixture
        .receiver
        .answer(github_delivery(&"a".repeat(20_001)))
        .await;

    assert_eq!(at_the_limit.status, StatusCode::ACCEPTED);
    assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(over.body.contains("20000"), "{}", over.body);
}

#[tokio::test]
async fn a_genuine_delivery_missing_its_delivery_id_is_400_saying_so() {
    let fixture = github(ReceiverSettings::default());
    let mut request = github_delivery("{}");
    request.headers.remove("x-github-delivery");
    let answer = fixture.receiver.answer(request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("x-github-delivery"), "{}", answer.body);
}

#[tokio::test]
async fn a_queue_that_does_not_accept_the_message_is_503_so_the_provider_retries() {
    let fixture = github(ReceiverSettings::default());
    fixture.queue.set_unavailable(true);
    let answer = fixture.receiver.answer(github_delivery("{}")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers, vec![("retry-after", "5")]);
    assert!(!answer.body.contains("in-memory"), "5xx bodies stay opaque");
}

#[tokio::test]
async fn a_delivery_that_could_not_be_taken_is_counted_unavailable_not_rejected() {
    let fixture = github(ReceiverSettings::default());
    fixture.queue.set_unavailable(true);

    fixture.receiver.answer(github_delivery("{}")).await;

    let counted: Vec<&str> = fixture
        .metrics
        .captured()
        .iter()
        .filter(|document| document.get("Received").is_none())
        .filter_map(|document| {
            ["Unavailable", "Rejected"]
                .into_iter()
                .find(|name| document.get(*name).is_some())
        })
        .collect();
    assert_eq!(counted, ["Unavailable"]);
    let document = fixture
        .metrics
        .captured()
        .into_iter()
        .find(|document| document.get("Unavailable").is_some())
        .unwrap();
    assert_eq!(document["Reason"], "queue_unavailable");
    assert_eq!(document["Provider"], "github");
}

#[tokio::test]
async fn a_slack_url_verification_is_answered_200_with_its_challenge_and_not_queued() {
    let fixture = fixture_with(Box::new(Slack), ReceiverSettings::default());
    let body = r#"{"token":"t","challenge":"c-123","type":"url_verification"}"#;
    let request = slack_request(body, "application/json");

    let answer = fixture.receiver.answer(request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        body_json(&answer),
        serde_json::json!({"challenge": "c-123"})
    );
    assert!(fixture.queue.messages().is_empty());
}

/// A signed Slack request with this body and `Content-Type`.
fn slack_request(body: &str, content_type: &str) -> InboundRequest {
    let timestamp = "1700000000";
    let signature = hex::encode(hmac_sha256(
        SECRET.as_bytes(),
        &[b"v0:", timestamp.as_bytes(), b":", body.as_bytes()],
    ));
    InboundRequest::post(body.to_owned())
        .with_header("X-Slack-Signature", &format!("v0={signature}"))
        .with_header("X-Slack-Request-Timestamp", timestamp)
        .with_header("Content-Type", content_type)
}

#[tokio::test]
async fn a_slack_slash_command_whose_media_type_is_in_capitals_is_queued() {
    let fixture = fixture_with(Box::new(Slack), ReceiverSettings::default());
    let request = slack_request(
        "command=%2Fdeploy&text=now&trigger_id=1.2.3",
        "Application/X-WWW-Form-Urlencoded",
    );

    let answer = fixture.receiver.answer(request).await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let messages = fixture.queue.messages();
    let envelope = Envelope::from_json(&messages[0].body).unwrap();
    assert_eq!(envelope.v1().event_type, "slash_command");
}

#[tokio::test]
async fn an_uppercase_github_signature_is_refused_as_octokit_refuses_it() {
    let fixture = github(ReceiverSettings::default());
    let mut request = github_delivery("{}");
    let upper = request
        .header("x-hub-signature-256")
        .unwrap()
        .to_uppercase();
    request.headers.insert(
        "x-hub-signature-256",
        upper.replacen("SHA256=", "sha256=", 1).parse().unwrap(),
    );

    let answer = fixture.receiver.answer(request).await;

    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(fixture.queue.messages().is_empty());
}

#[tokio::test]
async fn every_request_is_counted_received_and_then_enqueued_or_rejected_by_reason() {
    let fixture = github(ReceiverSettings::default());
    fixture.receiver.answer(github_delivery("{}")).await;
    let mut forged = github_delivery("{}");
    forged.body = bytes::Bytes::from_static(b"[]");
    fixture.receiver.answer(forged).await;

    let names: Vec<String> = fixture
        .metrics
        .captured()
        .iter()
        .map(|document| {
            document["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["Received", "Enqueued", "Received", "Rejected"]);
    let rejected = &fixture.metrics.captured()[3];
    assert_eq!(rejected["Reason"], "signature_mismatch");
    assert_eq!(rejected["Provider"], "github");
}
