//! Consumes the envelope queue: each event's actions run once in effect, failures are
//! retried with backoff, and what cannot succeed is parked in the dead-letter queue.

use hookgate::config::ProcessEnv;
use hookgate::{aws, lambda, telemetry};

// One thread: Lambda hands a function one event at a time (see `hookgate::lambda`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(env!("CARGO_BIN_NAME"));
    let processor = aws::processor_from_env(&ProcessEnv).await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        lambda::processor::handle_batch(&processor, event)
    }))
    .await
}
