//! The S3 adapter of [`BodyStore`]: large bodies as objects `bodies/{sha256}` in one bucket.
//!
//! The stack's bucket encrypts every object (SSE-S3), blocks public access, refuses plain
//! HTTP, and expires objects after the idempotency retention (`template.yaml`). Each upload
//! carries its SHA-256 (`x-amz-checksum-sha256`), which S3 checks before it stores the
//! object; reading back, [`crate::bodies::fetch_verified`] checks the hash again, so a body
//! is handed on byte for byte or not at all.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use bytes::Bytes;

use crate::bodies::{BodyReference, BodyStore, BodyStoreError};

/// Where in the bucket bodies go.
const PREFIX: &str = "bodies/";

/// Bodies in one bucket.
#[derive(Debug, Clone)]
pub struct S3BodyStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3BodyStore {
    /// Checks with one `HeadBucket` call that the bucket exists and may be used, which also
    /// warms the connection: the first large body after a cold start does not pay for a TLS
    /// handshake, and a wrong bucket name fails the init, not a request.
    pub async fn connect(
        client: aws_sdk_s3::Client,
        bucket: String,
    ) -> Result<Self, BodyStoreError> {
        client
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(|error| {
                BodyStoreError::Unavailable(format!(
                    "cannot reach the bucket {bucket}: {}",
                    DisplayErrorContext(&error)
                ))
            })?;
        Ok(Self { client, bucket })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The client, connected to the bucket.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    fn location(&self, key: &str) -> String {
        super::s3_location(&self.bucket, key)
    }

    /// The object key of a reference into this bucket.
    fn key_of<'a>(&self, reference: &'a BodyReference) -> Result<&'a str, BodyStoreError> {
        super::key_in(&reference.location, &self.bucket, PREFIX).ok_or_else(|| {
            BodyStoreError::Foreign {
                location: reference.location.clone(),
                store: self.location(PREFIX),
            }
        })
    }
}

#[async_trait]
impl BodyStore for S3BodyStore {
    async fn put(&self, body: &Bytes, sha256: &str) -> Result<BodyReference, BodyStoreError> {
        let key = format!("{PREFIX}{sha256}");
        let digest = hex::decode(sha256)
            .map_err(|_| BodyStoreError::Unavailable(format!("`{sha256}` is not a hex SHA-256")))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(body.clone()))
            .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
            .content_type("application/octet-stream")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(crate::verify::encode_base64(&digest))
            .send()
            .await
            .map_err(|error| {
                BodyStoreError::Unavailable(format!(
                    "PutObject {} failed: {}",
                    self.location(&key),
                    DisplayErrorContext(&error)
                ))
            })?;
        Ok(BodyReference {
            location: self.location(&key),
            size: body.len() as u64,
        })
    }

    async fn get(&self, reference: &BodyReference) -> Result<Bytes, BodyStoreError> {
        let key = self.key_of(reference)?;
        super::read_object(&self.client, &self.bucket, key, &reference.location)
            .await
            .map_err(|error| match error {
                super::ObjectRead::Missing => BodyStoreError::Missing(reference.location.clone()),
                super::ObjectRead::Failed(reason) => BodyStoreError::Unavailable(reason),
            })
    }
}

/// How long a body store call may take: an upload of several MB from a Lambda function
/// takes tens of milliseconds; a stuck one must still leave time to answer the provider
/// (Shopify waits 5 s, GitHub 10 s).
pub(crate) const BODY_STORE_TIMEOUTS: (Duration, Duration) =
    (Duration::from_millis(2_500), Duration::from_millis(4_000));
