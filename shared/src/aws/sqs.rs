//! The SQS adapters of [`EventQueue`] (receivers), [`QueueControl`] and [`QueueConsumer`]
//! (the processor), and [`DeadLetterQueue`] (`hookgate dlq`).

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName,
};
use time::OffsetDateTime;

use crate::dead_letters::{DeadLetter, DeadLetterQueue, Redrive};
use crate::envelope::QueueMessage;
use crate::processor::{QueueConsumer, QueueControl, QueuedDelivery};
use crate::queue::{EventQueue, QueueError};

/// Sends envelopes to one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsEventQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    max_message_bytes: usize,
}

/// What a queue that does not say takes: SQS's limit before August 2025, which every queue
/// still accepts.
const CLASSIC_MAX_MESSAGE_BYTES: usize = 262_144;

impl SqsEventQueue {
    /// Checks that the queue exists (and warms the connection) with one
    /// `GetQueueAttributes` call, which also reads the queue's `MaximumMessageSize`.
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        queue_url: String,
    ) -> Result<Self, QueueError> {
        let attributes = reach(
            &client,
            &queue_url,
            &[QueueAttributeName::MaximumMessageSize],
        )
        .await?;
        let max_message_bytes = attributes
            .get(&QueueAttributeName::MaximumMessageSize)
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(CLASSIC_MAX_MESSAGE_BYTES);
        Ok(Self {
            client,
            queue_url,
            max_message_bytes,
        })
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

#[async_trait]
impl EventQueue for SqsEventQueue {
    async fn enqueue(&self, message: &QueueMessage) -> Result<String, QueueError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.body());
        for (name, value) in message.attributes() {
            request = request.message_attributes(name, string_attribute(value)?);
        }
        let output = request
            .send()
            .await
            .map_err(failed("SendMessage to", &self.queue_url))?;
        output
            .message_id
            .ok_or_else(|| QueueError::new("SQS answered without a message id"))
    }

    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }
}

/// The SQS adapter of [`QueueControl`]: retry delays on the processor's queue, and dead
/// letters sent to the dead-letter queue with the reason as a message attribute.
#[derive(Debug, Clone)]
pub struct SqsQueueControl {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
    /// The queue's redrive policy's `maxReceiveCount`, when it has one.
    max_receive_count: Option<u32>,
    /// How long the dead-letter queue keeps a message.
    dead_letter_retention: Option<Duration>,
}

/// Message attributes a dead letter carries besides the envelope's own.
pub mod dead_letter_attribute {
    /// Why the processor gave up on the message.
    pub const REASON: &str = "failure_reason";
    /// The id the message had in the main queue.
    pub const SOURCE_MESSAGE_ID: &str = "source_message_id";
}

impl SqsQueueControl {
    /// Checks both queues exist (and warms the connection), and reads what the processor
    /// needs to know of them: the queue's maximum receive count, after which SQS would move
    /// a message on by itself, and how long the dead-letter queue keeps messages.
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        queue_url: String,
        dlq_url: String,
    ) -> Result<Self, QueueError> {
        let queue = reach(&client, &queue_url, &[QueueAttributeName::RedrivePolicy]).await?;
        let dlq = reach(
            &client,
            &dlq_url,
            &[QueueAttributeName::MessageRetentionPeriod],
        )
        .await?;
        let max_receive_count = queue
            .get(&QueueAttributeName::RedrivePolicy)
            .map(|policy| max_receive_count(policy, &queue_url))
            .transpose()?;
        let dead_letter_retention = dlq
            .get(&QueueAttributeName::MessageRetentionPeriod)
            .and_then(|seconds| seconds.parse().ok())
            .map(Duration::from_secs);
        Ok(Self {
            client,
            queue_url,
            dlq_url,
            max_receive_count,
            dead_letter_retention,
        })
    }

    /// How long the dead-letter queue keeps a message, when SQS says.
    pub fn dead_letter_retention(&self) -> Option<Duration> {
        self.dead_letter_retention
    }
}

/// The `maxReceiveCount` of a redrive policy (`{"deadLetterTargetArn": …,
/// "maxReceiveCount": 5}`; SQS has written the count both as a number and as a string).
fn max_receive_count(policy: &str, queue_url: &str) -> Result<u32, QueueError> {
    let unreadable = || {
        QueueError::new(format!(
            "the redrive policy of {queue_url} has no usable maxReceiveCount: {policy}"
        ))
    };
    let policy: serde_json::Value = serde_json::from_str(policy).map_err(|_| unreadable())?;
    let count = match &policy["maxReceiveCount"] {
        serde_json::Value::Number(number) => number.as_u64(),
        serde_json::Value::String(text) => text.parse().ok(),
        _ => None,
    };
    count
        .and_then(|count| u32::try_from(count).ok())
        .filter(|count| *count > 0)
        .ok_or_else(unreadable)
}

fn string_attribute(value: impl Into<String>) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|error| QueueError::new(error.to_string()))
}

#[async_trait]
impl QueueControl for SqsQueueControl {
    async fn retry_after(
        &self,
        delivery: &QueuedDelivery,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&delivery.receipt_handle)
            .visibility_timeout(whole_seconds(delay, i32::MAX))
            .send()
            .await
            .map_err(failed("ChangeMessageVisibility on", &self.queue_url))?;
        Ok(())
    }

    fn max_receive_count(&self) -> Option<u32> {
        self.max_receive_count
    }

    async fn dead_letter(&self, delivery: &QueuedDelivery, reason: &str) -> Result<(), QueueError> {
        let reason = crate::dead_letters::bounded_reason(reason);
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(&delivery.body)
            .message_attributes(dead_letter_attribute::REASON, string_attribute(reason)?)
            .message_attributes(
                dead_letter_attribute::SOURCE_MESSAGE_ID,
                string_attribute(delivery.message_id.clone())?,
            )
            .send()
            .await
            .map_err(failed("SendMessage to", &self.dlq_url))?;
        Ok(())
    }
}

/// Makes an SQS call's failure a [`QueueError`] that names the call and the queue, then
/// gives the SDK's whole error chain: `{action} {queue_url} failed: {chain}`.
fn failed<'a, E: Error + 'a>(
    action: &'a str,
    queue_url: &'a str,
) -> impl FnOnce(E) -> QueueError + 'a {
    move |error| {
        QueueError::new(format!(
            "{action} {queue_url} failed: {}",
            DisplayErrorContext(error)
        ))
    }
}

/// Checks that the queue exists (and warms the connection) with one `GetQueueAttributes`
/// call, which reads its ARN and the attributes `wanted` too; an attribute SQS leaves out of
/// its answer is absent from the map. An error names the URL.
async fn reach(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    wanted: &[QueueAttributeName],
) -> Result<HashMap<QueueAttributeName, String>, QueueError> {
    let output = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .set_attribute_names(Some(
            std::iter::once(QueueAttributeName::QueueArn)
                .chain(wanted.iter().cloned())
                .collect(),
        ))
        .send()
        .await
        .map_err(|error| {
            QueueError::new(format!(
                "cannot reach {queue_url}: {}",
                DisplayErrorContext(error)
            ))
        })?;
    Ok(output.attributes.unwrap_or_default())
}

/// Checks that the queue exists and returns its ARN, with one `GetQueueAttributes` call
/// (which also warms the connection).
async fn queue_arn(client: &aws_sdk_sqs::Client, queue_url: &str) -> Result<String, QueueError> {
    reach(client, queue_url, &[])
        .await?
        .remove(&QueueAttributeName::QueueArn)
        .ok_or_else(|| QueueError::new(format!("SQS gave no QueueArn for {queue_url}")))
}

/// Whole seconds for SQS, rounded up (a truncated 0.7 s would be none at all) and capped at
/// `limit`, SQS's own maximum for the parameter.
fn whole_seconds(duration: Duration, limit: i32) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds).unwrap_or(i32::MAX).min(limit)
}

/// SQS's longest visibility timeout (12 hours). A processor asking for longer gets the
/// longest there is: the message reappears sooner than asked, which at-least-once delivery
/// and the idempotency claims already allow for, rather than the receive failing outright.
const MAX_VISIBILITY_SECONDS: i32 = 43_200;

/// SQS's longest long poll. `wait` is an upper bound, so waiting less keeps the contract.
const MAX_WAIT_SECONDS: i32 = 20;

/// SQS's most messages per receive.
const MAX_MESSAGES_PER_RECEIVE: usize = 10;

/// The SQS adapter of [`QueueConsumer`], for `hookgate dev` running the processor as a loop
/// against a deployed queue. Moving a message to the dead-letter queue after the maximum
/// receive count is the queue's own redrive policy; this adapter has nothing to do for it.
#[derive(Debug, Clone)]
pub struct SqsQueueConsumer {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueueConsumer {
    /// Checks that the queue exists (and warms the connection).
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        queue_url: String,
    ) -> Result<Self, QueueError> {
        queue_arn(&client, &queue_url).await?;
        Ok(Self { client, queue_url })
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

/// A received SQS message as the processor takes it: the same reading as the Lambda event's
/// (`crate::lambda::processor::delivery`), a missing count read as a first receive.
fn received_delivery(message: Message) -> Result<QueuedDelivery, QueueError> {
    let receive_count = message
        .attributes()
        .and_then(|attributes| attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    let (Some(message_id), Some(receipt_handle)) = (message.message_id, message.receipt_handle)
    else {
        return Err(QueueError::new(
            "SQS answered with a message without an id or a receipt handle",
        ));
    };
    Ok(QueuedDelivery {
        message_id,
        receipt_handle,
        body: message.body.unwrap_or_default(),
        receive_count,
    })
}

#[async_trait]
impl QueueConsumer for SqsQueueConsumer {
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<QueuedDelivery>, QueueError> {
        let max = max.clamp(1, MAX_MESSAGES_PER_RECEIVE);
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(1))
            .visibility_timeout(whole_seconds(visibility, MAX_VISIBILITY_SECONDS))
            .wait_time_seconds(whole_seconds(wait, MAX_WAIT_SECONDS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(failed("ReceiveMessage from", &self.queue_url))?;
        output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(received_delivery)
            .collect()
    }

    async fn acknowledge(&self, delivery: &QueuedDelivery) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&delivery.receipt_handle)
            .send()
            .await
            .map_err(failed("DeleteMessage on", &self.queue_url))?;
        Ok(())
    }
}

/// The SQS adapter of [`DeadLetterQueue`]: the processor's dead-letter queue, and the main
/// queue its dead letters go back to.
///
/// SQS cannot browse a queue, so looking is receiving: each message listed is received,
/// hidden for a moment so that the next page brings others, and made visible again before
/// the call returns. Two consequences an operator may notice:
/// - each look raises the message's receive count on the dead-letter queue (harmless: the
///   dead-letter queue has no redrive policy of its own, so nothing moves it on), and a
///   concurrent look or redrive can miss a message another look holds for that moment;
/// - SQS samples its servers, so one listing of a large queue may not return every message.
#[derive(Debug, Clone)]
pub struct SqsDeadLetterQueue {
    client: aws_sdk_sqs::Client,
    dlq_url: String,
    dlq_arn: String,
    queue_arn: String,
}

/// The progress of the dead-letter queue's most recent message move task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTaskStatus {
    /// SQS's status: `RUNNING`, `COMPLETED`, `CANCELLING`, `CANCELLED` or `FAILED`.
    pub status: String,
    /// Messages moved so far (approximate).
    pub moved: u64,
    /// Messages there were to move when the task started, once SQS knows.
    pub to_move: Option<u64>,
    /// Why the task failed, when it did.
    pub failure: Option<String>,
}

impl MoveTaskStatus {
    /// Whether the task has stopped, one way or another.
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "COMPLETED" | "CANCELLED" | "FAILED")
    }
}

/// How long a look hides the messages it has seen, so that the next page brings others. They
/// are made visible again as soon as the look ends; this only bounds how long they stay
/// hidden if that fails.
const PEEK_HIDE_SECONDS: i32 = 10;

/// Pages a look may take beyond those `max` needs, for pages that bring some messages again.
const SPARE_PAGES: usize = 3;

/// The most pages `show` reads looking for one message (a thousand messages).
const SHOW_PAGES: usize = 100;

const SENT_TIMESTAMP: MessageSystemAttributeName = MessageSystemAttributeName::SentTimestamp;

impl SqsDeadLetterQueue {
    /// Checks that both queues exist and reads their ARNs, which the redrive's move task
    /// needs. An error names the URL that failed.
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        dlq_url: String,
        queue_url: String,
    ) -> Result<Self, QueueError> {
        let dlq_arn = queue_arn(&client, &dlq_url).await?;
        let queue_arn = queue_arn(&client, &queue_url).await?;
        Ok(Self {
            client,
            dlq_url,
            dlq_arn,
            queue_arn,
        })
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// The most recent message move task out of the dead-letter queue, if there ever was one,
    /// so that a caller of [`DeadLetterQueue::redrive`] can wait for it to finish.
    pub async fn move_task_status(&self) -> Result<Option<MoveTaskStatus>, QueueError> {
        let output = self
            .client
            .list_message_move_tasks()
            .source_arn(&self.dlq_arn)
            .max_results(1)
            .send()
            .await
            .map_err(failed("ListMessageMoveTasks on", &self.dlq_url))?;
        Ok(output.results().first().map(|task| MoveTaskStatus {
            status: task.status().unwrap_or("UNKNOWN").to_owned(),
            moved: u64::try_from(task.approximate_number_of_messages_moved()).unwrap_or(0),
            to_move: task
                .approximate_number_of_messages_to_move()
                .and_then(|count| u64::try_from(count).ok()),
            failure: task.failure_reason().map(str::to_owned),
        }))
    }

    /// Looks at the dead-letter queue until `enough` says so, a page brings nothing new, or
    /// `pages` pages are read; then makes every message seen visible again.
    async fn peek(
        &self,
        pages: usize,
        enough: impl Fn(&[DeadLetter]) -> bool,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let mut seen = Vec::new();
        let mut ids = HashSet::new();
        let mut receipts = Vec::new();
        let mut outcome = Ok(());
        for _ in 0..pages {
            let page = match self.peek_page().await {
                Ok(page) => page,
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            };
            let mut new = 0;
            for message in page {
                if let Some(receipt) = message.receipt_handle() {
                    receipts.push(receipt.to_owned());
                }
                let letter = dead_letter(message);
                if ids.insert(letter.message_id.clone()) {
                    seen.push(letter);
                    new += 1;
                }
            }
            if new == 0 || enough(&seen) {
                break;
            }
        }
        self.make_visible(receipts).await;
        outcome?;
        seen.sort_by_key(|letter| letter.dead_lettered_at);
        Ok(seen)
    }

    async fn peek_page(&self) -> Result<Vec<Message>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(PEEK_HIDE_SECONDS)
            // A short long poll: a receive without one samples only some of SQS's servers.
            .wait_time_seconds(1)
            .message_attribute_names(dead_letter_attribute::REASON)
            .message_attribute_names(dead_letter_attribute::SOURCE_MESSAGE_ID)
            .message_system_attribute_names(SENT_TIMESTAMP)
            .send()
            .await
            .map_err(failed("ReceiveMessage from", &self.dlq_url))?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Ends the hiding a look started. A failure is logged, not returned: the look itself
    /// succeeded, and the messages come back on their own after [`PEEK_HIDE_SECONDS`].
    async fn make_visible(&self, receipts: Vec<String>) {
        for chunk in receipts.chunks(MAX_MESSAGES_PER_RECEIVE) {
            let entries: Result<Vec<_>, _> = chunk
                .iter()
                .enumerate()
                .map(|(index, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                })
                .collect();
            let result = match entries {
                Ok(entries) => self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(&self.dlq_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map(|output| output.failed().len())
                    .map_err(|error| DisplayErrorContext(&error).to_string()),
                Err(error) => Err(error.to_string()),
            };
            match result {
                Ok(0) => {}
                Ok(failed) => tracing::warn!(
                    dlq_url = %self.dlq_url,
                    failed,
                    "some dead letters stay hidden until their visibility timeout ends"
                ),
                Err(error) => tracing::warn!(
                    dlq_url = %self.dlq_url,
                    %error,
                    "dead letters stay hidden until their visibility timeout ends"
                ),
            }
        }
    }

    async fn approximate_count(&self) -> Result<Option<u64>, QueueError> {
        let count = reach(
            &self.client,
            &self.dlq_url,
            &[QueueAttributeName::ApproximateNumberOfMessages],
        )
        .await?
        .remove(&QueueAttributeName::ApproximateNumberOfMessages);
        Ok(count.and_then(|count| count.parse().ok()))
    }
}

/// A message received from the dead-letter queue as a dead letter. Its time is when it was
/// sent to the dead-letter queue, for what the processor parked there; a message moved by
/// the maximum receive count keeps the time it was first sent to the main queue.
fn dead_letter(message: Message) -> DeadLetter {
    let dead_lettered_at = message
        .attributes()
        .and_then(|attributes| attributes.get(&SENT_TIMESTAMP))
        .and_then(|millis| millis.parse::<i128>().ok())
        .and_then(|millis| OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000).ok());
    let attribute = |name: &str| {
        message
            .message_attributes()
            .and_then(|attributes| attributes.get(name))
            .and_then(|value| value.string_value())
            .map(str::to_owned)
    };
    let reason = attribute(dead_letter_attribute::REASON);
    // A message SQS moved by the maximum receive count keeps its id and has no attribute.
    let source_message_id = attribute(dead_letter_attribute::SOURCE_MESSAGE_ID);
    DeadLetter {
        message_id: message.message_id.unwrap_or_default(),
        source_message_id,
        body: message.body.unwrap_or_default(),
        reason,
        dead_lettered_at,
    }
}

#[async_trait]
impl DeadLetterQueue for SqsDeadLetterQueue {
    async fn list(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let pages = max.div_ceil(MAX_MESSAGES_PER_RECEIVE) + SPARE_PAGES;
        let mut letters = self.peek(pages, |seen| seen.len() >= max).await?;
        letters.truncate(max);
        Ok(letters)
    }

    async fn show(&self, id: &str) -> Result<Option<DeadLetter>, QueueError> {
        let known_as = |letter: &DeadLetter| letter.message_id == id || letter.id() == id;
        let letters = self
            .peek(SHOW_PAGES, |seen| seen.iter().any(known_as))
            .await?;
        Ok(letters.into_iter().find(known_as))
    }

    /// Starts SQS's message move task from the dead-letter queue to the main queue. The
    /// destination is named explicitly: the processor parks messages with `SendMessage`, so
    /// SQS does not know them as coming from the main queue.
    async fn redrive(&self) -> Result<Redrive, QueueError> {
        let approximate_count = self.approximate_count().await?;
        let output = self
            .client
            .start_message_move_task()
            .source_arn(&self.dlq_arn)
            .destination_arn(&self.queue_arn)
            .send()
            .await
            .map_err(failed("StartMessageMoveTask from", &self.dlq_url))?;
        let task = output
            .task_handle
            .ok_or_else(|| QueueError::new("SQS started a move task without a task handle"))?;
        Ok(Redrive::Started {
            task,
            approximate_count,
        })
    }
}
