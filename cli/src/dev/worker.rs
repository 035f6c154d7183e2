//! The processor as a loop: what the SQS event source mapping does for the Lambda processor,
//! done here through the [`QueueConsumer`] port.
//!
//! Each batch goes to the same [`Processor::process_batch`] the Lambda handler calls. The
//! messages it does not report failed are acknowledged (deleted); the failed ones are left to
//! come back after their visibility timeout, or after the delay the processor set with
//! `QueueControl::retry_after`, exactly as with SQS.

use std::sync::Arc;
use std::time::Duration;

use hookgate::processor::{Processor, QueueConsumer};
use tokio::sync::watch;
use tracing::{error, warn};

/// How many messages one receive takes: SQS's largest batch, and the event source mapping's
/// batch size in the template.
const BATCH_SIZE: usize = 10;

/// How long one receive waits for a message before asking again; short, so a shutdown is
/// noticed promptly.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// After the queue fails to answer, the pause before the next try (doubling up to the cap).
const ERROR_PAUSE: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(10));

/// Receives and processes until `shutdown` turns true; a batch already received is finished
/// first. `visibility` hides each received message for as long as its processing may take,
/// and is how soon a message held by a process that died comes back.
pub async fn run(
    consumer: Arc<dyn QueueConsumer>,
    processor: Arc<Processor>,
    visibility: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pause = ERROR_PAUSE.0;
    while !*shutdown.borrow() {
        let received = tokio::select! {
            received = consumer.receive(BATCH_SIZE, visibility, RECEIVE_WAIT) => received,
            _ = shutdown.changed() => return,
        };
        let batch = match received {
            Ok(batch) => {
                pause = ERROR_PAUSE.0;
                batch
            }
            Err(error) => {
                warn!(%error, pause_ms = pause.as_millis() as u64, "cannot receive from the queue; trying again");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => return,
                }
                pause = (pause * 2).min(ERROR_PAUSE.1);
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        // The batch is done with before its messages would come back to another receive.
        let deadline = tokio::time::Instant::now() + visibility;
        let failed = processor.process_batch(batch.clone(), Some(deadline)).await;
        for delivery in batch
            .iter()
            .filter(|delivery| !failed.contains(&delivery.message_id))
        {
            if let Err(error) = consumer.acknowledge(delivery).await {
                // The message comes back after its visibility timeout. A completed event is
                // then a duplicate and no action runs twice; a dead-lettered one is tried
                // again from its recorded progress, and may be dead-lettered a second time.
                error!(message_id = %delivery.message_id, %error, "cannot acknowledge a processed message; it will be delivered again and skipped as a duplicate");
            }
        }
    }
}
