//! Port: where a running processor reads its routes, so that routes change without a
//! rebuild or a redeploy.
//!
//! A source holds one routes file (TOML) and names each version of it. The processor asks
//! for the newest version unless it already has it (one conditional read), and, when it
//! starts while the newest version is invalid, for the versions before it, so that a bad
//! upload never leaves a processor without routes. `hookgate routes push` publishes through
//! the same port, after checking the file as the processor will.
//!
//! In the stack the source is one S3 object in a versioned bucket ([`crate::aws::S3RoutesSource`]);
//! the version is the object's entity tag, which names its content.

use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// The largest routes file read: far more than any routes table needs, and a bound on what
/// a processor holds in memory for one.
pub const MAX_ROUTES_BYTES: usize = 1024 * 1024;

/// One version of the routes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutesVersion {
    /// The source's name for this content (an S3 entity tag).
    pub version: String,
    pub text: String,
}

/// What asking for the newest routes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The newest version is the one the caller named.
    Unchanged,
    /// A version other than the one the caller named.
    Newer(RoutesVersion),
    /// No routes were ever published there.
    Absent,
}

/// Why a source could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutesSourceError {
    /// Worth trying again later: the source did not answer, or refused for now.
    #[error("the routes source {location} is unavailable: {reason}")]
    Unavailable { location: String, reason: String },
    /// The file cannot be routes whatever is done to the source.
    #[error("the routes in {location} are {size} bytes, more than the {MAX_ROUTES_BYTES} read")]
    TooLarge { location: String, size: u64 },
    #[error("the routes in {location} are not UTF-8 text")]
    NotText { location: String },
}

/// Port: one routes file and its versions.
#[async_trait]
pub trait RoutesSource: Send + Sync + fmt::Debug {
    /// Where the routes are, for logs and errors: `s3://bucket/key`.
    fn location(&self) -> String;

    /// The newest version, unless it is `known`.
    async fn newest(&self, known: Option<&str>) -> Result<Fetched, RoutesSourceError>;

    /// Up to `limit` versions before the newest, newest first; none where the source keeps
    /// no history.
    async fn earlier(&self, limit: usize) -> Result<Vec<RoutesVersion>, RoutesSourceError>;

    /// Makes `text` the newest version and returns its name.
    async fn publish(&self, text: &str) -> Result<String, RoutesSourceError>;
}

/// The checks every adapter makes on what it read, so that all of them refuse the same files.
pub fn routes_text(location: &str, bytes: Vec<u8>) -> Result<String, RoutesSourceError> {
    if bytes.len() > MAX_ROUTES_BYTES {
        return Err(RoutesSourceError::TooLarge {
            location: location.to_owned(),
            size: bytes.len() as u64,
        });
    }
    String::from_utf8(bytes).map_err(|_| RoutesSourceError::NotText {
        location: location.to_owned(),
    })
}

/// A source in memory, for tests: versions are named by their content's SHA-256, as an
/// entity tag names an object's, and checked as they are read, as S3's are.
#[derive(Debug, Default)]
pub struct MemoryRoutesSource {
    /// Each version's name and bytes, oldest first.
    versions: Mutex<Vec<(String, Vec<u8>)>>,
    unavailable: Mutex<bool>,
}

impl MemoryRoutesSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail as an unreachable source does, until called with `false`.
    pub fn set_unavailable(&self, unavailable: bool) {
        *self.unavailable.lock().unwrap_or_else(|p| p.into_inner()) = unavailable;
    }

    /// Forgets every version, as deleting the object does.
    pub fn clear(&self) {
        self.versions().clear();
    }

    /// Stores `bytes` as the newest version without the checks [`RoutesSource::publish`]
    /// makes, as an upload by other means would.
    pub fn upload_unchecked(&self, bytes: Vec<u8>) -> String {
        let version = format!("\"{}\"", hex::encode(Sha256::digest(&bytes)));
        self.versions().push((version.clone(), bytes));
        version
    }

    fn check_available(&self) -> Result<(), RoutesSourceError> {
        if *self.unavailable.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(RoutesSourceError::Unavailable {
                location: self.location(),
                reason: "made unavailable by the test".to_owned(),
            });
        }
        Ok(())
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, Vec<(String, Vec<u8>)>> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(
        &self,
        (version, bytes): &(String, Vec<u8>),
    ) -> Result<RoutesVersion, RoutesSourceError> {
        Ok(RoutesVersion {
            version: version.clone(),
            text: routes_text(&self.location(), bytes.clone())?,
        })
    }
}

#[async_trait]
impl RoutesSource for MemoryRoutesSource {
    fn location(&self) -> String {
        "memory:routes.toml".to_owned()
    }

    async fn newest(&self, known: Option<&str>) -> Result<Fetched, RoutesSourceError> {
        self.check_available()?;
        let versions = self.versions();
        match versions.last() {
            None => Ok(Fetched::Absent),
            Some((version, _)) if Some(version.as_str()) == known => Ok(Fetched::Unchanged),
            Some(newest) => Ok(Fetched::Newer(self.read(newest)?)),
        }
    }

    async fn earlier(&self, limit: usize) -> Result<Vec<RoutesVersion>, RoutesSourceError> {
        self.check_available()?;
        let versions = self.versions();
        versions
            .iter()
            .rev()
            .skip(1)
            .take(limit)
            .map(|version| self.read(version))
            .collect()
    }

    async fn publish(&self, text: &str) -> Result<String, RoutesSourceError> {
        self.check_available()?;
        let text = routes_text(&self.location(), text.as_bytes().to_vec())?;
        Ok(self.upload_unchecked(text.into_bytes()))
    }
}

/// `s3://bucket/key` is not a location the routes can be read from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an S3 object's URI: expected s3://BUCKET/KEY")]
pub struct NotAnS3Uri(pub String);

/// The bucket and key of `s3://bucket/key`.
pub fn parse_s3_uri(uri: &str) -> Result<(String, String), NotAnS3Uri> {
    let invalid = || NotAnS3Uri(uri.to_owned());
    let rest = uri.trim().strip_prefix("s3://").ok_or_else(invalid)?;
    let (bucket, key) = rest.split_once('/').ok_or_else(invalid)?;
    if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
        return Err(invalid());
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_uri_names_a_bucket_and_a_key() {
        assert_eq!(
            parse_s3_uri("s3://my-bucket/config/routes.toml"),
            Ok(("my-bucket".to_owned(), "config/routes.toml".to_owned()))
        );
    }

    #[test]
    fn anything_but_an_objects_s3_uri_is_refused() {
        for uri in [
            "",
            "routes.toml",
            "https://my-bucket.s3.amazonaws.com/routes.toml",
            "s3://my-bucket",
            "s3://my-bucket/",
            "s3:///routes.toml",
            "s3://my-bucket/config/",
        ] {
            assert_eq!(parse_s3_uri(uri), Err(NotAnS3Uri(uri.to_owned())), "{uri}");
        }
    }
}
