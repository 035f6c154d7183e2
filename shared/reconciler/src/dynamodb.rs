//! The DynamoDB adapter of [`ReconcilerState`]: a small table of its own (partition key
//! `state_key`, a string), written only by conditional `UpdateItem`s.
//!
//! | item | attributes |
//! |---|---|
//! | `cursor#{hook}` | `version` (N), `covered_until_ms` (N), `walk_next` (S), `walk_down_to_ms` (N), `walk_started_ms` (N); the walk's only while one is unfinished |
//! | `redelivery#{guid}` | `status` (`IN_PROGRESS` or `REQUESTED`), `holder` (S), `lease_expires_ms` (N), `requests` (N), `last_requested_attempt` (N, the attempt last asked for), `expires_at` (N, the table's TTL) |

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use hookgate::aws::{update_conditionally, Written};
use time::OffsetDateTime;

use crate::hooks::Hook;
use crate::state::{
    new_holder, Begin, Cursor, CursorPosition, ReconcilerState, RedeliveryRequest, StateError,
    Ticket, Walk,
};

/// The partition key.
pub const KEY: &str = "state_key";

const IN_PROGRESS: &str = "IN_PROGRESS";
const REQUESTED: &str = "REQUESTED";

type Item = HashMap<String, AttributeValue>;

/// The reconciler's state in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: aws_sdk_dynamodb::Client,
    table_name: String,
}

impl DynamoState {
    /// Checks with one `DescribeTable` call that the table exists (which also warms the
    /// connection).
    pub async fn connect(
        client: aws_sdk_dynamodb::Client,
        table_name: String,
    ) -> Result<Self, StateError> {
        client
            .describe_table()
            .table_name(&table_name)
            .send()
            .await
            .map_err(|error| {
                StateError(format!(
                    "cannot reach the table {table_name}: {}",
                    DisplayErrorContext(&error)
                ))
            })?;
        Ok(Self { client, table_name })
    }

    /// One conditional `UpdateItem` on the item keyed `key`.
    async fn update(
        &self,
        key: String,
        update: &str,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        returning: bool,
    ) -> Result<Written, StateError> {
        update_conditionally(
            &self.client,
            &self.table_name,
            (KEY, key),
            (update, condition),
            names.iter().copied(),
            values,
            returning,
        )
        .await
        .map_err(StateError)
    }

    /// A write only the ticket's holder may make; anyone else's is dropped, as the port says.
    async fn update_held(
        &self,
        ticket: &Ticket,
        update: &str,
        names: &[(&str, &str)],
        mut values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StateError> {
        values.extend([
            (":holder", string(&ticket.holder)),
            (":in_progress", string(IN_PROGRESS)),
        ]);
        let mut names = names.to_vec();
        names.extend([("#holder", "holder"), ("#status", "status")]);
        self.update(
            redelivery_key(&ticket.guid),
            update,
            "#holder = :holder AND #status = :in_progress",
            &names,
            values,
            false,
        )
        .await
        .map(drop)
    }
}

fn cursor_key(hook: &Hook) -> String {
    format!("cursor#{hook}")
}

fn redelivery_key(guid: &str) -> String {
    format!("redelivery#{guid}")
}

fn string(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn number(value: i128) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn millis(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos().div_euclid(1_000_000)
}

fn number_of(item: &Item, name: &str) -> Option<i128> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

fn instant_of(item: &Item, name: &str) -> Option<OffsetDateTime> {
    number_of(item, name)
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms.saturating_mul(1_000_000)).ok())
}

fn text_of<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

#[async_trait]
impl ReconcilerState for DynamoState {
    async fn cursor(&self, hook: &Hook) -> Result<Cursor, StateError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .key(KEY, AttributeValue::S(cursor_key(hook)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| {
                StateError(format!(
                    "GetItem on {} failed: {}",
                    self.table_name,
                    DisplayErrorContext(&error)
                ))
            })?;
        let Some(item) = output.item else {
            return Ok(Cursor::default());
        };
        let walk = match (
            text_of(&item, "walk_next"),
            instant_of(&item, "walk_down_to_ms"),
            instant_of(&item, "walk_started_ms"),
        ) {
            (Some(next_page), Some(down_to), Some(started_at)) => Some(Walk {
                next_page: next_page.to_owned(),
                down_to,
                started_at,
            }),
            _ => None,
        };
        Ok(Cursor {
            position: CursorPosition {
                covered_until: instant_of(&item, "covered_until_ms"),
                walk,
            },
            version: number_of(&item, "version")
                .and_then(|version| u64::try_from(version).ok())
                .unwrap_or(0),
        })
    }

    async fn save_cursor(
        &self,
        hook: &Hook,
        read: &Cursor,
        next: &CursorPosition,
    ) -> Result<bool, StateError> {
        let mut set = vec!["#version = :next"];
        let mut remove = Vec::new();
        let mut values = vec![
            (":next", number(i128::from(read.version) + 1)),
            (":read", number(i128::from(read.version))),
        ];
        match next.covered_until {
            Some(covered) => {
                set.push("#covered = :covered");
                values.push((":covered", number(millis(covered))));
            }
            None => remove.push("#covered"),
        }
        match &next.walk {
            Some(walk) => {
                set.extend([
                    "#walk_next = :walk_next",
                    "#walk_down_to = :walk_down_to",
                    "#walk_started = :walk_started",
                ]);
                values.extend([
                    (":walk_next", string(&walk.next_page)),
                    (":walk_down_to", number(millis(walk.down_to))),
                    (":walk_started", number(millis(walk.started_at))),
                ]);
            }
            None => remove.extend(["#walk_next", "#walk_down_to", "#walk_started"]),
        }
        let mut update = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let written = self
            .update(
                cursor_key(hook),
                &update,
                "attribute_not_exists(#key) OR #version = :read",
                &[
                    ("#key", KEY),
                    ("#version", "version"),
                    ("#covered", "covered_until_ms"),
                    ("#walk_next", "walk_next"),
                    ("#walk_down_to", "walk_down_to_ms"),
                    ("#walk_started", "walk_started_ms"),
                ],
                values,
                false,
            )
            .await?;
        Ok(matches!(written, Written::Done(_)))
    }

    async fn begin_redelivery(&self, request: RedeliveryRequest<'_>) -> Result<Begin, StateError> {
        let holder = new_holder();
        let expires_s = (request.now + request.retention).unix_timestamp();
        let written = self
            .update(
                redelivery_key(request.guid),
                "SET #status = :in_progress, #holder = :holder, #lease = :lease, \
                 #expires = :ttl, #requests = if_not_exists(#requests, :zero)",
                "attribute_not_exists(#key) \
                 OR (#status = :in_progress AND #lease <= :now) \
                 OR (#status = :requested AND #requests < :max \
                     AND (attribute_not_exists(#last) OR #last < :failed))",
                &[
                    ("#key", KEY),
                    ("#status", "status"),
                    ("#holder", "holder"),
                    ("#lease", "lease_expires_ms"),
                    ("#expires", "expires_at"),
                    ("#requests", "requests"),
                    ("#last", "last_requested_attempt"),
                ],
                vec![
                    (":in_progress", string(IN_PROGRESS)),
                    (":requested", string(REQUESTED)),
                    (":holder", string(&holder)),
                    (":lease", number(millis(request.now + request.lease))),
                    (":ttl", number(i128::from(expires_s))),
                    (":zero", number(0)),
                    (":now", number(millis(request.now))),
                    (":max", number(i128::from(request.max_requests))),
                    (":failed", number(i128::from(request.failed_attempt))),
                ],
                true,
            )
            .await?;
        let requests_in = |item: &Item| {
            number_of(item, "requests")
                .and_then(|requests| u32::try_from(requests).ok())
                .unwrap_or(0)
        };
        match written {
            Written::Done(item) => Ok(Begin::Go(Ticket {
                guid: request.guid.to_owned(),
                holder,
                requests: requests_in(&item),
                attempt: request.failed_attempt,
            })),
            Written::Refused(Some(old)) if text_of(&old, "status") == Some(IN_PROGRESS) => {
                Ok(Begin::InFlight)
            }
            Written::Refused(Some(old)) if requests_in(&old) >= request.max_requests => {
                Ok(Begin::Exhausted {
                    requests: requests_in(&old),
                })
            }
            Written::Refused(Some(_)) => Ok(Begin::AlreadyRequested),
            Written::Refused(None) => Err(StateError(format!(
                "DynamoDB refused the claim on {} without the item that refused it",
                request.guid
            ))),
        }
    }

    async fn finish_redelivery(&self, ticket: &Ticket) -> Result<(), StateError> {
        self.update_held(
            ticket,
            "SET #status = :requested, #requests = :requests, #last = :attempt",
            &[
                ("#requests", "requests"),
                ("#last", "last_requested_attempt"),
            ],
            vec![
                (":requested", string(REQUESTED)),
                (":requests", number(i128::from(ticket.requests) + 1)),
                (":attempt", number(i128::from(ticket.attempt))),
            ],
        )
        .await
    }

    async fn abandon_redelivery(&self, ticket: &Ticket) -> Result<(), StateError> {
        self.update_held(
            ticket,
            "SET #lease = :ended",
            &[("#lease", "lease_expires_ms")],
            vec![(":ended", number(0))],
        )
        .await
    }
}
