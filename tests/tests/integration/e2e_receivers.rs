//! End to end: the built receiver binaries, run as Lambda runs them (through the Runtime API
//! of `hookgate_tests::lambda_runtime_api`), against the emulator's SQS, with every sample
//! event signed afresh.
//!
//! These tests run what `cargo build --workspace --bins` left in `target/debug`; build
//! first, or they test stale binaries (a missing binary fails with that instruction).

use std::collections::BTreeMap;

use hookgate::envelope::{attribute, Envelope};
use hookgate::provider::Provider;
use hookgate_samples::{receiver_environment, SampleEvent, Variant};
use hookgate_tests::emulator;
use hookgate_tests::lambda_runtime_api::{InvocationError, LambdaFunction};
use serde_json::Value;
use time::OffsetDateTime;

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&emulator::sdk_config().await)
}

/// Starts `receiver-<provider>` as a deployment would configure it for the samples:
/// the emulator's SQS, `queue_url`, and the provider's test secret.
async fn start_receiver(provider: Provider, queue_url: &str) -> LambdaFunction {
    let mut env = emulator::function_environment();
    env.push(("QUEUE_URL", queue_url.to_owned()));
    env.extend(receiver_environment(provider));
    LambdaFunction::start(&format!("receiver-{provider}"), env)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

fn response_body(response: &Value) -> Value {
    let body = response["body"].as_str().unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Fails if a message can be received from the queue, waiting a second for one.
async fn assert_nothing_visible(sqs: &aws_sdk_sqs::Client, queue_url: &str) {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("the emulator's queue can be read");
    let messages = received.messages.unwrap_or_default();
    assert!(messages.is_empty(), "unexpectedly queued: {messages:?}");
}

/// Invokes the provider's receiver with each of its sample events, signed now, and checks
/// each answer; then checks that exactly the genuine, non-handshake deliveries were queued,
/// each in an envelope carrying its raw body and the key it was acknowledged with.
async fn every_sample_is_answered_and_only_genuine_ones_are_queued(provider: Provider) {
    let sqs = sqs().await;
    let queue_url = emulator::create_queue(&sqs, &format!("e2e-{provider}"))
        .await
        .expect("the emulator creates a queue");
    let function = start_receiver(provider, &queue_url).await;
    let events: Vec<SampleEvent> = SampleEvent::all()
        .into_iter()
        .filter(|event| event.provider() == provider)
        .collect();
    assert!(
        events.iter().any(|event| event.variant().is_rejected()),
        "{provider} has no rejected sample to test"
    );

    // Idempotency key acknowledged -> the raw body that was sent; and the bodies of events
    // answered with the provider's own acknowledgement (Discord's deferred response), which
    // names no key.
    let mut acknowledged = BTreeMap::new();
    let mut acknowledged_without_key = Vec::new();
    for event in &events {
        // To the second, as API Gateway's event records it: a body that carries its signing
        // time (Linear's) is then the same in both.
        let at = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond");
        let sent = event.delivery(at).body;
        let path = event.relative_path();
        let response = function
            .invoke(&event.api_gateway_event(at))
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        let status = &response["statusCode"];
        match event.variant() {
            Variant::Genuine if event.is_handshake() => {
                assert_eq!(status, 200, "{path}: {response}");
                assert!(
                    !response["body"].as_str().unwrap_or_default().is_empty(),
                    "{path}: a handshake is answered with what the provider expects: {response}"
                );
            }
            Variant::Genuine if status == 200 => {
                acknowledged_without_key.push(sent);
            }
            Variant::Genuine => {
                assert_eq!(status, 202, "{path}: {response}");
                let key = response_body(&response)["idempotency_key"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{path}: no idempotency key in {response}"))
                    .to_owned();
                assert!(
                    acknowledged.insert(key, sent).is_none(),
                    "{path}: a key acknowledged twice"
                );
            }
            Variant::TamperedBody | Variant::WrongSecret | Variant::StaleTimestamp => {
                assert_eq!(status, 401, "{path}: {response}");
            }
        }
    }

    let expected = acknowledged.len() + acknowledged_without_key.len();
    let messages = emulator::drain_queue(&sqs, &queue_url, expected)
        .await
        .expect("the emulator's queue can be read");
    let mut queued = BTreeMap::new();
    for message in &messages {
        let envelope = Envelope::from_json(message.body().unwrap_or_default())
            .expect("every message is an envelope");
        let envelope = envelope.v1();
        assert_eq!(envelope.provider, provider);
        let provider_attribute = message
            .message_attributes()
            .and_then(|attributes| attributes.get(attribute::PROVIDER))
            .and_then(|value| value.string_value());
        assert_eq!(provider_attribute, Some(provider.as_str()));
        let body = envelope.body.to_bytes().expect("a decodable body");
        let body = String::from_utf8(body).expect("the samples' bodies are text");
        queued.insert(envelope.idempotency_key.to_string(), body);
    }
    for body in acknowledged_without_key {
        let key = queued
            .iter()
            .find(|(key, queued)| **queued == body && !acknowledged.contains_key(*key))
            .map(|(key, _)| key.clone())
            .unwrap_or_else(|| panic!("{provider}: an acknowledged event was not queued: {body}"));
        acknowledged.insert(key, body);
    }
    assert_eq!(queued, acknowledged);

    // The drained messages are invisible now: anything still there was queued besides them.
    assert_nothing_visible(&sqs, &queue_url).await;
}

/// Every provider's receiver binary, four at a time: each takes its own queue. SNS's is tried
/// apart: a deployed receiver trusts only certificates fetched from SNS, which these
/// machines cannot reach, so its samples (signed with a test certificate) are checked
/// in-process (`events`, `dev_pipeline`) and its binary below.
#[tokio::test]
async fn every_receiver_queues_its_genuine_samples_answers_its_handshakes_and_refuses_the_rejected_ones(
) {
    // Four at a time: all at once would starve the other tests of a 2-core machine.
    futures_util::StreamExt::for_each_concurrent(
        futures_util::stream::iter(
            Provider::ALL
                .into_iter()
                .filter(|provider| *provider != Provider::Sns),
        ),
        4,
        every_sample_is_answered_and_only_genuine_ones_are_queued,
    )
    .await;
}

/// A message from a topic the receiver is not configured for is refused before any
/// certificate is fetched: the answer needs no network.
#[tokio::test]
async fn the_sns_receiver_refuses_a_topic_it_is_not_configured_for_and_queues_nothing() {
    let sqs = sqs().await;
    let queue_url = emulator::create_queue(&sqs, "e2e-sns").await.unwrap();
    let function = start_receiver(Provider::Sns, &queue_url).await;
    let at = OffsetDateTime::now_utc();
    let mut event = SampleEvent::find(Provider::Sns, "notification")
        .unwrap()
        .api_gateway_event(at);
    let body = event["body"].as_str().expect("a text body").replace(
        hookgate_samples::SNS_TEST_TOPIC_ARN,
        "arn:aws:sns:us-east-1:123456789012:someone-elses-topic",
    );
    event["body"] = body.into();
    let response = function.invoke(&event).await.unwrap();
    assert_eq!(response["statusCode"], 401, "{response}");
    assert_nothing_visible(&sqs, &queue_url).await;
}

#[tokio::test]
async fn a_get_is_answered_405_allowing_post_and_nothing_is_queued() {
    let sqs = sqs().await;
    let queue_url = emulator::create_queue(&sqs, "e2e-get").await.unwrap();
    let function = start_receiver(Provider::Github, &queue_url).await;
    let mut event = SampleEvent::find(Provider::Github, "pull_request.opened")
        .unwrap()
        .api_gateway_event(OffsetDateTime::now_utc());
    event["requestContext"]["http"]["method"] = "GET".into();

    let response = function
        .invoke(&event)
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    assert_eq!(response["statusCode"], 405, "{response}");
    assert_eq!(response["headers"]["allow"], "POST", "{response}");
    assert_nothing_visible(&sqs, &queue_url).await;
}

#[tokio::test]
async fn a_receiver_whose_queue_does_not_exist_fails_at_init_naming_the_queue() {
    // Well-formed, on the emulator, but never created.
    let queue_url = format!(
        "{}/123456789012/{}",
        emulator::endpoint(),
        emulator::unique_name("e2e-missing")
    );
    let function = start_receiver(Provider::Github, &queue_url).await;

    let error = function.ready().await.unwrap_err();

    match &error {
        InvocationError::Exited { status, output, .. } => {
            assert!(status.is_some_and(|status| !status.success()), "{error}");
            assert!(output.contains(&queue_url), "{error}");
        }
        InvocationError::Init { body, output, .. } => {
            assert!(
                body.contains(&queue_url) || output.contains(&queue_url),
                "{error}"
            );
        }
        other => panic!("expected the init to fail, got: {other}"),
    }
}

/// `cargo lambda watch` gives each function the variables in its Cargo.toml's
/// `[package.metadata.lambda.watch.env]`, which is how each receiver gets its own test
/// secret locally. They must be the samples' secrets, or local invocations of the sample
/// events fail.
#[test]
fn each_receivers_cargo_lambda_watch_environment_is_the_samples_environment() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .args(["--manifest-path", manifest])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();

    for provider in Provider::ALL {
        let name = format!("receiver-{provider}");
        let package = packages
            .iter()
            .find(|package| package["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no package {name} in the workspace"));
        let watch_env = &package["metadata"]["lambda"]["watch"]["env"];
        let configured: BTreeMap<String, String> = watch_env
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no [package.metadata.lambda.watch.env]"))
            .iter()
            .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
            .collect();
        let expected: BTreeMap<String, String> = receiver_environment(provider)
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        assert_eq!(configured, expected, "{name}'s Cargo.toml");
    }
}
