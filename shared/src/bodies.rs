//! Port: where a body too large for a queue message is kept (the claim-check pattern).
//!
//! A receiver that verifies a delivery whose envelope would not fit the queue's message stores
//! the raw body here first, then queues an envelope that carries a [`BodyReference`] (where
//! the body is and how long it is) beside the body's SHA-256, which every envelope carries.
//! The processor fetches the bytes back with [`fetch_verified`], which checks both, so an
//! action is handed exactly the bytes the provider signed or nothing at all.
//!
//! Bodies are addressed by their SHA-256: storing the same bytes twice (a provider's retry, a
//! receiver retried after a queue outage) writes the same object again, never a second copy.
//! The store's own retention (an S3 lifecycle rule) outlasts the idempotency records, so a
//! reference in a redriven dead letter can still be read.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a stored body is, and its length in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyReference {
    /// A URI naming the store and the body: `s3://{bucket}/{key}` for S3,
    /// `sqlite:{sha256}` for `hookgate dev`'s file, `memory:{sha256}` in tests.
    pub location: String,
    pub size: u64,
}

/// Why a body cannot be stored or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyStoreError {
    /// Worth trying again: the store did not answer, or not in time.
    #[error("the body store is unavailable: {0}")]
    Unavailable(String),
    /// The reference names nothing this store holds (expired, or deleted): trying again
    /// cannot help.
    #[error("the stored body {0} is gone")]
    Missing(String),
    /// The reference is not one this store makes (another bucket, another kind of store).
    #[error("the body reference {location} is not this store's ({store})")]
    Foreign { location: String, store: String },
}

/// Port: large raw bodies, by their SHA-256.
#[async_trait]
pub trait BodyStore: Send + Sync + fmt::Debug {
    /// Stores `body`, whose lowercase hex SHA-256 is `sha256`. `Ok` means durably stored:
    /// only then may an envelope referring to it be queued.
    async fn put(&self, body: &Bytes, sha256: &str) -> Result<BodyReference, BodyStoreError>;

    /// The bytes stored under `reference`, as they were put.
    async fn get(&self, reference: &BodyReference) -> Result<Bytes, BodyStoreError>;
}

/// A stored body did not come back as the envelope describes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredBodyError {
    #[error(transparent)]
    Store(#[from] BodyStoreError),
    #[error("the stored body {location} is {found} bytes, not the {expected} its envelope says")]
    WrongSize {
        location: String,
        expected: u64,
        found: u64,
    },
    #[error("the stored body {location} does not have the SHA-256 its envelope says")]
    WrongHash { location: String },
}

impl StoredBodyError {
    /// Whether trying again later may succeed: only when the store was unavailable. A body
    /// that is gone or altered stays so.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoredBodyError::Store(BodyStoreError::Unavailable(_)))
    }
}

/// The bytes under `reference`, checked against the size it records and `sha256`, the
/// envelope's hash of the body the receiver verified.
pub async fn fetch_verified(
    store: &dyn BodyStore,
    reference: &BodyReference,
    sha256: &str,
) -> Result<Bytes, StoredBodyError> {
    let body = store.get(reference).await?;
    let found = body.len() as u64;
    if found != reference.size {
        return Err(StoredBodyError::WrongSize {
            location: reference.location.clone(),
            expected: reference.size,
            found,
        });
    }
    if !sha256_hex(&body).eq_ignore_ascii_case(sha256) {
        return Err(StoredBodyError::WrongHash {
            location: reference.location.clone(),
        });
    }
    Ok(body)
}

/// Lowercase hex SHA-256, the form envelopes and references use.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An in-memory body store for unit tests of the logic around the port; it passes the same
/// contract tests as the S3 and SQLite adapters. It can be told to be unavailable.
#[derive(Debug, Clone, Default)]
pub struct MemoryBodyStore {
    state: Arc<Mutex<MemoryBodies>>,
}

#[derive(Debug, Default)]
struct MemoryBodies {
    bodies: HashMap<String, Bytes>,
    unavailable: bool,
}

const MEMORY_SCHEME: &str = "memory:";

impl MemoryBodyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, refuse (`true`) or serve (`false`) every call.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Forgets every body, as a lifecycle rule expiring them would.
    pub fn forget_all(&self) {
        self.lock().bodies.clear();
    }

    /// How many distinct bodies are held.
    pub fn len(&self) -> usize {
        self.lock().bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryBodies> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn available(&self) -> Result<std::sync::MutexGuard<'_, MemoryBodies>, BodyStoreError> {
        let state = self.lock();
        if state.unavailable {
            return Err(BodyStoreError::Unavailable(
                "the in-memory body store is set to be unavailable".into(),
            ));
        }
        Ok(state)
    }
}

#[async_trait]
impl BodyStore for MemoryBodyStore {
    async fn put(&self, body: &Bytes, sha256: &str) -> Result<BodyReference, BodyStoreError> {
        self.available()?
            .bodies
            .insert(sha256.to_owned(), body.clone());
        Ok(BodyReference {
            location: format!("{MEMORY_SCHEME}{sha256}"),
            size: body.len() as u64,
        })
    }

    async fn get(&self, reference: &BodyReference) -> Result<Bytes, BodyStoreError> {
        let sha256 = reference
            .location
            .strip_prefix(MEMORY_SCHEME)
            .ok_or_else(|| BodyStoreError::Foreign {
                location: reference.location.clone(),
                store: "the in-memory body store".into(),
            })?;
        self.available()?
            .bodies
            .get(sha256)
            .cloned()
            .ok_or_else(|| BodyStoreError::Missing(reference.location.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fetched_body_is_checked_against_its_size_and_hash() {
        let store = MemoryBodyStore::new();
        let body = Bytes::from_static(b"\x00\xffa large body");
        let sha = sha256_hex(&body);
        let reference = store.put(&body, &sha).await.unwrap();

        assert_eq!(fetch_verified(&store, &reference, &sha).await, Ok(body));

        let longer = BodyReference {
            size: reference.size + 1,
            ..reference.clone()
        };
        assert!(matches!(
            fetch_verified(&store, &longer, &sha).await,
            Err(StoredBodyError::WrongSize { .. })
        ));
        let other_hash = sha256_hex(b"another body");
        let error = fetch_verified(&store, &reference, &other_hash)
            .await
            .unwrap_err();
        assert!(matches!(error, StoredBodyError::WrongHash { .. }));
        assert!(!error.is_retryable());
    }

    #[tokio::test]
    async fn only_an_unavailable_store_is_worth_trying_again() {
        let store = MemoryBodyStore::new();
        let body = Bytes::from_static(b"body");
        let sha = sha256_hex(&body);
        let reference = store.put(&body, &sha).await.unwrap();

        store.set_unavailable(true);
        let unavailable = fetch_verified(&store, &reference, &sha).await.unwrap_err();
        assert!(unavailable.is_retryable(), "{unavailable}");

        store.set_unavailable(false);
        store.forget_all();
        let gone = fetch_verified(&store, &reference, &sha).await.unwrap_err();
        assert!(!gone.is_retryable(), "{gone}");
    }
}
