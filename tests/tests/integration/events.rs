//! Handler tests fed from `events/`, the very files users pass to `cargo lambda invoke` and
//! `sam local invoke`.
//!
//! Each `events/<provider>/*.json` goes through the Lambda handler of a receiver configured
//! as `events/README.md` says (the provider's test secret, the generic sample settings),
//! with its clock at the time the file carries, so the timestamped signatures hold whenever
//! the files were last signed. What each file must get is read from its name: `rejected-*`
//! a 401, Slack's `url_verification` its challenge, every other a 202.
//!
//! Each `events/processor/*.json` must be an SQS event as Lambda's event types read it,
//! every body an envelope (but `unreadable-envelope.json`'s), and goes through the
//! processor's Lambda handler on in-memory adapters.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use hookgate::claims::MemoryStore;
use hookgate::envelope::{attribute, Envelope, RawBody, ENVELOPE_VERSION};
use hookgate::lambda::processor::handle_batch;
use hookgate::processor::actions::LogActions;
use hookgate::processor::{ControlCall, MemoryQueueControl, Processor, ProcessorConfig};
use hookgate::provider::Provider;
use hookgate::queue::MemoryQueue;
use hookgate::receiver::{Receiver, ReceiverConfig, SecretsConfig};
use hookgate::routes::RouteTable;
use hookgate::secret::StaticSecrets;
use hookgate::telemetry::Metrics;
use hookgate_samples::{
    receiver_environment, sqs_event_time, SampleEvent, SqsSampleEvent, UNREADABLE_BODY,
};
use lambda_http::{Body, Context, LambdaEvent, Response};
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
        SampleEvent::find(self.provider, &self.name).is_ok_and(|sample| sample.is_handshake())
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

/// Every `*.json` file of `folder`, with its name (the file stem) and text; none when the
/// folder does not exist.
fn json_files_in(folder: &Path) -> Vec<(String, PathBuf, String)> {
    let Ok(entries) = fs::read_dir(folder) else {
        return Vec::new();
    };
    entries
        .map(|entry| entry.expect("a readable events folder").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path
                .file_stem()
                .expect("a file named *.json")
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(&path).expect("a readable event file");
            (name, path, text)
        })
        .collect()
}

/// Every `*.json` in the providers' folders of `events/`, in a stable order.
fn event_files() -> Vec<EventFile> {
    let mut files = Vec::new();
    for provider in Provider::ALL {
        let folder = PathBuf::from(EVENTS).join(provider.as_str());
        for (name, path, text) in json_files_in(&folder) {
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
    // As `scheme_for` makes it, but for SNS, whose samples' scheme also trusts their test
    // certificate (a deployed one never does).
    let scheme = hookgate_samples::sample_scheme(provider);
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

/// The answer's body as JSON; an answer of another type (Linear's `OK`, Twilio's TwiML)
/// as a JSON string.
fn response_json(response: &Response<Body>) -> Value {
    let body = response.body().as_ref();
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
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
        // 202, or 200 with the answer the provider expects (Discord, Linear, Twilio).
        let acknowledged = SampleEvent::find(file.provider, &file.name)
            .expect("a sample's file")
            .acknowledgement(file.time())
            .is_some();
        assert_eq!(
            status,
            if acknowledged { 200 } else { 202 },
            "{path}: {answer}"
        );
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
        if !acknowledged {
            assert_eq!(
                answer["idempotency_key"],
                envelope.idempotency_key.as_str(),
                "{path}"
            );
        }
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
        .find(|file| file.provider == Provider::Slack && file.is_handshake())
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
             run `cargo run -q --bin hookgate -- samples`",
            file.path.display()
        );
    }
    for sample in SampleEvent::all() {
        assert!(
            files
                .iter()
                .any(|file| file.path.ends_with(sample.relative_path())),
            "events/{} is missing; run `cargo run -q --bin hookgate -- samples`",
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

// ---------------------------------------------------------------------------
// The processor's SQS events

const PROCESSOR_EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/processor");

/// One file of `events/processor/`.
struct SqsFile {
    /// The file name without `.json`.
    name: String,
    path: PathBuf,
    text: String,
    event: SqsEvent,
}

impl SqsFile {
    fn has_envelopes(&self) -> bool {
        self.name != "unreadable-envelope"
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).expect("the file is JSON")
    }
}

/// Every `*.json` of `events/processor/`, read as Lambda's SQS event type, in a stable
/// order.
fn sqs_files() -> Vec<SqsFile> {
    let mut files: Vec<SqsFile> = json_files_in(Path::new(PROCESSOR_EVENTS))
        .into_iter()
        .map(|(name, path, text)| {
            let event: SqsEvent = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{} is not an SQS event: {error}", path.display()));
            SqsFile {
                name,
                path,
                text,
                event,
            }
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(!files.is_empty(), "no events in {PROCESSOR_EVENTS}");
    files
}

fn sqs_file(name: &str) -> SqsFile {
    sqs_files()
        .into_iter()
        .find(|file| file.name == name)
        .unwrap_or_else(|| panic!("events/processor/{name}.json is missing"))
}

fn string_attribute<'a>(message: &'a SqsMessage, name: &str) -> Option<&'a str> {
    let value = message.message_attributes.get(name)?;
    assert_eq!(value.data_type.as_deref(), Some("String"), "{name}");
    value.string_value.as_deref()
}

#[test]
fn every_processor_event_is_an_sqs_event_with_complete_records() {
    for file in sqs_files() {
        let path = file.path.display();
        assert!(!file.event.records.is_empty(), "{path}: no Records");
        assert!(file.event.records.len() <= 10, "{path}: BatchSize is 10");
        for record in &file.event.records {
            for (field, value) in [
                ("messageId", &record.message_id),
                ("receiptHandle", &record.receipt_handle),
                ("body", &record.body),
                ("md5OfBody", &record.md5_of_body),
                ("eventSourceARN", &record.event_source_arn),
                ("awsRegion", &record.aws_region),
            ] {
                assert!(
                    value.as_deref().is_some_and(|v| !v.is_empty()),
                    "{path}: {field}"
                );
            }
            assert_eq!(record.event_source.as_deref(), Some("aws:sqs"), "{path}");
            for attribute in [
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
            ] {
                assert!(
                    record.attributes.contains_key(attribute),
                    "{path}: attributes.{attribute}"
                );
            }
            // What the processor reads from the record.
            let delivery = hookgate::lambda::processor::delivery(record.clone());
            assert_eq!(delivery.receive_count, 1, "{path}");
            assert_eq!(Some(&delivery.body), record.body.as_ref(), "{path}");
        }
    }
}

#[test]
fn every_processor_record_body_is_an_envelope_its_attributes_describe() {
    for file in sqs_files().into_iter().filter(SqsFile::has_envelopes) {
        let path = file.path.display();
        for record in &file.event.records {
            let body = record.body.as_deref().unwrap_or_default();
            let envelope =
                Envelope::from_json(body).unwrap_or_else(|error| panic!("{path}: {error}"));
            let envelope = envelope.v1();
            assert_eq!(
                string_attribute(record, attribute::PROVIDER),
                Some(envelope.provider.as_str()),
                "{path}"
            );
            assert_eq!(
                string_attribute(record, attribute::EVENT_TYPE),
                Some(envelope.event_type.as_str()),
                "{path}"
            );
            assert_eq!(
                string_attribute(record, attribute::ENVELOPE_VERSION),
                Some(ENVELOPE_VERSION.to_string().as_str()),
                "{path}"
            );
            assert!(
                envelope
                    .idempotency_key
                    .as_str()
                    .starts_with(&format!("{}:", envelope.provider)),
                "{path}: {}",
                envelope.idempotency_key
            );
        }
    }
}

#[test]
fn each_single_processor_event_carries_its_samples_body_byte_for_byte() {
    for file in sqs_files() {
        let Some((provider, sample)) = file.name.split_once('-') else {
            continue;
        };
        let Ok(provider) = provider.parse::<Provider>() else {
            continue;
        };
        let path = file.path.display();
        let at = sqs_event_time(&file.json()).unwrap_or_else(|| panic!("{path}: no time"));
        let sample = SampleEvent::find(provider, sample).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(file.event.records.len(), 1, "{path}");
        let body = file.event.records[0].body.as_deref().unwrap_or_default();
        let envelope = Envelope::from_json(body).unwrap();
        let envelope = envelope.v1();
        assert_eq!(envelope.provider, provider, "{path}");
        assert_eq!(envelope.received_at, at, "{path}");
        assert_eq!(
            envelope.body,
            RawBody::Utf8(sample.delivery(at).body),
            "{path}"
        );
    }
}

#[test]
fn the_batch_holds_a_full_batch_of_envelopes_of_distinct_providers_and_the_unreadable_event_none() {
    let batch = sqs_file("batch");
    let providers: std::collections::BTreeSet<&str> = batch
        .event
        .records
        .iter()
        .map(|record| {
            let body = record.body.as_deref().unwrap_or_default();
            Envelope::from_json(body).unwrap().v1().provider.as_str()
        })
        .collect();
    assert_eq!(batch.event.records.len(), hookgate_samples::BATCH_SIZE);
    assert_eq!(providers.len(), hookgate_samples::BATCH_SIZE);

    let unreadable = sqs_file("unreadable-envelope");
    assert_eq!(unreadable.event.records.len(), 1);
    let body = unreadable.event.records[0]
        .body
        .as_deref()
        .unwrap_or_default();
    assert_eq!(body, UNREADABLE_BODY);
    assert!(Envelope::from_json(body).is_err());
}

#[test]
fn every_processor_event_file_is_exactly_what_the_samples_generate_for_its_time() {
    let files = sqs_files();
    let samples = SqsSampleEvent::all();
    for file in &files {
        let sample = samples
            .iter()
            .find(|sample| sample.name() == file.name)
            .unwrap_or_else(|| panic!("{} is not a sample event", file.path.display()));
        let at = sqs_event_time(&file.json())
            .unwrap_or_else(|| panic!("{}: no SentTimestamp", file.path.display()));
        assert!(
            sample.file_contents(at) == file.text,
            "{} was changed by hand or the samples changed since it was generated; \
             run `cargo run -q --bin hookgate -- samples`",
            file.path.display()
        );
        assert_eq!(sample.has_envelopes(), file.has_envelopes());
    }
    for sample in samples {
        assert!(
            files.iter().any(|file| file.name == sample.name()),
            "events/{} is missing; run `cargo run -q --bin hookgate -- samples`",
            sample.relative_path()
        );
    }
}

/// Every event to a `log` action, so the tests do not depend on what the bundled routes
/// send where.
const LOG_EVERYTHING: &str = r#"
[[route]]
name = "log everything"
provider = "*"
events = ["*"]
actions = ["log"]

[action.log]
type = "log"
"#;

/// A processor as the function wires it, with its default settings, on in-memory adapters.
fn processor() -> (Processor, MemoryQueueControl, Metrics) {
    let env: HashMap<&str, &str> = HashMap::from([
        ("TABLE_NAME", "hookgate-idempotency"),
        (
            "QUEUE_URL",
            "http://127.0.0.1:5000/123456789012/hookgate-envelopes",
        ),
        (
            "DLQ_URL",
            "http://127.0.0.1:5000/123456789012/hookgate-envelopes-dlq",
        ),
    ]);
    let config = ProcessorConfig::from_env(&env).expect("the defaults are a valid configuration");
    let routes = RouteTable::parse(LOG_EVERYTHING, "the test routes").expect("valid routes");
    let control = MemoryQueueControl::new();
    let metrics = Metrics::in_memory();
    let processor = Processor::new(
        routes,
        Arc::new(MemoryStore::new()),
        Arc::new(LogActions),
        Arc::new(control.clone()),
        config.settings,
    )
    .with_metrics(metrics.clone());
    (processor, control, metrics)
}

/// Runs the file through the processor's Lambda handler; returns the ids reported failed.
async fn process(processor: &Processor, file: &SqsFile) -> Vec<String> {
    let event = LambdaEvent::new(file.event.clone(), Context::default());
    let response = match handle_batch(processor, event).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response
        .batch_item_failures
        .into_iter()
        .map(|failure| failure.item_identifier)
        .collect()
}

/// How many times each metric was emitted.
fn metric_counts(metrics: &Metrics) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for document in metrics.captured() {
        let name = document["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *counts.entry(name).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn the_processor_acknowledges_the_whole_batch_running_each_event_once() {
    let (processor, control, metrics) = processor();
    let batch = sqs_file("batch");
    let failed = process(&processor, &batch).await;
    assert!(failed.is_empty(), "reported failed: {failed:?}");
    assert!(control.calls().is_empty(), "{:?}", control.calls());
    let counts = metric_counts(&metrics);
    assert_eq!(counts.get("Processed"), Some(&batch.event.records.len()));
    assert_eq!(
        counts.get("ActionSucceeded"),
        Some(&batch.event.records.len())
    );
}

#[tokio::test]
async fn an_sqs_event_delivered_again_is_acknowledged_as_a_duplicate() {
    let (processor, _, metrics) = processor();
    let file = sqs_file("github-pull_request.opened");
    assert!(process(&processor, &file).await.is_empty());
    assert!(process(&processor, &file).await.is_empty());
    let counts = metric_counts(&metrics);
    assert_eq!(counts.get("Processed"), Some(&1));
    assert_eq!(counts.get("Duplicates"), Some(&1));
    assert_eq!(
        counts.get("ActionSucceeded"),
        Some(&1),
        "the action ran once"
    );
}

#[tokio::test]
async fn the_unreadable_envelope_is_dead_lettered_with_its_reason_and_acknowledged() {
    let (processor, control, metrics) = processor();
    let file = sqs_file("unreadable-envelope");
    assert!(process(&processor, &file).await.is_empty());
    let record = &file.event.records[0];
    let calls = control.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let ControlCall::DeadLetter {
        message_id,
        body,
        reason,
    } = &calls[0]
    else {
        panic!("not sent to the dead-letter queue: {calls:?}");
    };
    assert_eq!(Some(message_id), record.message_id.as_ref());
    assert_eq!(Some(body), record.body.as_ref());
    assert!(reason.starts_with("unreadable envelope"), "{reason}");
    assert_eq!(metric_counts(&metrics).get("DeadLettered"), Some(&1));
}
