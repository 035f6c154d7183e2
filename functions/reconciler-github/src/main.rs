//! Runs on a schedule: asks GitHub to redeliver each webhook delivery that failed and that
//! hookgate never received, since GitHub never redelivers on its own.

use hookgate::config::ProcessEnv;
use hookgate::telemetry;
use hookgate_reconciler::{handle_run, reconciler_from_env};

// One thread: Lambda hands a function one event at a time (see `hookgate::lambda`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(env!("CARGO_BIN_NAME"));
    let reconciler = reconciler_from_env(&ProcessEnv).await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        handle_run(&reconciler, event)
    }))
    .await
}
