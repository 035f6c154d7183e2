//! The S3 adapter of [`EventArchive`]: one object per processor batch, JSON lines, in the
//! stack's body bucket under `archive/`.
//!
//! An object's key is `archive/YYYY/MM/DD/HH/{archived_at}-{uuid}.jsonl`, by the instant
//! the processor archived the batch (UTC), so keys sort by it. Every event is archived after
//! it was received, so the events received since an instant are all in objects archived
//! since then: a listing reads the days from there on, one `ListObjectsV2` per day (and per
//! thousand objects), then each object archived since, a few at a time. That is cheap for the volumes an
//! operator looks at; for months of a busy stack, query the same objects with Athena.
//!
//! The bucket encrypts every object (SSE-S3) and expires `archive/` after `ARCHIVE_DAYS`
//! (`template.yaml`). One `PutObject` per batch is the archive's whole cost on the
//! processor's path: at ten events a batch, 100,000 requests per million events ($0.50 at
//! $0.005 per thousand), and at one event a batch ten times that.

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use time::OffsetDateTime;

use crate::archive::{
    first_copies, from_json_lines, to_json_lines, ArchiveError, ArchiveQuery, ArchivedEvent,
    EventArchive,
};
use crate::envelope::Envelope;

/// Where in the bucket the archive goes.
const PREFIX: &str = "archive/";

/// How many objects a listing reads at once.
const READS_AT_ONCE: usize = 8;

/// The archive in one bucket.
#[derive(Debug, Clone)]
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Archive {
    /// The archive in `bucket`, which is not checked here: the processor checks and warms
    /// the bucket through its body store, and a command reading the archive fails on its
    /// first call, naming the bucket.
    pub fn new(client: aws_sdk_s3::Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    fn location(&self, key: &str) -> String {
        super::s3_location(&self.bucket, key)
    }

    /// The keys of the objects archived since `since`.
    async fn keys_since(&self, since: OffsetDateTime) -> Result<Vec<String>, ArchiveError> {
        let now = OffsetDateTime::now_utc();
        let since = since.to_offset(time::UtcOffset::UTC);
        let first = object_key(since, "");
        let mut keys = Vec::new();
        let mut day = since.date();
        while day <= now.date() {
            let prefix = format!(
                "{PREFIX}{:04}/{:02}/{:02}/",
                day.year(),
                u8::from(day.month()),
                day.day()
            );
            // Within the first day, from the bound on: `hookgate tail` lists every few
            // seconds, and reads only what came since.
            let pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_start_after((day == since.date()).then(|| first.clone()))
                .into_paginator()
                .send();
            let listed: Vec<_> = pages.try_collect().await.map_err(|error| {
                ArchiveError::Unavailable(format!(
                    "ListObjectsV2 {} failed: {}",
                    self.location(&prefix),
                    DisplayErrorContext(&error)
                ))
            })?;
            keys.extend(
                listed
                    .iter()
                    .flat_map(|page| page.contents())
                    .filter_map(|object| object.key())
                    .filter(|key| *key >= first.as_str())
                    .map(str::to_owned),
            );
            let Some(next) = day.next_day() else { break };
            day = next;
        }
        Ok(keys)
    }
}

/// `archive/YYYY/MM/DD/HH/{YYYYMMDDTHHMMSS.mmmZ}-{suffix}.jsonl`, for an object archived at
/// `instant`; with an empty suffix, a key that sorts before every object archived since.
fn object_key(instant: OffsetDateTime, suffix: &str) -> String {
    let instant = instant.to_offset(time::UtcOffset::UTC);
    let name = format!(
        "{}{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        hour_prefix(instant),
        instant.year(),
        u8::from(instant.month()),
        instant.day(),
        instant.hour(),
        instant.minute(),
        instant.second(),
        instant.millisecond(),
    );
    if suffix.is_empty() {
        name
    } else {
        format!("{name}-{suffix}.jsonl")
    }
}

/// `archive/YYYY/MM/DD/HH/`, the hour of `instant` in UTC.
fn hour_prefix(instant: OffsetDateTime) -> String {
    let instant = instant.to_offset(time::UtcOffset::UTC);
    format!(
        "{PREFIX}{:04}/{:02}/{:02}/{:02}/",
        instant.year(),
        u8::from(instant.month()),
        instant.day(),
        instant.hour()
    )
}

#[async_trait]
impl EventArchive for S3Archive {
    async fn append(
        &self,
        envelopes: &[&Envelope],
        now: OffsetDateTime,
    ) -> Result<Option<String>, ArchiveError> {
        if envelopes.is_empty() {
            return Ok(None);
        }
        let key = object_key(now, &uuid::Uuid::new_v4().to_string());
        let lines = to_json_lines(envelopes, now);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .content_length(i64::try_from(lines.len()).unwrap_or(i64::MAX))
            .body(ByteStream::from(lines.into_bytes()))
            .send()
            .await
            .map_err(|error| {
                ArchiveError::Unavailable(format!(
                    "PutObject {} failed: {}",
                    self.location(&key),
                    DisplayErrorContext(&error)
                ))
            })?;
        Ok(Some(self.location(&key)))
    }

    async fn read(&self, location: &str) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let key = super::key_in(location, &self.bucket, PREFIX)
            .ok_or_else(|| ArchiveError::Missing(location.to_owned()))?;
        let bytes = super::read_object(&self.client, &self.bucket, key, location)
            .await
            .map_err(|error| match error {
                super::ObjectRead::Missing => ArchiveError::Missing(location.to_owned()),
                super::ObjectRead::Failed(reason) => ArchiveError::Unavailable(reason),
            })?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| ArchiveError::Unreadable {
            location: location.to_owned(),
            reason: "it is not UTF-8".to_owned(),
        })?;
        from_json_lines(&text, location)
    }

    async fn list(
        &self,
        query: &ArchiveQuery,
        max: usize,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        // Received at `since` at the earliest, so archived then or later; an event's first
        // archiving may come long after `until` (a backlog, a redrive), so the listing reads
        // on to now. Archived at a millisecond's precision in the key: a copy archived
        // within `since`'s millisecond sorts after the bound.
        let from = query
            .archived_since
            .map_or(query.since, |archived| archived.max(query.since));
        let from = from
            .replace_nanosecond(from.millisecond() as u32 * 1_000_000)
            .unwrap_or(from);
        let locations: Vec<String> = self
            .keys_since(from)
            .await?
            .iter()
            .map(|key| self.location(key))
            .collect();
        let entries: Vec<Vec<ArchivedEvent>> = stream::iter(locations)
            .map(|location| async move {
                match self.read(&location).await {
                    // Expired between the listing and the read.
                    Err(ArchiveError::Missing(_)) => Ok(Vec::new()),
                    other => other,
                }
            })
            .buffered(READS_AT_ONCE)
            .try_collect()
            .await?;
        let copies = entries
            .into_iter()
            .flatten()
            .filter(|copy| query.takes(copy))
            .collect();
        Ok(first_copies(copies, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_objects_key_is_its_utc_archive_time_and_sorts_by_it() {
        // 2026-11-27 23:59:59 at UTC-2.
        let instant = OffsetDateTime::from_unix_timestamp(1_795_831_199)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(-2, 0, 0).unwrap());
        assert_eq!((instant.day(), instant.hour()), (27, 23));
        assert_eq!(hour_prefix(instant), "archive/2026/11/28/01/");
        assert_eq!(
            object_key(instant, "x"),
            "archive/2026/11/28/01/20261128T015959.000Z-x.jsonl"
        );
        let bound = object_key(instant, "");
        assert!(object_key(instant, "0") > bound);
        assert!(object_key(instant + time::Duration::milliseconds(1), "0") > bound);
        assert!(object_key(instant - time::Duration::milliseconds(1), "f") < bound);
    }
}
