//! The contract of the [`QueueControl`] port, as one suite run against every adapter: the
//! in-memory recorder, the SQS adapter on the emulator, and the SQLite queue `hookgate dev`
//! runs on.
//!
//! The processor acknowledges a permanently failed message on the strength of `dead_letter`
//! returning `Ok`, so `Ok` must mean the body and its reason are stored; and it reports a
//! retryable failure after `retry_after`, which must put the message off by the delay.

use std::time::Duration;

use hookgate::aws::{dead_letter_attribute, SqsQueueControl};
use hookgate::processor::{
    ControlCall, MemoryQueueControl, QueueConsumer, QueueControl, QueuedDelivery,
};
use hookgate::sqlite::SqliteQueueSettings;
use hookgate_tests::contract::{look, ScratchQueue};
use hookgate_tests::emulator;
use time::OffsetDateTime;

const BODY: &str = r#"{"version":1,"note":"an envelope, as far as the port cares"}"#;

/// A dead letter as read back from behind the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeadLetter {
    body: String,
    reason: String,
}

/// An adapter under test, and how to look behind it.
trait Adapter {
    fn control(&self) -> &dyn QueueControl;

    /// A message the processor currently holds (received, not yet acknowledged).
    async fn held_message(&self) -> QueuedDelivery;

    /// The dead letters stored so far.
    async fn dead_letters(&self) -> Vec<DeadLetter>;

    /// Checks the held message is put off by `delay`, no more and no less (within the
    /// adapter's granularity).
    async fn assert_put_off(&self, delivery: &QueuedDelivery, delay: Duration);
}

#[derive(Debug, Default)]
struct Memory(MemoryQueueControl);

impl Adapter for Memory {
    fn control(&self) -> &dyn QueueControl {
        &self.0
    }

    async fn held_message(&self) -> QueuedDelivery {
        QueuedDelivery {
            message_id: "m-1".into(),
            receipt_handle: "r-1".into(),
            body: BODY.into(),
            receive_count: 1,
        }
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.0
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                ControlCall::DeadLetter { body, reason, .. } => Some(DeadLetter { body, reason }),
                ControlCall::RetryAfter { .. } => None,
            })
            .collect()
    }

    async fn assert_put_off(&self, delivery: &QueuedDelivery, delay: Duration) {
        assert!(self.0.calls().contains(&ControlCall::RetryAfter {
            message_id: delivery.message_id.clone(),
            delay
        }));
    }
}

#[derive(Debug)]
struct Sqs {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
    control: SqsQueueControl,
}

impl Sqs {
    async fn new() -> Self {
        let client = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
        let queue_url = emulator::create_queue(&client, "control")
            .await
            .expect("a queue");
        let dlq_url = emulator::create_queue(&client, "control-dlq")
            .await
            .expect("a DLQ");
        let control = SqsQueueControl::connect(client.clone(), queue_url.clone(), dlq_url.clone())
            .await
            .expect("the adapter connects to queues that exist");
        Self {
            client,
            queue_url,
            dlq_url,
            control,
        }
    }

    async fn receive(&self, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        self.client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .expect("the emulator answers ReceiveMessage")
            .messages
            .unwrap_or_default()
    }
}

impl Adapter for Sqs {
    fn control(&self) -> &dyn QueueControl {
        &self.control
    }

    async fn held_message(&self) -> QueuedDelivery {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(BODY)
            .send()
            .await
            .expect("the emulator answers SendMessage");
        let message = self
            .receive(&self.queue_url)
            .await
            .into_iter()
            .next()
            .expect("the message");
        QueuedDelivery {
            message_id: message.message_id.unwrap_or_default(),
            receipt_handle: message.receipt_handle.unwrap_or_default(),
            body: message.body.unwrap_or_default(),
            receive_count: 1,
        }
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.receive(&self.dlq_url)
            .await
            .into_iter()
            .map(|message| DeadLetter {
                body: message.body().unwrap_or_default().to_owned(),
                reason: message
                    .message_attributes()
                    .and_then(|attributes| attributes.get(dead_letter_attribute::REASON))
                    .and_then(|reason| reason.string_value())
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect()
    }

    async fn assert_put_off(&self, _delivery: &QueuedDelivery, delay: Duration) {
        assert!(
            self.receive(&self.queue_url).await.is_empty(),
            "the message must stay hidden during the delay"
        );
        tokio::time::sleep(delay + Duration::from_millis(500)).await;
        assert_eq!(
            self.receive(&self.queue_url).await.len(),
            1,
            "the message must come back once the delay is over"
        );
    }
}

/// The embedded queue on a fresh file of its own.
fn sqlite() -> ScratchQueue {
    ScratchQueue::open("hookgate-control-contract", SqliteQueueSettings::default())
}

impl Adapter for ScratchQueue {
    fn control(&self) -> &dyn QueueControl {
        self.adapter()
    }

    async fn held_message(&self) -> QueuedDelivery {
        // Written behind the adapter, as the SQS suite sends it raw: `enqueue` takes only a
        // verified envelope, and the port cares about the body alone.
        look(self.path())
            .execute(
                "INSERT INTO queue_messages \
                 (id, body, attributes, enqueued_at_ms, visible_at_ms, receive_count) \
                 VALUES ('m-held', ?1, '{}', 0, 0, 0)",
                [BODY],
            )
            .expect("the message is written");
        let mut received = self
            .adapter()
            .receive(1, Duration::from_secs(30), Duration::ZERO)
            .await
            .expect("the queue answers");
        assert_eq!(received.len(), 1, "{received:?}");
        received.remove(0)
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        let connection = look(self.path());
        let mut statement = connection
            .prepare("SELECT body, reason FROM dead_letters ORDER BY seq")
            .expect("the table reads");
        statement
            .query_map([], |row| {
                Ok(DeadLetter {
                    body: row.get(0)?,
                    reason: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                })
            })
            .expect("the rows read")
            .collect::<Result<_, _>>()
            .expect("readable rows")
    }

    async fn assert_put_off(&self, delivery: &QueuedDelivery, delay: Duration) {
        let visible_at_ms: i64 = look(self.path())
            .query_row(
                "SELECT visible_at_ms FROM queue_messages WHERE id = ?1",
                [&delivery.message_id],
                |row| row.get(0),
            )
            .expect("the message is still queued");
        let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .expect("a current instant");
        let delay_ms = i64::try_from(delay.as_millis()).expect("a short delay");
        let remaining = visible_at_ms - now_ms;
        // No more than the delay; no less than it, but for the moments this test took.
        assert!(
            remaining <= delay_ms && remaining > delay_ms - 500,
            "hidden for another {remaining} ms after a delay of {delay_ms} ms"
        );
        assert!(
            self.adapter()
                .receive(10, Duration::from_secs(30), Duration::ZERO)
                .await
                .expect("the queue answers")
                .is_empty(),
            "the message must stay hidden during the delay"
        );
    }
}

async fn a_dead_letter_is_stored_with_its_body_and_reason(adapter: impl Adapter) {
    let delivery = adapter.held_message().await;
    adapter
        .control()
        .dead_letter(&delivery, "action `agent` failed permanently: 400")
        .await
        .expect("Ok means stored");
    assert_eq!(
        adapter.dead_letters().await,
        [DeadLetter {
            body: BODY.into(),
            reason: "action `agent` failed permanently: 400".into()
        }]
    );
}

async fn a_retry_puts_the_message_off_by_the_delay(adapter: impl Adapter) {
    let delivery = adapter.held_message().await;
    let delay = Duration::from_secs(2);
    adapter
        .control()
        .retry_after(&delivery, delay)
        .await
        .expect("the delay is set");
    adapter.assert_put_off(&delivery, delay).await;
}

async fn a_retry_of_under_a_second_still_puts_the_message_off(adapter: impl Adapter) {
    let delivery = adapter.held_message().await;
    let delay = Duration::from_millis(700);
    adapter
        .control()
        .retry_after(&delivery, delay)
        .await
        .expect("the delay is set");
    adapter.assert_put_off(&delivery, delay).await;
}

macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn a_dead_letter_is_stored_with_its_body_and_reason() {
                super::a_dead_letter_is_stored_with_its_body_and_reason($make).await;
            }

            #[tokio::test]
            async fn a_retry_puts_the_message_off_by_the_delay() {
                super::a_retry_puts_the_message_off_by_the_delay($make).await;
            }

            #[tokio::test]
            async fn a_retry_of_under_a_second_still_puts_the_message_off() {
                super::a_retry_of_under_a_second_still_puts_the_message_off($make).await;
            }
        }
    };
}

contract!(memory_queue_control, Memory::default());
contract!(sqs_queue_control, Sqs::new().await);
contract!(sqlite_queue_control, sqlite());

#[tokio::test]
async fn connecting_to_a_missing_dead_letter_queue_fails_naming_it() {
    let client = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let queue_url = emulator::create_queue(&client, "control").await.unwrap();
    let missing = format!("{}-missing", queue_url);
    let error = SqsQueueControl::connect(client, queue_url, missing.clone())
        .await
        .expect_err("a missing DLQ fails at init");
    assert!(error.to_string().contains(&missing), "{error}");
}
