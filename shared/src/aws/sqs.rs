//! The SQS adapter of [`EventQueue`].

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};

use crate::envelope::QueueMessage;
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
