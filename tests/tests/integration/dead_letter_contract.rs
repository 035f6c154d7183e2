//! The contract of the [`DeadLetterQueue`] port, as one suite run against every adapter: the
//! SQS adapter on the emulator and the embedded SQLite queue.
//!
//! Dead letters are made the way the processor makes them, through the ports: enqueued,
//! received, parked with [`QueueControl::dead_letter`] and acknowledged. An operator then
//! lists, shows and redrives them with `hookgate dlq`; looking must not lose any, and a
//! redrive must hand each back to the processor with its envelope intact.

use std::collections::BTreeSet;
use std::time::Duration;

use hookgate::aws::{SqsDeadLetterQueue, SqsQueueControl};
use hookgate::dead_letters::{DeadLetter, DeadLetterQueue, Redrive};
use hookgate::processor::{QueueConsumer, QueueControl};
use hookgate::queue::EventQueue;
use hookgate::sqlite::SqliteQueueSettings;
use hookgate_samples::verified_github_message;
use hookgate_tests::contract::{ScratchQueue, SqsQueues};
use hookgate_tests::emulator;
use time::OffsetDateTime;

/// The queues under test move a message to their dead-letter queue once it has been received
/// this many times.
const MAX_RECEIVE_COUNT: u32 = 2;

/// How long a receive may wait for a message that was just enqueued.
const ARRIVAL: Duration = Duration::from_secs(2);

/// An adapter under test: the dead-letter queue, and the ports that fill and drain it.
trait Adapter {
    fn queue(&self) -> &dyn EventQueue;

    fn consumer(&self) -> &dyn QueueConsumer;

    fn control(&self) -> &dyn QueueControl;

    fn dead_letters(&self) -> &dyn DeadLetterQueue;

    /// Returns once the redrive has finished moving every dead letter (bounded).
    async fn wait_for(&self, redrive: Redrive);
}

#[derive(Debug)]
struct Sqs {
    queues: SqsQueues,
    control: SqsQueueControl,
    dead_letters: SqsDeadLetterQueue,
}

impl Sqs {
    /// The adapters on a fresh queue with a redrive policy to a fresh dead-letter queue, as
    /// the stack deploys them.
    async fn new() -> Self {
        let queues = SqsQueues::new("dead-letters", MAX_RECEIVE_COUNT).await;
        let control = SqsQueueControl::connect(
            queues.client.clone(),
            queues.queue_url.clone(),
            queues.dlq_url.clone(),
        )
        .await
        .expect("both queues exist");
        let dead_letters = SqsDeadLetterQueue::connect(
            queues.client.clone(),
            queues.dlq_url.clone(),
            queues.queue_url.clone(),
        )
        .await
        .expect("the adapter connects to queues that exist");
        Self {
            queues,
            control,
            dead_letters,
        }
    }
}

impl Adapter for Sqs {
    fn queue(&self) -> &dyn EventQueue {
        &self.queues.queue
    }

    fn consumer(&self) -> &dyn QueueConsumer {
        &self.queues.consumer
    }

    fn control(&self) -> &dyn QueueControl {
        &self.control
    }

    fn dead_letters(&self) -> &dyn DeadLetterQueue {
        &self.dead_letters
    }

    async fn wait_for(&self, redrive: Redrive) {
        let Redrive::Started { .. } = redrive else {
            panic!("SQS redrives with a move task, not in one step: {redrive:?}");
        };
        for _ in 0..40 {
            let status = self
                .dead_letters
                .move_task_status()
                .await
                .expect("the emulator answers ListMessageMoveTasks");
            if let Some(status) = status.filter(|status| status.is_finished()) {
                assert_eq!(status.status, "COMPLETED", "{status:?}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the move task did not finish within 10 s");
    }
}

/// The embedded queue, in a file of its own that is removed when the test ends.
fn sqlite() -> ScratchQueue {
    let settings = SqliteQueueSettings {
        max_receive_count: MAX_RECEIVE_COUNT,
    };
    ScratchQueue::open("hookgate-dead-letter-contract", settings)
}

impl Adapter for ScratchQueue {
    fn queue(&self) -> &dyn EventQueue {
        self.adapter()
    }

    fn consumer(&self) -> &dyn QueueConsumer {
        self.adapter()
    }

    fn control(&self) -> &dyn QueueControl {
        self.adapter()
    }

    fn dead_letters(&self) -> &dyn DeadLetterQueue {
        self.adapter()
    }

    async fn wait_for(&self, redrive: Redrive) {
        assert!(
            matches!(redrive, Redrive::Moved { .. }),
            "the embedded queue redrives in one step: {redrive:?}"
        );
    }
}

/// Does what the processor does with a message that failed for good: receives it, parks it
/// with `reason`, and acknowledges it. Returns the envelope's JSON.
async fn dead_lettered(adapter: &impl Adapter, delivery_id: &str, reason: &str) -> String {
    dead_lettered_from_the_queue(adapter, delivery_id, reason)
        .await
        .0
}

/// As [`dead_lettered`], and the id the message had in the main queue (the one the
/// processor's log lines carry).
async fn dead_lettered_from_the_queue(
    adapter: &impl Adapter,
    delivery_id: &str,
    reason: &str,
) -> (String, String) {
    let message = verified_github_message(delivery_id, "opened");
    adapter
        .queue()
        .enqueue(&message)
        .await
        .expect("the queue accepts the message");
    let deliveries = adapter
        .consumer()
        .receive(1, Duration::from_secs(30), ARRIVAL)
        .await
        .expect("the queue answers");
    let [delivery] = deliveries.as_slice() else {
        panic!("expected the one message enqueued, got {deliveries:?}");
    };
    assert_eq!(delivery.body, message.body());
    adapter
        .control()
        .dead_letter(delivery, reason)
        .await
        .expect("Ok means parked");
    adapter
        .consumer()
        .acknowledge(delivery)
        .await
        .expect("Ok means deleted");
    (message.body().to_owned(), delivery.message_id.clone())
}

async fn listed(adapter: &impl Adapter, max: usize) -> Vec<DeadLetter> {
    adapter
        .dead_letters()
        .list(max)
        .await
        .expect("the dead-letter queue answers")
}

// ---- the contract ----

async fn a_dead_letter_is_listed_with_its_body_and_reason(adapter: impl Adapter) {
    let before = OffsetDateTime::now_utc();
    let body = dead_lettered(&adapter, "l-1", "action `agent` failed permanently: 400").await;

    let letters = listed(&adapter, 10).await;

    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].body, body);
    assert_eq!(
        letters[0].reason.as_deref(),
        Some("action `agent` failed permanently: 400")
    );
    assert!(!letters[0].message_id.is_empty());
    if let Some(at) = letters[0].dead_lettered_at {
        let window = (before - time::Duration::seconds(5))..(before + time::Duration::minutes(1));
        assert!(
            window.contains(&at),
            "dead-lettered at {at}, test began {before}"
        );
    }
}

async fn show_finds_a_dead_letter_by_its_id_and_nothing_for_an_unknown_id(adapter: impl Adapter) {
    dead_lettered(&adapter, "l-2", "first").await;
    let body = dead_lettered(&adapter, "l-3", "second").await;
    let id = listed(&adapter, 10)
        .await
        .into_iter()
        .find(|letter| letter.body == body)
        .expect("the dead letter is listed")
        .message_id;

    let shown = adapter
        .dead_letters()
        .show(&id)
        .await
        .expect("the dead-letter queue answers")
        .expect("the dead letter is found by its id");
    assert_eq!(
        (shown.message_id.as_str(), shown.body.as_str()),
        (id.as_str(), body.as_str())
    );
    assert_eq!(shown.reason.as_deref(), Some("second"));

    let unknown = adapter
        .dead_letters()
        .show("00000000-0000-4000-8000-000000000000")
        .await
        .expect("the dead-letter queue answers");
    assert_eq!(unknown, None);
}

async fn a_dead_letter_is_known_by_the_id_it_had_in_the_main_queue(adapter: impl Adapter) {
    let (body, logged) = dead_lettered_from_the_queue(&adapter, "l-5", "failed").await;

    let letters = listed(&adapter, 10).await;

    let [letter] = letters.as_slice() else {
        panic!("one dead letter: {letters:?}");
    };
    assert_eq!(
        (letter.id(), letter.body.as_str()),
        (logged.as_str(), body.as_str())
    );
    let shown = adapter
        .dead_letters()
        .show(&logged)
        .await
        .expect("the dead-letter queue answers")
        .expect("the dead letter is found by the id the processor logged");
    assert_eq!(shown.body, body);
    let by_own_id = adapter
        .dead_letters()
        .show(&letter.message_id)
        .await
        .expect("the dead-letter queue answers");
    assert_eq!(by_own_id.map(|letter| letter.body), Some(body));
}

async fn looking_removes_nothing_and_reaches_past_ten_dead_letters(adapter: impl Adapter) {
    let mut bodies = BTreeSet::new();
    for n in 0..12 {
        bodies.insert(dead_lettered(&adapter, &format!("l-{}", 10 + n), "failed").await);
    }

    for look in ["first", "second"] {
        let letters = listed(&adapter, 50).await;
        let seen: BTreeSet<String> = letters.into_iter().map(|letter| letter.body).collect();
        assert!(
            seen == bodies,
            "the {look} listing found {} of the {} dead letters",
            seen.intersection(&bodies).count(),
            bodies.len()
        );
    }
    let some = listed(&adapter, 5).await;
    assert_eq!(some.len(), 5, "asked for 5: {some:?}");
}

async fn a_message_received_too_often_is_listed_without_a_reason(adapter: impl Adapter) {
    let message = verified_github_message("l-4", "opened");
    adapter
        .queue()
        .enqueue(&message)
        .await
        .expect("the queue accepts the message");
    let mut received_as = BTreeSet::new();
    for _ in 0..MAX_RECEIVE_COUNT {
        let deliveries = adapter
            .consumer()
            .receive(1, Duration::from_secs(1), ARRIVAL)
            .await
            .expect("the queue answers");
        assert_eq!(deliveries.len(), 1, "{deliveries:?}");
        received_as.insert(deliveries[0].message_id.clone());
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    let after = adapter
        .consumer()
        .receive(1, Duration::from_secs(1), Duration::ZERO)
        .await
        .expect("the queue answers");
    assert!(after.is_empty(), "{after:?}");

    let letters = listed(&adapter, 10).await;

    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].body, message.body());
    assert_eq!(letters[0].reason, None);
    assert_eq!(
        BTreeSet::from([letters[0].id().to_owned()]),
        received_as,
        "known by the id it was received by"
    );
}

async fn a_redrive_empties_the_dead_letter_queue_back_into_the_main_queue(adapter: impl Adapter) {
    let first = dead_lettered(&adapter, "l-5", "failed").await;
    let second = dead_lettered(&adapter, "l-6", "failed").await;

    let redrive = adapter
        .dead_letters()
        .redrive()
        .await
        .expect("the redrive starts");
    let count = match &redrive {
        Redrive::Moved { count } => Some(*count),
        Redrive::Started {
            approximate_count, ..
        } => *approximate_count,
    };
    assert!(matches!(count, None | Some(2)), "{redrive:?}");
    adapter.wait_for(redrive).await;

    assert_eq!(listed(&adapter, 10).await, []);
    let mut received = BTreeSet::new();
    for _ in 0..5 {
        let deliveries = adapter
            .consumer()
            .receive(10, Duration::from_secs(30), ARRIVAL)
            .await
            .expect("the queue answers");
        received.extend(deliveries.into_iter().map(|delivery| delivery.body));
        if received.len() == 2 {
            break;
        }
    }
    assert_eq!(received, BTreeSet::from([first, second]));
}

/// The whole contract, for one adapter: one test per point, so a failure names both.
macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn a_dead_letter_is_listed_with_its_body_and_reason() {
                super::a_dead_letter_is_listed_with_its_body_and_reason($make).await;
            }

            #[tokio::test]
            async fn show_finds_a_dead_letter_by_its_id_and_nothing_for_an_unknown_id() {
                super::show_finds_a_dead_letter_by_its_id_and_nothing_for_an_unknown_id($make)
                    .await;
            }

            #[tokio::test]
            async fn a_dead_letter_is_known_by_the_id_it_had_in_the_main_queue() {
                super::a_dead_letter_is_known_by_the_id_it_had_in_the_main_queue($make).await;
            }

            #[tokio::test]
            async fn looking_removes_nothing_and_reaches_past_ten_dead_letters() {
                super::looking_removes_nothing_and_reaches_past_ten_dead_letters($make).await;
            }

            #[tokio::test]
            async fn a_message_received_too_often_is_listed_without_a_reason() {
                super::a_message_received_too_often_is_listed_without_a_reason($make).await;
            }

            #[tokio::test]
            async fn a_redrive_empties_the_dead_letter_queue_back_into_the_main_queue() {
                super::a_redrive_empties_the_dead_letter_queue_back_into_the_main_queue($make)
                    .await;
            }
        }
    };
}

contract!(sqs_dead_letter_queue, Sqs::new().await);
contract!(sqlite_queue, sqlite());

#[tokio::test]
async fn connecting_to_a_missing_main_queue_fails_naming_it() {
    let client = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let dlq_url = emulator::create_queue(&client, "dead-letters")
        .await
        .unwrap();
    let missing = format!("{dlq_url}-missing");
    let error = SqsDeadLetterQueue::connect(client, dlq_url, missing.clone())
        .await
        .expect_err("a missing queue fails at connect");
    assert!(error.to_string().contains(&missing), "{error}");
}

#[tokio::test]
async fn no_move_task_is_reported_before_the_first_redrive() {
    let client = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let queues = emulator::create_queue_with_dead_letters(&client, "dead-letters", 2)
        .await
        .unwrap();
    let dead_letters = SqsDeadLetterQueue::connect(client, queues.dlq_url, queues.queue_url)
        .await
        .unwrap();
    assert_eq!(dead_letters.move_task_status().await.unwrap(), None);
}
