//! The DynamoDB adapter of [`IdempotencyStore`]: one item per idempotency key, written only
//! by conditional `UpdateItem`s, so that the condition, not a read beforehand, decides who
//! holds a claim.
//!
//! The item (partition key `idempotency_key`, a string):
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `status` | S | `IN_PROGRESS` or `COMPLETED` |
//! | `holder` | S | the holder token of the current claim; removed on completion |
//! | `lease_expires_at` | N | epoch milliseconds; the claim is exclusive until then; removed on completion |
//! | `expires_at` | N | epoch seconds; the table's TTL attribute (retention) |
//! | `payload_hash` | S | the payload hash of the first claim |
//! | `attempts` | N | how many claims were taken |
//! | `done_actions` | SS | actions that succeeded; absent while empty (a set cannot be empty) |
//! | `updated_at` | N | epoch milliseconds of the last write, by the writer's clock, for people reading the table |
//! | `last_error` | S | why the latest failed attempt failed, written when it releases the claim |
//! | `failed_actions` | M | the actions that failed in that attempt, each with its error (S) |
//! | `archive` | S | where the event's envelope is archived, written by the claim |
//!
//! A body sighting ([`IdempotencyStore::record_body`]) is an item of its own, under
//! `body:{provider}:{sha256}` (no idempotency key begins with `body`): `first_key` (S), the
//! event the body was first seen in, and `expires_at`, the same TTL attribute.
//!
//! DynamoDB keeps whole milliseconds (leases) and whole seconds (retention), where
//! [`crate::claims::MemoryStore`] keeps nanoseconds. Stored instants are rounded up and the
//! claimant's `now` down, so rounding can only make a lease or a record last a little
//! longer, never end early: exclusivity is never given away on a rounding error. With whole
//! seconds, both adapters answer alike to the nanosecond.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeyType, ReturnValue, ReturnValuesOnConditionCheckFailure,
};
use time::OffsetDateTime;

use crate::claims::{
    new_holder, BodySighting, Claim, ClaimRequest, EventRecord, Failure, FirstSeen, HeldClaim,
    IdempotencyStore, Status, StoreError,
};
use crate::idempotency::IdempotencyKey;

/// Attribute names, and the aliases the expressions use for them.
mod attribute {
    pub const KEY: &str = "idempotency_key";
    pub const STATUS: &str = "status";
    pub const HOLDER: &str = "holder";
    pub const LEASE_EXPIRES_AT: &str = "lease_expires_at";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const PAYLOAD_HASH: &str = "payload_hash";
    pub const ATTEMPTS: &str = "attempts";
    pub const DONE_ACTIONS: &str = "done_actions";
    pub const UPDATED_AT: &str = "updated_at";
    pub const FIRST_KEY: &str = "first_key";
    pub const LAST_ERROR: &str = "last_error";
    pub const FAILED_ACTIONS: &str = "failed_actions";
    pub const ARCHIVE: &str = "archive";

    /// Every attribute goes through an alias: DynamoDB reserves several hundred words
    /// (`status` among them) and refuses an expression that uses one bare.
    pub const ALIASES: [(&str, &str); 13] = [
        ("#first", FIRST_KEY),
        ("#error", LAST_ERROR),
        ("#failed", FAILED_ACTIONS),
        ("#archive", ARCHIVE),
        ("#key", KEY),
        ("#status", STATUS),
        ("#holder", HOLDER),
        ("#lease", LEASE_EXPIRES_AT),
        ("#expires", EXPIRES_AT),
        ("#hash", PAYLOAD_HASH),
        ("#attempts", ATTEMPTS),
        ("#done", DONE_ACTIONS),
        ("#updated", UPDATED_AT),
    ];
}

/// The first try at a claim: create the record, or take over an in-progress claim whose lease
/// has run out. An `UpdateItem` rather than a `PutItem`, because a takeover must keep what
/// the record already knows (the actions done, the attempt count, the first payload hash),
/// which a `PutItem` would overwrite.
///
/// A record past its retention does not pass this condition even though it counts as absent:
/// it must start afresh, without the old actions done, and one update expression cannot
/// both keep and drop them. Its claimant learns so from the old item and writes
/// [`START_AFRESH`].
const TAKE_OVER: ClaimWrite = ClaimWrite {
    set: "SET #status = :in_progress, #holder = :holder, #lease = :lease, #expires = :ttl, \
          #updated = :updated, #hash = if_not_exists(#hash, :hash), \
          #attempts = if_not_exists(#attempts, :zero) + :one",
    remove: &[],
    condition: "attribute_not_exists(#key) \
                OR (#status = :in_progress AND #lease <= :now_ms AND #expires > :now_s)",
};

/// The second try at a claim, only when the first found a record past its retention: a
/// fresh record, as if the old one were gone. DynamoDB deletes expired items only
/// eventually (days later, at worst), and the emulator never does, so the condition treats
/// an expired record like a missing one. The condition also arbitrates between claimants
/// that all found the same expired record: exactly one of them replaces it.
const START_AFRESH: ClaimWrite = ClaimWrite {
    set: "SET #status = :in_progress, #holder = :holder, #lease = :lease, #expires = :ttl, \
          #updated = :updated, #hash = :hash, #attempts = :one",
    remove: &["#done", "#error", "#failed"],
    condition: "attribute_not_exists(#key) OR #expires <= :now_s",
};

/// A claim's update, in parts: where the event is archived is set when the claim says,
/// kept by a takeover that does not, and dropped with the rest of a record started afresh.
struct ClaimWrite {
    set: &'static str,
    remove: &'static [&'static str],
    condition: &'static str,
}

impl ClaimWrite {
    /// The update and condition expressions for a claim that does or does not say where
    /// its event is archived.
    fn expressions(&self, archived: bool) -> (String, &'static str) {
        let mut update = self.set.to_owned();
        let mut remove = self.remove.to_vec();
        if archived {
            update.push_str(", #archive = :archive");
        } else if !remove.is_empty() {
            remove.push("#archive");
        }
        if !remove.is_empty() {
            update.push_str(" REMOVE ");
            update.push_str(&remove.join(", "));
        }
        (update, self.condition)
    }
}

/// Every write after the claim is conditional on still holding it.
const HOLDING: &str = "#holder = :holder AND #status = :in_progress";

/// A body sighting: written unless a live sighting exists, which the failed condition then
/// returns (naming this event or another). A live one is never rewritten, so its retention
/// counts from the first sighting, as the other stores' does.
const SIGHT: (&str, &str) = (
    "SET #first = :first, #expires = :ttl, #updated = :updated",
    "attribute_not_exists(#key) OR #expires <= :now_s",
);

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB adapter of [`IdempotencyStore`].
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table_name: String,
}

impl DynamoStore {
    /// An adapter on `table_name`, without checking it.
    pub fn new(client: aws_sdk_dynamodb::Client, table_name: String) -> Self {
        Self { client, table_name }
    }

    /// Opens `connections` connections to the table, at once, so that a batch whose events
    /// all claim at the same moment finds them open instead of paying a TLS handshake each.
    /// Each is a `GetItem` of a key no event can have (keys begin with a provider), an
    /// eventually consistent read of nothing: half a read unit, no write. A failure here
    /// is no reason not to start; the claim that needs the connection will open it.
    pub async fn warm(&self, connections: usize) {
        let reads = (0..connections).map(|_| {
            self.client
                .get_item()
                .table_name(&self.table_name)
                .key(attribute::KEY, AttributeValue::S(" warm-up".to_owned()))
                .projection_expression("#key")
                .expression_attribute_names("#key", attribute::KEY)
                .send()
        });
        let failures = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .filter(Result::is_err)
            .count();
        if failures > 0 {
            tracing::warn!(
                failures,
                connections,
                "some of the table's connections could not be opened at init"
            );
        }
    }

    /// Checks with one `DescribeTable` call that the table exists and is keyed by
    /// `idempotency_key`, which also warms the connection: a wrong table fails the init, and
    /// the first claim after a cold start does not pay for a TLS handshake.
    pub async fn connect(
        client: aws_sdk_dynamodb::Client,
        table_name: String,
    ) -> Result<Self, StoreError> {
        let output = client
            .describe_table()
            .table_name(&table_name)
            .send()
            .await
            .map_err(|error| {
                StoreError::Unavailable(format!(
                    "cannot reach the table {table_name}: {}",
                    DisplayErrorContext(&error)
                ))
            })?;
        let partition_key = output
            .table()
            .map(|table| table.key_schema())
            .unwrap_or_default()
            .iter()
            .find(|element| element.key_type() == &KeyType::Hash)
            .map(|element| element.attribute_name());
        if partition_key != Some(attribute::KEY) {
            return Err(StoreError::Unavailable(format!(
                "the table {table_name} must have the partition key {}, not {}",
                attribute::KEY,
                partition_key.unwrap_or("none")
            )));
        }
        Ok(Self::new(client, table_name))
    }

    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// One conditional `UpdateItem` on the item named `item_key`. With `returning`, the item
    /// comes back: as written on success, as found when the condition failed.
    async fn update(
        &self,
        item_key: &str,
        expressions @ (update, condition): (&str, &str),
        values: Vec<(&str, AttributeValue)>,
        returning: bool,
    ) -> Result<Written, StoreError> {
        let names = attribute::ALIASES
            .iter()
            .filter(|(alias, _)| mentions(update, alias) || mentions(condition, alias))
            .copied();
        update_conditionally(
            &self.client,
            &self.table_name,
            (attribute::KEY, item_key.to_owned()),
            expressions,
            names,
            values,
            returning,
        )
        .await
        .map_err(StoreError::Unavailable)
    }

    async fn write_claim(
        &self,
        request: &ClaimRequest<'_>,
        clock: &ClaimClock,
        write: &ClaimWrite,
    ) -> Result<Written, StoreError> {
        let (update, condition) = write.expressions(request.archive.is_some());
        let expressions = (update.as_str(), condition);
        let candidates = [
            (":archive", string(request.archive.unwrap_or_default())),
            (":in_progress", string(Status::InProgress.as_str())),
            (":holder", string(&new_holder())),
            (":lease", number(clock.lease_expires_ms)),
            (":ttl", number(clock.expires_s)),
            (":updated", number(wall_clock_ms())),
            (":hash", string(request.payload_hash)),
            (":zero", number(0)),
            (":one", number(1)),
            (":now_ms", number(clock.now_ms)),
            (":now_s", number(clock.now_s)),
        ];
        // DynamoDB refuses a value the expressions do not use, and the two claim writes use
        // different ones.
        let values = candidates
            .into_iter()
            .filter(|(placeholder, _)| {
                mentions(expressions.0, placeholder) || mentions(expressions.1, placeholder)
            })
            .collect();
        self.update(request.key.as_str(), expressions, values, true)
            .await
    }

    /// The item of `key`, read strongly consistently: all of it, or only `attribute`.
    async fn read(
        &self,
        key: &IdempotencyKey,
        attribute: Option<&str>,
    ) -> Result<Option<Item>, StoreError> {
        let mut request = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .key(attribute::KEY, string(key.as_str()))
            .consistent_read(true);
        if let Some(name) = attribute {
            request = request
                .projection_expression("#only")
                .expression_attribute_names("#only", name);
        }
        let output = request.send().await.map_err(|error| {
            StoreError::Unavailable(format!(
                "GetItem on {} failed: {}",
                self.table_name,
                DisplayErrorContext(&error)
            ))
        })?;
        Ok(output.item)
    }

    /// A write conditional on holding `claim`; a failed condition means the claim was lost.
    async fn update_held(
        &self,
        claim: &HeldClaim,
        update: &str,
        mut values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        values.extend([
            (":holder", string(&claim.holder)),
            (":in_progress", string(Status::InProgress.as_str())),
        ]);
        match self
            .update(claim.key.as_str(), (update, HOLDING), values, false)
            .await?
        {
            Written::Done(_) => Ok(()),
            Written::Refused(_) => Err(StoreError::ClaimLost {
                key: claim.key.clone(),
            }),
        }
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        let clock = ClaimClock::of(&request);
        let found = match self.write_claim(&request, &clock, &TAKE_OVER).await? {
            Written::Done(item) => return acquired(request.key, &item),
            Written::Refused(found) => Record::parse(request.key, found)?,
        };
        if found.expires_s > clock.now_s {
            return found.refusal(request.key);
        }
        match self.write_claim(&request, &clock, &START_AFRESH).await? {
            Written::Done(item) => acquired(request.key, &item),
            // Another claimant replaced the expired record first.
            Written::Refused(found) => Record::parse(request.key, found)?.refusal(request.key),
        }
    }

    async fn record_body(&self, sighting: BodySighting<'_>) -> Result<FirstSeen, StoreError> {
        let name = sighting.record_name();
        let now = sighting.now.unix_timestamp_nanos();
        let values = vec![
            (":first", string(sighting.key.as_str())),
            (
                ":ttl",
                number(ceil_div(
                    nanos_after(sighting.now, sighting.retention),
                    NANOS_PER_S,
                )),
            ),
            (":updated", number(wall_clock_ms())),
            (":now_s", number(now.div_euclid(NANOS_PER_S))),
        ];
        match self.update(&name, SIGHT, values, true).await? {
            Written::Done(_) => Ok(FirstSeen::ThisEvent),
            Written::Refused(found) => {
                let first = match found
                    .as_ref()
                    .and_then(|item| item.get(attribute::FIRST_KEY))
                {
                    Some(AttributeValue::S(first)) => first.clone(),
                    _ => {
                        return Err(StoreError::Unavailable(format!(
                            "the body sighting {name} has a missing or malformed `{}`",
                            attribute::FIRST_KEY
                        )))
                    }
                };
                if first == sighting.key.as_str() {
                    return Ok(FirstSeen::ThisEvent);
                }
                let first = IdempotencyKey::try_from(first).map_err(|error| {
                    StoreError::Unavailable(format!("the body sighting {name}: {error}"))
                })?;
                Ok(FirstSeen::Another(first))
            }
        }
    }

    async fn is_recorded(
        &self,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let Some(item) = self.read(key, Some(attribute::EXPIRES_AT)).await? else {
            return Ok(false);
        };
        let expires_s = match item.get(attribute::EXPIRES_AT) {
            Some(AttributeValue::N(value)) => value
                .parse::<i128>()
                .map_err(|_| malformed(key, attribute::EXPIRES_AT))?,
            _ => return Err(malformed(key, attribute::EXPIRES_AT)),
        };
        Ok(expires_s > now.unix_timestamp_nanos().div_euclid(NANOS_PER_S))
    }

    async fn mark_action_done(&self, claim: &HeldClaim, action: &str) -> Result<(), StoreError> {
        self.update_held(
            claim,
            "ADD #done :action SET #updated = :updated",
            vec![
                (":action", AttributeValue::Ss(vec![action.to_owned()])),
                (":updated", number(wall_clock_ms())),
            ],
        )
        .await
    }

    async fn complete(
        &self,
        claim: &HeldClaim,
        finishing_action: Option<&str>,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let mut values = vec![
            (":completed", string(Status::Completed.as_str())),
            (
                ":ttl",
                number(ceil_div(nanos_after(now, retention), NANOS_PER_S)),
            ),
            (":updated", number(wall_clock_ms())),
        ];
        let update = match finishing_action {
            None => {
                "SET #status = :completed, #expires = :ttl, #updated = :updated \
                 REMOVE #holder, #lease"
            }
            Some(action) => {
                values.push((":action", AttributeValue::Ss(vec![action.to_owned()])));
                "SET #status = :completed, #expires = :ttl, #updated = :updated \
                 ADD #done :action REMOVE #holder, #lease"
            }
        };
        self.update_held(claim, update, values).await
    }

    async fn release(
        &self,
        claim: &HeldClaim,
        failure: Option<&Failure>,
    ) -> Result<(), StoreError> {
        let mut values = vec![(":zero", number(0)), (":updated", number(wall_clock_ms()))];
        let update = match failure {
            None => "SET #lease = :zero, #updated = :updated",
            Some(failure) => {
                let bounded = crate::dead_letters::bounded_reason;
                values.push((":error", string(&bounded(&failure.reason))));
                values.push((
                    ":failed",
                    AttributeValue::M(
                        failure
                            .actions
                            .iter()
                            .map(|(action, error)| (action.clone(), string(&bounded(error))))
                            .collect(),
                    ),
                ));
                "SET #lease = :zero, #updated = :updated, #error = :error, #failed = :failed"
            }
        };
        self.update_held(claim, update, values).await
    }

    async fn record(
        &self,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<EventRecord>, StoreError> {
        let Some(item) = self.read(key, None).await? else {
            return Ok(None);
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.clone()),
            _ => None,
        };
        let (last_error, archive) = (text(attribute::LAST_ERROR), text(attribute::ARCHIVE));
        let failed_actions = match item.get(attribute::FAILED_ACTIONS) {
            None => BTreeMap::new(),
            Some(AttributeValue::M(failed)) => failed
                .iter()
                .map(|(action, error)| match error {
                    AttributeValue::S(error) => Ok((action.clone(), error.clone())),
                    _ => Err(malformed(key, attribute::FAILED_ACTIONS)),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(malformed(key, attribute::FAILED_ACTIONS)),
        };
        let updated_ms = match item.get(attribute::UPDATED_AT) {
            Some(AttributeValue::N(value)) => value.parse::<i128>().ok(),
            _ => None,
        };
        let record = Record::parse(key, Some(item))?;
        let expires_at = instant(record.expires_s * NANOS_PER_S)
            .ok_or_else(|| malformed(key, attribute::EXPIRES_AT))?;
        if expires_at <= now {
            return Ok(None);
        }
        Ok(Some(EventRecord {
            status: record.status,
            attempts: record.attempts,
            done_actions: record.done_actions,
            lease_expires_at: match record.status {
                Status::InProgress => record
                    .lease_expires_ms
                    .and_then(|ms| instant(ms * NANOS_PER_MS)),
                Status::Completed => None,
            },
            expires_at,
            last_error,
            failed_actions,
            archive,
            updated_at: updated_ms.and_then(|ms| instant(ms * NANOS_PER_MS)),
        }))
    }
}

fn instant(nanos: i128) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// One conditional `UpdateItem` on the item whose `key_attribute` is `key`, with `names`
/// mapping the expressions' aliases to attributes. With `returning`, the item comes back: as
/// written on success, as found when the condition failed. An error says which table and
/// gives the SDK's whole account of it. Every conditional write of hookgate's tables is
/// one of these.
pub async fn update_conditionally<'a>(
    client: &aws_sdk_dynamodb::Client,
    table_name: &str,
    (key_attribute, key): (&str, String),
    (update, condition): (&str, &str),
    names: impl IntoIterator<Item = (&'a str, &'a str)>,
    values: Vec<(&str, AttributeValue)>,
    returning: bool,
) -> Result<Written, String> {
    let mut request = client
        .update_item()
        .table_name(table_name)
        .key(key_attribute, AttributeValue::S(key))
        .update_expression(update)
        .condition_expression(condition)
        .set_expression_attribute_names(Some(
            names
                .into_iter()
                .map(|(alias, name)| (alias.to_owned(), name.to_owned()))
                .collect(),
        ))
        .set_expression_attribute_values(Some(
            values
                .into_iter()
                .map(|(placeholder, value)| (placeholder.to_owned(), value))
                .collect(),
        ));
    if returning {
        request = request
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    }
    match request.send().await {
        Ok(output) => Ok(Written::Done(output.attributes.unwrap_or_default())),
        Err(error) => match error.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                Ok(Written::Refused(failed.item().cloned()))
            }
            _ => Err(format!(
                "UpdateItem on {table_name} failed: {}",
                DisplayErrorContext(&error)
            )),
        },
    }
}

/// What a conditional write came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// The item as written (empty unless asked for).
    Done(Item),
    /// The condition failed; the item as found, when asked for and there was one.
    Refused(Option<Item>),
}

/// A claim's instants in the units the item keeps, rounded as the module documents.
struct ClaimClock {
    now_ms: i128,
    now_s: i128,
    lease_expires_ms: i128,
    expires_s: i128,
}

const NANOS_PER_MS: i128 = 1_000_000;
const NANOS_PER_S: i128 = 1_000_000_000;

impl ClaimClock {
    fn of(request: &ClaimRequest<'_>) -> Self {
        let now = request.now.unix_timestamp_nanos();
        Self {
            now_ms: now.div_euclid(NANOS_PER_MS),
            now_s: now.div_euclid(NANOS_PER_S),
            lease_expires_ms: ceil_div(nanos_after(request.now, request.lease), NANOS_PER_MS),
            expires_s: ceil_div(nanos_after(request.now, request.retention), NANOS_PER_S),
        }
    }
}

/// `start + duration` in epoch nanoseconds; no configured duration can overflow an `i128`.
fn nanos_after(start: OffsetDateTime, duration: Duration) -> i128 {
    start
        .unix_timestamp_nanos()
        .saturating_add(i128::try_from(duration.as_nanos()).unwrap_or(i128::MAX))
}

fn ceil_div(value: i128, divisor: i128) -> i128 {
    -(-value).div_euclid(divisor)
}

fn wall_clock_ms() -> i128 {
    OffsetDateTime::now_utc()
        .unix_timestamp_nanos()
        .div_euclid(NANOS_PER_MS)
}

fn string(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn number(value: i128) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Whether `expression` uses the alias or placeholder `token` (and not merely one that
/// starts with it).
fn mentions(expression: &str, token: &str) -> bool {
    expression.match_indices(token).any(|(at, _)| {
        !expression[at + token.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The claim just written.
fn acquired(key: &IdempotencyKey, item: &Item) -> Result<Claim, StoreError> {
    let record = Record::parse(key, Some(item.clone()))?;
    let holder = record
        .holder
        .ok_or_else(|| malformed(key, attribute::HOLDER))?;
    Ok(Claim::Acquired(HeldClaim {
        key: key.clone(),
        holder,
        attempt: record.attempts,
        done_actions: record.done_actions,
        first_payload_hash: record.payload_hash,
    }))
}

/// An item as read back from DynamoDB.
struct Record {
    status: Status,
    holder: Option<String>,
    lease_expires_ms: Option<i128>,
    expires_s: i128,
    payload_hash: String,
    attempts: u32,
    done_actions: BTreeSet<String>,
}

impl Record {
    fn parse(key: &IdempotencyKey, item: Option<Item>) -> Result<Self, StoreError> {
        let item = item.ok_or_else(|| {
            StoreError::Unavailable(format!(
                "DynamoDB refused a write on {key} without returning the item that refused it"
            ))
        })?;
        let text = |name: &'static str| match item.get(name) {
            Some(AttributeValue::S(value)) => Ok(value.clone()),
            _ => Err(malformed(key, name)),
        };
        let integer = |name: &'static str| match item.get(name) {
            Some(AttributeValue::N(value)) => {
                value.parse::<i128>().map_err(|_| malformed(key, name))
            }
            _ => Err(malformed(key, name)),
        };
        let status = match text(attribute::STATUS)? {
            value if value == Status::InProgress.as_str() => Status::InProgress,
            value if value == Status::Completed.as_str() => Status::Completed,
            _ => return Err(malformed(key, attribute::STATUS)),
        };
        let done_actions = match item.get(attribute::DONE_ACTIONS) {
            None => BTreeSet::new(),
            Some(AttributeValue::Ss(actions)) => actions.iter().cloned().collect(),
            Some(_) => return Err(malformed(key, attribute::DONE_ACTIONS)),
        };
        Ok(Self {
            status,
            holder: text(attribute::HOLDER).ok(),
            lease_expires_ms: integer(attribute::LEASE_EXPIRES_AT).ok(),
            expires_s: integer(attribute::EXPIRES_AT)?,
            payload_hash: text(attribute::PAYLOAD_HASH)?,
            attempts: u32::try_from(integer(attribute::ATTEMPTS)?)
                .map_err(|_| malformed(key, attribute::ATTEMPTS))?,
            done_actions,
        })
    }

    /// Why a live record refused a claim.
    fn refusal(self, key: &IdempotencyKey) -> Result<Claim, StoreError> {
        match self.status {
            Status::Completed => Ok(Claim::Completed),
            Status::InProgress => {
                let lease_expires_ms = self
                    .lease_expires_ms
                    .ok_or_else(|| malformed(key, attribute::LEASE_EXPIRES_AT))?;
                let lease_expires_at = OffsetDateTime::from_unix_timestamp_nanos(
                    lease_expires_ms.saturating_mul(NANOS_PER_MS),
                )
                .map_err(|_| malformed(key, attribute::LEASE_EXPIRES_AT))?;
                Ok(Claim::InFlight { lease_expires_at })
            }
        }
    }
}

/// A record this adapter cannot have written: answered as unavailable, so the message is
/// retried (and the item can be fixed or deleted) rather than acted on blindly.
fn malformed(key: &IdempotencyKey, attribute: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the idempotency record for {key} has a missing or malformed `{attribute}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_is_found_only_as_a_whole_word() {
        assert!(mentions("SET #lease = :lease", "#lease"));
        assert!(mentions("#expires <= :now_s", ":now_s"));
        assert!(!mentions("#expires <= :now_ms", ":now"));
        assert!(!mentions("SET #holder = :holder_x", ":holder"));
    }

    #[test]
    fn stored_instants_round_up_and_now_rounds_down() {
        let now = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_400_000_001)
            .expect("a valid instant");
        let clock = ClaimClock::of(&ClaimRequest {
            key: &IdempotencyKey::from_stable_id(crate::provider::Provider::Github, "d-1")
                .expect("a valid id"),
            payload_hash: "h",
            now,
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(3_600),
            archive: None,
        });
        assert_eq!(clock.now_ms, 1_700_000_000_400);
        assert_eq!(clock.now_s, 1_700_000_000);
        assert_eq!(clock.lease_expires_ms, 1_700_000_060_401);
        assert_eq!(clock.expires_s, 1_700_003_601);
    }

    #[test]
    fn whole_seconds_are_kept_exactly() {
        assert_eq!(ceil_div(5 * NANOS_PER_S, NANOS_PER_S), 5);
        assert_eq!(ceil_div(-5 * NANOS_PER_S - 1, NANOS_PER_S), -5);
        assert_eq!(ceil_div(0, NANOS_PER_MS), 0);
    }
}
