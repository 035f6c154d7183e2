//! The contract of the [`EventArchive`] port, as one suite run against every adapter: the
//! in-memory archive, the S3 adapter on the emulator, and the SQLite archive `hookgate dev`
//! runs on.

use std::collections::BTreeMap;
use std::sync::Arc;

use hookgate::archive::{ArchiveError, ArchiveQuery, EventArchive, MemoryArchive};
use hookgate::aws::S3Archive;
use hookgate::bodies::{sha256_hex, BodyReference};
use hookgate::envelope::{Envelope, EnvelopeV1, RawBody};
use hookgate::idempotency::IdempotencyKey;
use hookgate::provider::Provider;
use hookgate::routes::EventPattern;
use hookgate::sqlite::SqliteArchive;
use hookgate_tests::contract::{look, ScratchFile};
use hookgate_tests::emulator;
use time::{Duration, OffsetDateTime};

/// An adapter under test, and how to break it.
trait Adapter {
    fn archive(&self) -> Arc<dyn EventArchive>;

    /// From now on, the archive cannot answer.
    async fn make_unavailable(&self);
}

#[derive(Debug, Default)]
struct Memory(MemoryArchive);

impl Adapter for Memory {
    fn archive(&self) -> Arc<dyn EventArchive> {
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
}

impl S3 {
    /// The adapter on a fresh bucket of its own.
    async fn new() -> Self {
        let client = emulator::s3_client().await;
        let bucket = emulator::create_bucket(&client, "archive")
            .await
            .expect("the emulator creates a bucket");
        Self { client, bucket }
    }

    async fn object_keys(&self) -> Vec<String> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("the emulator lists the bucket")
            .contents()
            .iter()
            .filter_map(|object| object.key().map(str::to_owned))
            .collect()
    }
}

impl Adapter for S3 {
    fn archive(&self) -> Arc<dyn EventArchive> {
        Arc::new(S3Archive::new(self.client.clone(), self.bucket.clone()))
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
        let file = ScratchFile::new("hookgate-archive-contract");
        SqliteArchive::open(file.path()).expect("the adapter opens a new file");
        Self(file)
    }
}

impl Adapter for Sqlite {
    /// An archive on a connection of its own each time, as separate processes would have.
    fn archive(&self) -> Arc<dyn EventArchive> {
        Arc::new(SqliteArchive::open(self.0.path()).expect("the file opens again"))
    }

    async fn make_unavailable(&self) {
        look(self.0.path())
            .execute_batch("DROP TABLE archived_events")
            .expect("the table is dropped");
    }
}

/// Now, to the millisecond: what every adapter's listing compares exactly.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_millisecond(now.millisecond())
        .expect("a valid millisecond")
}

fn envelope(
    provider: Provider,
    id: &str,
    event_type: &str,
    received_at: OffsetDateTime,
) -> Envelope {
    let body = format!(r#"{{"id":"{id}","type":"{event_type}"}}"#);
    Envelope::V1(EnvelopeV1 {
        idempotency_key: IdempotencyKey::from_stable_id(provider, id).expect("a valid id"),
        provider,
        event_type: event_type.to_owned(),
        delivery_id: Some(id.to_owned()),
        received_at,
        source_ip: Some("192.0.2.7".parse().expect("an address")),
        headers: BTreeMap::from([("user-agent".to_owned(), "GitHub-Hookshot/1".to_owned())]),
        body_sha256: sha256_hex(body.as_bytes()),
        body: RawBody::Utf8(body),
        id_signed: provider != Provider::Stripe,
        replay: None,
    })
}

/// An envelope whose body was stored by the claim check, and one that is not UTF-8.
fn unusual_envelopes(received_at: OffsetDateTime) -> [Envelope; 2] {
    let mut stored = envelope(Provider::Github, "d-large", "push", received_at);
    let Envelope::V1(v1) = &mut stored;
    v1.body = RawBody::Stored(BodyReference {
        location: format!("s3://bodies/bodies/{}", "ab".repeat(32)),
        size: 7_000_000,
    });
    v1.body_sha256 = "ab".repeat(32);
    let mut binary = envelope(Provider::Generic, "d-binary", "blob", received_at);
    let Envelope::V1(v1) = &mut binary;
    v1.body = RawBody::from_bytes(&[0xff, 0x00, 0xfe]);
    v1.body_sha256 = sha256_hex(&[0xff, 0x00, 0xfe]);
    [stored, binary]
}

fn keys(events: &[hookgate::archive::ArchivedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| event.envelope.idempotency_key.to_string())
        .collect()
}

async fn append(archive: &dyn EventArchive, batch: &[Envelope], at: OffsetDateTime) -> String {
    let batch: Vec<&Envelope> = batch.iter().collect();
    archive
        .append(&batch, at)
        .await
        .expect("the archive takes the batch")
        .expect("a location for a batch that is not empty")
}

// ---- the contract ----

async fn a_batch_reads_back_in_order_with_its_envelopes_as_queued(adapter: impl Adapter) {
    let archive = adapter.archive();
    let t0 = now();
    let [stored, binary] = unusual_envelopes(t0);
    let batch = [
        envelope(Provider::Stripe, "evt_1", "invoice.paid", t0),
        stored,
        binary,
    ];

    let location = append(archive.as_ref(), &batch, t0).await;

    let read = adapter
        .archive()
        .read(&location)
        .await
        .expect("the entry reads back");
    assert_eq!(read.len(), 3);
    for (event, envelope) in read.iter().zip(&batch) {
        assert_eq!(Envelope::V1(event.envelope.clone()), *envelope);
        assert_eq!(event.archived_at, t0);
        assert_eq!(event.location, location);
    }
}

async fn an_empty_batch_writes_nothing(adapter: impl Adapter) {
    let archive = adapter.archive();

    let location = archive.append(&[], now()).await.expect("nothing to write");

    assert_eq!(location, None);
    let listed = archive
        .list(&ArchiveQuery::since(now() - Duration::days(1)), 10)
        .await
        .expect("the archive answers");
    assert!(listed.is_empty(), "{listed:?}");
}

async fn a_listing_names_each_key_once_by_its_first_copy_oldest_received_first(
    adapter: impl Adapter,
) {
    let archive = adapter.archive();
    let t0 = now() - Duration::minutes(10);
    let late = envelope(Provider::Github, "d-2", "push", t0 + Duration::seconds(2));
    let early = envelope(Provider::Github, "d-1", "push", t0 + Duration::seconds(1));
    let first = append(archive.as_ref(), &[late.clone(), early.clone()], t0).await;
    // The same event archived again: a redelivery of its message.
    append(archive.as_ref(), &[late], t0 + Duration::minutes(1)).await;

    let listed = archive
        .list(&ArchiveQuery::since(t0), 10)
        .await
        .expect("the archive answers");

    assert_eq!(keys(&listed), ["github:d-1", "github:d-2"]);
    assert!(listed.iter().all(|event| event.location == first));
    assert!(listed.iter().all(|event| event.archived_at == t0));
    let one = archive
        .list(&ArchiveQuery::since(t0), 1)
        .await
        .expect("the archive answers");
    assert_eq!(keys(&one), ["github:d-1"]);
}

async fn a_listing_keeps_to_the_provider_event_types_times_and_key_asked_for(
    adapter: impl Adapter,
) {
    let archive = adapter.archive();
    let t0 = now() - Duration::hours(2);
    append(
        archive.as_ref(),
        &[
            envelope(Provider::Github, "d-old", "pull_request.opened", t0),
            envelope(
                Provider::Github,
                "d-pr",
                "pull_request.closed",
                t0 + Duration::hours(1),
            ),
            envelope(Provider::Github, "d-push", "push", t0 + Duration::hours(1)),
            envelope(
                Provider::Stripe,
                "evt_pr",
                "pull_request.opened",
                t0 + Duration::hours(1),
            ),
            envelope(
                Provider::Github,
                "d-new",
                "pull_request.opened",
                t0 + Duration::minutes(110),
            ),
        ],
        t0 + Duration::minutes(115),
    )
    .await;
    let list = |query: ArchiveQuery| {
        let archive = archive.clone();
        async move { keys(&archive.list(&query, 10).await.expect("the archive answers")) }
    };
    let since = |at: OffsetDateTime| ArchiveQuery::since(at);

    assert_eq!(
        list(ArchiveQuery {
            provider: Some(Provider::Github),
            event_type: Some(EventPattern::parse("pull_request.*").expect("a pattern")),
            ..since(t0 + Duration::minutes(30))
        })
        .await,
        ["github:d-pr", "github:d-new"]
    );
    assert_eq!(
        list(ArchiveQuery {
            until: Some(t0 + Duration::minutes(110)),
            ..since(t0)
        })
        .await,
        [
            "github:d-old",
            "github:d-pr",
            "github:d-push",
            "stripe:evt_pr"
        ],
        "`until` is exclusive"
    );
    assert_eq!(
        list(ArchiveQuery {
            key: Some(IdempotencyKey::try_from("stripe:evt_pr".to_owned()).expect("a key")),
            ..since(t0)
        })
        .await,
        ["stripe:evt_pr"]
    );
    assert!(list(since(t0 + Duration::minutes(111))).await.is_empty());
}

async fn a_listing_from_an_archive_time_takes_only_the_copies_archived_since(
    adapter: impl Adapter,
) {
    let archive = adapter.archive();
    let t0 = now() - Duration::minutes(30);
    let old = envelope(Provider::Github, "d-old", "push", t0);
    append(archive.as_ref(), std::slice::from_ref(&old), t0).await;
    let later = t0 + Duration::minutes(20);
    // The old event again (a redelivery), and a new one.
    append(
        archive.as_ref(),
        &[old, envelope(Provider::Github, "d-new", "push", later)],
        later,
    )
    .await;

    let recent = archive
        .list(
            &ArchiveQuery {
                archived_since: Some(later),
                ..ArchiveQuery::since(t0)
            },
            10,
        )
        .await
        .expect("the archive answers");

    assert_eq!(keys(&recent), ["github:d-old", "github:d-new"]);
    assert!(recent.iter().all(|copy| copy.archived_at == later));
    let none = archive
        .list(
            &ArchiveQuery {
                archived_since: Some(later + Duration::milliseconds(1)),
                ..ArchiveQuery::since(t0)
            },
            10,
        )
        .await
        .expect("the archive answers");
    assert!(none.is_empty(), "{none:?}");
}

async fn a_location_never_written_is_missing(adapter: impl Adapter) {
    let archive = adapter.archive();
    let written = append(
        archive.as_ref(),
        &[envelope(Provider::Github, "d-x", "push", now())],
        now(),
    )
    .await;
    let never = written.replace(|c: char| c.is_ascii_hexdigit(), "0");

    for location in [never.as_str(), "file:///etc/passwd"] {
        let outcome = archive.read(location).await;
        assert!(
            matches!(&outcome, Err(ArchiveError::Missing(at)) if at == location),
            "{location}: {outcome:?}"
        );
    }
}

async fn an_unavailable_archive_answers_unavailable(adapter: impl Adapter) {
    let archive = adapter.archive();
    let batch = [envelope(Provider::Github, "d-down", "push", now())];
    append(archive.as_ref(), &batch, now()).await;

    adapter.make_unavailable().await;

    let appended = archive.append(&[&batch[0]], now()).await;
    assert!(
        matches!(appended, Err(ArchiveError::Unavailable(_))),
        "{appended:?}"
    );
    let listed = archive
        .list(&ArchiveQuery::since(now() - Duration::hours(1)), 10)
        .await;
    assert!(
        matches!(listed, Err(ArchiveError::Unavailable(_))),
        "{listed:?}"
    );
}

macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn a_batch_reads_back_in_order_with_its_envelopes_as_queued() {
                super::a_batch_reads_back_in_order_with_its_envelopes_as_queued($make).await;
            }

            #[tokio::test]
            async fn an_empty_batch_writes_nothing() {
                super::an_empty_batch_writes_nothing($make).await;
            }

            #[tokio::test]
            async fn a_listing_names_each_key_once_by_its_first_copy_oldest_received_first() {
                super::a_listing_names_each_key_once_by_its_first_copy_oldest_received_first($make)
                    .await;
            }

            #[tokio::test]
            async fn a_listing_keeps_to_the_provider_event_types_times_and_key_asked_for() {
                super::a_listing_keeps_to_the_provider_event_types_times_and_key_asked_for($make)
                    .await;
            }

            #[tokio::test]
            async fn a_listing_from_an_archive_time_takes_only_the_copies_archived_since() {
                super::a_listing_from_an_archive_time_takes_only_the_copies_archived_since($make)
                    .await;
            }

            #[tokio::test]
            async fn a_location_never_written_is_missing() {
                super::a_location_never_written_is_missing($make).await;
            }

            #[tokio::test]
            async fn an_unavailable_archive_answers_unavailable() {
                super::an_unavailable_archive_answers_unavailable($make).await;
            }
        }
    };
}

contract!(memory_archive, Memory::default());
contract!(s3_archive, S3::new().await);
contract!(sqlite_archive, Sqlite::new());

// ---- the S3 adapter alone ----

mod s3_archive_only {
    use super::*;

    #[tokio::test]
    async fn a_batch_is_one_object_of_json_lines_under_the_hour_it_was_archived() {
        let adapter = S3::new().await;
        let at = now();
        let batch = [
            envelope(Provider::Github, "d-a", "push", at),
            envelope(Provider::Github, "d-b", "push", at),
        ];

        let location = append(adapter.archive().as_ref(), &batch, at).await;

        let keys = adapter.object_keys().await;
        assert_eq!(keys.len(), 1, "{keys:?}");
        let hour = format!(
            "archive/{:04}/{:02}/{:02}/{:02}/",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour()
        );
        assert!(keys[0].starts_with(&hour), "{} under {hour}", keys[0]);
        assert!(keys[0].ends_with(".jsonl"), "{}", keys[0]);
        assert_eq!(location, format!("s3://{}/{}", adapter.bucket, keys[0]));
        let object = adapter
            .client
            .get_object()
            .bucket(&adapter.bucket)
            .key(&keys[0])
            .send()
            .await
            .expect("the object reads");
        let text = String::from_utf8(object.body.collect().await.unwrap().to_vec()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["envelope"]["idempotency_key"], "github:d-a");
        assert_eq!(lines[0]["envelope"]["version"], 1);
    }

    #[tokio::test]
    async fn a_location_in_another_bucket_is_missing_without_a_call() {
        let adapter = S3::new().await;

        let outcome = adapter
            .archive()
            .read("s3://somebody-elses-bucket/archive/x.jsonl")
            .await;

        assert!(
            matches!(outcome, Err(ArchiveError::Missing(_))),
            "{outcome:?}"
        );
    }
}
