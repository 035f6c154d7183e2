//! The contract of the [`RoutesSource`] port (where a running processor reads its routes),
//! as one suite run against every adapter: the in-memory source and the S3 adapter on a
//! versioned bucket of the emulator.

use std::sync::Arc;

use hookgate::aws::S3RoutesSource;
use hookgate::routes_source::{
    Fetched, MemoryRoutesSource, RoutesSource, RoutesSourceError, MAX_ROUTES_BYTES,
};
use hookgate_tests::emulator;

/// An adapter under test, and how to break it.
trait Adapter {
    fn source(&self) -> Arc<dyn RoutesSource>;

    /// From now on, the source cannot answer.
    async fn make_unavailable(&self);

    /// Stores `bytes` as the newest version without any check, as a hand upload would.
    async fn upload_raw(&self, bytes: Vec<u8>);
}

#[derive(Debug, Default)]
struct Memory(Arc<MemoryRoutesSource>);

impl Adapter for Memory {
    fn source(&self) -> Arc<dyn RoutesSource> {
        Arc::clone(&self.0) as Arc<dyn RoutesSource>
    }

    async fn make_unavailable(&self) {
        self.0.set_unavailable(true);
    }

    async fn upload_raw(&self, bytes: Vec<u8>) {
        self.0.upload_unchecked(bytes);
    }
}

#[derive(Debug)]
struct S3 {
    client: aws_sdk_s3::Client,
    bucket: String,
}

const KEY: &str = "config/routes.toml";

impl S3 {
    /// The adapter on a fresh versioned bucket of its own, as the stack's is.
    async fn new() -> Self {
        let client = emulator::s3_client().await;
        let bucket = emulator::create_versioned_bucket(&client, "routes")
            .await
            .expect("the emulator creates a versioned bucket");
        Self { client, bucket }
    }
}

impl Adapter for S3 {
    fn source(&self) -> Arc<dyn RoutesSource> {
        Arc::new(S3RoutesSource::new(
            self.client.clone(),
            self.bucket.clone(),
            KEY.to_owned(),
        ))
    }

    /// Points the adapter's calls at a bucket that does not exist.
    async fn make_unavailable(&self) {
        let versions = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("the emulator lists the versions");
        for version in versions.versions() {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(version.key().unwrap_or_default())
                .set_version_id(version.version_id().map(str::to_owned))
                .send()
                .await
                .expect("the emulator deletes a version");
        }
        for marker in versions.delete_markers() {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(marker.key().unwrap_or_default())
                .set_version_id(marker.version_id().map(str::to_owned))
                .send()
                .await
                .expect("the emulator deletes a marker");
        }
        self.client
            .delete_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("the emulator deletes the bucket");
    }

    async fn upload_raw(&self, bytes: Vec<u8>) {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(KEY)
            .body(bytes.into())
            .send()
            .await
            .expect("the emulator stores the object");
    }
}

const FIRST: &str = "# first\n[action.log]\ntype = \"log\"\n";
const SECOND: &str = "# second\n[action.log]\ntype = \"log\"\n";
const THIRD: &str = "# third\n[action.log]\ntype = \"log\"\n";

async fn newest(source: &dyn RoutesSource, known: Option<&str>) -> Fetched {
    source.newest(known).await.expect("the source answers")
}

async fn nothing_published_is_absent(adapter: impl Adapter) {
    assert_eq!(
        newest(adapter.source().as_ref(), None).await,
        Fetched::Absent
    );
}

async fn the_newest_version_published_is_read_back_with_its_name(adapter: impl Adapter) {
    let source = adapter.source();
    source.publish(FIRST).await.expect("published");
    let second = source.publish(SECOND).await.expect("published");

    let Fetched::Newer(read) = newest(adapter.source().as_ref(), None).await else {
        panic!("the newest version is read");
    };
    assert_eq!(read.text, SECOND);
    assert_eq!(read.version, second);
}

async fn a_known_newest_version_is_unchanged_and_another_is_newer(adapter: impl Adapter) {
    let source = adapter.source();
    let first = source.publish(FIRST).await.expect("published");

    assert_eq!(
        newest(source.as_ref(), Some(&first)).await,
        Fetched::Unchanged
    );

    let second = source.publish(SECOND).await.expect("published");
    assert_ne!(first, second, "different content, different names");
    let Fetched::Newer(read) = newest(source.as_ref(), Some(&first)).await else {
        panic!("a version other than the known one is newer");
    };
    assert_eq!(
        (read.version.as_str(), read.text.as_str()),
        (second.as_str(), SECOND)
    );
}

async fn earlier_versions_come_newest_first_without_the_newest(adapter: impl Adapter) {
    let source = adapter.source();
    assert_eq!(source.earlier(10).await.expect("listed"), []);
    for text in [FIRST, SECOND, THIRD] {
        source.publish(text).await.expect("published");
    }

    let earlier = source.earlier(10).await.expect("listed");
    let texts: Vec<&str> = earlier
        .iter()
        .map(|version| version.text.as_str())
        .collect();
    assert_eq!(texts, [SECOND, FIRST]);

    let limited = source.earlier(1).await.expect("listed");
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].text, SECOND);
}

async fn a_file_too_large_or_not_text_is_refused(adapter: impl Adapter) {
    let source = adapter.source();
    let huge = "#".repeat(MAX_ROUTES_BYTES + 1);
    assert!(
        matches!(
            source.publish(&huge).await,
            Err(RoutesSourceError::TooLarge { .. })
        ),
        "publishing refuses it"
    );

    adapter.upload_raw(huge.into_bytes()).await;
    let read = source.newest(None).await;
    assert!(
        matches!(read, Err(RoutesSourceError::TooLarge { size, .. }) if size == MAX_ROUTES_BYTES as u64 + 1),
        "{read:?}"
    );

    adapter.upload_raw(vec![0xff, 0xfe, b'#']).await;
    let read = source.newest(None).await;
    assert!(
        matches!(read, Err(RoutesSourceError::NotText { .. })),
        "{read:?}"
    );
}

async fn an_unavailable_source_answers_unavailable(adapter: impl Adapter) {
    let source = adapter.source();
    source.publish(FIRST).await.expect("published");

    adapter.make_unavailable().await;

    for outcome in [
        source.newest(None).await.map(|_| ()),
        source.earlier(10).await.map(|_| ()),
        source.publish(SECOND).await.map(|_| ()),
    ] {
        assert!(
            matches!(outcome, Err(RoutesSourceError::Unavailable { .. })),
            "{outcome:?}"
        );
    }
}

macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn nothing_published_is_absent() {
                super::nothing_published_is_absent($make).await;
            }

            #[tokio::test]
            async fn the_newest_version_published_is_read_back_with_its_name() {
                super::the_newest_version_published_is_read_back_with_its_name($make).await;
            }

            #[tokio::test]
            async fn a_known_newest_version_is_unchanged_and_another_is_newer() {
                super::a_known_newest_version_is_unchanged_and_another_is_newer($make).await;
            }

            #[tokio::test]
            async fn earlier_versions_come_newest_first_without_the_newest() {
                super::earlier_versions_come_newest_first_without_the_newest($make).await;
            }

            #[tokio::test]
            async fn a_file_too_large_or_not_text_is_refused() {
                super::a_file_too_large_or_not_text_is_refused($make).await;
            }

            #[tokio::test]
            async fn an_unavailable_source_answers_unavailable() {
                super::an_unavailable_source_answers_unavailable($make).await;
            }
        }
    };
}

contract!(memory_source, Memory::default());
contract!(s3_source, S3::new().await);

// ---- the S3 adapter alone ----

#[tokio::test]
async fn the_s3_source_is_the_object_its_uri_names() {
    let adapter = S3::new().await;
    assert_eq!(
        adapter.source().location(),
        format!("s3://{}/{KEY}", adapter.bucket)
    );
}
