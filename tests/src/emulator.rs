//! Reaching the emulator that `scripts/test` starts, and making isolated resources in it.
//!
//! Tests run in parallel against one emulator, so each makes its own uniquely named queues
//! and secrets instead of resetting shared state.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The variable naming the emulator's endpoint, set by `scripts/test`.
pub const ENDPOINT_VARIABLE: &str = "HOOKGATE_TEST_AWS_ENDPOINT";

/// The emulator's endpoint. Panics with instructions when it is not set: an integration
/// test that cannot reach the emulator must fail, never pass by skipping.
pub fn endpoint() -> String {
    std::env::var(ENDPOINT_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VARIABLE} is not set: integration tests need the AWS emulator. \
             Run them with scripts/test, which installs and starts it."
        )
    })
}

/// The environment a function needs to use the emulator, for spawning binaries.
pub fn function_environment() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ]
}

/// SDK configuration pointed at the emulator, with dummy credentials.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(aws_http_client())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "hookgate-tests",
        ))
        .load()
        .await
}

/// The HTTP client every function's SDK clients use ([`hookgate::tls`]).
pub fn aws_http_client() -> aws_sdk_sqs::config::SharedHttpClient {
    hookgate::tls::process_trust()
        .expect("HOOKGATE_CA_FILE, if set, is usable")
        .aws_http_client()
}

/// A name no other test in this run (or an earlier run against the same emulator) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a fresh queue and returns its URL.
pub async fn create_queue(client: &aws_sdk_sqs::Client, prefix: &str) -> anyhow::Result<String> {
    let output = client
        .create_queue()
        .queue_name(unique_name(prefix))
        .send()
        .await?;
    output
        .queue_url
        .ok_or_else(|| anyhow::anyhow!("the emulator created a queue without a URL"))
}

/// A queue and the dead-letter queue its redrive policy moves messages to.
#[derive(Debug, Clone)]
pub struct QueueWithDeadLetters {
    pub queue_url: String,
    pub dlq_url: String,
}

/// Creates a fresh dead-letter queue and a fresh queue whose redrive policy moves a message
/// there once it has been received `max_receive_count` times, as the deployed stack's
/// queues are set up.
pub async fn create_queue_with_dead_letters(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    max_receive_count: u32,
) -> anyhow::Result<QueueWithDeadLetters> {
    use aws_sdk_sqs::types::QueueAttributeName;

    let dlq_url = create_queue(client, &format!("{prefix}-dlq")).await?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the emulator gave no QueueArn for {dlq_url}"))?;
    let redrive_policy = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count,
    });
    let queue_url = client
        .create_queue()
        .queue_name(unique_name(prefix))
        .attributes(
            QueueAttributeName::RedrivePolicy,
            redrive_policy.to_string(),
        )
        .send()
        .await?
        .queue_url
        .ok_or_else(|| anyhow::anyhow!("the emulator created a queue without a URL"))?;
    Ok(QueueWithDeadLetters { queue_url, dlq_url })
}

/// Receives every message currently in a queue (up to `expected`), with its message and
/// system attributes, waiting briefly for stragglers. Bounded: at most ten polls.
pub async fn drain_queue(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    expected: usize,
) -> anyhow::Result<Vec<aws_sdk_sqs::types::Message>> {
    let mut messages = Vec::new();
    for _ in 0..10 {
        if messages.len() >= expected {
            break;
        }
        let output = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await?;
        messages.extend(output.messages.unwrap_or_default());
    }
    Ok(messages)
}

/// Creates a fresh idempotency table laid out like the deployed one (partition key
/// `idempotency_key`, on-demand billing, TTL on `expires_at`) and returns its name.
pub async fn create_idempotency_table(
    client: &aws_sdk_dynamodb::Client,
    prefix: &str,
) -> anyhow::Result<String> {
    create_table(client, prefix, "idempotency_key").await
}

/// Creates a fresh table laid out like the GitHub reconciler's state table (partition key
/// `state_key`, on-demand, TTL on `expires_at`) and returns its name.
pub async fn create_reconciler_state_table(
    client: &aws_sdk_dynamodb::Client,
    prefix: &str,
) -> anyhow::Result<String> {
    create_table(client, prefix, "state_key").await
}

/// A fresh on-demand table keyed by the string `partition_key`, its TTL on `expires_at`, as
/// the stack's tables are.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    prefix: &str,
    partition_key: &str,
) -> anyhow::Result<String> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };

    let table_name = unique_name(prefix);
    client
        .create_table()
        .table_name(&table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(partition_key)
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(partition_key)
                .key_type(KeyType::Hash)
                .build()?,
        )
        .send()
        .await?;
    client
        .update_time_to_live()
        .table_name(&table_name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()?,
        )
        .send()
        .await?;
    Ok(table_name)
}

/// An S3 client on the emulator, addressing buckets by path as the functions do there.
pub async fn s3_client() -> aws_sdk_s3::Client {
    hookgate::aws::s3_client(&sdk_config().await)
}

/// The environment the processor runs with on fresh emulator queues (`prefix`, with a
/// dead-letter queue after 5 receives) and a fresh idempotency table: what the template
/// gives it, less the routes.
pub async fn processor_environment(prefix: &str) -> Vec<(&'static str, String)> {
    let sdk = sdk_config().await;
    let queues = create_queue_with_dead_letters(&aws_sdk_sqs::Client::new(&sdk), prefix, 5)
        .await
        .expect("the emulator creates the queues");
    let table = create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), prefix)
        .await
        .expect("the emulator creates the table");
    let mut env = function_environment();
    env.extend([
        ("QUEUE_URL", queues.queue_url),
        ("DLQ_URL", queues.dlq_url),
        ("TABLE_NAME", table),
    ]);
    env
}

/// The sample event `events/{path}.json` of the repository.
pub fn sample_event(path: &str) -> serde_json::Value {
    let path = format!("{}/../events/{path}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text).expect("a sample event")
}

/// Creates a fresh bucket that keeps every version of its objects, as the stack's routes
/// bucket does, and returns its name.
pub async fn create_versioned_bucket(
    client: &aws_sdk_s3::Client,
    prefix: &str,
) -> anyhow::Result<String> {
    let bucket = create_bucket(client, prefix).await?;
    client
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    Ok(bucket)
}

/// Empties `bucket` (up to a thousand objects, all a test makes) and deletes it: every later
/// call on it fails as S3's would.
pub async fn delete_bucket(client: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    let listed = client.list_objects_v2().bucket(bucket).send().await?;
    for object in listed.contents() {
        if let Some(key) = object.key() {
            client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await?;
        }
    }
    client.delete_bucket().bucket(bucket).send().await?;
    Ok(())
}

/// Creates a fresh bucket and returns its name (lowercase, as S3 requires).
pub async fn create_bucket(client: &aws_sdk_s3::Client, prefix: &str) -> anyhow::Result<String> {
    let bucket = unique_name(prefix).to_lowercase();
    client.create_bucket().bucket(&bucket).send().await?;
    Ok(bucket)
}
