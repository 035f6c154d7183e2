//! The processor end to end against the emulator: SQS and DynamoDB over the wire, real
//! adapters (`DynamoStore`, `SqsQueueControl`, `ActionDispatcher`), and real local agents on
//! 127.0.0.1 that verify the Standard Webhooks signature of every call.
//!
//! Each scenario makes its own table, queue and dead-letter queue (the queue's
//! `RedrivePolicy` points at the dead-letter queue, as in the template), then drives the
//! processor the way Lambda's event source mapping does: a bounded poller receives up to ten
//! messages at a time with their system attributes, hands each batch to the Lambda
//! adapter (`handle_batch`), runs several batches at once, and deletes every message the
//! answer does not report failed. A message reported failed stays in the queue and comes
//! back when its visibility ends: the queue's own, or the backoff the processor set.
//!
//! The scenarios are those of issue 3, item 9.
//!
//! Run them against the emulator `scripts/test` starts (`scripts/moto_server.py`), which
//! makes DynamoDB's conditional writes atomic as DynamoDB does: bare `moto_server` checks a
//! condition and applies the update in separate steps, so two deliveries of one event racing
//! in the same instant can both win the claim there, and the exactly-once scenario then
//! fails for the emulator's sake.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use hookgate::aws::{dead_letter_attribute, DynamoStore, SqsEventQueue, SqsQueueControl};
use hookgate::claims::{Claim, ClaimRequest, IdempotencyStore, StoreError};
use hookgate::envelope::{Envelope, EnvelopeV1, QueueMessage, RawBody};
use hookgate::idempotency::IdempotencyKey;
use hookgate::processor::actions::{ActionDispatcher, ActionError, ActionInvoker, NormalizedEvent};
use hookgate::processor::backoff::Backoff;
use hookgate::processor::{Processor, ProcessorSettings};
use hookgate::provider::Provider;
use hookgate::queue::EventQueue;
use hookgate::routes::{ActionSpec, RouteTable};
use hookgate::telemetry::Metrics;
use hookgate_samples::SampleEvent;
use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Answer, Call};
use hookgate_tests::emulator;
use lambda_http::{Context, LambdaEvent};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::task::JoinSet;

/// The secret the `http` actions sign with and the agents verify with.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The variable the routes name for it (`secret_env`).
const SECRET_VARIABLE: &str = "AGENT_SECRET";
/// Short, so that retries come within seconds.
const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(2),
};
/// Every action's timeout, generous for a local agent: an action that times out is
/// retried, and its agent called twice, which is not what these scenarios are about.
const ACTION_TIMEOUT_SECS: u64 = 5;
/// Outlives the action timeout, as `LEASE_SECS` must.
const LEASE: Duration = Duration::from_secs(10);
const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// After this many receives SQS moves a message to the dead-letter queue.
const MAX_RECEIVE_COUNT: u32 = 5;

/// The bounds of one poller run: wall clock, and receives across all its workers.
const POLL_LIMIT: Duration = Duration::from_secs(60);
const MAX_RECEIVES: usize = 400;

// ---- agents and routes ----

/// An agent that verifies our signature and answers `script`, then 200.
async fn agent(script: impl IntoIterator<Item = Answer>) -> Agent {
    Agent::builder()
        .verify_with(standard_webhooks_verifier(SECRET))
        .answers(script)
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent listens on 127.0.0.1")
}

/// One route sending every event to each agent, each an `http` action named as given.
fn routes(agents: &[(&str, &Agent)]) -> RouteTable {
    let names: Vec<String> = agents.iter().map(|(name, _)| format!("{name:?}")).collect();
    let mut text = format!(
        "[[route]]\nname = \"everything to the agents\"\nprovider = \"*\"\nevents = [\"*\"]\n\
         actions = [{}]\n",
        names.join(", ")
    );
    for (name, agent) in agents {
        text.push_str(&format!(
            "\n[action.{name}]\ntype = \"http\"\nurl = \"{}\"\nsecret_env = \"{SECRET_VARIABLE}\"\n\
             timeout_secs = {ACTION_TIMEOUT_SECS}\n",
            agent.url(&format!("/hooks/{name}"))
        ));
    }
    RouteTable::parse(&text, "the scenario's routes.toml").expect("valid routes")
}

/// Every call was ours, signed so that the agent could verify it.
fn assert_all_verified(calls: &[Call]) {
    for call in calls {
        assert_eq!(call.verified, Ok(()), "{call:?}");
    }
}

/// How many calls each idempotency key (`webhook-id`) got.
fn calls_per_key(calls: &[Call]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for call in calls {
        let key = call
            .header("webhook-id")
            .expect("every call carries webhook-id")
            .to_owned();
        assert_eq!(call.header("idempotency-key"), Some(key.as_str()));
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// Records when each of the agent's first `count` calls arrived, within `limit`.
async fn call_arrivals(agent: &Agent, count: usize, limit: Duration) -> Vec<Instant> {
    let started = Instant::now();
    let mut arrivals = Vec::new();
    for seen in 1..=count {
        let left = limit.saturating_sub(started.elapsed());
        if agent.wait_for_calls(seen, left).await.len() < seen {
            break;
        }
        arrivals.push(Instant::now());
    }
    arrivals
}

// ---- envelopes ----

/// A genuine GitHub delivery, verified and wrapped by the receiver's own code, as a
/// receiver queues it.
fn sample_message() -> QueueMessage {
    SampleEvent::find(Provider::Github, "pull_request.opened")
        .expect("the GitHub sample exists")
        .queue_message(OffsetDateTime::now_utc())
        .expect("a genuine sample is queued")
}

/// An envelope for a Standard Webhooks event with the provider's id `id`.
fn envelope(id: &str, n: usize) -> String {
    let body = format!(r#"{{"type":"task.completed","id":"{id}","data":{{"n":{n}}}}}"#);
    Envelope::V1(EnvelopeV1 {
        idempotency_key: IdempotencyKey::from_stable_id(Provider::Standard, id)
            .expect("a usable id"),
        provider: Provider::Standard,
        event_type: "task.completed".into(),
        delivery_id: Some(id.to_owned()),
        received_at: OffsetDateTime::now_utc(),
        source_ip: None,
        headers: BTreeMap::new(),
        body_sha256: hex::encode(Sha256::digest(body.as_bytes())),
        body: RawBody::Utf8(body),
        id_signed: true,
        replay: None,
    })
    .to_json()
}

// ---- what the actions did ----

/// The dispatcher, observed: every invocation's action, key, result and duration, so that a
/// failing scenario says what the processor saw.
#[derive(Debug)]
struct ObservedActions {
    inner: ActionDispatcher,
    log: Mutex<Vec<Invocation>>,
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // Read through its Debug output in failure messages.
struct Invocation {
    action: String,
    key: String,
    result: Result<(), ActionError>,
    took: Duration,
}

/// What `#[async_trait]` makes of the port's `async fn invoke` (this crate does without the
/// macro).
type Invoked<'a> = Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + 'a>>;

impl ActionInvoker for ObservedActions {
    fn invoke<'s, 'a, 'e, 'f>(
        &'s self,
        action: &'a ActionSpec,
        event: &'e NormalizedEvent,
    ) -> Invoked<'f>
    where
        's: 'f,
        'a: 'f,
        'e: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.invoke(action, event).await;
            lock(&self.log).push(Invocation {
                action: action.name.clone(),
                key: event.idempotency_key.to_string(),
                result: result.clone(),
                took: started.elapsed(),
            });
            result
        })
    }
}

// ---- the scenario's resources ----

/// A fresh table, queue and dead-letter queue, and the clients to look at them.
struct Scenario {
    sqs: aws_sdk_sqs::Client,
    dynamo: aws_sdk_dynamodb::Client,
    queue_url: String,
    dlq_url: String,
    table_name: String,
    store: DynamoStore,
    metrics: Metrics,
    actions: Mutex<Vec<Arc<ObservedActions>>>,
}

impl Scenario {
    /// `visibility` is the queue's visibility timeout: how long a message reported failed
    /// without a retry delay (claim held elsewhere, store unavailable) stays hidden.
    async fn new(visibility: Duration) -> Self {
        let sdk = emulator::sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);

        let dlq_url = emulator::create_queue(&sqs, "scenario-dlq")
            .await
            .expect("the emulator creates the dead-letter queue");
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("the emulator answers GetQueueAttributes")
            .attributes
            .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
            .expect("a queue has an ARN");
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": MAX_RECEIVE_COUNT.to_string(),
        });
        let queue_url = sqs
            .create_queue()
            .queue_name(emulator::unique_name("scenario"))
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility.as_secs().to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .expect("the emulator creates the queue")
            .queue_url
            .expect("a queue has a URL");

        let table_name = emulator::create_idempotency_table(&dynamo, "scenario")
            .await
            .expect("the emulator creates the table");
        let store = DynamoStore::connect(dynamo.clone(), table_name.clone())
            .await
            .expect("the store connects to its table");
        Self {
            sqs,
            dynamo,
            queue_url,
            dlq_url,
            table_name,
            store,
            metrics: Metrics::in_memory(),
            actions: Mutex::default(),
        }
    }

    /// The processor as `processor_from_env` wires it, on this scenario's table and queues.
    async fn processor(&self, routes: &RouteTable) -> Arc<Processor> {
        self.processor_with_store(routes, Arc::new(self.store.clone()))
            .await
    }

    async fn processor_with_store(
        &self,
        routes: &RouteTable,
        store: Arc<dyn IdempotencyStore>,
    ) -> Arc<Processor> {
        let env = HashMap::from([(SECRET_VARIABLE, SECRET)]);
        let actions = Arc::new(ObservedActions {
            inner: ActionDispatcher::from_routes(routes, &env, None)
                .await
                .expect("the actions set up"),
            log: Mutex::default(),
        });
        lock(&self.actions).push(Arc::clone(&actions));
        let control = SqsQueueControl::connect(
            self.sqs.clone(),
            self.queue_url.clone(),
            self.dlq_url.clone(),
        )
        .await
        .expect("the queue control connects");
        Arc::new(
            Processor::new(
                routes.clone(),
                store,
                actions,
                Arc::new(control),
                ProcessorSettings {
                    lease: LEASE,
                    retention: RETENTION,
                    backoff: BACKOFF,
                },
            )
            .with_metrics(self.metrics.clone()),
        )
    }

    /// Queues a message as a receiver does; returns its id.
    async fn enqueue(&self, message: &QueueMessage) -> String {
        SqsEventQueue::connect(self.sqs.clone(), self.queue_url.clone())
            .await
            .expect("the queue exists")
            .enqueue(message)
            .await
            .expect("SendMessage succeeds")
    }

    /// Sends raw bodies, ten to a `SendMessageBatch`, in order.
    async fn send_all(&self, bodies: &[String]) {
        for (chunk_index, chunk) in bodies.chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{chunk_index}-{index}"))
                        .message_body(body)
                        .build()
                        .expect("a complete entry")
                })
                .collect();
            let output = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("SendMessageBatch succeeds");
            assert!(output.failed.is_empty(), "{:?}", output.failed);
        }
    }

    /// How many messages the queue holds: visible, and in flight (received, not deleted,
    /// or put off by a retry delay).
    async fn depth(&self, queue_url: &str) -> (u64, u64) {
        queue_depth(&self.sqs, queue_url).await
    }

    /// Every message in the dead-letter queue, with its attributes (up to `expected`).
    async fn dead_letters(&self, expected: usize) -> Vec<aws_sdk_sqs::types::Message> {
        emulator::drain_queue(&self.sqs, &self.dlq_url, expected)
            .await
            .expect("the emulator answers ReceiveMessage")
    }

    /// The idempotency record of `key`, read consistently.
    async fn record(&self, key: &str) -> HashMap<String, AttributeValue> {
        self.dynamo
            .get_item()
            .table_name(&self.table_name)
            .key("idempotency_key", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("the emulator answers GetItem")
            .item
            .unwrap_or_else(|| panic!("no record for {key}"))
    }

    /// Every action invocation that did not succeed, for failure messages.
    fn failed_invocations(&self) -> Vec<Invocation> {
        lock(&self.actions)
            .iter()
            .flat_map(|actions| lock(&actions.log).clone())
            .filter(|invocation| invocation.result.is_err())
            .collect()
    }

    /// How many times the processor counted each metric.
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for document in self.metrics.captured() {
            if let Some(name) =
                document["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"].as_str()
            {
                *counts.entry(name.to_owned()).or_default() += 1;
            }
        }
        counts
    }

    /// How many times the processor counted `metric`.
    fn count(&self, metric: &str) -> usize {
        self.metrics
            .captured()
            .iter()
            .filter(|document| document.get(metric).is_some())
            .count()
    }

    /// Runs `workers` pollers against the queue until it is empty (nothing visible, nothing
    /// in flight) or the poll's bounds are reached.
    async fn poll_until_drained(&self, processor: &Arc<Processor>, workers: usize) -> PollRun {
        let poll = Arc::new(Poll {
            sqs: self.sqs.clone(),
            queue_url: self.queue_url.clone(),
            processor: Arc::clone(processor),
            started: Instant::now(),
            receives: AtomicUsize::new(0),
            drained: AtomicBool::new(false),
            reports: Mutex::default(),
            delete_failures: Mutex::default(),
        });
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            tasks.spawn(Arc::clone(&poll).work());
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                match error.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(error) => panic!("a poller did not finish: {error}"),
                }
            }
        }
        let delete_failures = lock(&poll.delete_failures).clone();
        assert!(delete_failures.is_empty(), "{delete_failures:?}");
        let reports = lock(&poll.reports).clone();
        PollRun {
            reports,
            drained: poll.drained.load(Ordering::SeqCst),
            elapsed: poll.started.elapsed(),
        }
    }
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> (u64, u64) {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("the emulator answers GetQueueAttributes")
        .attributes
        .unwrap_or_default();
    let number = |name: QueueAttributeName| -> u64 {
        attributes
            .get(&name)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (
        number(QueueAttributeName::ApproximateNumberOfMessages),
        number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            + number(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---- the poller: Lambda's event source mapping, bounded ----

/// What became of one delivery of one message.
#[derive(Debug, Clone)]
struct Report {
    /// When its batch was answered.
    at: Instant,
    message_id: String,
    receive_count: u32,
    /// Reported failed (left in the queue) rather than deleted.
    failed: bool,
}

#[derive(Debug)]
struct PollRun {
    reports: Vec<Report>,
    /// The queue was found empty before the bounds were reached.
    drained: bool,
    elapsed: Duration,
}

impl PollRun {
    fn acknowledged(&self) -> Vec<&Report> {
        self.reports
            .iter()
            .filter(|report| !report.failed)
            .collect()
    }

    fn failed(&self) -> Vec<&Report> {
        self.reports.iter().filter(|report| report.failed).collect()
    }
}

struct Poll {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    processor: Arc<Processor>,
    started: Instant,
    receives: AtomicUsize,
    drained: AtomicBool,
    reports: Mutex<Vec<Report>>,
    delete_failures: Mutex<Vec<String>>,
}

impl Poll {
    async fn work(self: Arc<Self>) {
        while !self.drained.load(Ordering::SeqCst)
            && self.started.elapsed() < POLL_LIMIT
            && self.receives.fetch_add(1, Ordering::SeqCst) < MAX_RECEIVES
        {
            let messages = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("the emulator answers ReceiveMessage")
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                if queue_depth(&self.sqs, &self.queue_url).await == (0, 0) {
                    self.drained.store(true, Ordering::SeqCst);
                }
                continue;
            }
            self.handle(messages).await;
        }
    }

    /// One batch, as Lambda hands it over and reads the partial batch response.
    async fn handle(&self, messages: Vec<aws_sdk_sqs::types::Message>) {
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(lambda_record).collect();
        let response = hookgate::lambda::processor::handle_batch(
            &self.processor,
            LambdaEvent::new(event, Context::default()),
        )
        .await
        .unwrap_or_else(|never| match never {});
        let answered = Instant::now();
        let failed: BTreeSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|failure| failure.item_identifier)
            .collect();

        let mut done = Vec::new();
        let mut reports = Vec::new();
        for message in &messages {
            let message_id = message.message_id.clone().unwrap_or_default();
            let receive_count = message
                .attributes
                .as_ref()
                .and_then(|attributes| {
                    attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount)
                })
                .and_then(|count| count.parse().ok())
                .unwrap_or(0);
            let is_failed = failed.contains(&message_id);
            if !is_failed {
                done.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("d{}", done.len()))
                        .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                        .build()
                        .expect("a complete entry"),
                );
            }
            reports.push(Report {
                at: answered,
                message_id,
                receive_count,
                failed: is_failed,
            });
        }
        lock(&self.reports).extend(reports);
        if done.is_empty() {
            return;
        }
        let output = self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(done))
            .send()
            .await
            .expect("the emulator answers DeleteMessageBatch");
        lock(&self.delete_failures)
            .extend(output.failed.iter().map(|failure| format!("{failure:?}")));
    }
}

/// The record Lambda's event source mapping makes of a received message.
fn lambda_record(message: &aws_sdk_sqs::types::Message) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message.message_id.clone();
    record.receipt_handle = message.receipt_handle.clone();
    record.body = message.body.clone();
    record.attributes = message
        .attributes
        .iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
        .collect();
    record.event_source = Some("aws:sqs".into());
    record
}

// ---- a ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_events_with_thirty_percent_duplicates_run_each_action_exactly_once() {
    const EVENTS: usize = 200;
    const WORKERS: usize = 4;
    let agent_a = agent([]).await;
    let agent_b = agent([]).await;
    let routes = routes(&[("agent-a", &agent_a), ("agent-b", &agent_b)]);
    // In-flight duplicates are reported failed without a delay: a short visibility brings
    // them back soon.
    let scenario = Scenario::new(Duration::from_secs(3)).await;
    let processor = scenario.processor(&routes).await;

    // Every event once, in order; a duplicate of every tenth, second and third event: the
    // first of each ten right behind its original (the same batch, or the next one racing
    // it), the others at the end (once the original is done).
    let run = emulator::unique_name("evt");
    let ids: Vec<String> = (0..EVENTS).map(|n| format!("{run}-{n}")).collect();
    let mut bodies = Vec::new();
    let mut late = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let body = envelope(id, n);
        bodies.push(body.clone());
        match n % 10 {
            0 => bodies.push(body),
            1 | 2 => late.push(body),
            _ => {}
        }
    }
    bodies.extend(late);
    let duplicates = bodies.len() - EVENTS;
    assert_eq!(duplicates, EVENTS * 3 / 10);
    scenario.send_all(&bodies).await;

    let poll = scenario.poll_until_drained(&processor, WORKERS).await;

    assert!(
        poll.drained,
        "the queue was not drained in {:?}",
        poll.elapsed
    );
    assert_eq!(scenario.depth(&scenario.queue_url).await, (0, 0));
    for (name, agent) in [("agent-a", &agent_a), ("agent-b", &agent_b)] {
        let calls = agent.calls();
        assert_all_verified(&calls);
        assert!(
            calls
                .iter()
                .all(|call| call.path == format!("/hooks/{name}")),
            "{name}"
        );
        let per_key = calls_per_key(&calls);
        let repeated: BTreeMap<&String, &usize> =
            per_key.iter().filter(|(_, &count)| count != 1).collect();
        let expected: BTreeSet<String> = ids.iter().map(|id| format!("standard:{id}")).collect();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|key| !per_key.contains_key(*key))
            .collect();
        assert!(
            calls.len() == EVENTS && repeated.is_empty() && missing.is_empty(),
            "{name}: {} calls; called more than once: {repeated:?}; never called: {missing:?}; \
             the processor counted {:?}; failed invocations: {:?}",
            calls.len(),
            scenario.counts(),
            scenario.failed_invocations()
        );
    }
    // Every message was acknowledged: 200 completed, 60 duplicates. On a loaded machine a
    // batch can outlast the queue's 3 s visibility, and SQS then delivers one of its
    // messages again (at-least-once): that second delivery is one more duplicate, and
    // acknowledged too.
    let acknowledged: BTreeSet<&str> = poll
        .acknowledged()
        .iter()
        .map(|report| report.message_id.as_str())
        .collect();
    assert_eq!(acknowledged.len(), bodies.len());
    let redelivered = poll.acknowledged().len() - bodies.len();
    assert!(
        redelivered <= 10,
        "{redelivered} messages acknowledged twice"
    );
    assert_eq!(scenario.count("Processed"), EVENTS);
    assert_eq!(scenario.count("Duplicates"), duplicates + redelivered);
    assert_eq!(scenario.count("DeadLettered"), 0);
    assert_eq!(scenario.depth(&scenario.dlq_url).await, (0, 0));
    eprintln!(
        "a: {} messages, {} deliveries ({} reported failed: held elsewhere), drained in {:?}",
        bodies.len(),
        poll.reports.len(),
        poll.failed().len(),
        poll.elapsed
    );
}

// ---- b ----

#[tokio::test]
async fn an_agent_answering_500_twice_then_200_gets_the_event_once_after_two_backoffs() {
    let agent = agent([
        Answer::status(500).with_body("warming up"),
        Answer::status(500).with_body("still warming up"),
    ])
    .await;
    let routes = routes(&[("agent", &agent)]);
    // A queue visibility far longer than any backoff: a retry that comes back sooner was
    // put off by the processor, not by the queue.
    let scenario = Scenario::new(Duration::from_secs(20)).await;
    let processor = scenario.processor(&routes).await;
    let message = sample_message();
    let message_id = scenario.enqueue(&message).await;

    let (poll, arrivals) = tokio::join!(
        scenario.poll_until_drained(&processor, 1),
        call_arrivals(&agent, 3, POLL_LIMIT)
    );

    assert!(poll.drained, "not drained in {:?}", poll.elapsed);
    let calls = agent.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_all_verified(&calls);
    let key = message.idempotency_key().to_string();
    assert_eq!(calls_per_key(&calls), BTreeMap::from([(key.clone(), 3)]));
    // The script's two 500s, then the one 2xx.
    assert_eq!(scenario.count("RetriesScheduled"), 2);
    assert_eq!(scenario.count("Processed"), 1);

    let deliveries: Vec<(u32, bool)> = poll
        .reports
        .iter()
        .map(|report| {
            assert_eq!(report.message_id, message_id);
            (report.receive_count, report.failed)
        })
        .collect();
    assert_eq!(deliveries, [(1, true), (2, true), (3, false)]);

    // Each retry waited at least half its backoff step (1 s, then 2 s), as the jitter
    // promises, and not the queue's 20 s visibility.
    assert_eq!(arrivals.len(), 3);
    for (retry, gap) in arrivals
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .enumerate()
    {
        let step = BACKOFF.base.saturating_mul(1 << retry).min(BACKOFF.cap);
        assert!(
            gap >= step / 2,
            "retry {}: the agent was called again after {gap:?}, before half the {step:?} step",
            retry + 1
        );
        // Well below the queue's 20 s visibility: the delay is whole seconds, the consumer
        // polls, and the emulator is shared with the other tests running at the same time.
        assert!(
            gap < step + Duration::from_secs(5),
            "retry {}: {gap:?}",
            retry + 1
        );
    }

    let record = scenario.record(&key).await;
    assert_eq!(record["status"], AttributeValue::S("COMPLETED".into()));
    assert_eq!(record["attempts"], AttributeValue::N("3".into()));
    assert_eq!(
        record["done_actions"],
        AttributeValue::Ss(vec!["agent".into()])
    );
    assert_eq!(scenario.depth(&scenario.dlq_url).await, (0, 0));
    assert_eq!(scenario.depth(&scenario.queue_url).await, (0, 0));
}

// ---- c ----

#[tokio::test]
async fn an_agent_answering_400_sends_the_event_to_the_dlq_with_the_reason_without_retrying() {
    let agent = agent([Answer::status(400).with_body("unknown event type")]).await;
    let routes = routes(&[("agent", &agent)]);
    let scenario = Scenario::new(Duration::from_secs(5)).await;
    let processor = scenario.processor(&routes).await;
    let message = sample_message();
    let message_id = scenario.enqueue(&message).await;

    let poll = scenario.poll_until_drained(&processor, 1).await;

    assert!(poll.drained, "not drained in {:?}", poll.elapsed);
    let deliveries: Vec<(u32, bool)> = poll
        .reports
        .iter()
        .map(|report| (report.receive_count, report.failed))
        .collect();
    assert_eq!(deliveries, [(1, false)], "delivered once and acknowledged");
    let calls = agent.calls();
    assert_eq!(calls.len(), 1, "not retried: {calls:?}");
    assert_all_verified(&calls);
    assert_eq!(scenario.depth(&scenario.queue_url).await, (0, 0));

    let dead = scenario.dead_letters(1).await;
    let [letter] = dead.as_slice() else {
        panic!("expected one dead letter, got {dead:?}");
    };
    assert_eq!(letter.body(), Some(message.body()));
    let attributes = letter.message_attributes.clone().unwrap_or_default();
    let reason = attributes
        .get(dead_letter_attribute::REASON)
        .and_then(|value| value.string_value())
        .expect("the dead letter carries its reason");
    assert!(reason.contains("`agent`"), "{reason}");
    assert!(reason.contains("400"), "{reason}");
    assert!(reason.contains("unknown event type"), "{reason}");
    assert_eq!(
        attributes
            .get(dead_letter_attribute::SOURCE_MESSAGE_ID)
            .and_then(|value| value.string_value()),
        Some(message_id.as_str())
    );
    assert_eq!(scenario.count("DeadLettered"), 1);
}

// ---- d ----

#[tokio::test]
async fn with_two_actions_one_failing_once_the_retry_runs_only_the_failed_one() {
    let agent_a = agent([]).await;
    let agent_b = agent([Answer::status(500)]).await;
    let routes = routes(&[("agent-a", &agent_a), ("agent-b", &agent_b)]);
    let scenario = Scenario::new(Duration::from_secs(20)).await;
    let processor = scenario.processor(&routes).await;
    let message = sample_message();
    scenario.enqueue(&message).await;

    let poll = scenario.poll_until_drained(&processor, 1).await;

    assert!(poll.drained, "not drained in {:?}", poll.elapsed);
    let deliveries: Vec<(u32, bool)> = poll
        .reports
        .iter()
        .map(|report| (report.receive_count, report.failed))
        .collect();
    assert_eq!(deliveries, [(1, true), (2, false)]);
    let (calls_a, calls_b) = (agent_a.calls(), agent_b.calls());
    assert_all_verified(&calls_a);
    assert_all_verified(&calls_b);
    assert_eq!(calls_a.len(), 1, "agent A: {calls_a:?}");
    assert_eq!(calls_b.len(), 2, "agent B: {calls_b:?}");

    let record = scenario.record(message.idempotency_key().as_str()).await;
    assert_eq!(record["status"], AttributeValue::S("COMPLETED".into()));
    assert_eq!(record["attempts"], AttributeValue::N("2".into()));
    let AttributeValue::Ss(done) = &record["done_actions"] else {
        panic!("done_actions is a string set: {record:?}");
    };
    assert_eq!(
        done.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["agent-a".to_owned(), "agent-b".to_owned()])
    );
    assert_eq!(scenario.depth(&scenario.dlq_url).await, (0, 0));
}

// ---- e ----

#[tokio::test]
async fn an_abandoned_claim_is_taken_over_once_its_lease_expires_and_its_late_holder_cannot_write()
{
    const ABANDONED_LEASE: Duration = Duration::from_secs(3);
    let agent = agent([]).await;
    let routes = routes(&[("agent", &agent)]);
    // A message reported failed while the claim is held comes back after 2 s.
    let scenario = Scenario::new(Duration::from_secs(2)).await;
    let processor = scenario.processor(&routes).await;
    let message = sample_message();
    let key = message.idempotency_key().clone();
    let payload_hash = Envelope::from_json(message.body())
        .expect("the message is an envelope")
        .v1()
        .body_sha256
        .clone();

    // A worker claims the event, then dies without a word.
    let before_claim = Instant::now();
    let abandoned = match scenario
        .store
        .claim(ClaimRequest {
            key: &key,
            payload_hash: &payload_hash,
            now: OffsetDateTime::now_utc(),
            lease: ABANDONED_LEASE,
            retention: RETENTION,
            archive: None,
        })
        .await
    {
        Ok(Claim::Acquired(held)) => held,
        other => panic!("the first claim is acquired, got {other:?}"),
    };
    let lease_ends = before_claim + ABANDONED_LEASE;
    scenario.enqueue(&message).await;

    let (poll, arrivals) = tokio::join!(
        scenario.poll_until_drained(&processor, 1),
        call_arrivals(&agent, 1, POLL_LIMIT)
    );

    assert!(poll.drained, "not drained in {:?}", poll.elapsed);
    let failed = poll.failed();
    assert!(
        !failed.is_empty(),
        "the delivery during the live lease is reported failed"
    );
    for report in &failed {
        assert!(
            report.at < lease_ends + Duration::from_secs(1),
            "reported failed {:?} after the lease ended",
            report.at - lease_ends
        );
    }
    let acknowledged = poll.acknowledged();
    let [done] = acknowledged.as_slice() else {
        panic!("acknowledged once: {:?}", poll.reports);
    };
    assert!(done.at >= lease_ends, "taken over before the lease ended");
    assert!(done.receive_count < MAX_RECEIVE_COUNT);
    let calls = agent.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_all_verified(&calls);
    assert!(
        arrivals[0] >= lease_ends,
        "the agent was called while the abandoned lease was live"
    );

    // The late holder wakes up: none of its writes lands.
    for (what, outcome) in [
        (
            "mark_action_done",
            scenario.store.mark_action_done(&abandoned, "agent").await,
        ),
        (
            "complete",
            scenario
                .store
                .complete(&abandoned, None, OffsetDateTime::now_utc(), RETENTION)
                .await,
        ),
        ("release", scenario.store.release(&abandoned, None).await),
    ] {
        assert!(
            matches!(&outcome, Err(StoreError::ClaimLost { key: lost }) if *lost == key),
            "{what} by the late holder: {outcome:?}"
        );
    }
    let record = scenario.record(key.as_str()).await;
    assert_eq!(record["status"], AttributeValue::S("COMPLETED".into()));
    assert_eq!(record["attempts"], AttributeValue::N("2".into()));
    assert!(!record.contains_key("holder"), "{record:?}");
    assert_eq!(scenario.count("InFlightElsewhere"), failed.len());
    assert_eq!(scenario.count("Processed"), 1);
}

// ---- f ----

#[tokio::test]
async fn with_dynamodb_unreachable_every_message_of_the_batch_is_reported_failed() {
    const MESSAGES: usize = 5;
    let agent = agent([]).await;
    let routes = routes(&[("agent", &agent)]);
    let scenario = Scenario::new(Duration::from_secs(30)).await;

    // Nothing listens on port 1: every call is refused at once, and short timeouts bound
    // the rest.
    let sdk = emulator::sdk_config().await;
    let unreachable = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url("http://127.0.0.1:1")
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_attempt_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(3))
                .build(),
        )
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(2))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(unreachable);
    assert!(
        matches!(
            DynamoStore::connect(client.clone(), scenario.table_name.clone()).await,
            Err(StoreError::Unavailable(_))
        ),
        "an unreachable table fails the init"
    );
    let store = DynamoStore::new(client, scenario.table_name.clone());
    let processor = scenario
        .processor_with_store(&routes, Arc::new(store))
        .await;

    let run = emulator::unique_name("evt");
    let bodies: Vec<String> = (0..MESSAGES)
        .map(|n| envelope(&format!("{run}-{n}"), n))
        .collect();
    scenario.send_all(&bodies).await;
    // One batch of all five, as the event source mapping gathers them.
    let mut messages = Vec::new();
    for _ in 0..10 {
        if messages.len() >= MESSAGES {
            break;
        }
        let output = scenario
            .sqs
            .receive_message()
            .queue_url(&scenario.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("the emulator answers ReceiveMessage");
        messages.extend(output.messages.unwrap_or_default());
    }
    assert_eq!(messages.len(), MESSAGES);
    let poll = Poll {
        sqs: scenario.sqs.clone(),
        queue_url: scenario.queue_url.clone(),
        processor,
        started: Instant::now(),
        receives: AtomicUsize::new(0),
        drained: AtomicBool::new(false),
        reports: Mutex::default(),
        delete_failures: Mutex::default(),
    };

    poll.handle(messages.clone()).await;
    let answered_in = poll.started.elapsed();

    let reports = lock(&poll.reports).clone();
    assert_eq!(reports.len(), MESSAGES);
    assert!(
        reports.iter().all(|report| report.failed),
        "every message is reported failed: {reports:?}"
    );
    // None was acknowledged: all five are still in the queue (in flight, or already back
    // after their short backoff).
    let (visible, in_flight) = scenario.depth(&scenario.queue_url).await;
    assert_eq!(visible + in_flight, MESSAGES as u64);
    assert!(agent.calls().is_empty(), "{:?}", agent.calls());
    assert_eq!(scenario.count("ProcessingErrors"), MESSAGES);
    assert_eq!(scenario.depth(&scenario.dlq_url).await, (0, 0));
    assert!(
        answered_in < Duration::from_secs(15),
        "the batch was answered in {answered_in:?}, not well inside Lambda's timeout"
    );
    eprintln!("f: the batch was answered in {answered_in:?}");

    // The processor put each message off by its backoff (1 to 2 s here), so they come back
    // in seconds, long before the queue's 30 s visibility timeout would have let them.
    let came_back = Instant::now();
    let mut again = Vec::new();
    while again.len() < MESSAGES && came_back.elapsed() < Duration::from_secs(20) {
        let output = scenario
            .sqs
            .receive_message()
            .queue_url(&scenario.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("the emulator answers ReceiveMessage");
        again.extend(output.messages.unwrap_or_default());
    }
    let back_in = came_back.elapsed();
    assert_eq!(again.len(), MESSAGES, "back within {back_in:?}");
    assert!(
        back_in < Duration::from_secs(10),
        "the messages came back after {back_in:?}, not after a short backoff"
    );

    // DynamoDB is back: the next delivery of each acts once.
    let recovered = Poll {
        sqs: scenario.sqs.clone(),
        queue_url: scenario.queue_url.clone(),
        processor: scenario.processor(&routes).await,
        started: Instant::now(),
        receives: AtomicUsize::new(0),
        drained: AtomicBool::new(false),
        reports: Mutex::default(),
        delete_failures: Mutex::default(),
    };
    recovered.handle(again).await;
    assert!(
        lock(&recovered.reports).iter().all(|report| !report.failed),
        "{:?}",
        lock(&recovered.reports)
    );
    assert_eq!(
        agent
            .wait_for_calls(MESSAGES, Duration::from_secs(5))
            .await
            .len(),
        MESSAGES
    );
    eprintln!("f: the messages came back in {back_in:?}");
}

// ---- g ----

#[tokio::test]
async fn a_malformed_envelope_lands_in_the_dlq_with_its_reason_and_is_not_retried() {
    let agent = agent([]).await;
    let routes = routes(&[("agent", &agent)]);
    let scenario = Scenario::new(Duration::from_secs(5)).await;
    let processor = scenario.processor(&routes).await;
    let message_id = scenario
        .sqs
        .send_message()
        .queue_url(&scenario.queue_url)
        .message_body("not an envelope")
        .send()
        .await
        .expect("SendMessage succeeds")
        .message_id
        .expect("a message id");

    let poll = scenario.poll_until_drained(&processor, 1).await;

    assert!(poll.drained, "not drained in {:?}", poll.elapsed);
    let deliveries: Vec<(u32, bool)> = poll
        .reports
        .iter()
        .map(|report| (report.receive_count, report.failed))
        .collect();
    assert_eq!(deliveries, [(1, false)], "delivered once and acknowledged");
    assert_eq!(scenario.depth(&scenario.queue_url).await, (0, 0));
    assert!(agent.calls().is_empty(), "{:?}", agent.calls());

    let dead = scenario.dead_letters(1).await;
    let [letter] = dead.as_slice() else {
        panic!("expected one dead letter, got {dead:?}");
    };
    assert_eq!(letter.body(), Some("not an envelope"));
    let attributes = letter.message_attributes.clone().unwrap_or_default();
    let reason = attributes
        .get(dead_letter_attribute::REASON)
        .and_then(|value| value.string_value())
        .expect("the dead letter carries its reason");
    assert!(reason.starts_with("unreadable envelope: "), "{reason}");
    assert_eq!(
        attributes
            .get(dead_letter_attribute::SOURCE_MESSAGE_ID)
            .and_then(|value| value.string_value()),
        Some(message_id.as_str())
    );
    assert_eq!(scenario.count("DeadLettered"), 1);
}

// ---- h ----

#[tokio::test]
async fn an_event_still_failing_on_its_last_allowed_delivery_is_dead_lettered_with_the_reason() {
    let agent = agent(std::iter::repeat_n(Answer::status(503), 10)).await;
    let routes = routes(&[("agent", &agent)]);
    let scenario = Scenario::new(Duration::from_secs(5)).await;
    let processor = scenario.processor(&routes).await;
    let run = emulator::unique_name("evt");
    scenario.send_all(&[envelope(&format!("{run}-0"), 0)]).await;

    let poll = scenario.poll_until_drained(&processor, 1).await;

    assert!(poll.drained, "not drained in {:?}", poll.elapsed);
    let deliveries: Vec<(u32, bool)> = poll
        .reports
        .iter()
        .map(|report| (report.receive_count, report.failed))
        .collect();
    // Four retries with backoff; the fifth delivery, the last the queue allows, is
    // dead-lettered by the processor and acknowledged, rather than moved by SQS unexplained.
    assert_eq!(
        deliveries,
        [(1, true), (2, true), (3, true), (4, true), (5, false)]
    );
    let dead = scenario.dead_letters(1).await;
    let [letter] = dead.as_slice() else {
        panic!("expected one dead letter, got {dead:?}");
    };
    let reason = letter
        .message_attributes
        .clone()
        .unwrap_or_default()
        .get(dead_letter_attribute::REASON)
        .and_then(|value| value.string_value().map(str::to_owned))
        .expect("the dead letter carries its reason");
    assert!(
        reason.starts_with("gave up after 5 deliveries") && reason.contains("503"),
        "{reason}"
    );
    assert_eq!(agent.calls().len(), 5);
    assert_eq!(scenario.count("DeadLettered"), 1);
}
