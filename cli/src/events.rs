//! `hookgate events list | show` and `hookgate tail`: what arrived and where each event
//! stands, from the archive and the idempotency records, on `hookgate dev`'s file or a
//! deployed stack.
//!
//! `tail` follows the same two sources rather than the processor's logs: the archive has
//! every event the processor takes up, the records have every outcome, and neither depends
//! on the log level (`LogLevel` WARN drops the lines that say an action succeeded) nor on a
//! logs permission; it reads only what was archived since its last look.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use hookgate::archive::ArchiveQuery;
use hookgate::claims::EventRecord;
use hookgate::idempotency::IdempotencyKey;
use hookgate::provider::Provider;
use hookgate::routes::EventPattern;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::gateway::{
    format_instant, parse_when, Gateway, GatewayError, Inspected, Target, STATES,
};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,

    #[command(flatten)]
    pub target: Target,

    /// Print the result as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Which archived events: the filters `list`, `tail` and `replay` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EventFilter {
    /// Only this provider's events.
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<Provider>,

    /// Only event types matching this pattern: an exact type, `prefix.*`, or `*`.
    #[arg(long = "type", value_name = "PATTERN")]
    pub event_type: Option<String>,

    /// Only events where they stand now: completed, in_progress, failed, pending or
    /// unclaimed (no record: no route took it, it is still queued, or the record expired).
    #[arg(long, value_name = "STATE", value_parser = clap::builder::PossibleValuesParser::new(STATES))]
    pub status: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// List archived events, oldest received first, with where each stands.
    List {
        #[command(flatten)]
        filter: EventFilter,

        /// Received at or after this: RFC 3339, a day (2026-11-24) or a time ago (6h, 7d).
        #[arg(long, default_value = "24h", value_name = "WHEN")]
        since: String,

        /// Received before this.
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,

        /// At most this many.
        #[arg(long, default_value_t = 50)]
        max: usize,
    },
    /// Show one event: its envelope as archived, and its idempotency record (status,
    /// attempts, each action's outcome, the last error and when).
    Show {
        /// The idempotency key, as `list` and the processor's log print it.
        key: IdempotencyKey,

        /// Where to search the archive when the event has no record any more.
        #[arg(long, default_value = "30d", value_name = "WHEN")]
        since: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("{0}")]
    Usage(String),
    #[error("sending {key} failed after {sent} of {total} were sent: {reason}")]
    ReplayStopped {
        key: IdempotencyKey,
        sent: usize,
        total: usize,
        reason: String,
    },
    #[error("the archive of {gateway} has no event {key} received since {since}; try an earlier --since")]
    NotFound {
        gateway: String,
        key: IdempotencyKey,
        since: String,
    },
}

pub async fn run(args: &EventsArgs) -> Result<(), EventsError> {
    let now = OffsetDateTime::now_utc();
    match &args.command {
        EventsCommand::List {
            filter,
            since,
            until,
            max,
        } => {
            // Checked before anything is opened: a typo is told at once.
            let query = filter.query(since, until.as_deref(), now)?;
            let gateway = args.target.open().await?;
            let events = list(&gateway, &query, filter, *max, now).await?;
            if args.json {
                let items: Vec<Value> = events.iter().map(|event| summary(event, now)).collect();
                outln!("{}", Value::Array(items));
            } else {
                out!("{}", table(&events, now));
                if events.len() == *max {
                    eprintln!(
                        "(the first {max}: narrow with --since, --until or the filters, or raise --max)"
                    );
                }
            }
        }
        EventsCommand::Show { key, since } => {
            let since_at = parse_when(since, now).map_err(EventsError::Usage)?;
            let gateway = args.target.open().await?;
            let event =
                gateway
                    .find(key, since_at, now)
                    .await?
                    .ok_or_else(|| EventsError::NotFound {
                        gateway: gateway.name.clone(),
                        key: key.clone(),
                        since: format_instant(since_at),
                    })?;
            let detail = detail(&event, now);
            if args.json {
                outln!("{detail}");
            } else {
                out!("{}", shown(&event, &detail, now));
            }
        }
    }
    Ok(())
}

impl EventFilter {
    /// The archive query for these filters and the time range.
    pub fn query(
        &self,
        since: &str,
        until: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<ArchiveQuery, EventsError> {
        let since = parse_when(since, now).map_err(EventsError::Usage)?;
        let until = until
            .map(|until| parse_when(until, now))
            .transpose()
            .map_err(EventsError::Usage)?;
        if until.is_some_and(|until| until <= since) {
            return Err(EventsError::Usage(
                "--until must come after --since".to_owned(),
            ));
        }
        let event_type = self
            .event_type
            .as_deref()
            .map(EventPattern::parse)
            .transpose()
            .map_err(|error| EventsError::Usage(format!("--type: {error}")))?;
        Ok(ArchiveQuery {
            until,
            provider: self.provider,
            event_type,
            ..ArchiveQuery::since(since)
        })
    }
}

/// Up to `max` archived events `query` and the status filter take, with their records.
/// The status is known only from the record, so with a status filter the archive is read
/// further, a page of `max` at a time.
pub async fn list(
    gateway: &Gateway,
    query: &ArchiveQuery,
    filter: &EventFilter,
    max: usize,
    now: OffsetDateTime,
) -> Result<Vec<Inspected>, EventsError> {
    let Some(status) = &filter.status else {
        let events = gateway
            .archive
            .list(query, max)
            .await
            .map_err(GatewayError::from)?;
        return Ok(gateway.inspect(events, now).await?);
    };
    // The archive answers in received order: each page starts at the last instant the
    // previous one reached, and skips the events it had already.
    let mut taken = Vec::new();
    let mut had: HashSet<IdempotencyKey> = HashSet::new();
    let mut query = query.clone();
    let page = max.clamp(50, 1_000);
    loop {
        let events = gateway
            .archive
            .list(&query, page)
            .await
            .map_err(GatewayError::from)?;
        let full = events.len() == page;
        let last = events.last().map(|event| event.envelope.received_at);
        let fresh: Vec<_> = events
            .into_iter()
            .filter(|event| had.insert(event.envelope.idempotency_key.clone()))
            .collect();
        for event in gateway.inspect(fresh, now).await? {
            if event.state(now) == status {
                taken.push(event);
                if taken.len() == max {
                    return Ok(taken);
                }
            }
        }
        match (full, last) {
            (true, Some(last)) if last > query.since => query.since = last,
            // The archive has no more, or a whole page shares one instant: stop there.
            _ => return Ok(taken),
        }
    }
}

/// One line of `events list --json`, and of `tail --json`: the event and where it stands.
pub fn summary(inspected: &Inspected, now: OffsetDateTime) -> Value {
    let envelope = &inspected.event.envelope;
    let record = inspected.record.as_ref();
    json!({
        "idempotency_key": envelope.idempotency_key,
        "provider": envelope.provider.as_str(),
        "event_type": envelope.event_type,
        "delivery_id": envelope.delivery_id,
        "received_at": format_instant(envelope.received_at),
        "archived_at": format_instant(inspected.event.archived_at),
        "state": inspected.state(now),
        "attempts": record.map_or(0, |record| record.attempts),
        "actions_done": record.map(|record| record.done_actions.iter().collect::<Vec<_>>()).unwrap_or_default(),
        "last_error": record.and_then(|record| record.last_error.as_deref()),
        "replay_of": envelope.replay.as_ref().map(|replay| replay.of.as_str()),
    })
}

/// Each action the record knows of, and its outcome: `succeeded`, or `failed` with the
/// error of the latest attempt that failed it. An action neither done nor failed yet (a
/// route's action not reached) is not in the record.
fn action_outcomes(record: &EventRecord) -> Vec<Value> {
    let mut outcomes: Vec<Value> = record
        .done_actions
        .iter()
        .map(|action| json!({ "name": action, "outcome": "succeeded" }))
        .collect();
    outcomes.extend(
        record
            .failed_actions
            .iter()
            .filter(|(action, _)| !record.done_actions.contains(*action))
            .map(|(action, error)| json!({ "name": action, "outcome": "failed", "error": error })),
    );
    outcomes
}

/// `events show --json`: the summary, the whole record, and the envelope as archived.
pub fn detail(inspected: &Inspected, now: OffsetDateTime) -> Value {
    let mut detail = summary(inspected, now);
    detail["archive"] = json!(inspected.event.location);
    detail["record"] = inspected.record.as_ref().map_or(Value::Null, record_json);
    detail["envelope"] = serde_json::to_value(hookgate::envelope::Envelope::V1(
        inspected.event.envelope.clone(),
    ))
    .unwrap_or(Value::Null);
    detail
}

fn record_json(record: &EventRecord) -> Value {
    json!({
        "status": record.status.as_str(),
        "attempts": record.attempts,
        "actions_done": record.done_actions,
        "actions": action_outcomes(record),
        "last_error": record.last_error,
        "lease_expires_at": record.lease_expires_at.map(format_instant),
        "updated_at": record.updated_at.map(format_instant),
        "expires_at": format_instant(record.expires_at),
    })
}

/// `events list` as a table.
fn table(events: &[Inspected], now: OffsetDateTime) -> String {
    let mut out = format!(
        "{:<24}  {:<11}  {:>8}  {:<28}  {}\n",
        "RECEIVED", "STATE", "ATTEMPTS", "EVENT TYPE", "KEY"
    );
    for event in events {
        let envelope = &event.event.envelope;
        out.push_str(&format!(
            "{:<24}  {:<11}  {:>8}  {:<28}  {}\n",
            format_instant(envelope.received_at),
            event.state(now),
            event.record.as_ref().map_or(0, |record| record.attempts),
            envelope.event_type,
            envelope.idempotency_key
        ));
    }
    out
}

/// `events show` for a person: where the event stands, then its envelope.
fn shown(event: &Inspected, detail: &Value, now: OffsetDateTime) -> String {
    let envelope = &event.event.envelope;
    let mut out = format!(
        "key:          {}\nevent type:   {} ({})\nreceived:     {}\narchived:     {} in {}\nstate:        {}\n",
        envelope.idempotency_key,
        envelope.event_type,
        envelope.provider,
        format_instant(envelope.received_at),
        format_instant(event.event.archived_at),
        event.event.location,
        event.state(now),
    );
    if let Some(replay) = &envelope.replay {
        out.push_str(&format!(
            "replay of:    {} (generation {})\n",
            replay.of, replay.id
        ));
    }
    match &event.record {
        Some(record) => {
            out.push_str(&format!("attempts:     {}\n", record.attempts));
            let outcomes = action_outcomes(record);
            if outcomes.is_empty() {
                out.push_str("actions:      none done\n");
            }
            for (index, outcome) in outcomes.iter().enumerate() {
                let label = if index == 0 { "actions:" } else { "" };
                let error = outcome["error"]
                    .as_str()
                    .map(|error| format!(": {error}"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{label:<14}{} {}{error}\n",
                    outcome["name"].as_str().unwrap_or_default(),
                    outcome["outcome"].as_str().unwrap_or_default()
                ));
            }
            if let Some(error) = &record.last_error {
                out.push_str(&format!("last error:   {error}\n"));
            }
            if let Some(updated) = record.updated_at {
                out.push_str(&format!("updated:      {}\n", format_instant(updated)));
            }
            out.push_str(&format!(
                "kept until:   {}\n",
                format_instant(record.expires_at)
            ));
        }
        None => out.push_str(
            "record:       none (no route took it, it is still queued, or its record expired)\n",
        ),
    }
    out.push_str("envelope:\n");
    out.push_str(&serde_json::to_string_pretty(&detail["envelope"]).unwrap_or_default());
    out.push('\n');
    out
}

// ---- tail ----

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub target: Target,

    #[command(flatten)]
    pub filter: EventFilter,

    /// How often to look, in seconds.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub interval: f64,

    /// Stop after this many seconds (otherwise Ctrl-C stops it).
    #[arg(long = "for", value_name = "SECS")]
    pub duration: Option<f64>,

    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// How long an event is followed after its last change.
const FOLLOWED_FOR: Duration = Duration::from_secs(15 * 60);

/// The most events followed at once; the oldest is let go first.
const MOST_FOLLOWED: usize = 1_000;

/// How far before the last look `tail` looks again: the processor's clock, which stamps
/// the archive, may run behind this machine's.
const CLOCK_OVERLAP: time::Duration = time::Duration::seconds(5);

/// What `tail` last printed of an event, to print only changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    state: &'static str,
    attempts: u32,
    done: usize,
    last_error: Option<String>,
}

pub async fn tail(args: &TailArgs) -> Result<(), EventsError> {
    if !(args.interval > 0.0 && args.interval <= 60.0) {
        return Err(EventsError::Usage(
            "--interval must be more than 0 and at most 60 seconds".to_owned(),
        ));
    }
    let gateway = args.target.open().await?;
    let started = OffsetDateTime::now_utc();
    let ends = args
        .duration
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs_f64(secs.max(0.0)));
    if !args.json {
        eprintln!("following {} (Ctrl-C to stop)", gateway.name);
    }
    // Events received up to a day before the tail began may still be taken up now.
    let base = args.filter.query("1d", None, started)?;
    let mut looked_at = started;
    let mut followed: HashMap<IdempotencyKey, (Inspected, Seen, tokio::time::Instant)> =
        HashMap::new();
    let mut order: VecDeque<IdempotencyKey> = VecDeque::new();
    let mut announced: HashSet<IdempotencyKey> = HashSet::new();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(args.interval));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = until(ends) => return Ok(()),
        }
        let now = OffsetDateTime::now_utc();
        let query = ArchiveQuery {
            archived_since: Some(looked_at - CLOCK_OVERLAP),
            ..base.clone()
        };
        looked_at = now;
        let arrived = gateway
            .archive
            .list(&query, MOST_FOLLOWED)
            .await
            .map_err(GatewayError::from)?;
        for event in arrived {
            let key = event.envelope.idempotency_key.clone();
            // The overlap finds what came just before the tail began: not followed.
            if !announced.insert(key.clone()) || event.archived_at < started {
                continue;
            }
            let inspected = Inspected {
                event,
                record: None,
            };
            print_change(&inspected, "received", now, args.json);
            let seen = Seen {
                state: "received",
                attempts: 0,
                done: 0,
                last_error: None,
            };
            followed.insert(key.clone(), (inspected, seen, tokio::time::Instant::now()));
            order.push_back(key);
            while order.len() > MOST_FOLLOWED {
                if let Some(oldest) = order.pop_front() {
                    followed.remove(&oldest);
                }
            }
        }
        let mut done = Vec::new();
        for (key, (inspected, seen, changed)) in &mut followed {
            inspected.record = gateway
                .store
                .record(key, now)
                .await
                .map_err(GatewayError::from)?;
            let state = inspected.state(now);
            let current = Seen {
                state,
                attempts: inspected
                    .record
                    .as_ref()
                    .map_or(0, |record| record.attempts),
                done: inspected
                    .record
                    .as_ref()
                    .map_or(0, |record| record.done_actions.len()),
                last_error: inspected
                    .record
                    .as_ref()
                    .and_then(|record| record.last_error.clone()),
            };
            if current != *seen && !(state == crate::gateway::UNCLAIMED && seen.state == "received")
            {
                print_change(inspected, state, now, args.json);
                *seen = current;
                *changed = tokio::time::Instant::now();
            }
            if state == "completed" || changed.elapsed() > FOLLOWED_FOR {
                done.push(key.clone());
            }
        }
        for key in done {
            followed.remove(&key);
            order.retain(|followed| *followed != key);
        }
        // Keep the announced set from growing without bound: what is no longer followed
        // and was archived before the overlap cannot come back in a listing.
        if announced.len() > 10 * MOST_FOLLOWED {
            announced.retain(|key| followed.contains_key(key));
        }
    }
}

async fn until(end: Option<tokio::time::Instant>) {
    match end {
        Some(end) => tokio::time::sleep_until(end).await,
        None => std::future::pending().await,
    }
}

/// One line of `tail`: the event, its state now, and what the record says of it.
fn print_change(inspected: &Inspected, state: &str, now: OffsetDateTime, as_json: bool) {
    let envelope = &inspected.event.envelope;
    if as_json {
        let mut line = summary(inspected, now);
        line["state"] = json!(state);
        line["at"] = json!(format_instant(now));
        outln!("{line}");
        return;
    }
    let detail = match (state, inspected.record.as_ref()) {
        ("received", _) => format!("({})", envelope.event_type),
        ("completed", Some(record)) => format!(
            "attempt {}, actions done: {}",
            record.attempts,
            record
                .done_actions
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ("failed", Some(record)) => format!(
            "attempt {}: {}",
            record.attempts,
            record.last_error.as_deref().unwrap_or("")
        ),
        (_, Some(record)) => format!("attempt {}", record.attempts),
        _ => String::new(),
    };
    let time = format_instant(now);
    outln!(
        "{}  {:<11}  {}  {detail}",
        &time[11..23],
        state,
        envelope.idempotency_key
    );
}
