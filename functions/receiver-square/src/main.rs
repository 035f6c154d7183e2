//! Receives webhooks from Square: verifies each one and queues it to SQS.

use hookgate::config::ProcessEnv;
use hookgate::provider::Provider;
use hookgate::{aws, lambda, telemetry};

// One thread: Lambda hands a function one event at a time (see `hookgate::lambda`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(env!("CARGO_BIN_NAME"));
    let receiver = aws::receiver_from_env(Provider::Square, &ProcessEnv).await?;
    lambda_http::run(lambda::receiver_service(&receiver)).await
}
