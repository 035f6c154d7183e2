//! The SQS adapters of [`EventQueue`] (receivers) and [`QueueControl`] (the processor).

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};

use std::time::Duration;

use crate::envelope::QueueMessage;
use crate::processor::{QueueControl, QueuedDelivery};
use crate::queue::{EventQueue, QueueError};

/// Sends envelopes to one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsEventQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsEventQueue {
    /// Checks that the queue exists (and warms the connection) with one
    /// `GetQueueAttributes` call.
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        queue_url: String,
    ) -> Result<Self, QueueError> {
        client
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|error| {
                QueueError::new(format!(
                    "cannot reach {queue_url}: {}",
                    DisplayErrorContext(&error)
                ))
            })?;
        Ok(Self { client, queue_url })
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
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|error| QueueError::new(error.to_string()))?;
            request = request.message_attributes(name, attribute);
        }
        let output = request.send().await.map_err(|error| {
            QueueError::new(format!(
                "SendMessage to {} failed: {}",
                self.queue_url,
                DisplayErrorContext(&error)
            ))
        })?;
        output
            .message_id
            .ok_or_else(|| QueueError::new("SQS answered without a message id"))
    }
}

/// The SQS adapter of [`QueueControl`]: retry delays on the processor's queue, and dead
/// letters sent to the dead-letter queue with the reason as a message attribute.
#[derive(Debug, Clone)]
pub struct SqsQueueControl {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
}

/// Message attributes a dead letter carries besides the envelope's own.
pub mod dead_letter_attribute {
    /// Why the processor gave up on the message.
    pub const REASON: &str = "failure_reason";
    /// The id the message had in the main queue.
    pub const SOURCE_MESSAGE_ID: &str = "source_message_id";
}

impl SqsQueueControl {
    /// Checks both queues exist (and warms the connection).
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        queue_url: String,
        dlq_url: String,
    ) -> Result<Self, QueueError> {
        for url in [&queue_url, &dlq_url] {
            client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|error| {
                    QueueError::new(format!(
                        "cannot reach {url}: {}",
                        DisplayErrorContext(&error)
                    ))
                })?;
        }
        Ok(Self {
            client,
            queue_url,
            dlq_url,
        })
    }
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
        // Rounded up: SQS counts whole seconds, and a truncated 0.7 s would be no delay at all.
        let whole_seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        let seconds = i32::try_from(whole_seconds).unwrap_or(i32::MAX);
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&delivery.receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|error| {
                QueueError::new(format!(
                    "ChangeMessageVisibility on {} failed: {}",
                    self.queue_url,
                    DisplayErrorContext(&error)
                ))
            })?;
        Ok(())
    }

    async fn dead_letter(&self, delivery: &QueuedDelivery, reason: &str) -> Result<(), QueueError> {
        // SQS caps an attribute value at the message size; a reason is a sentence, so keep
        // it short enough to never crowd out the envelope.
        let reason: String = reason.chars().take(1_000).collect();
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
            .map_err(|error| {
                QueueError::new(format!(
                    "SendMessage to {} failed: {}",
                    self.dlq_url,
                    DisplayErrorContext(&error)
                ))
            })?;
        Ok(())
    }
}
