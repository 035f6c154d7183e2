//! The contract of the [`BodyStore`] port (where a body too large for a queue message is
//! kept), as one suite run against every adapter: the in-memory store, the S3 adapter on
//! the emulator, and the SQLite store `hookgate dev` runs on.

use std::sync::Arc;

use bytes::Bytes;
use hookgate::aws::S3BodyStore;
use hookgate::bodies::{
    fetch_verified, sha256_hex, BodyReference, BodyStore, BodyStoreError, MemoryBodyStore,
};
use hookgate::sqlite::SqliteBodyStore;
use hookgate_tests::contract::{look, ScratchFile};
use hookgate_tests::emulator;

/// An adapter under test, and how to break it.
trait Adapter {
    fn store(&self) -> Arc<dyn BodyStore>;

    /// From now on, the store cannot answer.
    async fn make_unavailable(&self);
}

#[derive(Debug, Default)]
struct Memory(MemoryBodyStore);

impl Adapter for Memory {
    fn store(&self) -> Arc<dyn BodyStore> {
        Arc::new(self.0.clone())
    }

    async fn make_unavailable(&self) {
        self.0.set_unavailable(true);
    }
}

#[derive(Debug)]
struct S3 {
    client: aws_sdk_s3::Client,
    bucket: String,
    store: S3BodyStore,
}

impl S3 {
    /// The adapter on a fresh bucket of its own.
    async fn new() -> Self {
        let client = emulator::s3_client().await;
        let bucket = emulator::create_bucket(&client, "bodies")
            .await
            .expect("the emulator creates a bucket");
        let store = S3BodyStore::connect(client.clone(), bucket.clone())
            .await
            .expect("the adapter connects to a bucket that exists");
        Self {
            client,
            bucket,
            store,
        }
    }
}

impl Adapter for S3 {
    fn store(&self) -> Arc<dyn BodyStore> {
        Arc::new(self.store.clone())
    }

    /// Empties and deletes the bucket: every later call fails as S3 would.
    async fn make_unavailable(&self) {
        emulator::delete_bucket(&self.client, &self.bucket)
            .await
            .expect("the emulator empties and deletes the bucket");
    }
}

#[derive(Debug)]
struct Sqlite(ScratchFile);

impl Sqlite {
    fn new() -> Self {
        let file = ScratchFile::new("hookgate-bodies-contract");
        SqliteBodyStore::open(file.path()).expect("the adapter opens a new file");
        Self(file)
    }
}

impl Adapter for Sqlite {
    /// A store on a connection of its own each time, as separate processes would have.
    fn store(&self) -> Arc<dyn BodyStore> {
        Arc::new(SqliteBodyStore::open(self.0.path()).expect("the file opens again"))
    }

    async fn make_unavailable(&self) {
        look(self.0.path())
            .execute_batch("DROP TABLE stored_bodies")
            .expect("the table is dropped");
    }
}

/// Bytes that are not UTF-8 and not all alike: every value, over and over.
fn binary(len: usize) -> Bytes {
    (0..=255_u8).cycle().take(len).collect::<Vec<u8>>().into()
}

async fn put(store: &dyn BodyStore, body: &Bytes) -> BodyReference {
    store
        .put(body, &sha256_hex(body))
        .await
        .expect("the store takes the body")
}

async fn a_body_put_comes_back_byte_for_byte(adapter: impl Adapter) {
    let store = adapter.store();
    let body = binary(3 * 1024 * 1024);

    let reference = put(store.as_ref(), &body).await;

    assert_eq!(reference.size, body.len() as u64);
    let fetched = fetch_verified(adapter.store().as_ref(), &reference, &sha256_hex(&body))
        .await
        .expect("the body comes back");
    assert_eq!(fetched, body);
}

async fn the_same_body_put_twice_has_one_reference(adapter: impl Adapter) {
    let store = adapter.store();
    let body = binary(10_000);

    let first = put(store.as_ref(), &body).await;
    let second = put(store.as_ref(), &body).await;

    assert_eq!(first, second);
    let other = put(store.as_ref(), &binary(10_001)).await;
    assert_ne!(first.location, other.location);
}

async fn a_reference_to_a_body_never_put_is_missing(adapter: impl Adapter) {
    let store = adapter.store();
    let stored = put(store.as_ref(), &binary(100)).await;
    let never = BodyReference {
        location: stored
            .location
            .replace(&sha256_hex(&binary(100)), &sha256_hex(b"never")),
        size: 5,
    };

    let outcome = store.get(&never).await;

    assert!(
        matches!(&outcome, Err(BodyStoreError::Missing(location)) if *location == never.location),
        "{outcome:?}"
    );
}

async fn a_reference_of_another_store_is_refused_as_foreign(adapter: impl Adapter) {
    let store = adapter.store();
    for location in [
        "s3://somebody-elses-bucket/bodies/abc",
        "memory:other-process",
        "file:///etc/passwd",
    ] {
        let reference = BodyReference {
            location: location.to_owned(),
            size: 1,
        };
        let outcome = store.get(&reference).await;
        // The in-memory store and the S3 adapter make `memory:` and `s3://` references of
        // their own; each refuses the others' and every other kind.
        if let Err(BodyStoreError::Missing(_)) = outcome {
            continue;
        }
        assert!(
            matches!(outcome, Err(BodyStoreError::Foreign { .. })),
            "{location}: {outcome:?}"
        );
    }
}

async fn an_unavailable_store_answers_unavailable(adapter: impl Adapter) {
    let store = adapter.store();
    let body = binary(100);
    let reference = put(store.as_ref(), &body).await;

    adapter.make_unavailable().await;

    let stored = store.put(&body, &sha256_hex(&body)).await;
    assert!(
        matches!(stored, Err(BodyStoreError::Unavailable(_))),
        "{stored:?}"
    );
    let fetched = store.get(&reference).await;
    assert!(
        matches!(
            fetched,
            Err(BodyStoreError::Unavailable(_) | BodyStoreError::Missing(_))
        ),
        "{fetched:?}"
    );
}

macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn a_body_put_comes_back_byte_for_byte() {
                super::a_body_put_comes_back_byte_for_byte($make).await;
            }

            #[tokio::test]
            async fn the_same_body_put_twice_has_one_reference() {
                super::the_same_body_put_twice_has_one_reference($make).await;
            }

            #[tokio::test]
            async fn a_reference_to_a_body_never_put_is_missing() {
                super::a_reference_to_a_body_never_put_is_missing($make).await;
            }

            #[tokio::test]
            async fn a_reference_of_another_store_is_refused_as_foreign() {
                super::a_reference_of_another_store_is_refused_as_foreign($make).await;
            }

            #[tokio::test]
            async fn an_unavailable_store_answers_unavailable() {
                super::an_unavailable_store_answers_unavailable($make).await;
            }
        }
    };
}

contract!(memory_store, Memory::default());
contract!(s3_store, S3::new().await);
contract!(sqlite_store, Sqlite::new());

// ---- the S3 adapter alone ----

mod s3_store_only {
    use super::*;

    #[tokio::test]
    async fn connecting_to_a_missing_bucket_fails_naming_it() {
        let client = emulator::s3_client().await;
        let bucket = emulator::unique_name("never-created").to_lowercase();

        let error = S3BodyStore::connect(client, bucket.clone())
            .await
            .expect_err("a missing bucket cannot be used");

        assert!(error.to_string().contains(&bucket), "{error}");
    }

    #[tokio::test]
    async fn a_body_is_the_object_bodies_sha256_with_its_checksum() {
        let adapter = S3::new().await;
        let body = binary(2_000);
        let sha = sha256_hex(&body);

        let reference = put(&adapter.store, &body).await;

        assert_eq!(
            reference.location,
            format!("s3://{}/bodies/{sha}", adapter.bucket)
        );
        let head = adapter
            .client
            .head_object()
            .bucket(&adapter.bucket)
            .key(format!("bodies/{sha}"))
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .expect("the object exists");
        assert_eq!(head.content_length(), Some(2_000));
        let checksum = head
            .checksum_sha256()
            .expect("the upload carried its SHA-256");
        use base64::Engine;
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(checksum)
                .map(hex::encode)
                .ok(),
            Some(sha)
        );
    }
}
