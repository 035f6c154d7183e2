//! The contract of the [`EventQueue`] port, as one suite run against every adapter: the
//! in-memory queue, the SQS adapter on the emulator, and the SQLite queue `hookgate dev`
//! runs on.
//!
//! A receiver answers 2xx on the strength of `enqueue` returning `Ok`, so what `Ok` promises
//! (stored, exactly the envelope, with its attributes) must hold for every adapter alike;
//! otherwise the local pipeline would pass tests that the deployed one fails.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_sqs::types::QueueAttributeName;
use hookgate::aws::SqsEventQueue;
use hookgate::envelope::Envelope;
use hookgate::queue::{EventQueue, MemoryQueue, SQS_MAX_MESSAGE_BYTES};
use hookgate::sqlite::SqliteQueueSettings;
use hookgate_samples::{verified_github_message, verified_github_message_with_body};
use hookgate_tests::contract::{look, ScratchQueue};
use hookgate_tests::emulator;

/// A message as a consumer of the queue reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    id: String,
    body: String,
    /// String attributes only: an attribute of another type is as good as missing to a
    /// subscriber filtering on it.
    attributes: BTreeMap<String, String>,
}

/// An adapter under test, and how to look behind it.
trait Adapter {
    fn queue(&self) -> &dyn EventQueue;

    /// How many messages the queue holds right now, without waiting for any.
    async fn count(&self) -> usize;

    /// Every message the queue holds, read back the way a consumer reads them; `expected`
    /// says how many to wait for.
    async fn read_back(&self, expected: usize) -> Vec<Stored>;

    /// From now on, the queue cannot store anything.
    async fn make_unavailable(&self);
}

#[derive(Debug, Default)]
struct Memory(MemoryQueue);

impl Adapter for Memory {
    fn queue(&self) -> &dyn EventQueue {
        &self.0
    }

    async fn count(&self) -> usize {
        self.0.messages().len()
    }

    async fn read_back(&self, _expected: usize) -> Vec<Stored> {
        self.0
            .messages()
            .into_iter()
            .map(|message| Stored {
                id: message.id,
                body: message.body,
                attributes: message.attributes.into_iter().collect(),
            })
            .collect()
    }

    async fn make_unavailable(&self) {
        self.0.set_unavailable(true);
    }
}

#[derive(Debug)]
struct Sqs {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    queue: SqsEventQueue,
}

impl Sqs {
    /// The adapter on a fresh queue of its own.
    async fn new() -> Self {
        let client = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
        let queue_url = emulator::create_queue(&client, "contract")
            .await
            .expect("the emulator creates a queue");
        let queue = SqsEventQueue::connect(client.clone(), queue_url.clone())
            .await
            .expect("the adapter connects to a queue that exists");
        Self {
            client,
            queue_url,
            queue,
        }
    }
}

impl Adapter for Sqs {
    fn queue(&self) -> &dyn EventQueue {
        &self.queue
    }

    async fn count(&self) -> usize {
        // Approximate on AWS, exact on the emulator, which is where this runs.
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .expect("the emulator answers GetQueueAttributes");
        output
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .expect("the emulator reports ApproximateNumberOfMessages")
            .parse()
            .expect("ApproximateNumberOfMessages is a number")
    }

    async fn read_back(&self, expected: usize) -> Vec<Stored> {
        emulator::drain_queue(&self.client, &self.queue_url, expected)
            .await
            .expect("the emulator answers ReceiveMessage")
            .into_iter()
            .map(|message| Stored {
                id: message.message_id().unwrap_or_default().to_owned(),
                body: message.body().unwrap_or_default().to_owned(),
                attributes: message
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .filter(|(_, value)| value.data_type() == "String")
                    .filter_map(|(name, value)| {
                        Some((name.clone(), value.string_value()?.to_owned()))
                    })
                    .collect(),
            })
            .collect()
    }

    async fn make_unavailable(&self) {
        self.client
            .delete_queue()
            .queue_url(&self.queue_url)
            .send()
            .await
            .expect("the emulator deletes the queue");
    }
}

/// The embedded queue on a fresh file of its own.
fn sqlite() -> ScratchQueue {
    ScratchQueue::open("hookgate-queue-contract", SqliteQueueSettings::default())
}

impl Adapter for ScratchQueue {
    fn queue(&self) -> &dyn EventQueue {
        self.adapter()
    }

    async fn count(&self) -> usize {
        look(self.path())
            .query_row("SELECT count(*) FROM queue_messages", [], |row| {
                row.get::<_, i64>(0)
            })
            .expect("the table counts")
            .try_into()
            .expect("a count is not negative")
    }

    async fn read_back(&self, _expected: usize) -> Vec<Stored> {
        let connection = look(self.path());
        let mut statement = connection
            .prepare("SELECT id, body, attributes FROM queue_messages ORDER BY seq")
            .expect("the table reads");
        statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .expect("the rows read")
            .map(|row| {
                let (id, body, attributes) = row.expect("a readable row");
                Stored {
                    id,
                    body,
                    attributes: serde_json::from_str(&attributes)
                        .expect("the attributes are a JSON object of strings"),
                }
            })
            .collect()
    }

    async fn make_unavailable(&self) {
        look(self.path())
            .execute_batch("DROP TABLE queue_messages")
            .expect("the table is dropped");
    }
}

// ---- the contract ----

async fn ok_means_the_message_is_already_stored(adapter: impl Adapter) {
    assert_eq!(adapter.count().await, 0);

    adapter
        .queue()
        .enqueue(&verified_github_message("d-1", "opened"))
        .await
        .expect("an available queue accepts the message");

    assert_eq!(
        adapter.count().await,
        1,
        "Ok came before the message was stored"
    );
}

async fn the_stored_body_is_exactly_the_envelope_json(adapter: impl Adapter) {
    let message = verified_github_message("d-2", "opened");

    let id = adapter.queue().enqueue(&message).await.expect("accepted");

    let stored = adapter.read_back(1).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].id, id);
    assert_eq!(stored[0].body, message.body());
    let envelope = Envelope::from_json(&stored[0].body).expect("the body is an envelope");
    assert_eq!(envelope.v1().idempotency_key, *message.idempotency_key());
}

async fn provider_event_type_and_version_travel_as_string_attributes(adapter: impl Adapter) {
    adapter
        .queue()
        .enqueue(&verified_github_message("d-3", "closed"))
        .await
        .expect("accepted");

    let stored = adapter.read_back(1).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let expected: BTreeMap<String, String> = [
        ("provider", "github"),
        ("event_type", "issues.closed"),
        ("envelope_version", "1"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    assert_eq!(stored[0].attributes, expected);
}

async fn every_message_gets_its_own_id(adapter: impl Adapter) {
    let mut returned = BTreeSet::new();
    for (delivery, action) in [("d-4", "opened"), ("d-5", "edited"), ("d-6", "closed")] {
        let id = adapter
            .queue()
            .enqueue(&verified_github_message(delivery, action))
            .await
            .expect("accepted");
        assert!(
            returned.insert(id.clone()),
            "the id {id} was handed out twice"
        );
    }

    let stored: BTreeSet<String> = adapter
        .read_back(3)
        .await
        .into_iter()
        .map(|message| message.id)
        .collect();
    assert_eq!(stored, returned);
}

async fn an_unavailable_queue_answers_with_an_error(adapter: impl Adapter) {
    adapter.make_unavailable().await;

    let outcome = adapter
        .queue()
        .enqueue(&verified_github_message("d-7", "opened"))
        .await;

    assert!(
        outcome.is_err(),
        "an unavailable queue must not answer Ok: {outcome:?}"
    );
}

async fn the_queue_takes_messages_as_large_as_sqs_does(adapter: impl Adapter) {
    assert_eq!(adapter.queue().max_message_bytes(), SQS_MAX_MESSAGE_BYTES);
}

async fn a_message_larger_than_the_queue_takes_is_refused_and_nothing_is_stored(
    adapter: impl Adapter,
) {
    let limit = adapter.queue().max_message_bytes();
    let message = verified_github_message_with_body("d-8", &"a".repeat(limit));
    assert!(message.size_in_bytes() > limit);

    let outcome = adapter.queue().enqueue(&message).await;

    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(adapter.count().await, 0);
}

/// The whole contract, for one adapter: one test per point, so a failure names both.
macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn ok_means_the_message_is_already_stored() {
                super::ok_means_the_message_is_already_stored($make).await;
            }

            #[tokio::test]
            async fn the_stored_body_is_exactly_the_envelope_json() {
                super::the_stored_body_is_exactly_the_envelope_json($make).await;
            }

            #[tokio::test]
            async fn provider_event_type_and_version_travel_as_string_attributes() {
                super::provider_event_type_and_version_travel_as_string_attributes($make).await;
            }

            #[tokio::test]
            async fn every_message_gets_its_own_id() {
                super::every_message_gets_its_own_id($make).await;
            }

            #[tokio::test]
            async fn an_unavailable_queue_answers_with_an_error() {
                super::an_unavailable_queue_answers_with_an_error($make).await;
            }

            #[tokio::test]
            async fn the_queue_takes_messages_as_large_as_sqs_does() {
                super::the_queue_takes_messages_as_large_as_sqs_does($make).await;
            }

            #[tokio::test]
            async fn a_message_larger_than_the_queue_takes_is_refused_and_nothing_is_stored() {
                super::a_message_larger_than_the_queue_takes_is_refused_and_nothing_is_stored(
                    $make,
                )
                .await;
            }
        }
    };
}

#[tokio::test]
async fn the_sqs_adapter_reads_a_smaller_maximum_from_the_queue() {
    let client = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let queue_url = client
        .create_queue()
        .queue_name(emulator::unique_name("contract-small"))
        .attributes(QueueAttributeName::MaximumMessageSize, "2048")
        .send()
        .await
        .expect("the emulator creates a queue")
        .queue_url
        .expect("a queue has a URL");

    let queue = SqsEventQueue::connect(client, queue_url)
        .await
        .expect("the adapter connects");

    assert_eq!(queue.max_message_bytes(), 2_048);
}

contract!(memory_queue, Memory::default());
contract!(sqs_event_queue, Sqs::new().await);
contract!(sqlite_queue, sqlite());
