//! Port: the durable queue between receivers and the processor.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::envelope::QueueMessage;

/// The largest message SQS takes, body and attributes together: 1 MiB since August 2025,
/// and the default for a new queue (a queue's `MaximumMessageSize` may set less).
pub const SQS_MAX_MESSAGE_BYTES: usize = 1_048_576;

/// Where verified webhooks are handed off for processing.
///
/// Contract: `Ok` means the message is durably stored and will be delivered at least once;
/// only then may a receiver answer 2xx. Any doubt is an `Err`. A message larger than
/// [`EventQueue::max_message_bytes`] is refused with an `Err`.
#[async_trait]
pub trait EventQueue: Send + Sync + fmt::Debug {
    /// Stores the message and returns the queue's id for it.
    async fn enqueue(&self, message: &QueueMessage) -> Result<String, QueueError>;

    /// The largest message the queue takes, as [`QueueMessage::size_in_bytes`] counts it.
    fn max_message_bytes(&self) -> usize;
}

/// The queue cannot be reached, or did not confirm that it stored a message.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct QueueError {
    reason: String,
}

impl QueueError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// A message as the in-memory queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: String,
    pub body: String,
    pub attributes: Vec<(String, String)>,
}

/// An in-memory queue for unit tests of the logic around the port; it passes the same
/// contract tests as the SQS adapter. It can be told to refuse messages, to test what a
/// receiver answers when the queue is down.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<MemoryState>>,
    max_message_bytes: usize,
}

#[derive(Debug, Default)]
struct MemoryState {
    messages: Vec<StoredMessage>,
    unavailable: bool,
}

impl Default for MemoryQueue {
    /// A queue that takes messages as large as SQS's largest.
    fn default() -> Self {
        Self {
            state: Arc::default(),
            max_message_bytes: SQS_MAX_MESSAGE_BYTES,
        }
    }
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// A queue that refuses messages larger than `bytes`, as an SQS queue with that
    /// `MaximumMessageSize` does.
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// From now on, refuse (`true`) or accept (`false`) every message.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.lock().messages.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding the lock leaves plain data behind, still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl EventQueue for MemoryQueue {
    async fn enqueue(&self, message: &QueueMessage) -> Result<String, QueueError> {
        let mut state = self.lock();
        if state.unavailable {
            return Err(QueueError::new(
                "the in-memory queue is set to be unavailable",
            ));
        }
        refuse_oversized(message, self.max_message_bytes)?;
        let id = format!("memory-{}", state.messages.len() + 1);
        state.messages.push(StoredMessage {
            id: id.clone(),
            body: message.body().to_owned(),
            attributes: message
                .attributes()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        });
        Ok(id)
    }

    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }
}

/// The error SQS gives a message over the queue's limit, for queues that enforce it here.
pub fn refuse_oversized(message: &QueueMessage, limit: usize) -> Result<(), QueueError> {
    let size = message.size_in_bytes();
    if size > limit {
        return Err(QueueError::new(format!(
            "the message is {size} bytes, over the queue's limit of {limit}"
        )));
    }
    Ok(())
}
