//! Handler tests fed from `events/<provider>/*.json`, the very files users pass to
//! `cargo lambda invoke` and `sam local invoke`.
//!
//! Each file goes through the Lambda handler of a receiver configured as
//! `events/README.md` says (the provider's test secret, the generic sample settings), with
//! its clock at the time the file carries, so the timestamped signatures hold whenever the
//! files were last signed. What each file must get is read from its name: `rejected-*` a
//! 401, Slack's `url_verification` its challenge, every other a 202.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use hookgate::envelope::{Envelope, RawBody};
use hookgate::provider::Provider;
use hookgate::queue::MemoryQueue;
use hookgate::receiver::{Receiver, ReceiverConfig, SecretsConfig};
use hookgate::samples::{receiver_environment, SampleEvent};
use hookgate::secret::StaticSecrets;
use hookgate::telemetry::Metrics;
use hookgate::verify::scheme_for;
use lambda_http::{Body, Response};
use serde_json::Value;
use time::OffsetDateTime;

const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");

/// One sample event file.
struct EventFile {
    provider: Provider,
    /// The file name without `.json`.
    name: String,
    path: PathBuf,
    text: String,
    json: Value,
}

impl EventFile {
    fn is_rejected(&self) -> bool {
        self.name.starts_with("rejected-")
    }

    fn is_handshake(&self) -> bool {
        self.provider == Provider::Slack && self.name == "url_verification"
    }

    /// When the event reached API Gateway: the time its signatures are good for.
    fn time(&self) -> OffsetDateTime {
        let millis = self.json["requestContext"]["timeEpoch"]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: no requestContext.timeEpoch", self.path.display()));
        OffsetDateTime::from_unix_timestamp(millis / 1000).expect("a time API Gateway can send")
    }

    fn body(&self) -> &str {
        self.json["body"]
            .as_str()
            .expect("the sample events have text bodies")
    }
}

/// Every `*.json` in the providers' folders of `events/`, in a stable order.
fn event_files() -> Vec<EventFile> {
    let mut files = Vec::new();
    for provider in Provider::ALL {
        let folder = PathBuf::from(EVENTS).join(provider.as_str());
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable events folder").path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let name = path
                .file_stem()
                .expect("a file named *.json")
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(&path).expect("a readable event file");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            files.push(EventFile {
                provider,
                name,
                path,
                text,
                json,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(!files.is_empty(), "no events in {EVENTS}");
    files
}

/// A receiver as `events/README.md` configures it, on an in-memory queue, its clock
/// stopped at `now`.
fn receiver(provider: Provider, now: OffsetDateTime) -> (Receiver, MemoryQueue) {
    let mut env: HashMap<String, String> = receiver_environment(provider)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    env.insert(
        "QUEUE_URL".into(),
        "http://127.0.0.1:5000/123456789012/hookgate-events".into(),
    );
    let scheme = scheme_for(provider, &env).expect("the sample environment configures a scheme");
    let config = ReceiverConfig::from_env(&env, scheme.key_encoding())
        .expect("the sample environment configures a receiver");
    let SecretsConfig::Environment(keys) = config.secrets else {
        panic!("the sample environment has its secret inline");
    };
    let queue = MemoryQueue::new();
    let receiver = Receiver::new(
        scheme,
        Arc::new(StaticSecrets::new(keys)),
        Arc::new(queue.clone()),
        config.settings,
    )
    .with_clock(Arc::new(move || now))
    .with_metrics(Metrics::in_memory());
    (receiver, queue)
}

/// Runs the file through a receiver's Lambda handler at `now`.
async fn invoke(file: &EventFile, now: OffsetDateTime) -> (u16, Value, MemoryQueue) {
    let request = lambda_http::request::from_str(&file.text)
        .unwrap_or_else(|error| panic!("{}: {error}", file.path.display()));
    let (receiver, queue) = receiver(file.provider, now);
    let response = hookgate::lambda::handle(&receiver, request).await;
    let status = response.status().as_u16();
    (status, response_json(&response), queue)
}

fn response_json(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).expect("receivers answer JSON")
}

#[tokio::test]
async fn every_genuine_event_is_queued_with_its_body_byte_for_byte() {
    let files = event_files();
    let genuine: Vec<&EventFile> = files
        .iter()
        .filter(|file| !file.is_rejected() && !file.is_handshake())
        .collect();
    assert!(!genuine.is_empty());
    for file in genuine {
        let path = file.path.display();
        let (status, answer, queue) = invoke(file, file.time()).await;
        assert_eq!(status, 202, "{path}: {answer}");
        let messages = queue.messages();
        assert_eq!(messages.len(), 1, "{path}");
        let envelope = Envelope::from_json(&messages[0].body).unwrap();
        let envelope = envelope.v1();
        assert_eq!(envelope.provider, file.provider, "{path}");
        assert_eq!(
            envelope.body,
            RawBody::Utf8(file.body().to_owned()),
            "{path}"
        );
        assert_eq!(
            answer["idempotency_key"],
            envelope.idempotency_key.as_str(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_rejected_event_is_answered_401_and_queues_nothing() {
    let files = event_files();
    let rejected: Vec<&EventFile> = files.iter().filter(|file| file.is_rejected()).collect();
    assert!(!rejected.is_empty());
    for file in rejected {
        let (status, answer, queue) = invoke(file, file.time()).await;
        assert_eq!(status, 401, "{}: {answer}", file.path.display());
        assert!(queue.messages().is_empty(), "{}", file.path.display());
    }
}

#[tokio::test]
async fn slacks_url_verification_is_answered_with_its_challenge_and_not_queued() {
    let files = event_files();
    let file = files
        .iter()
        .find(|file| file.is_handshake())
        .expect("events/slack/url_verification.json");
    let (status, answer, queue) = invoke(file, file.time()).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(file.body()).unwrap();
    assert_eq!(answer, serde_json::json!({"challenge": body["challenge"]}));
    assert!(queue.messages().is_empty());
}

#[tokio::test]
async fn a_timestamped_genuine_event_is_refused_once_the_window_has_passed() {
    let files = event_files();
    let file = files
        .iter()
        .find(|file| file.provider == Provider::Stripe && !file.is_rejected())
        .expect("a genuine Stripe event");
    let later = file.time() + time::Duration::minutes(10);
    let (status, _, queue) = invoke(file, later).await;
    assert_eq!(status, 401);
    assert!(queue.messages().is_empty());
}

#[test]
fn every_event_file_is_exactly_what_the_samples_generate_for_its_time() {
    let files = event_files();
    for file in &files {
        let sample = SampleEvent::find(file.provider, &file.name)
            .unwrap_or_else(|error| panic!("{}: {error}", file.path.display()));
        assert!(
            sample.file_contents(file.time()) == file.text,
            "{} was changed by hand or the samples changed since it was generated; \
             run `cargo run -q -p hookgate-cli -- events`",
            file.path.display()
        );
    }
    for sample in SampleEvent::all() {
        assert!(
            files
                .iter()
                .any(|file| file.path.ends_with(sample.relative_path())),
            "events/{} is missing; run `cargo run -q -p hookgate-cli -- events`",
            sample.relative_path()
        );
    }
}

#[test]
fn every_provider_has_a_genuine_event_and_a_rejected_one() {
    let files = event_files();
    for provider in Provider::ALL {
        let of = |rejected: bool| {
            files
                .iter()
                .any(|file| file.provider == provider && file.is_rejected() == rejected)
        };
        assert!(of(false), "no genuine event in events/{provider}/");
        assert!(of(true), "no rejected event in events/{provider}/");
    }
}
