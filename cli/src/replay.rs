//! `hookgate replay`: archived events sent through the queue again.
//!
//! By default an event goes back exactly as archived, under its own key, so the processor's
//! idempotency gate decides: a completed event is a duplicate, an event whose attempts
//! failed runs only the actions not yet done, and an event without a record (no route took
//! it, or its record expired) runs as new. `--force` sends each event as a new replay
//! generation instead, under the key `{key}#replay-{generation}`, so that its actions (or
//! those `--action` names) run again once, and the agent learns it is a replay from the
//! `Hookgate-Replay-Of` and `Hookgate-Replay-Id` headers.

use std::time::Duration;

use hookgate::envelope::{QueueMessage, Replay};
use hookgate::idempotency::IdempotencyKey;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::events::{self, EventFilter, EventsError};
use crate::gateway::{format_instant, parse_when, Gateway, GatewayError, Inspected, Target};

/// The fastest `--rate` allowed: SQS takes far more, but an agent woken by a replay of a
/// month's events should not be.
const MOST_PER_SECOND: f64 = 1_000.0;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The events to replay, by idempotency key. Without keys, every archived event the
    /// filters and --since take.
    pub keys: Vec<IdempotencyKey>,

    #[command(flatten)]
    pub target: Target,

    #[command(flatten)]
    pub filter: EventFilter,

    /// Events received at or after this (required without keys; with keys, where to search
    /// the archive for an event without a record): RFC 3339, a day or a time ago.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// Events received before this.
    #[arg(long, value_name = "WHEN", requires = "since")]
    pub until: Option<String>,

    /// Run the actions again, as a new replay generation, even where they were done.
    #[arg(long)]
    pub force: bool,

    /// With --force, run only this action again (repeatable); all of the event's otherwise.
    #[arg(long = "action", value_name = "NAME", requires = "force")]
    pub actions: Vec<String>,

    /// Send at most this many events a second.
    #[arg(long, default_value_t = 10.0, value_name = "N")]
    pub rate: f64,

    /// Replay at most this many events.
    #[arg(long, default_value_t = 1_000)]
    pub max: usize,

    /// List what would be sent, and what the idempotency gate would make of it, without
    /// sending anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the summary as JSON (progress goes to stderr either way).
    #[arg(long)]
    pub json: bool,
}

/// A replay's result, for the summary and `--json`.
#[derive(Debug, Clone)]
pub struct Sent {
    pub event: Inspected,
    /// The key the event was (or would be) queued under.
    pub sent_as: IdempotencyKey,
    /// The queue's id for the message, once sent.
    pub message_id: Option<String>,
}

pub async fn run(args: &ReplayArgs) -> Result<(), EventsError> {
    let summary = replay(args).await?;
    if args.json {
        outln!("{summary}");
    } else {
        outln!("{}", summary["summary"].as_str().unwrap_or_default());
    }
    Ok(())
}

/// Replays what `args` name, printing progress to stderr, and answers the summary that
/// `--json` prints.
pub async fn replay(args: &ReplayArgs) -> Result<Value, EventsError> {
    if !(args.rate > 0.0 && args.rate <= MOST_PER_SECOND) {
        return Err(EventsError::Usage(format!(
            "--rate must be more than 0 and at most {MOST_PER_SECOND} events a second"
        )));
    }
    if args.keys.is_empty() && args.since.is_none() {
        return Err(EventsError::Usage(
            "name the events: give their keys, or --since (with --provider, --type, --until, \
             --status to narrow)"
                .to_owned(),
        ));
    }
    let now = OffsetDateTime::now_utc();
    // The time range and filters are checked before anything is opened.
    if let Some(since) = &args.since {
        args.filter.query(since, args.until.as_deref(), now)?;
    }
    let gateway = args.target.open().await?;
    let events = select(&gateway, args, now).await?;
    let generation = args.force.then(generation);
    let plan: Vec<Sent> = events
        .into_iter()
        .map(|event| {
            let sent_as = match &generation {
                Some(generation) => Replay::key(&event.event.envelope.idempotency_key, generation)
                    .ok_or_else(|| {
                        EventsError::Usage(format!(
                            "{} is too long to replay under a key of its own",
                            event.event.envelope.idempotency_key
                        ))
                    })?,
                None => event.event.envelope.idempotency_key.clone(),
            };
            Ok(Sent {
                event,
                sent_as,
                message_id: None,
            })
        })
        .collect::<Result<_, EventsError>>()?;
    let sent = if args.dry_run {
        for (index, item) in plan.iter().enumerate() {
            progress(index, plan.len(), item, "would send", args, now);
        }
        plan
    } else {
        send(&gateway, plan, generation.as_deref(), args, now).await?
    };
    Ok(summary(&sent, generation.as_deref(), args, now))
}

/// The events named by key, or those the filters take.
async fn select(
    gateway: &Gateway,
    args: &ReplayArgs,
    now: OffsetDateTime,
) -> Result<Vec<Inspected>, EventsError> {
    if args.keys.is_empty() {
        let since = args.since.as_deref().unwrap_or("24h");
        let query = args.filter.query(since, args.until.as_deref(), now)?;
        let events = events::list(gateway, &query, &args.filter, args.max, now).await?;
        if events.len() == args.max {
            eprintln!(
                "replaying the first {} events the filters take (--max); more may match",
                args.max
            );
        }
        return Ok(events);
    }
    if args.keys.len() > args.max {
        return Err(EventsError::Usage(format!(
            "{} keys is more than --max ({})",
            args.keys.len(),
            args.max
        )));
    }
    let since =
        parse_when(args.since.as_deref().unwrap_or("30d"), now).map_err(EventsError::Usage)?;
    let mut found = Vec::with_capacity(args.keys.len());
    for key in &args.keys {
        let event = gateway
            .find(key, since, now)
            .await?
            .ok_or_else(|| EventsError::NotFound {
                gateway: gateway.name.clone(),
                key: key.clone(),
                since: format_instant(since),
            })?;
        found.push(event);
    }
    Ok(found)
}

/// A new replay generation: `r{UTC time to the second}-{4 hex digits}`, unique to the run.
fn generation() -> String {
    let now = OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    format!(
        "r{}-{:04x}",
        now.format(&format).unwrap_or_default(),
        fastrand::u16(..)
    )
}

/// Sends each event at `--rate`, printing progress; a failure stops the replay, saying
/// what was sent before it.
async fn send(
    gateway: &Gateway,
    plan: Vec<Sent>,
    generation: Option<&str>,
    args: &ReplayArgs,
    now: OffsetDateTime,
) -> Result<Vec<Sent>, EventsError> {
    let queue = gateway.queue().await?;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let total = plan.len();
    let mut sent = Vec::with_capacity(total);
    for (index, mut item) in plan.into_iter().enumerate() {
        ticks.tick().await;
        let replay = generation.map(|generation| Replay {
            id: generation.to_owned(),
            of: item.event.event.envelope.idempotency_key.clone(),
            actions: (!args.actions.is_empty()).then(|| args.actions.clone()),
        });
        let message = QueueMessage::replayed(&item.event.event, replay).ok_or_else(|| {
            EventsError::Usage(format!(
                "{} is too long to replay under a key of its own",
                item.event.event.envelope.idempotency_key
            ))
        })?;
        match queue.enqueue(&message).await {
            Ok(message_id) => item.message_id = Some(message_id),
            Err(error) => {
                return Err(EventsError::ReplayStopped {
                    key: item.event.event.envelope.idempotency_key.clone(),
                    sent: index,
                    total,
                    reason: GatewayError::from(error).to_string(),
                })
            }
        }
        progress(index, total, &item, "sent", args, now);
        sent.push(item);
    }
    Ok(sent)
}

/// What the idempotency gate will make of an event sent as it was.
fn gate(event: &Inspected, now: OffsetDateTime) -> &'static str {
    match event.state(now) {
        "completed" => "a duplicate: the gate skips it",
        "failed" | "pending" => "the actions not yet done run",
        "in_progress" => "held by a claim now: it waits for it",
        _ => "new to the gate: its actions run",
    }
}

fn progress(
    index: usize,
    total: usize,
    item: &Sent,
    verb: &str,
    args: &ReplayArgs,
    now: OffsetDateTime,
) {
    let envelope = &item.event.event.envelope;
    let outcome = if args.force {
        "its actions run again".to_owned()
    } else {
        gate(&item.event, now).to_owned()
    };
    eprintln!(
        "[{}/{total}] {verb} {} ({}, {}): {outcome}",
        index + 1,
        item.sent_as,
        envelope.event_type,
        item.event.state(now)
    );
}

fn summary(
    sent: &[Sent],
    generation: Option<&str>,
    args: &ReplayArgs,
    now: OffsetDateTime,
) -> Value {
    let count = |state: &str| {
        sent.iter()
            .filter(|item| item.event.state(now) == state)
            .count()
    };
    let verb = if args.dry_run { "would send" } else { "sent" };
    let text = match generation {
        Some(generation) => format!(
            "{verb} {} event(s) as replay generation {generation}: {} run again",
            sent.len(),
            if args.actions.is_empty() {
                "their actions".to_owned()
            } else {
                format!("the actions {}", args.actions.join(", "))
            }
        ),
        None => format!(
            "{verb} {} event(s) through the idempotency gate: {} completed before (skipped), \
             {} failed or unfinished (the actions not yet done run), {} without a record (run as new)",
            sent.len(),
            count("completed"),
            count("failed") + count("pending") + count("in_progress"),
            count(crate::gateway::UNCLAIMED),
        ),
    };
    json!({
        "summary": text,
        "dry_run": args.dry_run,
        "replay_generation": generation,
        "sent": if args.dry_run { 0 } else { sent.len() },
        "events": sent.iter().map(|item| json!({
            "idempotency_key": item.event.event.envelope.idempotency_key,
            "sent_as": item.sent_as,
            "event_type": item.event.event.envelope.event_type,
            "state_before": item.event.state(now),
            "message_id": item.message_id,
        })).collect::<Vec<_>>(),
    })
}
