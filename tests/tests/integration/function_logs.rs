//! The log lines the built functions write, read from what they print under the project's
//! Runtime API harness (`hookgate_tests::lambda_runtime_api`), which hands each invocation a
//! request id and an X-Ray trace id as Lambda does: each line joins Lambda's own (request id,
//! trace id), says which function and whether it is a cold start, and follows Lambda's log
//! format and level settings.
//!
//! These tests run what `cargo build --workspace --bins` left in `target/debug`.

use hookgate::provider::Provider;
use hookgate_samples::receiver_environment;
use hookgate_tests::emulator;
use hookgate_tests::lambda_runtime_api::{trace_id, LambdaFunction};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `receiver-github` on a fresh emulator queue, with `extra` variables.
async fn receiver(extra: &[(&str, &str)]) -> LambdaFunction {
    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let queue_url = emulator::create_queue(&sqs, "logs")
        .await
        .expect("the emulator creates a queue");
    let mut env = emulator::function_environment();
    env.push(("QUEUE_URL", queue_url));
    env.extend(receiver_environment(Provider::Github));
    env.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    LambdaFunction::start_ready("receiver-github", env).await
}

async fn invoke(function: &LambdaFunction, event: &Value) -> Value {
    function
        .invoke(event)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", function.output()))
}

/// Every line the function printed that is a log line (EMF metric lines aside).
fn log_lines(function: &LambdaFunction) -> Vec<Value> {
    function
        .output()
        .lines()
        .map(|line| {
            let keys = top_level_keys(line);
            let mut unique = keys.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), keys.len(), "a field is repeated: {line}");
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|_| panic!("not a JSON line: {line}\n{}", function.output()))
        })
        .filter(|line| line.get("_aws").is_none())
        .collect()
}

/// The keys of a JSON object, in order and each as often as the text has it (parsing into a
/// map keeps only the last of a repeated key).
fn top_level_keys(line: &str) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some((key, serde::de::IgnoredAny)) = map.next_entry::<String, _>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }
    serde::Deserializer::deserialize_map(&mut serde_json::Deserializer::from_str(line), Keys)
        .unwrap_or_else(|error| panic!("not a JSON object ({error}): {line}"))
}

/// The one log line whose message is `message`, of the invocation `request_id`.
fn line<'a>(lines: &'a [Value], message: &str, request_id: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == message && line["requestId"] == request_id)
        .collect();
    assert_eq!(found.len(), 1, "`{message}` of {request_id}: {lines:#?}");
    found[0]
}

#[tokio::test]
async fn each_line_is_json_with_time_level_message_request_trace_service_and_cold_start() {
    let receiver = receiver(&[]).await;
    let event = emulator::sample_event("github/pull_request.opened");
    for _ in 0..2 {
        assert_eq!(invoke(&receiver, &event).await["statusCode"], 202);
    }

    let lines = log_lines(&receiver);
    for line in &lines {
        let timestamp = line["timestamp"].as_str().expect("a timestamp");
        OffsetDateTime::parse(timestamp, &Rfc3339)
            .unwrap_or_else(|error| panic!("{timestamp} is not RFC 3339: {error}"));
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
                .contains(&line["level"].as_str().unwrap_or_default()),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
        assert_eq!(line["service"], "receiver-github", "{line}");
        assert!(line["cold_start"].is_boolean(), "{line}");
    }

    let request_ids = receiver.request_ids();
    let [first, second] = &request_ids[..] else {
        panic!("two invocations");
    };
    let enqueued = line(&lines, "webhook enqueued", first);
    assert_eq!(enqueued["xrayTraceId"], trace_id(first));
    assert_eq!(enqueued["provider"], "github");
    assert!(
        enqueued["idempotency_key"]
            .as_str()
            .is_some_and(|key| key.starts_with("github:")),
        "{enqueued}"
    );
    assert_eq!(
        enqueued["cold_start"], true,
        "the first invocation is the cold start"
    );
    let again = line(&lines, "webhook enqueued", second);
    assert_eq!(again["xrayTraceId"], trace_id(second));
    assert_eq!(again["cold_start"], false, "the second one is warm");
    assert!(
        lines
            .iter()
            .filter(|line| line.get("requestId").is_none())
            .all(|line| line["cold_start"] == true),
        "lines of the init are the cold start: {lines:#?}"
    );
}

#[tokio::test]
async fn lambdas_log_level_keeps_only_lines_at_or_above_it_whatever_rust_log_says() {
    let receiver = receiver(&[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "debug")]).await;

    assert_eq!(
        invoke(
            &receiver,
            &emulator::sample_event("github/pull_request.opened")
        )
        .await["statusCode"],
        202
    );
    assert_eq!(
        invoke(
            &receiver,
            &emulator::sample_event("github/rejected-wrong-secret")
        )
        .await["statusCode"],
        401
    );

    let lines = log_lines(&receiver);
    assert!(
        lines
            .iter()
            .all(|line| ["WARN", "ERROR"].contains(&line["level"].as_str().unwrap_or_default())),
        "{lines:#?}"
    );
    let rejected = line(&lines, "webhook rejected", &receiver.request_ids()[1]);
    assert_eq!(rejected["reason"], "signature_mismatch");
}

#[tokio::test]
async fn rust_log_sets_the_level_when_lambda_does_not() {
    let receiver = receiver(&[("RUST_LOG", "warn")]).await;

    invoke(
        &receiver,
        &emulator::sample_event("github/pull_request.opened"),
    )
    .await;

    assert!(
        log_lines(&receiver)
            .iter()
            .all(|line| line["level"] != "INFO"),
        "{}",
        receiver.output()
    );
}

#[tokio::test]
async fn lambdas_text_format_writes_text_lines_that_still_name_the_request() {
    let receiver = receiver(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]).await;

    invoke(
        &receiver,
        &emulator::sample_event("github/pull_request.opened"),
    )
    .await;

    let output = receiver.output();
    let enqueued = output
        .lines()
        .find(|line| line.contains("webhook enqueued"))
        .unwrap_or_else(|| panic!("{output}"));
    assert!(
        serde_json::from_str::<Value>(enqueued).is_err(),
        "{enqueued}"
    );
    assert!(enqueued.contains(" INFO "), "{enqueued}");
    assert!(enqueued.contains(&receiver.request_ids()[0]), "{enqueued}");
}

/// `processor` with the bundled routes (every event to the log) on fresh emulator queues
/// and table, with `extra` variables.
async fn processor(extra: &[(&str, &str)]) -> LambdaFunction {
    let mut env = emulator::processor_environment("logs").await;
    env.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    LambdaFunction::start_ready("processor", env).await
}

/// The EMF lines the function printed.
fn metric_lines(function: &LambdaFunction) -> Vec<Value> {
    function
        .output()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("_aws").is_some())
        .collect()
}

#[tokio::test]
async fn the_processors_lines_name_the_message_the_event_and_the_request() {
    let processor = processor(&[]).await;
    let event = emulator::sample_event("processor/github-pull_request.opened");

    let answer = invoke(&processor, &event).await;

    assert_eq!(answer["batchItemFailures"], serde_json::json!([]));
    let lines = log_lines(&processor);
    let completed = line(&lines, "event completed", &processor.request_ids()[0]);
    assert_eq!(completed["service"], "processor");
    assert_eq!(completed["provider"], "github");
    assert_eq!(completed["event_type"], "pull_request.opened");
    assert_eq!(completed["message_id"], event["Records"][0]["messageId"]);
    assert!(
        completed["idempotency_key"]
            .as_str()
            .is_some_and(|key| key.starts_with("github:")),
        "{completed}"
    );
}

#[tokio::test]
async fn metrics_are_written_once_per_invocation_summed_by_service_and_provider() {
    let processor = processor(&[("METRICS_NAMESPACE", "hookgate/staging")]).await;
    let batch = emulator::sample_event("processor/batch");
    let records = batch["Records"].as_array().expect("records").len();

    invoke(&processor, &batch).await;

    let lines = metric_lines(&processor);
    let processed: Vec<&Value> = lines
        .iter()
        .filter(|line| line.get("Processed").is_some())
        .collect();
    let in_all: Vec<&&Value> = processed
        .iter()
        .filter(|line| line.get("Provider").is_none())
        .collect();
    assert_eq!(
        in_all.len(),
        0,
        "a count by provider is also the total: {lines:#?}"
    );
    let total: f64 = processed
        .iter()
        .map(|line| line["Processed"].as_f64().unwrap_or_default())
        .sum();
    assert_eq!(total as usize, records, "{lines:#?}");
    assert_eq!(
        processed.len(),
        records,
        "one line per provider, each event of the batch counted once: {lines:#?}"
    );
    for line in &processed {
        assert_eq!(line["Service"], "processor");
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "hookgate/staging");
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["Service"], ["Service", "Provider"]])
        );
    }
    let latencies: usize = lines
        .iter()
        .filter_map(|line| line.get("ActionLatency"))
        .map(|latency| latency.as_array().map_or(1, Vec::len))
        .sum();
    assert_eq!(
        latencies, records,
        "every action's latency, in as few lines as its dimensions allow"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.get("ActionLatency").is_some())
            .count(),
        1,
        "one action (the log), one line: {lines:#?}"
    );

    invoke(
        &processor,
        &emulator::sample_event("processor/github-pull_request.opened"),
    )
    .await;
    let duplicates: Vec<Value> = metric_lines(&processor)
        .into_iter()
        .filter(|line| line.get("Duplicates").is_some())
        .collect();
    assert_eq!(
        duplicates.len(),
        1,
        "the next invocation writes its own: {duplicates:#?}"
    );
    assert_eq!(duplicates[0]["Provider"], "github");
}

/// A stand-in for the X-Ray daemon: the subsegments sent to it, as JSON.
struct Daemon(tokio::net::UdpSocket);

impl Daemon {
    async fn start() -> Self {
        Self(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("a UDP port"),
        )
    }

    fn address(&self) -> String {
        self.0.local_addr().expect("an address").to_string()
    }

    /// The documents received until none came for a second (at most 50).
    async fn received(&self) -> Vec<Value> {
        let mut documents = Vec::new();
        let mut buffer = vec![0_u8; 65_536];
        while documents.len() < 50 {
            let Ok(Ok(size)) =
                tokio::time::timeout(std::time::Duration::from_secs(1), self.0.recv(&mut buffer))
                    .await
            else {
                break;
            };
            let datagram = String::from_utf8_lossy(&buffer[..size]).into_owned();
            let (header, document) = datagram.split_once('\n').expect("a header line");
            assert_eq!(header, r#"{"format": "json", "version": 1}"#);
            documents.push(serde_json::from_str(document).expect("a JSON subsegment"));
        }
        documents
    }
}

/// The trace header's `Root` and `Parent`.
fn root_and_parent(header: &str) -> (String, String) {
    let part = |name: &str| {
        header
            .split(';')
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .expect("a part")
            .to_owned()
    };
    (part("Root"), part("Parent"))
}

#[tokio::test]
async fn with_tracing_on_each_sdk_call_is_a_subsegment_of_the_invocations_segment() {
    let daemon = Daemon::start().await;
    let receiver = receiver(&[("AWS_XRAY_DAEMON_ADDRESS", &daemon.address())]).await;

    invoke(
        &receiver,
        &emulator::sample_event("github/pull_request.opened"),
    )
    .await;

    let documents = daemon.received().await;
    let (root, parent) = root_and_parent(&trace_id(&receiver.request_ids()[0]));
    let send: Vec<&Value> = documents
        .iter()
        .filter(|document| document["aws"]["operation"] == "SendMessage")
        .collect();
    assert_eq!(send.len(), 1, "{documents:#?}");
    let send = send[0];
    assert_eq!(send["name"], "SQS");
    assert_eq!(send["namespace"], "aws");
    assert_eq!(send["type"], "subsegment");
    assert_eq!(send["trace_id"], root.as_str());
    assert_eq!(send["parent_id"], parent.as_str());
    assert!(send["end_time"].as_f64() >= send["start_time"].as_f64());
    assert_eq!(send["id"].as_str().map(str::len), Some(16));
}

#[tokio::test]
async fn with_tracing_on_each_action_and_each_table_write_is_a_subsegment() {
    let daemon = Daemon::start().await;
    let processor = processor(&[("AWS_XRAY_DAEMON_ADDRESS", &daemon.address())]).await;

    invoke(
        &processor,
        &emulator::sample_event("processor/github-pull_request.opened"),
    )
    .await;

    let documents = daemon.received().await;
    let (root, _) = root_and_parent(&trace_id(&processor.request_ids()[0]));
    assert!(
        documents
            .iter()
            .all(|document| document["trace_id"] == root.as_str()),
        "{documents:#?}"
    );
    let action: Vec<&Value> = documents
        .iter()
        .filter(|document| document["namespace"] == "remote")
        .collect();
    assert_eq!(action.len(), 1, "{documents:#?}");
    assert_eq!(action[0]["name"], "log", "the bundled routes' one action");
    assert!(
        documents
            .iter()
            .any(|document| document["name"] == "DynamoDB"
                && document["aws"]["operation"] == "UpdateItem"),
        "{documents:#?}"
    );
}
