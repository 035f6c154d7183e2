//! The contract of the [`QueueConsumer`] port, as one suite run against every adapter: the
//! SQS adapter on the emulator and the embedded SQLite queue.
//!
//! `hookgate dev` runs the processor as a loop on this port, and the processor relies on
//! SQS's semantics: a received message is hidden for the visibility timeout and comes back
//! counted once more if it is not acknowledged, an acknowledged one is gone, and a message
//! received too often ends in the dead-letter queue. The local queue must behave the same,
//! or the local pipeline would pass what the deployed one fails.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hookgate::aws::SqsQueueConsumer;
use hookgate::dead_letters::DeadLetterQueue;
use hookgate::envelope::QueueMessage;
use hookgate::processor::{QueueConsumer, QueuedDelivery};
use hookgate::queue::EventQueue;
use hookgate::sqlite::SqliteQueueSettings;
use hookgate_samples::verified_github_message;
use hookgate_tests::contract::{ScratchQueue, SqsQueues};
use hookgate_tests::emulator;

/// The queues under test move a message to their dead-letter queue once it has been received
/// this many times.
const MAX_RECEIVE_COUNT: u32 = 2;

/// The shortest visibility SQS can count (whole seconds), so the tests wait little.
const VISIBILITY: Duration = Duration::from_secs(1);

/// Long enough after [`VISIBILITY`] for a message to be visible again.
const PAST_VISIBILITY: Duration = Duration::from_millis(1_500);

/// How long a receive may wait for a message that was just enqueued.
const ARRIVAL: Duration = Duration::from_secs(2);

/// An adapter under test, and how to look behind it.
trait Adapter {
    /// Where the tests enqueue, as the receivers do.
    fn queue(&self) -> &dyn EventQueue;

    fn consumer(&self) -> &dyn QueueConsumer;

    /// The bodies in the dead-letter queue.
    async fn dead_letter_bodies(&self) -> Vec<String>;
}

impl Adapter for SqsQueues {
    fn queue(&self) -> &dyn EventQueue {
        &self.queue
    }

    fn consumer(&self) -> &dyn QueueConsumer {
        &self.consumer
    }

    async fn dead_letter_bodies(&self) -> Vec<String> {
        // One long poll: the redrive policy moves a message during the receive that finds
        // it, so whatever was moved is there already.
        self.client
            .receive_message()
            .queue_url(&self.dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("the emulator answers ReceiveMessage")
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|message| message.body.unwrap_or_default())
            .collect()
    }
}

/// The adapters on a fresh queue of their own, with a redrive policy to a fresh dead-letter
/// queue.
async fn sqs() -> SqsQueues {
    SqsQueues::new("consumer", MAX_RECEIVE_COUNT).await
}

/// The embedded queue, in a file of its own that is removed when the test ends.
fn sqlite() -> ScratchQueue {
    let settings = SqliteQueueSettings {
        max_receive_count: MAX_RECEIVE_COUNT,
    };
    ScratchQueue::open("hookgate-consumer-contract", settings)
}

impl Adapter for ScratchQueue {
    fn queue(&self) -> &dyn EventQueue {
        self.adapter()
    }

    fn consumer(&self) -> &dyn QueueConsumer {
        self.adapter()
    }

    async fn dead_letter_bodies(&self) -> Vec<String> {
        self.adapter()
            .list(100)
            .await
            .expect("the dead letters can be listed")
            .into_iter()
            .map(|letter| letter.body)
            .collect()
    }
}

/// Enqueues a fresh message and returns it with its id.
async fn enqueued(adapter: &impl Adapter, delivery_id: &str) -> (String, QueueMessage) {
    let message = verified_github_message(delivery_id, "opened");
    let id = adapter
        .queue()
        .enqueue(&message)
        .await
        .expect("the queue accepts the message");
    (id, message)
}

/// Receives the one message expected to be visible (or to become so within [`ARRIVAL`]).
async fn receive_one(adapter: &impl Adapter) -> QueuedDelivery {
    let mut deliveries = adapter
        .consumer()
        .receive(10, VISIBILITY, ARRIVAL)
        .await
        .expect("the queue answers");
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    deliveries.remove(0)
}

async fn nothing_visible(adapter: &impl Adapter) -> Vec<QueuedDelivery> {
    adapter
        .consumer()
        .receive(10, VISIBILITY, Duration::ZERO)
        .await
        .expect("the queue answers")
}

/// What a receive that waits up to a second gets, where nothing should come.
async fn received_within_a_second(adapter: &impl Adapter) -> Vec<QueuedDelivery> {
    adapter
        .consumer()
        .receive(10, VISIBILITY, Duration::from_secs(1))
        .await
        .expect("the queue answers")
}

// ---- the contract ----

async fn a_receive_gets_what_was_enqueued_counted_once_with_a_receipt_handle(
    adapter: impl Adapter,
) {
    let (id, message) = enqueued(&adapter, "c-1").await;

    let delivery = receive_one(&adapter).await;

    assert_eq!(delivery.message_id, id);
    assert_eq!(delivery.body, message.body());
    assert_eq!(delivery.receive_count, 1);
    assert!(!delivery.receipt_handle.is_empty(), "{delivery:?}");
}

async fn a_received_message_is_hidden_for_the_visibility_then_comes_back_counted_twice(
    adapter: impl Adapter,
) {
    let (id, _) = enqueued(&adapter, "c-2").await;
    let first = receive_one(&adapter).await;

    let during = nothing_visible(&adapter).await;
    assert!(
        during.is_empty(),
        "the message must stay hidden for the visibility: {during:?}"
    );

    tokio::time::sleep(PAST_VISIBILITY).await;
    let again = receive_one(&adapter).await;
    assert_eq!(again.message_id, id);
    assert_eq!(again.receive_count, 2);
    assert_ne!(
        again.receipt_handle, first.receipt_handle,
        "each receive has a receipt handle of its own"
    );
}

async fn an_acknowledged_message_never_comes_back(adapter: impl Adapter) {
    enqueued(&adapter, "c-3").await;
    let delivery = receive_one(&adapter).await;

    adapter
        .consumer()
        .acknowledge(&delivery)
        .await
        .expect("Ok means deleted");

    tokio::time::sleep(PAST_VISIBILITY).await;
    let after = received_within_a_second(&adapter).await;
    assert!(after.is_empty(), "{after:?}");
    assert!(adapter.dead_letter_bodies().await.is_empty());
}

async fn a_waiting_receive_answers_as_soon_as_a_message_arrives(adapter: impl Adapter) {
    let wait = Duration::from_secs(8);
    let started = Instant::now();

    let (received, (id, _)) =
        tokio::join!(adapter.consumer().receive(10, VISIBILITY, wait), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            enqueued(&adapter, "c-4").await
        });

    let received = received.expect("the queue answers");
    let ids: Vec<&str> = received.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids, [id.as_str()]);
    assert!(
        started.elapsed() < wait / 2,
        "the receive waited {:?} after the message arrived",
        started.elapsed()
    );
}

async fn a_waiting_receive_answers_empty_after_about_the_wait(adapter: impl Adapter) {
    let wait = Duration::from_secs(1);
    let started = Instant::now();

    let received = adapter
        .consumer()
        .receive(10, VISIBILITY, wait)
        .await
        .expect("the queue answers");

    let waited = started.elapsed();
    assert!(received.is_empty(), "{received:?}");
    assert!(
        waited >= wait.mul_f32(0.9),
        "answered after {waited:?}, before the wait"
    );
    assert!(waited < wait * 3, "answered only after {waited:?}");
}

async fn a_receive_returns_at_most_max_messages(adapter: impl Adapter) {
    let mut enqueued_ids = BTreeSet::new();
    for delivery_id in ["c-5", "c-6", "c-7"] {
        enqueued_ids.insert(enqueued(&adapter, delivery_id).await.0);
    }

    let mut received_ids = BTreeSet::new();
    for _ in 0..5 {
        let received = adapter
            .consumer()
            .receive(2, Duration::from_secs(30), ARRIVAL)
            .await
            .expect("the queue answers");
        assert!(received.len() <= 2, "asked for 2, got {received:?}");
        received_ids.extend(received.into_iter().map(|d| d.message_id));
        if received_ids.len() == enqueued_ids.len() {
            break;
        }
    }
    assert_eq!(received_ids, enqueued_ids);
}

async fn a_message_received_the_maximum_number_of_times_goes_to_the_dead_letter_queue(
    adapter: impl Adapter,
) {
    let (id, message) = enqueued(&adapter, "c-8").await;
    for count in 1..=MAX_RECEIVE_COUNT {
        let delivery = receive_one(&adapter).await;
        assert_eq!(
            (delivery.message_id.as_str(), delivery.receive_count),
            (id.as_str(), count)
        );
        tokio::time::sleep(PAST_VISIBILITY).await;
    }

    let after = received_within_a_second(&adapter).await;

    assert!(
        after.is_empty(),
        "a message received {MAX_RECEIVE_COUNT} times must not be delivered again: {after:?}"
    );
    assert_eq!(adapter.dead_letter_bodies().await, [message.body()]);
}

/// The whole contract, for one adapter: one test per point, so a failure names both.
macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn a_receive_gets_what_was_enqueued_counted_once_with_a_receipt_handle() {
                super::a_receive_gets_what_was_enqueued_counted_once_with_a_receipt_handle(
                    $make,
                )
                .await;
            }

            #[tokio::test]
            async fn a_received_message_is_hidden_for_the_visibility_then_comes_back_counted_twice(
            ) {
                super::a_received_message_is_hidden_for_the_visibility_then_comes_back_counted_twice(
                    $make,
                )
                .await;
            }

            #[tokio::test]
            async fn an_acknowledged_message_never_comes_back() {
                super::an_acknowledged_message_never_comes_back($make).await;
            }

            #[tokio::test]
            async fn a_waiting_receive_answers_as_soon_as_a_message_arrives() {
                super::a_waiting_receive_answers_as_soon_as_a_message_arrives($make).await;
            }

            #[tokio::test]
            async fn a_waiting_receive_answers_empty_after_about_the_wait() {
                super::a_waiting_receive_answers_empty_after_about_the_wait($make).await;
            }

            #[tokio::test]
            async fn a_receive_returns_at_most_max_messages() {
                super::a_receive_returns_at_most_max_messages($make).await;
            }

            #[tokio::test]
            async fn a_message_received_the_maximum_number_of_times_goes_to_the_dead_letter_queue(
            ) {
                super::a_message_received_the_maximum_number_of_times_goes_to_the_dead_letter_queue(
                    $make,
                )
                .await;
            }
        }
    };
}

contract!(sqs_queue_consumer, sqs().await);
contract!(sqlite_queue, sqlite());

#[tokio::test]
async fn connecting_a_consumer_to_a_missing_queue_fails_naming_it() {
    let client = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let queue_url = emulator::create_queue(&client, "consumer").await.unwrap();
    let missing = format!("{queue_url}-missing");
    let error = SqsQueueConsumer::connect(client, missing.clone())
        .await
        .expect_err("a missing queue fails at connect");
    assert!(error.to_string().contains(&missing), "{error}");
}
