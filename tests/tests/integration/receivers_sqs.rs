//! Every provider's receiver against the emulator's SQS: a delivery signed the way the
//! provider documents it is answered 202 and arrives as an envelope carrying the raw body
//! byte for byte; anything the queue does not take is answered 503, never 2xx.
//!
//! The signatures here are computed from the providers' documented constructions, not with
//! the library's own signers, so that a scheme and its signer drifting together still fails.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_sqs::types::{Message, QueueAttributeName};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use hookgate::aws::SqsEventQueue;
use hookgate::envelope::{Envelope, RawBody};
use hookgate::provider::Provider;
use hookgate::receiver::{Answer, Receiver, ReceiverSettings};
use hookgate::request::InboundRequest;
use hookgate::secret::{KeyRing, StaticSecrets};
use hookgate::verify::scheme_for;
use hookgate_tests::emulator;
use sha2::{Digest, Sha256};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// HMAC-SHA256, computed independently of the library's signers, from each provider's
/// documented construction.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn now() -> String {
    time::OffsetDateTime::now_utc().unix_timestamp().to_string()
}

fn request(body: impl Into<bytes::Bytes>, headers: &[(&str, &str)]) -> InboundRequest {
    headers
        .iter()
        .fold(InboundRequest::post(body), |request, (name, value)| {
            request.with_header(name, value)
        })
}

/// A receiver for one provider, sending to a fresh queue of its own.
#[derive(Debug)]
pub(super) struct Harness {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receiver: Receiver,
}

impl Harness {
    pub(super) async fn new(provider: Provider, secret: &str) -> Self {
        Self::with_queue_attributes(provider, secret, &[]).await
    }

    async fn with_queue_attributes(
        provider: Provider,
        secret: &str,
        attributes: &[(QueueAttributeName, &str)],
    ) -> Self {
        let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
        let mut create = sqs
            .create_queue()
            .queue_name(emulator::unique_name(&format!("receiver-{provider}")));
        for (name, value) in attributes {
            create = create.attributes(name.clone(), *value);
        }
        let queue_url = create
            .send()
            .await
            .expect("the emulator creates a queue")
            .queue_url
            .expect("a created queue has a URL");
        let no_settings: HashMap<&str, &str> = HashMap::new();
        let scheme = scheme_for(provider, &no_settings).expect("the default settings are valid");
        let keys = KeyRing::from_secrets(secret, None, scheme.key_encoding())
            .expect("the test secret is usable");
        let queue = SqsEventQueue::connect(sqs.clone(), queue_url.clone())
            .await
            .expect("the adapter connects to a queue that exists");
        let receiver = Receiver::new(
            scheme,
            Arc::new(StaticSecrets::new(keys)),
            Arc::new(queue),
            ReceiverSettings::default(),
        );
        Self {
            sqs,
            queue_url,
            receiver,
        }
    }

    pub(super) async fn answer(&self, request: InboundRequest) -> Answer {
        self.receiver.answer(request).await
    }

    /// The one message the receiver queued; fails on none or several.
    pub(super) async fn the_queued_message(&self) -> Message {
        let mut messages = emulator::drain_queue(&self.sqs, &self.queue_url, 1)
            .await
            .expect("the emulator answers ReceiveMessage");
        assert_eq!(messages.len(), 1, "expected one message: {messages:?}");
        // Received messages stay invisible for the visibility timeout, so a second copy
        // would be all that is left.
        self.assert_nothing_is_queued().await;
        messages.remove(0)
    }

    /// One short poll is enough: the receiver has answered, so whatever it sent is in.
    async fn assert_nothing_is_queued(&self) {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("the emulator answers ReceiveMessage");
        let messages = output.messages();
        assert!(
            messages.is_empty(),
            "nothing should be queued: {messages:?}"
        );
    }
}

fn string_attribute<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .message_attributes()?
        .get(name)
        .filter(|value| value.data_type() == "String")?
        .string_value()
}

/// What a 202 and its message must show for one delivery.
struct Expected<'a> {
    idempotency_key: &'a str,
    event_type: &'a str,
    body: &'a [u8],
}

/// Answers the request and checks the answer, the envelope and the message attributes.
async fn assert_accepted_and_queued(
    harness: &Harness,
    request: InboundRequest,
    expected: Expected<'_>,
) -> Envelope {
    let answer = harness.answer(request).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let answer_body: serde_json::Value =
        serde_json::from_str(&answer.body).expect("a 202 answers JSON");
    assert_eq!(
        answer_body,
        serde_json::json!({"status": "accepted", "idempotency_key": expected.idempotency_key})
    );

    let message = harness.the_queued_message().await;
    let envelope = Envelope::from_json(message.body().unwrap_or_default())
        .expect("the message body is an envelope");
    let v1 = envelope.v1();
    let provider = harness.receiver.provider();
    assert_eq!(v1.provider, provider);
    assert_eq!(v1.idempotency_key.as_str(), expected.idempotency_key);
    assert_eq!(v1.event_type, expected.event_type);
    assert_eq!(
        v1.body.to_bytes().expect("the body decodes"),
        expected.body,
        "the raw body must travel byte for byte"
    );
    assert_eq!(v1.body_sha256, hex::encode(Sha256::digest(expected.body)));
    assert_eq!(
        string_attribute(&message, "provider"),
        Some(provider.as_str())
    );
    assert_eq!(
        string_attribute(&message, "event_type"),
        Some(expected.event_type)
    );
    envelope
}

// ---- one correctly signed delivery per provider ----

const GITHUB_SECRET: &str = "It's a Secret to Everybody";

fn github_request(body: &[u8], secret: &str, delivery: &str) -> InboundRequest {
    let signature = format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    );
    request(
        body.to_vec(),
        &[
            ("X-Hub-Signature-256", &signature),
            ("X-GitHub-Delivery", delivery),
            ("X-GitHub-Event", "issues"),
            ("Content-Type", "application/json"),
        ],
    )
}

#[tokio::test]
async fn a_verified_github_delivery_is_queued_with_its_raw_body_and_attributes() {
    let harness = Harness::new(Provider::Github, GITHUB_SECRET).await;
    let delivery = emulator::unique_name("72d3162e");
    let body = br#"{"action":"opened","issue":{"number":1347,"title":"Found a bug"}}"#;

    assert_accepted_and_queued(
        &harness,
        github_request(body, GITHUB_SECRET, &delivery),
        Expected {
            idempotency_key: &format!("github:{delivery}"),
            event_type: "issues.opened",
            body,
        },
    )
    .await;
}

#[tokio::test]
async fn a_verified_stripe_event_is_queued_with_its_raw_body_and_attributes() {
    let secret = "whsec_test_secret";
    let harness = Harness::new(Provider::Stripe, secret).await;
    let event_id = emulator::unique_name("evt_1NG8Du2eZvKYlo2CUI79vXWy");
    let body = format!(
        r#"{{"id":"{event_id}","object":"event","type":"payment_intent.succeeded","data":{{"object":{{"amount":2000}}}}}}"#
    );
    let timestamp = now();
    let signed = format!("{timestamp}.{body}");
    let header = format!(
        "t={timestamp},v1={}",
        hex::encode(hmac_sha256(secret.as_bytes(), signed.as_bytes()))
    );

    assert_accepted_and_queued(
        &harness,
        request(body.clone(), &[("Stripe-Signature", &header)]),
        Expected {
            idempotency_key: &format!("stripe:{event_id}"),
            event_type: "payment_intent.succeeded",
            body: body.as_bytes(),
        },
    )
    .await;
}

#[tokio::test]
async fn a_verified_shopify_webhook_is_queued_with_its_raw_body_and_attributes() {
    let secret = "hush";
    let harness = Harness::new(Provider::Shopify, secret).await;
    let webhook_id = emulator::unique_name("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
    let body = br#"{"id":820982911946154508,"email":"jon@doe.ca","total_price":"11.94"}"#;
    let signature = BASE64.encode(hmac_sha256(secret.as_bytes(), body));

    assert_accepted_and_queued(
        &harness,
        request(
            body.to_vec(),
            &[
                ("X-Shopify-Hmac-Sha256", &signature),
                ("X-Shopify-Webhook-Id", &webhook_id),
                ("X-Shopify-Topic", "orders/create"),
                ("X-Shopify-Shop-Domain", "example.myshopify.com"),
                ("Content-Type", "application/json"),
            ],
        ),
        Expected {
            idempotency_key: &format!("shopify:{webhook_id}"),
            event_type: "orders/create",
            body,
        },
    )
    .await;
}

#[tokio::test]
async fn a_verified_slack_event_is_queued_with_its_raw_body_and_attributes() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let harness = Harness::new(Provider::Slack, secret).await;
    let event_id = emulator::unique_name("Ev08MFMKH6");
    let body = format!(
        r#"{{"token":"z26uFbvR1xHJEdHE1OQiO6t8","team_id":"T061EG9RZ","type":"event_callback","event_id":"{event_id}","event":{{"type":"app_mention","text":"<@U0LAN0Z89> is it everything a river should be?"}}}}"#
    );
    let timestamp = now();
    let signed = format!("v0:{timestamp}:{body}");
    let signature = format!(
        "v0={}",
        hex::encode(hmac_sha256(secret.as_bytes(), signed.as_bytes()))
    );

    assert_accepted_and_queued(
        &harness,
        request(
            body.clone(),
            &[
                ("X-Slack-Signature", &signature),
                ("X-Slack-Request-Timestamp", &timestamp),
                ("Content-Type", "application/json"),
            ],
        ),
        Expected {
            idempotency_key: &format!("slack:{event_id}"),
            event_type: "app_mention",
            body: body.as_bytes(),
        },
    )
    .await;
}

#[tokio::test]
async fn a_verified_standard_webhook_is_queued_with_its_raw_body_and_attributes() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let key = BASE64
        .decode(secret.trim_start_matches("whsec_"))
        .expect("the test secret is base64");
    let harness = Harness::new(Provider::Standard, secret).await;
    let message_id = emulator::unique_name("msg_p5jXN8AQM9LWM0D4loKWxJek");
    let body = br#"{"type":"user.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"user_1"}}"#;
    let timestamp = now();
    let mut signed = format!("{message_id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let signature = format!("v1,{}", BASE64.encode(hmac_sha256(&key, &signed)));

    assert_accepted_and_queued(
        &harness,
        request(
            body.to_vec(),
            &[
                ("webhook-id", &message_id),
                ("webhook-timestamp", &timestamp),
                ("webhook-signature", &signature),
                ("Content-Type", "application/json"),
            ],
        ),
        Expected {
            idempotency_key: &format!("standard:{message_id}"),
            event_type: "user.created",
            body,
        },
    )
    .await;
}

const GENERIC_SECRET: &str = "generic-sender-secret";

/// The generic scheme's defaults: hex HMAC of the body in `X-Signature`.
fn generic_request(body: &[u8]) -> InboundRequest {
    let signature = hex::encode(hmac_sha256(GENERIC_SECRET.as_bytes(), body));
    request(body.to_vec(), &[("X-Signature", &signature)])
}

/// Without an id header, the key is the body's hash; without a type setting, `webhook`.
fn generic_key(body: &[u8]) -> String {
    format!("generic:sha256:{}", hex::encode(Sha256::digest(body)))
}

#[tokio::test]
async fn a_verified_generic_delivery_is_queued_with_its_raw_body_and_attributes() {
    let harness = Harness::new(Provider::Generic, GENERIC_SECRET).await;
    let body = format!(
        r#"{{"kind":"invoice.paid","nonce":"{}"}}"#,
        emulator::unique_name("n")
    );

    assert_accepted_and_queued(
        &harness,
        generic_request(body.as_bytes()),
        Expected {
            idempotency_key: &generic_key(body.as_bytes()),
            event_type: "webhook",
            body: body.as_bytes(),
        },
    )
    .await;
}

// ---- the raw body, whatever it holds ----

#[tokio::test]
async fn a_body_with_non_ascii_text_and_irregular_whitespace_is_queued_byte_for_byte() {
    let harness = Harness::new(Provider::Github, GITHUB_SECRET).await;
    let delivery = emulator::unique_name("whitespace");
    let body = "{\r\n\t\"action\" :\t\"opened\",  \r\n  \"comment\": \"  é ✓ \u{00a0}\" ,\n\t\"n\": 1.50 }  \r\n\t ";

    let envelope = assert_accepted_and_queued(
        &harness,
        github_request(body.as_bytes(), GITHUB_SECRET, &delivery),
        Expected {
            idempotency_key: &format!("github:{delivery}"),
            event_type: "issues.opened",
            body: body.as_bytes(),
        },
    )
    .await;

    assert_eq!(envelope.v1().body, RawBody::Utf8(body.to_owned()));
}

#[tokio::test]
async fn a_body_that_is_not_utf8_travels_as_base64_and_decodes_to_the_same_bytes() {
    let harness = Harness::new(Provider::Generic, GENERIC_SECRET).await;
    let mut body = vec![0xff, 0xfe];
    body.extend_from_slice("binary payload \u{2713}\0 end".as_bytes());
    assert!(std::str::from_utf8(&body).is_err());

    let envelope = assert_accepted_and_queued(
        &harness,
        generic_request(&body),
        Expected {
            idempotency_key: &generic_key(&body),
            event_type: "webhook",
            body: &body,
        },
    )
    .await;

    assert_eq!(envelope.v1().body, RawBody::Base64(BASE64.encode(&body)));
}

// ---- what is not queued is not accepted ----

#[tokio::test]
async fn a_queue_deleted_after_start_is_answered_503() {
    let harness = Harness::new(Provider::Github, GITHUB_SECRET).await;
    harness
        .sqs
        .delete_queue()
        .queue_url(&harness.queue_url)
        .send()
        .await
        .expect("the emulator deletes the queue");

    let answer = harness
        .answer(github_request(
            br#"{"action":"opened"}"#,
            GITHUB_SECRET,
            "d-deleted",
        ))
        .await;

    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.headers.contains(&("retry-after", "5")), "{answer:?}");
}

#[tokio::test]
async fn an_envelope_over_the_queues_own_maximum_is_answered_413_without_a_body_store() {
    // The receiver reads the queue's MaximumMessageSize (here 4 KiB) at init, and keeps room
    // for the dead-letter attributes under it: a body well under MAX_BODY_BYTES is still too
    // large for this queue, and without BODY_BUCKET there is nowhere else to put it. SQS is
    // never asked to take what it would refuse.
    let harness = Harness::with_queue_attributes(
        Provider::Github,
        GITHUB_SECRET,
        &[(QueueAttributeName::MaximumMessageSize, "4096")],
    )
    .await;
    let body = format!(
        r#"{{"action":"opened","issue":{{"body":"{}"}}}}"#,
        "x".repeat(2_000)
    );

    let answer = harness
        .answer(github_request(
            body.as_bytes(),
            GITHUB_SECRET,
            "d-too-large-for-the-queue",
        ))
        .await;

    assert_eq!(answer.status, 413, "{answer:?}");
    harness.assert_nothing_is_queued().await;
}

#[tokio::test]
async fn a_bad_signature_is_answered_401_and_nothing_is_queued() {
    let harness = Harness::new(Provider::Github, GITHUB_SECRET).await;

    let answer = harness
        .answer(github_request(
            br#"{"action":"opened"}"#,
            "not the secret",
            "d-forged",
        ))
        .await;

    assert_eq!(answer.status, 401, "{answer:?}");
    harness.assert_nothing_is_queued().await;
}
