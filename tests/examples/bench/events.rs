//! What the bench hands the binaries: signed API Gateway events for the receivers (and the
//! floors), and SQS batches of real envelopes for the processor, all made by hookgate's own
//! samples and schemes, as the tests make theirs.

use hookgate::envelope::QueueMessage;
use hookgate::provider::Provider;
use hookgate::request::InboundRequest;
use hookgate::secret::KeyRing;
use hookgate::verify::{verify, Verified};
use hookgate_samples::{sample_scheme, test_secret, SampleDelivery, SampleEvent, Variant};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// How far a delivery's signed time may be from its verification: the receivers' default.
const TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

/// The provider's first genuine sample that its receiver queues (Slack's `url_verification`
/// handshake is answered, not queued, so it is passed over).
fn queued_sample(provider: Provider, at: OffsetDateTime) -> SampleEvent {
    SampleEvent::all()
        .into_iter()
        .filter(|event| event.provider() == provider && event.variant() == Variant::Genuine)
        .find(|event| event.queue_message(at).is_some())
        .unwrap_or_else(|| panic!("{provider} has no sample its receiver queues"))
}

/// The current time to the second, as API Gateway reports it and the samples sign it.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// `body` (a JSON object) with a `padding` member first, starting with `tag`, so that the
/// body is `size` bytes (or just over, if `size` is smaller than the body): every field a
/// scheme reads is still there, and bodies with different tags differ.
fn padded(body: &str, tag: &str, size: usize) -> String {
    let rest = body
        .trim_start()
        .strip_prefix('{')
        .expect("the samples' bodies are JSON objects");
    let frame = "{\"padding\":\"\",".len() + tag.len() + rest.len();
    let fill = size.saturating_sub(frame);
    format!("{{\"padding\":\"{tag}{}\",{rest}", "a".repeat(fill))
}

/// The provider's sample delivery with a `size`-byte body, signed at `at` with the test
/// secret. `unique` makes the delivery an event of its own: it is in the body (and, for
/// Stripe, whose id is read from the body, it is the event's id; for GitHub, it is the
/// delivery id, which GitHub does not sign).
fn delivery(provider: Provider, unique: &str, size: usize, at: OffsetDateTime) -> SampleDelivery {
    let sample = queued_sample(provider, at);
    let body = match provider {
        Provider::Stripe => {
            let mut body: Value =
                serde_json::from_str(sample.body()).expect("Stripe's sample body is JSON");
            body["id"] = json!(format!("evt_bench_{unique}"));
            body.to_string()
        }
        _ => sample.body().to_owned(),
    };
    let mut delivery = sample.delivery_with_body(at, &padded(&body, unique, size));
    if provider == Provider::Github {
        delivery
            .headers
            .insert("x-github-delivery".to_owned(), delivery_id(unique));
    }
    delivery
}

/// A GitHub-style delivery id (a UUID's shape) made from `unique`.
fn delivery_id(unique: &str) -> String {
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(unique.as_bytes()));
    format!(
        "{}-{}-4{}-8{}-{}",
        &digest[..8],
        &digest[8..12],
        &digest[13..16],
        &digest[17..20],
        &digest[20..32]
    )
}

/// The API Gateway (HTTP API) event of the provider's delivery with a `size`-byte body,
/// signed now: the sample's event, with the body and signature headers of the padded
/// delivery.
pub fn api_gateway_event(provider: Provider, unique: &str, size: usize) -> Value {
    let at = now();
    let sample = queued_sample(provider, at);
    let mut event = sample.api_gateway_event(at);
    let delivery = delivery(provider, unique, size, at);
    for (name, value) in &delivery.headers {
        event["headers"][name] = json!(value);
    }
    event["headers"]["content-length"] = json!(delivery.body.len().to_string());
    event["body"] = json!(delivery.body);
    event
}

/// The queue message a receiver makes of the provider's delivery: the delivery verified by
/// the provider's scheme and wrapped by [`QueueMessage::from_verified`], as the receiver
/// does.
pub fn queue_message(provider: Provider, unique: &str, size: usize) -> QueueMessage {
    let at = now();
    let delivery = delivery(provider, unique, size, at);
    let mut request = InboundRequest::post(delivery.body);
    request.received_at = at;
    for (name, value) in &delivery.headers {
        request = request.with_header(name, value);
    }
    let scheme = sample_scheme(provider);
    let keys = KeyRing::from_secrets(test_secret(provider), None, scheme.key_encoding())
        .expect("the test secret is a valid key");
    match verify(scheme.as_ref(), &request, &keys, at, TOLERANCE) {
        Ok(Verified::Webhook(webhook)) => QueueMessage::from_verified(&webhook),
        other => panic!("the bench's {provider} delivery verifies as a webhook: {other:?}"),
    }
}

/// The SQS event Lambda's event source mapping hands the processor for `messages`, first
/// received now, from the queue whose ARN is `queue_arn`.
pub fn sqs_event(messages: &[(String, QueueMessage)], queue_arn: &str) -> Value {
    let sent = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let records: Vec<Value> = messages
        .iter()
        .map(|(message_id, message)| {
            let attributes: serde_json::Map<String, Value> = message
                .attributes()
                .into_iter()
                .map(|(name, value)| {
                    (
                        name.to_owned(),
                        json!({
                            "stringValue": value,
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": "String",
                        }),
                    )
                })
                .collect();
            json!({
                "messageId": message_id,
                "receiptHandle": format!("AQEB-bench-{message_id}"),
                "body": message.body(),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": sent.to_string(),
                    "SenderId": "AROAHOOKGATEEXAMPLE01:hookgate-bench",
                    "ApproximateFirstReceiveTimestamp": sent.to_string(),
                },
                "messageAttributes": attributes,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}
