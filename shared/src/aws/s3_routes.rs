//! The S3 adapter of [`RoutesSource`]: the routes file as one object, `s3://bucket/key`.
//!
//! S3 was chosen over Parameter Store and AppConfig. A Parameter Store value is at most
//! 4 KB (8 KB as an advanced parameter, which is billed), and a routes file with a dozen
//! agents and their comments outgrows that. AppConfig would need a fourth SDK client, and
//! its Lambda extension is a layer to pin per region. An object has room to spare, and a
//! conditional GET (`If-None-Match` with the entity tag last seen) answers 304 with no body
//! while nothing changed. Bucket versioning keeps every published version, which both a
//! rollback and a processor starting on a bad upload read back. The processor already links
//! the S3 client for large bodies.

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;

use crate::routes_source::{
    routes_text, Fetched, RoutesSource, RoutesSourceError, RoutesVersion, MAX_ROUTES_BYTES,
};

/// The routes in one object.
#[derive(Debug, Clone)]
pub struct S3RoutesSource {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

impl S3RoutesSource {
    pub fn new(client: aws_sdk_s3::Client, bucket: String, key: String) -> Self {
        Self {
            client,
            bucket,
            key,
        }
    }

    fn unavailable<E, R>(&self, call: &str, error: &SdkError<E, R>) -> RoutesSourceError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        RoutesSourceError::Unavailable {
            location: self.location(),
            reason: format!("{call} failed: {}", DisplayErrorContext(error)),
        }
    }

    /// The text of a GetObject answer, checked as every source checks it.
    async fn text_of(&self, output: GetObjectOutput) -> Result<RoutesVersion, RoutesSourceError> {
        let location = self.location();
        let size = output.content_length().unwrap_or_default().max(0) as u64;
        if size > MAX_ROUTES_BYTES as u64 {
            return Err(RoutesSourceError::TooLarge { location, size });
        }
        let version = output.e_tag().unwrap_or_default().to_owned();
        let bytes =
            output
                .body
                .collect()
                .await
                .map_err(|error| RoutesSourceError::Unavailable {
                    location: location.clone(),
                    reason: format!("reading the object failed: {error}"),
                })?;
        Ok(RoutesVersion {
            version,
            text: routes_text(&location, bytes.to_vec())?,
        })
    }
}

#[async_trait]
impl RoutesSource for S3RoutesSource {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn newest(&self, known: Option<&str>) -> Result<Fetched, RoutesSourceError> {
        let answer = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_if_none_match(known.map(str::to_owned))
            .send()
            .await;
        match answer {
            Ok(output) => Ok(Fetched::Newer(self.text_of(output).await?)),
            // The SDK reports S3's 304 Not Modified as an error with no code of its own.
            Err(error) if error.raw_response().map(|raw| raw.status().as_u16()) == Some(304) => {
                Ok(Fetched::Unchanged)
            }
            Err(error) if super::is_no_such_key(error.as_service_error()) => Ok(Fetched::Absent),
            Err(error) => Err(self.unavailable("GetObject", &error)),
        }
    }

    async fn earlier(&self, limit: usize) -> Result<Vec<RoutesVersion>, RoutesSourceError> {
        let listed = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(&self.key)
            .send()
            .await
            .map_err(|error| self.unavailable("ListObjectVersions", &error))?;
        // S3 lists a key's versions newest first; the newest is the one already read. An
        // unversioned bucket lists only that one, with the id "null".
        let ids: Vec<String> = listed
            .versions()
            .iter()
            .filter(|version| version.key() == Some(self.key.as_str()))
            .filter(|version| version.is_latest() != Some(true))
            .filter_map(|version| version.version_id().map(str::to_owned))
            .take(limit)
            .collect();
        let mut versions = Vec::with_capacity(ids.len());
        for id in ids {
            let output = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .version_id(&id)
                .send()
                .await
                .map_err(|error| self.unavailable("GetObject", &error))?;
            versions.push(self.text_of(output).await?);
        }
        Ok(versions)
    }

    async fn publish(&self, text: &str) -> Result<String, RoutesSourceError> {
        let text = routes_text(&self.location(), text.as_bytes().to_vec())?;
        let output = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/toml")
            .body(ByteStream::from(text.into_bytes()))
            .send()
            .await
            .map_err(|error| self.unavailable("PutObject", &error))?;
        Ok(output.e_tag().unwrap_or_default().to_owned())
    }
}
