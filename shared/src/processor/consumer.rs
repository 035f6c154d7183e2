//! Port: where a long-running processor receives its messages from.
//!
//! In Lambda the SQS event source mapping receives and deletes messages, and this port is
//! not used. `hookgate dev` runs the processor as a loop instead, and receives through this
//! port from the embedded queue or from SQS, with the same visibility and receive-count
//! semantics either way.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::QueuedDelivery;
use crate::queue::QueueError;

#[async_trait]
pub trait QueueConsumer: Send + Sync + fmt::Debug {
    /// Up to `max` (1 to 10) messages visible now, oldest first. Each is hidden for
    /// `visibility` and its receive count raised by one; the delivery carries the count
    /// including this receive and a receipt handle that is new for this receive. When none
    /// is visible, waits up to `wait` for one before answering with none.
    ///
    /// A message already received as many times as the queue's maximum receive count is
    /// moved to the dead-letter queue instead of being delivered again, as SQS's redrive
    /// policy does.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<QueuedDelivery>, QueueError>;

    /// Deletes a message the processor is done with. `Ok` means it will not be delivered
    /// again.
    async fn acknowledge(&self, delivery: &QueuedDelivery) -> Result<(), QueueError>;
}
