//! A GitHub webhook receiver written as anyone would write it with the crates hookgate's
//! receivers use, each at its defaults: tokio's multi-thread runtime, the SDK's default
//! HTTPS client and root certificates. It is the naive floor of scripts/bench: the least a
//! correct receiver does, against which hookgate's receivers are measured.
//!
//! Init reads the secret and the queue from the environment and makes the warm-up call
//! hookgate's receivers make (one `GetQueueAttributes`, which checks the queue and opens
//! the connection). Each request: the `X-Hub-Signature-256` HMAC checked over the raw body
//! in constant time, a minimal JSON envelope, one `SendMessage`, then 202.

#![forbid(unsafe_code)]

use aws_config::BehaviorVersion;
use aws_sdk_sqs::types::QueueAttributeName;
use hmac::{Hmac, KeyInit, Mac};
use lambda_http::{service_fn, Body, Error, Request, Response};
use sha2::Sha256;

struct Receiver {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    secret: Vec<u8>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let secret = std::env::var("WEBHOOK_SECRET")?.into_bytes();
    let queue_url = std::env::var("QUEUE_URL")?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    sqs.get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::MaximumMessageSize)
        .send()
        .await?;
    let receiver = Receiver {
        sqs,
        queue_url,
        secret,
    };
    lambda_http::run(service_fn(|request| receive(&receiver, request))).await
}

async fn receive(receiver: &Receiver, request: Request) -> Result<Response<Body>, Error> {
    let body: &[u8] = request.body().as_ref();
    if !signed_by(
        &receiver.secret,
        body,
        header(&request, "x-hub-signature-256"),
    ) {
        return Ok(Response::builder()
            .status(401)
            .body(Body::from("invalid signature"))?);
    }
    let envelope = serde_json::json!({
        "provider": "github",
        "delivery_id": header(&request, "x-github-delivery"),
        "event_type": header(&request, "x-github-event"),
        "body": String::from_utf8_lossy(body),
    });
    receiver
        .sqs
        .send_message()
        .queue_url(&receiver.queue_url)
        .message_body(envelope.to_string())
        .send()
        .await?;
    Ok(Response::builder()
        .status(202)
        .body(Body::from("{\"status\":\"accepted\"}"))?)
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// Whether `signature` is GitHub's `sha256=<hex>` HMAC of `body` under `secret`, compared
/// in constant time (`verify_slice`).
fn signed_by(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(expected) = signature
        .and_then(|signature| signature.strip_prefix("sha256="))
        .and_then(|digits| hex::decode(digits).ok())
    else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}
