//! The Secrets Manager adapter of [`SecretSource`]: a secret read at init and refreshed in
//! the background ([`Refreshing`]), so a rotation takes effect without a deploy and no
//! webhook waits on Secrets Manager.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::secret::refreshing::{Fetch, Refreshing};
use crate::secret::{KeyEncoding, KeyRing, SecretError, SecretSource};

/// Turns a secret's string value into what it holds.
type Parse<T> = Box<dyn Fn(&str) -> Result<T, SecretError> + Send + Sync>;

/// Reads one secret's string value and parses it into a `T`.
pub struct SecretsManagerValue<T> {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    parse: Parse<T>,
}

impl<T> fmt::Debug for SecretsManagerValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerValue")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> SecretsManagerValue<T> {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        parse: impl Fn(&str) -> Result<T, SecretError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            client,
            secret_id,
            parse: Box::new(parse),
        }
    }

    /// Reads the secret once (an unreadable or unusable secret fails here, at init) and
    /// keeps it fresh, re-reading it every `refresh`.
    pub async fn load(self, refresh: Duration) -> Result<Refreshing<Self>, SecretError> {
        Refreshing::load(self, refresh).await
    }
}

#[async_trait]
impl<T: Send + Sync + 'static> Fetch for SecretsManagerValue<T> {
    type Value = T;

    async fn fetch(&self) -> Result<T, SecretError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|error| {
                SecretError::Unavailable(format!(
                    "{}: {}",
                    self.secret_id,
                    DisplayErrorContext(&error)
                ))
            })?;
        let value = output.secret_string().ok_or_else(|| {
            SecretError::Unavailable(format!("{} has no string value", self.secret_id))
        })?;
        (self.parse)(value)
    }

    fn origin(&self) -> &str {
        &self.secret_id
    }
}

/// Signing keys from a Secrets Manager secret holding the plain secret or
/// `{"current": "…", "previous": "…"}`.
#[derive(Debug, Clone)]
pub struct SecretsManagerSource(Refreshing<SecretsManagerValue<KeyRing>>);

impl SecretsManagerSource {
    /// Reads the secret once; an unreadable or unusable secret fails here, at init.
    pub async fn load(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        encoding: KeyEncoding,
        refresh: Duration,
    ) -> Result<Self, SecretError> {
        let fetch = SecretsManagerValue::new(client, secret_id, move |value| {
            KeyRing::from_secret_value(value, encoding)
        });
        Ok(Self(fetch.load(refresh).await?))
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn key_ring(&self) -> Result<Arc<KeyRing>, SecretError> {
        self.0.get()
    }
}
