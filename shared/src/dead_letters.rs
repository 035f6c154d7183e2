//! Port: the dead-letter queue as an operator sees it, for `hookgate dlq`.
//!
//! A dead letter is an envelope the processor gave up on (an unreadable envelope, a
//! permanent action failure, or a message that failed the queue's maximum receive count).
//! Redriving puts every dead letter back on the main queue, where the processor takes it up
//! again; actions already recorded as done for the event are not run twice.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::queue::QueueError;

/// One message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter queue's id for the message.
    pub message_id: String,
    /// The envelope, exactly as it was queued.
    pub body: String,
    /// Why the processor gave up, when it said (the `failure_reason` attribute); a message
    /// moved by the maximum receive count has none.
    pub reason: Option<String>,
    /// When the message entered the dead-letter queue, when the queue says.
    pub dead_lettered_at: Option<OffsetDateTime>,
}

/// What a redrive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// Every dead letter was moved back, in one step.
    Moved { count: u64 },
    /// A move task was started and runs on its own (SQS's message move task).
    Started {
        task: String,
        approximate_count: Option<u64>,
    },
}

#[async_trait]
pub trait DeadLetterQueue: Send + Sync + fmt::Debug {
    /// Up to `max` dead letters, oldest first where the queue keeps an order. Looking does not
    /// remove them.
    async fn list(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// The dead letter with this id, if the queue holds it.
    async fn show(&self, message_id: &str) -> Result<Option<DeadLetter>, QueueError>;

    /// Moves every dead letter back to the main queue.
    async fn redrive(&self) -> Result<Redrive, QueueError>;
}
