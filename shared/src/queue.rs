//! Port: the durable queue between receivers and the processor.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::envelope::QueueMessage;

/// Where verified webhooks are handed off for processing.
///
/// Contract: `Ok` means the message is durably stored and will be delivered at least once;
/// only then may a receiver answer 2xx. Any doubt is an `Err`.
#[async_trait]
pub trait EventQueue: Send + Sync + fmt::Debug {
    /// Stores the message and returns the queue's id for it.
    async fn enqueue(&self, message: &QueueMessage) -> Result<String, QueueError>;
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
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    state: Arc<Mutex<MemoryState>>,
}

#[derive(Debug, Default)]
struct MemoryState {
    messages: Vec<StoredMessage>,
    unavailable: bool,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
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
}
