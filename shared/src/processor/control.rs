//! Port: what the processor asks of the queue besides receiving — putting a message off,
//! and parking it in the dead-letter queue with the reason.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::QueuedDelivery;
use crate::queue::QueueError;

#[async_trait]
pub trait QueueControl: Send + Sync + fmt::Debug {
    /// How many times the queue delivers a message before it moves it to the dead-letter
    /// queue by itself (SQS's redrive policy), if it does. On a message's last delivery the
    /// processor dead-letters it itself, with the reason, rather than let it be moved
    /// without one.
    fn max_receive_count(&self) -> Option<u32>;

    /// Makes the message visible again only after `delay`.
    async fn retry_after(
        &self,
        delivery: &QueuedDelivery,
        delay: Duration,
    ) -> Result<(), QueueError>;

    /// Stores the message in the dead-letter queue with `reason`. `Ok` means stored: only then
    /// may the original be acknowledged.
    async fn dead_letter(&self, delivery: &QueuedDelivery, reason: &str) -> Result<(), QueueError>;
}

/// A call made on [`MemoryQueueControl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCall {
    RetryAfter {
        message_id: String,
        delay: Duration,
    },
    DeadLetter {
        message_id: String,
        body: String,
        reason: String,
    },
}

/// Records the calls, for unit tests of the processor.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueueControl {
    calls: Arc<Mutex<Vec<ControlCall>>>,
    max_receive_count: Option<u32>,
}

impl MemoryQueueControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// A queue that moves a message on after `count` deliveries.
    pub fn with_max_receive_count(mut self, count: u32) -> Self {
        self.max_receive_count = Some(count);
        self
    }

    pub fn calls(&self) -> Vec<ControlCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, call: ControlCall) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
    }
}

#[async_trait]
impl QueueControl for MemoryQueueControl {
    fn max_receive_count(&self) -> Option<u32> {
        self.max_receive_count
    }

    async fn retry_after(
        &self,
        delivery: &QueuedDelivery,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.record(ControlCall::RetryAfter {
            message_id: delivery.message_id.clone(),
            delay,
        });
        Ok(())
    }

    async fn dead_letter(&self, delivery: &QueuedDelivery, reason: &str) -> Result<(), QueueError> {
        self.record(ControlCall::DeadLetter {
            message_id: delivery.message_id.clone(),
            body: delivery.body.clone(),
            reason: reason.to_owned(),
        });
        Ok(())
    }
}
