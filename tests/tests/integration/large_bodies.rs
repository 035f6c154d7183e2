//! Large deliveries end to end, through the built Lambda binaries (run as Lambda runs them,
//! through `hookgate_tests::lambda_runtime_api`) against the emulator's SQS, DynamoDB and
//! S3: a signed request to `receiver-github`, the envelope it queued handed to `processor`
//! as an SQS event, and the processor's `http` action to an agent that checks hookgate's
//! signature. The agent must get exactly the bytes GitHub signed, whether the envelope
//! carried them (a 700 KB JSON body) or the body bucket did (a 3 MB binary body).
//!
//! These tests run what `cargo build --workspace --bins` left in `target/debug`.

use std::time::Duration;

use base64::Engine;
use hookgate::bodies::sha256_hex;
use hookgate::envelope::{Envelope, RawBody};
use hookgate::provider::Provider;
use hookgate::receiver::MAX_REQUEST_BODY_BYTES;
use hookgate_samples::{receiver_environment, GITHUB_TEST_SECRET};
use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Answer};
use hookgate_tests::emulator;
use hookgate_tests::hookgate_cli::{routes_to_agent, scratch_directory, AGENT_SECRET};
use hookgate_tests::lambda_runtime_api::LambdaFunction;
use serde_json::{json, Value};

/// The stack's resources, made afresh in the emulator.
struct Stack {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
    table_name: String,
    bucket: String,
}

impl Stack {
    async fn new() -> Self {
        let sdk = emulator::sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queues = emulator::create_queue_with_dead_letters(&sqs, "large", 5)
            .await
            .expect("the emulator creates the queues");
        let table_name =
            emulator::create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), "large")
                .await
                .expect("the emulator creates the table");
        let bucket = emulator::create_bucket(&emulator::s3_client().await, "large-bodies")
            .await
            .expect("the emulator creates the bucket");
        Self {
            sqs,
            queue_url: queues.queue_url,
            dlq_url: queues.dlq_url,
            table_name,
            bucket,
        }
    }

    /// `receiver-github`, configured as the template configures it, with the test secret.
    async fn receiver(&self) -> LambdaFunction {
        let mut env = emulator::function_environment();
        env.push(("QUEUE_URL", self.queue_url.clone()));
        env.push(("BODY_BUCKET", self.bucket.clone()));
        env.extend(receiver_environment(Provider::Github));
        LambdaFunction::start_ready("receiver-github", env).await
    }

    /// `processor`, with routes sending every event to `agent`.
    async fn processor(&self, routes: &std::path::Path) -> LambdaFunction {
        let mut env = emulator::function_environment();
        env.extend([
            ("QUEUE_URL", self.queue_url.clone()),
            ("DLQ_URL", self.dlq_url.clone()),
            ("TABLE_NAME", self.table_name.clone()),
            ("BODY_BUCKET", self.bucket.clone()),
            ("ROUTES_FILE", routes.display().to_string()),
            ("AGENT_SECRET", AGENT_SECRET.to_owned()),
        ]);
        LambdaFunction::start_ready("processor", env).await
    }

    /// Everything queued, as the event source mapping would hand it to the processor.
    async fn sqs_event(&self, expected: usize) -> Value {
        let messages = emulator::drain_queue(&self.sqs, &self.queue_url, expected)
            .await
            .expect("the emulator answers ReceiveMessage");
        assert_eq!(messages.len(), expected, "queued messages");
        let records: Vec<Value> = messages
            .iter()
            .map(|message| {
                let attributes: serde_json::Map<String, Value> = message
                    .attributes()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| (name.as_str().to_owned(), Value::from(value.clone())))
                    .collect();
                json!({
                    "messageId": message.message_id(),
                    "receiptHandle": message.receipt_handle(),
                    "body": message.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": message.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:large",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        json!({ "Records": records })
    }
}

/// A GitHub delivery of `body`, signed with the test secret, as API Gateway hands it to the
/// receiver: text as it is, anything else as base64, as HTTP APIs do.
fn github_request(delivery_id: &str, body: &[u8], content_type: &str) -> Value {
    let signature = hex::encode(hmac_sha256(GITHUB_TEST_SECRET.as_bytes(), body));
    let is_text = content_type == "application/json";
    let body = if is_text {
        Value::from(std::str::from_utf8(body).expect("a text body"))
    } else {
        Value::from(base64::engine::general_purpose::STANDARD.encode(body))
    };
    json!({
        "version": "2.0",
        "routeKey": "ANY /webhooks/github",
        "rawPath": "/webhooks/github",
        "rawQueryString": "",
        "headers": {
            "content-type": content_type,
            "user-agent": "GitHub-Hookshot/e2e",
            "x-github-delivery": delivery_id,
            "x-github-event": "push",
            "x-hub-signature-256": format!("sha256={signature}"),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "api",
            "http": {"method": "POST", "path": "/webhooks/github", "protocol": "HTTP/1.1",
                     "sourceIp": "192.30.252.44", "userAgent": "GitHub-Hookshot/e2e"},
            "requestId": format!("req-{delivery_id}"),
            "routeKey": "ANY /webhooks/github",
            "stage": "$default",
            "time": "27/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_780_800_000_u64
        },
        "body": body,
        "isBase64Encoded": !is_text
    })
}

fn hmac_sha256(key: &[u8], body: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// A push payload of about `size` bytes of JSON, with quotes, escapes and non-ASCII text in
/// it, as a large push of many commits has.
fn large_push(size: usize) -> Vec<u8> {
    let mut commits = Vec::new();
    let mut length = 0;
    let mut n = 0;
    while length < size {
        let commit = json!({
            "id": format!("{n:040x}"),
            "message": format!("Fix \"quoting\" in módulo {n}\nwith a tab\tand a backslash \\"),
            "author": {"name": "Zoë", "email": "zoe@example.com"},
            "added": [format!("src/file_{n}.rs")],
        });
        length += commit.to_string().len() + 1;
        commits.push(commit);
        n += 1;
    }
    serde_json::to_vec(&json!({"ref": "refs/heads/main", "commits": commits}))
        .expect("JSON serialises")
}

/// Bytes that are not UTF-8: every value, over and over.
fn binary(size: usize) -> Vec<u8> {
    (0..=255_u8).cycle().take(size).collect()
}

/// The raw body an agent call carried, decoded from the normalized event.
fn body_of(event: &Value) -> Vec<u8> {
    let body: RawBody = serde_json::from_value(event["body"].clone()).expect("a raw body");
    body.to_bytes().expect("an inline body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_700_kb_json_body_and_a_3_mb_binary_body_reach_the_agent_byte_for_byte() {
    let stack = Stack::new().await;
    let agent = Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent starts");
    let directory = scratch_directory("large-bodies");
    let routes = routes_to_agent(&directory, "github", &agent.url("/hooks"), 10);
    let receiver = stack.receiver().await;
    let processor = stack.processor(&routes).await;

    let json_body = large_push(700 * 1024);
    let binary_body = binary(3 * 1024 * 1024);
    for (id, body, content_type) in [
        ("d-large-json", &json_body, "application/json"),
        ("d-large-binary", &binary_body, "application/octet-stream"),
    ] {
        let answer = receiver
            .invoke(&github_request(id, body, content_type))
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(answer["statusCode"], 202, "{id}: {}", answer["body"]);
    }

    let event = stack.sqs_event(2).await;
    let mut stored = 0;
    for record in event["Records"].as_array().expect("records") {
        let envelope =
            Envelope::from_json(record["body"].as_str().expect("a body")).expect("an envelope");
        match &envelope.v1().body {
            RawBody::Stored(reference) => {
                stored += 1;
                assert_eq!(reference.size, binary_body.len() as u64);
                assert_eq!(
                    reference.location,
                    format!("s3://{}/bodies/{}", stack.bucket, sha256_hex(&binary_body))
                );
            }
            RawBody::Utf8(text) => assert_eq!(text.as_bytes(), json_body.as_slice()),
            RawBody::Base64(_) => panic!("the binary body should have been stored"),
        }
    }
    assert_eq!(
        stored, 1,
        "the 3 MB body went to the bucket, the 700 KB one inline"
    );

    let answer = processor
        .invoke(&event)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        answer["batchItemFailures"],
        json!([]),
        "{answer}\n{}",
        processor.output()
    );

    let calls = agent.wait_for_calls(2, Duration::from_secs(20)).await;
    assert_eq!(calls.len(), 2, "{}", processor.output());
    let mut received: Vec<(String, Vec<u8>)> = calls
        .iter()
        .map(|call| {
            assert_eq!(
                call.verified,
                Ok(()),
                "the agent checks hookgate's signature"
            );
            let event = call.json();
            (
                event["delivery_id"].as_str().unwrap_or_default().to_owned(),
                body_of(&event),
            )
        })
        .collect();
    received.sort();
    assert_eq!(received[0].0, "d-large-binary");
    assert!(
        received[0].1 == binary_body,
        "the binary body changed on the way"
    );
    assert_eq!(received[1].0, "d-large-json");
    assert!(
        received[1].1 == json_body,
        "the JSON body changed on the way"
    );
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413() {
    let stack = Stack::new().await;
    let receiver = stack.receiver().await;

    let at_the_limit = binary(MAX_REQUEST_BODY_BYTES);
    let answer = receiver
        .invoke(&github_request(
            "d-at-limit",
            &at_the_limit,
            "application/octet-stream",
        ))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(answer["statusCode"], 202, "{}", answer["body"]);

    let over = binary(MAX_REQUEST_BODY_BYTES + 1);
    let answer = receiver
        .invoke(&github_request(
            "d-over-limit",
            &over,
            "application/octet-stream",
        ))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(answer["statusCode"], 413, "{}", answer["body"]);

    let event = stack.sqs_event(1).await;
    let envelope = Envelope::from_json(event["Records"][0]["body"].as_str().expect("a body"))
        .expect("an envelope");
    assert_eq!(envelope.v1().delivery_id.as_deref(), Some("d-at-limit"));
}
