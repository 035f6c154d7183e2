//! The Secrets Manager adapter of [`SecretSource`], with a per-container cache.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::warn;

use crate::secret::{KeyEncoding, KeyRing, SecretError, SecretSource};

/// How long cached keys keep serving while the secret cannot be read.
const MAX_STALENESS: Duration = Duration::from_secs(3_600);

/// How soon a failed refresh is tried again, while the cached keys keep serving.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Reads a secret at init and again once `refresh` has passed, so that a rotation takes
/// effect without a deploy. When a refresh fails, the keys already held keep serving (a
/// Secrets Manager hiccup must not turn into rejected webhooks) and the refresh is retried
/// shortly after, for up to an hour; after that the receiver answers 503.
#[derive(Debug)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    encoding: KeyEncoding,
    refresh: Duration,
    cache: Mutex<Cached>,
}

#[derive(Debug)]
struct Cached {
    keys: Arc<KeyRing>,
    fetched_at: Instant,
    next_refresh: Instant,
}

impl SecretsManagerSource {
    /// Reads the secret once; an unreadable or unusable secret fails here, at init.
    pub async fn load(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        encoding: KeyEncoding,
        refresh: Duration,
    ) -> Result<Self, SecretError> {
        let keys = fetch(&client, &secret_id, encoding).await?;
        Ok(Self {
            client,
            secret_id,
            encoding,
            refresh,
            cache: Mutex::new(Cached {
                keys: Arc::new(keys),
                fetched_at: Instant::now(),
                next_refresh: Instant::now() + refresh,
            }),
        })
    }
}

async fn fetch(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    encoding: KeyEncoding,
) -> Result<KeyRing, SecretError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|error| {
            SecretError::Unavailable(format!("{secret_id}: {}", DisplayErrorContext(&error)))
        })?;
    let value = output
        .secret_string()
        .ok_or_else(|| SecretError::Unavailable(format!("{secret_id} has no string value")))?;
    KeyRing::from_secret_value(value, encoding)
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn key_ring(&self) -> Result<Arc<KeyRing>, SecretError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        if now >= cache.next_refresh {
            match fetch(&self.client, &self.secret_id, self.encoding).await {
                Ok(keys) => {
                    cache.keys = Arc::new(keys);
                    cache.fetched_at = now;
                    cache.next_refresh = now + self.refresh;
                }
                Err(error) => {
                    cache.next_refresh = now + RETRY_AFTER_FAILURE.min(self.refresh);
                    // A secret that stays unreadable may have been revoked on purpose: past
                    // this point, stop accepting signatures made with what was read before.
                    if now.duration_since(cache.fetched_at) > MAX_STALENESS.max(self.refresh) {
                        return Err(error);
                    }
                    warn!(secret_id = %self.secret_id, %error, "refreshing the signing secret failed; the cached keys keep serving");
                }
            }
        }
        Ok(Arc::clone(&cache.keys))
    }
}
