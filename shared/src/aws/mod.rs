//! AWS adapters behind the ports, and building a receiver from the environment.
//!
//! Clients are built once per container, at init, from the standard SDK configuration
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials), so the same binary runs against AWS or
//! an emulator. Each adapter makes one cheap call at init: it warms the TLS connection so
//! that the first webhook after a cold start does not pay for a handshake inside the
//! provider's deadline, and a wrong queue URL or secret fails the init, not a request.

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "processor")]
mod lambda_action;
mod s3_archive;
mod s3_bodies;
mod s3_routes;
mod secrets_manager;
mod sqs;

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

pub use crate::routes_source::{parse_s3_uri, NotAnS3Uri};
#[cfg(feature = "dynamodb")]
pub use dynamodb::{update_conditionally, DynamoStore, Written};
#[cfg(feature = "processor")]
pub use lambda_action::LambdaActions;
pub use s3_archive::S3Archive;
pub use s3_bodies::S3BodyStore;
pub use s3_routes::S3RoutesSource;
pub use secrets_manager::{SecretsManagerSource, SecretsManagerValue};
pub use sqs::{
    dead_letter_attribute, MoveTaskStatus, SqsDeadLetterQueue, SqsEventQueue, SqsQueueConsumer,
    SqsQueueControl,
};

use crate::config::{ConfigError, Env};
#[cfg(feature = "processor")]
use crate::processor::actions::{ActionDispatcher, DispatcherFactory};
use crate::processor::RoutingError;
#[cfg(feature = "processor")]
use crate::processor::{Processor, ProcessorConfig, Routing};
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
    #[error("idempotency table: {0}")]
    Store(#[from] crate::claims::StoreError),
    #[error("body bucket: {0}")]
    Bodies(#[from] crate::bodies::BodyStoreError),
    #[error("{0}")]
    Actions(#[from] crate::processor::actions::ActionSetupError),
    #[error("routes: {0}")]
    Routes(Box<RoutingError>),
}

impl From<RoutingError> for InitError {
    fn from(error: RoutingError) -> Self {
        Self::Routes(Box::new(error))
    }
}

/// `main` prints the error it returns with `Debug`: make that the readable message rather
/// than a dump of nested SDK structures.
impl std::fmt::Debug for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The processor's SDK calls (claims, visibility changes, dead letters) have the function's
/// 60 s to work in; a stuck call must still end well before that so the batch can answer.
#[cfg(feature = "processor")]
const PROCESSOR_TIMEOUTS: (Duration, Duration) =
    (Duration::from_millis(3_000), Duration::from_millis(10_000));

/// The SDK configuration from the standard environment, with an attempt and an overall
/// timeout on every call, on the HTTP client of the process's TLS trust ([`crate::tls`]).
/// Fails only when `HOOKGATE_CA_FILE` names an unusable file.
pub async fn sdk_config(
    timeouts: (Duration, Duration),
) -> Result<aws_config::SdkConfig, ConfigError> {
    Ok(sdk_loader(timeouts, crate::tls::process_trust()?)
        .load()
        .await)
}

/// The loader [`sdk_config`] loads: the standard chain (which also reads
/// `AWS_ENDPOINT_URL`), an attempt and an overall timeout on every call, and `trust`'s HTTP
/// client; for a caller that sets more (a profile, a region) before loading.
pub fn sdk_loader(
    (attempt, operation): (Duration, Duration),
    trust: &crate::tls::Trust,
) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(trust.aws_http_client())
        .timeout_config(timeouts_of(attempt, operation))
}

/// Where a function's or a command's SDK configuration comes from. Functions take
/// [`FunctionEnvironment`]: what Lambda sets, and nothing else, so that a function binary
/// links none of the default chain's other providers (profiles, SSO, STS web identity,
/// IMDS, ECS). The `hookgate` tool takes [`DefaultChain`], where a developer's profile
/// and SSO login work. Generic rather than a value, so each binary links only its own.
pub trait SdkSource: Sync {
    /// The configuration, with an attempt and an overall timeout on every call.
    fn load(
        &self,
        timeouts: (Duration, Duration),
    ) -> impl std::future::Future<Output = Result<aws_config::SdkConfig, ConfigError>> + Send;
}

/// What Lambda gives a function, in the process environment: `AWS_REGION`, the role's
/// credentials in `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, and
/// (for an emulator) `AWS_ENDPOINT_URL`. Service-specific endpoint variables and profiles
/// are not read.
#[derive(Debug, Clone, Copy)]
pub struct FunctionEnvironment;

impl SdkSource for FunctionEnvironment {
    async fn load(
        &self,
        (attempt, operation): (Duration, Duration),
    ) -> Result<aws_config::SdkConfig, ConfigError> {
        let env = crate::config::ProcessEnv;
        let region = env
            .get("AWS_REGION")
            .or_else(|| env.get("AWS_DEFAULT_REGION"))
            .ok_or(ConfigError::Missing { name: "AWS_REGION" })?;
        let credentials = aws_config::environment::EnvironmentVariableCredentialsProvider::new();
        let mut builder = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new(region))
            .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
                credentials,
            ))
            .identity_cache(aws_config::identity::IdentityCache::lazy().build())
            .http_client(crate::tls::process_trust()?.aws_http_client())
            .timeout_config(timeouts_of(attempt, operation));
        builder.set_endpoint_url(env.get("AWS_ENDPOINT_URL"));
        Ok(builder.build())
    }
}

/// The SDK's default chain, as the AWS CLI reads it: environment, profiles, SSO, web
/// identity, container and instance credentials.
#[derive(Debug, Clone, Copy)]
pub struct DefaultChain;

impl SdkSource for DefaultChain {
    async fn load(
        &self,
        timeouts: (Duration, Duration),
    ) -> Result<aws_config::SdkConfig, ConfigError> {
        sdk_config(timeouts).await
    }
}

fn timeouts_of(attempt: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(attempt)
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build()
}

/// `sdk_config` for calls that must be neither retried nor cut short by the SDK: agent
/// actions on Lambda, each bounded by its own timeout, which the processor retries itself.
#[cfg(feature = "processor")]
fn without_retries_or_timeouts(sdk_config: &aws_config::SdkConfig) -> aws_config::SdkConfig {
    sdk_config
        .to_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(TimeoutConfig::disabled())
        .build()
}

/// An SQS client on `sdk_config`, without the SDK's stalled-stream protection: a queue's
/// calls are small and each is bounded by the attempt and operation timeouts already, and the
/// protection's throughput monitor polled a timer through every request and response.
pub fn sqs_client(sdk_config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::from(sdk_config)
        .stalled_stream_protection(aws_sdk_sqs::config::StalledStreamProtectionConfig::disabled())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// An S3 client on `sdk_config`, addressing buckets by path when an endpoint is set (an
/// emulator on 127.0.0.1 has no `{bucket}.host` names), by virtual host on AWS.
pub fn s3_client(sdk_config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk_config)
        .force_path_style(sdk_config.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Whether a GetObject error is S3 saying the key holds nothing. Without s3:ListBucket a
/// missing key reads as AccessDenied instead: the stack grants it, so an AccessDenied is a
/// permission to fix, not a missing object.
pub(crate) fn is_no_such_key(
    error: Option<&aws_sdk_s3::operation::get_object::GetObjectError>,
) -> bool {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    match error {
        Some(GetObjectError::NoSuchKey(_)) => true,
        Some(other) => other.code() == Some("NoSuchKey"),
        None => false,
    }
}

/// `s3://{bucket}/{key}`: how an object in one of the stack's buckets is named in
/// envelopes, records and messages.
pub(crate) fn s3_location(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// The key of `location` when it names an object under `prefix` in `bucket`.
pub(crate) fn key_in<'a>(location: &'a str, bucket: &str, prefix: &str) -> Option<&'a str> {
    location
        .strip_prefix("s3://")?
        .strip_prefix(bucket)?
        .strip_prefix('/')
        .filter(|key| key.starts_with(prefix))
}

/// An S3 object could not be read.
pub(crate) enum ObjectRead {
    /// S3 says the key holds nothing.
    Missing,
    /// Anything else, AccessDenied included (a permission to fix, worth retrying meanwhile).
    Failed(String),
}

/// The bytes of the object `key` in `bucket`, which `location` names in messages.
pub(crate) async fn read_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    location: &str,
) -> Result<bytes::Bytes, ObjectRead> {
    let output = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|error| {
            if is_no_such_key(error.as_service_error()) {
                return ObjectRead::Missing;
            }
            ObjectRead::Failed(format!(
                "GetObject {location} failed: {}",
                aws_sdk_s3::error::DisplayErrorContext(&error)
            ))
        })?;
    let body = output
        .body
        .collect()
        .await
        .map_err(|error| ObjectRead::Failed(format!("reading {location} failed: {error}")))?;
    Ok(body.into_bytes())
}

/// The body store in `bucket`, checked and warmed, with timeouts of its own: an upload of
/// several MB needs longer than a receiver's SQS call.
pub async fn body_store(bucket: String, sdk: &impl SdkSource) -> Result<S3BodyStore, InitError> {
    let sdk_config = sdk.load(s3_bodies::BODY_STORE_TIMEOUTS).await?;
    Ok(S3BodyStore::connect(s3_client(&sdk_config), bucket).await?)
}

/// Builds a receiver for `provider` from the environment: its scheme, its secrets (from the
/// environment or Secrets Manager), the SQS queue and the body bucket, each checked and
/// warmed. A failure is logged as JSON before it is returned, so it reads well in
/// CloudWatch too.
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
    let sdk = FunctionEnvironment;
    let sdk_config = sdk.load(RECEIVER_TIMEOUTS).await?;
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
    // Warmed side by side: the bucket's handshake costs the cold start no wall time.
    let queue = SqsEventQueue::connect(sqs_client(&sdk_config), config.queue_url);
    let (queue, bodies) = match config.body_bucket {
        Some(bucket) => {
            let (queue, bodies) = tokio::join!(queue, body_store(bucket, &sdk));
            (queue?, Some(bodies?))
        }
        None => (queue.await?, None),
    };
    let receiver = Receiver::new(scheme, secrets, Arc::new(queue), config.settings);
    Ok(match bodies {
        Some(bodies) => receiver.with_body_store(Arc::new(bodies)),
        None => receiver,
    })
}

/// Builds the processor from the environment: its routes, the DynamoDB store, the queue
/// controls and the actions (with their signing secrets), each checked and warmed. A failure
/// is logged as JSON before it is returned.
#[cfg(feature = "processor")]
pub async fn processor_from_env(env: &dyn Env) -> Result<Processor, InitError> {
    processor_on(env, &FunctionEnvironment).await
}

/// [`processor_from_env`], on the SDK configuration `sdk` loads: `hookgate dev --aws`
/// runs the processor on a developer's profile.
#[cfg(feature = "processor")]
pub async fn processor_on(env: &dyn Env, sdk: &impl SdkSource) -> Result<Processor, InitError> {
    let processor = build_processor(env, sdk).await;
    if let Err(error) = &processor {
        tracing::error!(%error, "the processor cannot start");
    }
    processor
}

#[cfg(feature = "processor")]
async fn build_processor(env: &dyn Env, sdk: &impl SdkSource) -> Result<Processor, InitError> {
    let config = ProcessorConfig::from_env(env)?;
    let sdk_config = sdk.load(PROCESSOR_TIMEOUTS).await?;
    let store = DynamoStore::connect(
        aws_sdk_dynamodb::Client::new(&sdk_config),
        config.table_name,
    )
    .await?;
    store.warm(config.warm_connections).await;
    let control = SqsQueueControl::connect(
        aws_sdk_sqs::Client::new(&sdk_config),
        config.queue_url,
        config.dlq_url,
    )
    .await?;
    if let Some(kept) = control.dead_letter_retention() {
        crate::processor::check_redrive_retention(config.settings.retention, kept)?;
    }
    // Actions are bounded by their own per-action timeouts (up to 30 s), which the store's
    // short SDK timeouts would cut off. The SDK must not retry them either: a retried
    // RequestResponse invocation runs the agent twice in one attempt, while the processor
    // already retries with backoff and the claim's progress.
    let actions_sdk_config = without_retries_or_timeouts(&sdk_config);
    let routing = match config.routes_source {
        None => {
            let actions =
                ActionDispatcher::from_routes(&config.routes, env, Some(&actions_sdk_config))
                    .await?;
            Routing::fixed(config.routes, Arc::new(actions))
        }
        // The actions of routes read later take their `secret_env` variables from the
        // process's environment, which is the function's.
        Some(source) => {
            Routing::from_source(
                Arc::new(S3RoutesSource::new(
                    s3_client(&sdk_config),
                    source.bucket,
                    source.key,
                )),
                config.routes,
                Arc::new(DispatcherFactory::new(
                    Box::new(crate::config::ProcessEnv),
                    Some(actions_sdk_config),
                )),
                source.refresh,
                config.settings.lease,
                crate::telemetry::Metrics::stdout(),
            )
            .await?
        }
    };
    let mut processor =
        Processor::routed(routing, Arc::new(store), Arc::new(control), config.settings);
    let bodies = match config.body_bucket {
        Some(bucket) => Some(body_store(bucket, sdk).await?),
        None => None,
    };
    if let Some(bucket) = config.archive_bucket {
        // The stack archives in the body bucket, whose client is then checked and warmed
        // already; another bucket is checked the same way.
        let client = match &bodies {
            Some(bodies) if bodies.bucket() == bucket => bodies.client().clone(),
            _ => body_store(bucket.clone(), sdk).await?.client().clone(),
        };
        processor = processor.with_archive(Arc::new(S3Archive::new(client, bucket)));
    }
    if let Some(bodies) = bodies {
        processor = processor.with_body_store(Arc::new(bodies));
    }
    Ok(processor)
}
