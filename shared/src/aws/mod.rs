//! AWS adapters behind the ports, and building a receiver from the environment.
//!
//! Clients are built once per container, at init, from the standard SDK configuration
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials), so the same binary runs against AWS or
//! an emulator. Each adapter makes one cheap call at init: it warms the TLS connection so
//! that the first webhook after a cold start does not pay for a handshake inside the
//! provider's deadline, and a wrong queue URL or secret fails the init, not a request.

mod secrets_manager;
mod sqs;

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

pub use secrets_manager::SecretsManagerSource;
pub use sqs::SqsEventQueue;

use crate::config::{ConfigError, Env};
use crate::provider::Provider;
use crate::queue::QueueError;
use crate::receiver::{Receiver, ReceiverConfig, SecretsConfig};
use crate::secret::{SecretError, SecretSource, StaticSecrets};
use crate::verify::scheme_for;

/// A receiver's SDK calls must finish well inside the tightest provider deadline (Slack's
/// 3 s, cold start included), so that a slow queue is answered 503 and retried by the
/// provider rather than timed out by it.
const RECEIVER_TIMEOUTS: (Duration, Duration) =
    (Duration::from_millis(1_000), Duration::from_millis(2_500));

/// A function could not start. The message names what to fix.
#[derive(thiserror::Error)]
pub enum InitError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("signing secret: {0}")]
    Secret(#[from] SecretError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

/// `main` prints the error it returns with `Debug`: make that the readable message rather
/// than a dump of nested SDK structures.
impl std::fmt::Debug for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The SDK configuration for a receiver: the standard environment, with timeouts.
pub async fn receiver_sdk_config() -> aws_config::SdkConfig {
    let (attempt, operation) = RECEIVER_TIMEOUTS;
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(attempt)
                .operation_attempt_timeout(attempt)
                .operation_timeout(operation)
                .build(),
        )
        .load()
        .await
}

/// Builds a receiver for `provider` from the environment: its scheme, its secrets (from the
/// environment or Secrets Manager) and the SQS queue, each checked and warmed. A failure is
/// logged as JSON before it is returned, so it reads well in CloudWatch too.
pub async fn receiver_from_env(provider: Provider, env: &dyn Env) -> Result<Receiver, InitError> {
    let receiver = build_receiver(provider, env).await;
    if let Err(error) = &receiver {
        tracing::error!(%provider, %error, "the receiver cannot start");
    }
    receiver
}

async fn build_receiver(provider: Provider, env: &dyn Env) -> Result<Receiver, InitError> {
    let scheme = scheme_for(provider, env)?;
    let config = ReceiverConfig::from_env(env, scheme.key_encoding())?;
    let sdk_config = receiver_sdk_config().await;
    let secrets: Arc<dyn SecretSource> = match config.secrets {
        SecretsConfig::Environment(keys) => Arc::new(StaticSecrets::new(keys)),
        SecretsConfig::SecretsManager { secret_id, refresh } => Arc::new(
            SecretsManagerSource::load(
                aws_sdk_secretsmanager::Client::new(&sdk_config),
                secret_id,
                scheme.key_encoding(),
                refresh,
            )
            .await?,
        ),
    };
    let queue =
        SqsEventQueue::connect(aws_sdk_sqs::Client::new(&sdk_config), config.queue_url).await?;
    Ok(Receiver::new(
        scheme,
        secrets,
        Arc::new(queue),
        config.settings,
    ))
}
