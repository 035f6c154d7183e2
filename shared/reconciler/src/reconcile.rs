//! The reconciler: GitHub never delivers a webhook again on its own, so every few minutes
//! this reads each watched hook's recent deliveries and asks GitHub to redeliver each event
//! that no attempt delivered and that hookgate has not received.
//!
//! One run, per hook:
//!
//! 1. Read the deliveries newest first, page by page, back to where the last run's reading
//!    began (less [`Settings::overlap`], for attempts that took a while to be listed), or
//!    to the start of GitHub's redelivery window; continue an unfinished walk first.
//! 2. For each event (`guid`) read with no successful attempt: skip it if hookgate has an
//!    idempotency record for it (it arrived after all: a timeout that still queued it, a
//!    redelivery made by hand); otherwise claim its redelivery, ask GitHub to redeliver its
//!    newest failed attempt, and mark it requested.
//! 3. Move the cursor: to this run's start when the reading got back to where it had to,
//!    or to where the walk stopped when pages or time ran out. A run that hit an error
//!    leaves the cursor where it was, so that the next reads the same again; the claims
//!    make that harmless.
//!
//! GitHub's rate limits stop the run at once (the next run carries on), as does the
//! invocation's deadline; the token's remaining requests are watched so that a run never
//! spends the last of them. A run asks for the oldest events first (the nearest to leaving
//! the window), and each hook for at most its share of the run's redeliveries.
//!
//! GitHub's refusals are of two kinds. One of the request as made (400, 422: a delivery
//! too old to redeliver, a page cursor no longer valid) will not change: the redelivery is
//! recorded as made and counted as given up (`RedeliveriesExhausted`), and a saved walk
//! whose page is refused is dropped. Any other (401, a 403 that is not a rate limit, a 404
//! for a hook the token cannot see) is about the token or the hook and holds for every
//! request: the hook's run ends, the cursor waits until someone fixes it, and the
//! `ReconcilerErrors` alarm says so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hookgate::claims::IdempotencyStore;
use hookgate::idempotency::IdempotencyKey;
use hookgate::provider::Provider;
use hookgate::telemetry::Metrics;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::deliveries::{DeliveryAttempt, DeliveryPage, GithubDeliveries, GithubError};
use crate::hooks::Hook;
use crate::state::{Begin, Cursor, CursorPosition, ReconcilerState, RedeliveryRequest, Walk};

/// How a run is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How old a delivery GitHub still redelivers: 3 days on github.com, 7 on GitHub
    /// Enterprise Server.
    pub window: Duration,
    /// Attempts this close to the window's end are left alone: by the time GitHub got the
    /// request, they could be past it.
    pub window_margin: Duration,
    /// How far before the last run's start a run reads again, for attempts listed late
    /// (a delivery is listed once it ended, up to GitHub's 10 s timeout after it began) and
    /// clocks that differ.
    pub overlap: Duration,
    /// The most pages read per hook in one run (100 deliveries each).
    pub max_pages: usize,
    /// The most redeliveries asked for in one run, all hooks together: GitHub allows 80
    /// content-creating requests a minute.
    pub max_redeliveries: usize,
    /// The most times one event is asked for, all runs together: when a redelivery fails
    /// too, hookgate asks again, up to this.
    pub max_requests_per_event: u32,
    /// How long a run's claim on a redelivery is its own.
    pub lease: Duration,
    /// Requests left in the token's rate-limit window below which a run stops, leaving the
    /// rest to whatever else uses the token.
    pub requests_reserve: u32,
    /// The idempotency records' retention, for the redelivery records' own.
    pub record_retention: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3 * 86_400),
            window_margin: Duration::from_secs(10 * 60),
            overlap: Duration::from_secs(2 * 60),
            max_pages: 10,
            max_redeliveries: 60,
            max_requests_per_event: 3,
            lease: Duration::from_secs(120),
            requests_reserve: 20,
            record_retention: Duration::from_secs(8 * 86_400),
        }
    }
}

/// What a run did for one hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HookReport {
    pub hook: String,
    /// Delivery attempts read.
    pub seen: usize,
    /// Events among them with no successful attempt.
    pub failed: usize,
    /// Of those, events hookgate had received all the same.
    pub already_received: usize,
    /// Of those, events whose redelivery was asked for already, or by another run now.
    pub already_requested: usize,
    /// Of those, events given up on: asked for as many times as allowed, or whose
    /// redelivery GitHub refused (too old, say).
    pub exhausted: usize,
    /// Redeliveries this run asked for.
    pub redelivered: usize,
    /// Where the cursor went: `caught_up`, `walk_saved`, `walk_dropped` (GitHub refused the
    /// saved walk's page), `left` (an error or a stop), or `moved_by_another_run`.
    pub cursor: &'static str,
    /// What went wrong, if anything.
    pub errors: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub hooks: Vec<HookReport>,
    /// When GitHub's rate limit stopped the run, when it lifts.
    #[serde(with = "time::serde::rfc3339::option")]
    pub rate_limited_until: Option<OffsetDateTime>,
}

/// Why a hook's reading stopped short.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    RateLimited(OffsetDateTime),
    Deadline,
    /// GitHub is unavailable, or hookgate's own stores are: the next run tries again.
    Failed(String),
    /// GitHub refused a request; trying it again will not help until something changes.
    Refused {
        status: u16,
        reason: String,
    },
}

/// What is left of the run's allowances, shared by its hooks.
#[derive(Debug)]
struct Allowance {
    redeliveries_left: usize,
    /// The most redeliveries one hook may ask for in a run, so that a hook with a long
    /// outage behind it does not leave the others waiting.
    per_hook: usize,
    rate_limited_until: Option<OffsetDateTime>,
}

/// How long before the invocation's deadline no new request starts.
///
/// A run does at most a page read (with its retries) or a redelivery after this point, each
/// bounded by the client's 10 s timeout: 30 s leaves room for that and for writing the
/// cursor.
const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// Tries of a page GitHub answered 5xx, and the pause before each retry.
const PAGE_TRIES: u32 = 3;
const PAGE_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The reconciler.
pub struct Reconciler {
    hooks: Vec<Hook>,
    github: Arc<dyn GithubDeliveries>,
    state: Arc<dyn ReconcilerState>,
    received: Arc<dyn IdempotencyStore>,
    settings: Settings,
    metrics: Metrics,
    clock: hookgate::receiver::Clock,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("hooks", &self.hooks)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    pub fn new(
        hooks: Vec<Hook>,
        github: Arc<dyn GithubDeliveries>,
        state: Arc<dyn ReconcilerState>,
        received: Arc<dyn IdempotencyStore>,
        settings: Settings,
    ) -> Self {
        Self {
            hooks,
            github,
            state,
            received,
            settings,
            metrics: Metrics::stdout(),
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_clock(mut self, clock: hookgate::receiver::Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    /// One run over every hook, stopping new work [`DEADLINE_MARGIN`] before `deadline`.
    pub async fn run(&self, deadline: Option<Instant>) -> RunReport {
        let mut allowance = Allowance {
            redeliveries_left: self.settings.max_redeliveries,
            per_hook: (self.settings.max_redeliveries / self.hooks.len().max(1)).max(1),
            rate_limited_until: None,
        };
        let mut report = RunReport::default();
        for hook in &self.hooks {
            if let Some(until) = allowance.rate_limited_until {
                info!(%hook, %until, "GitHub's rate limit stopped this run; the next run reads this hook");
                report.hooks.push(HookReport {
                    hook: hook.to_string(),
                    cursor: "left",
                    errors: vec![format!("not read: rate limited until {until}")],
                    ..HookReport::default()
                });
                continue;
            }
            let hook_report = self.reconcile(hook, &mut allowance, deadline).await;
            self.count(&hook_report);
            report.hooks.push(hook_report);
        }
        report.rate_limited_until = allowance.rate_limited_until;
        report
    }

    async fn reconcile(
        &self,
        hook: &Hook,
        allowance: &mut Allowance,
        deadline: Option<Instant>,
    ) -> HookReport {
        let mut report = HookReport {
            hook: hook.to_string(),
            cursor: "left",
            ..HookReport::default()
        };
        let cursor = match self.state.cursor(hook).await {
            Ok(cursor) => cursor,
            Err(error) => {
                error!(%hook, %error, "cannot read the hook's cursor");
                report.errors.push(error.to_string());
                return report;
            }
        };
        let now = (self.clock)();
        let window_start = now - self.settings.window + self.settings.window_margin;
        let (mut page, down_to, started_at) = match &cursor.position.walk {
            Some(walk) => (
                Some(walk.next_page.clone()),
                walk.down_to.max(window_start),
                walk.started_at,
            ),
            None => (
                None,
                cursor
                    .position
                    .covered_until
                    .map_or(window_start, |covered| covered - self.settings.overlap)
                    .max(window_start),
                now,
            ),
        };

        let (attempts, reading) = self.read(hook, &mut page, down_to, deadline).await;
        report.seen = attempts.len();
        let mut stop = reading.stop;
        if let Some(Stop::RateLimited(until)) = &stop {
            allowance.rate_limited_until = Some(*until);
        }

        let events = events_to_redeliver(&attempts);
        report.failed = events.len();
        let mut incomplete = stop.is_some();
        // A reading cut short by an error still acts on what it read; one cut short by a
        // rate limit or the deadline cannot.
        let events = match &stop {
            None | Some(Stop::Failed(_) | Stop::Refused { .. }) => events,
            Some(Stop::RateLimited(_) | Stop::Deadline) => Vec::new(),
        };
        let mut share_left = allowance.per_hook;
        for (guid, failed) in events {
            if matches!(stop, Some(Stop::RateLimited(_))) {
                break;
            }
            if allowance.redeliveries_left == 0 || share_left == 0 || near(deadline) {
                info!(%hook, "this run's redeliveries or time are spent; the next run carries on");
                incomplete = true;
                break;
            }
            match self.redeliver(hook, guid, failed, allowance).await {
                Ok(Handled::Redelivered) => {
                    report.redelivered += 1;
                    share_left -= 1;
                }
                Ok(Handled::Received) => report.already_received += 1,
                Ok(Handled::Requested) => report.already_requested += 1,
                // Another run holds the claim: if it dies before asking, the event must be
                // read again once its lease ends, so the cursor waits.
                Ok(Handled::InFlight) => {
                    report.already_requested += 1;
                    incomplete = true;
                }
                Ok(Handled::Exhausted) => report.exhausted += 1,
                Ok(Handled::Refused) => {
                    report.exhausted += 1;
                    share_left -= 1;
                }
                Err(Stop::RateLimited(until)) => {
                    allowance.rate_limited_until = Some(until);
                    stop = Some(Stop::RateLimited(until));
                    incomplete = true;
                }
                // A refused token, an unreachable GitHub or store: the same would most
                // likely meet every other event, so the hook's run ends here, and the next
                // run carries on.
                Err(other) => {
                    report.errors.push(describe(&other));
                    incomplete = true;
                    break;
                }
            }
        }
        if let Some(stop) = &stop {
            report.errors.push(describe(stop));
        }
        if let Some(reason) = reading.walk_lost {
            // Dropping a walk is always safe: the next run reads from the newest page back
            // to the cursor, which covers everything the walk had left.
            report
                .errors
                .push(format!("the saved walk was dropped: {reason}"));
            let next = CursorPosition {
                covered_until: cursor.position.covered_until,
                walk: None,
            };
            report.cursor = self.save(hook, &cursor, &next, false, &mut report).await;
            if report.cursor == "walk_saved" {
                report.cursor = "walk_dropped";
            }
            return report;
        }
        if incomplete || stop.is_some() {
            info!(%hook, errors = ?report.errors, "the cursor stays; the next run reads the same deliveries again");
            return report;
        }

        let next = if reading.reached_the_end {
            CursorPosition {
                covered_until: Some(started_at),
                walk: None,
            }
        } else {
            CursorPosition {
                covered_until: cursor.position.covered_until,
                walk: page.map(|next_page| Walk {
                    next_page,
                    down_to,
                    started_at,
                }),
            }
        };
        report.cursor = self
            .save(hook, &cursor, &next, reading.reached_the_end, &mut report)
            .await;
        report
    }

    /// Reads pages from `page` (the newest when `None`) back to `down_to`. On return,
    /// `page` is the page to go on from, if the reading stopped before the end.
    async fn read(
        &self,
        hook: &Hook,
        page: &mut Option<String>,
        down_to: OffsetDateTime,
        deadline: Option<Instant>,
    ) -> (Vec<DeliveryAttempt>, Reading) {
        let mut attempts = Vec::new();
        for read_before in 0..self.settings.max_pages {
            // Only a saved walk's page can have gone stale; one GitHub has just linked to
            // is refused for another reason, and holds the cursor like any error.
            let resuming_walk = read_before == 0 && page.is_some();
            if near(deadline) {
                return (attempts, Reading::stopped(Stop::Deadline));
            }
            let listed = match self.list(hook, page.as_deref(), deadline).await {
                Ok(listed) => listed,
                // A saved walk's page GitHub no longer serves (its cursor expired, say)
                // would be refused run after run: the walk is dropped, and the next run
                // reads from the newest page back to the cursor, which covers all the walk
                // had left.
                Err(Stop::Refused { status, reason })
                    if resuming_walk && is_about_this_request(status) =>
                {
                    warn!(%hook, status, reason, "GitHub refused a saved page; the walk starts again from the newest");
                    return (attempts, Reading::walk_lost(format!("{status} {reason}")));
                }
                Err(stop) => return (attempts, Reading::stopped(stop)),
            };
            let mut reached = false;
            for attempt in listed.attempts {
                if attempt.delivered_at < down_to {
                    reached = true;
                    break;
                }
                attempts.push(attempt);
            }
            if reached || listed.next.is_none() {
                return (attempts, Reading::to_the_end());
            }
            *page = listed.next;
            if listed
                .requests_left
                .is_some_and(|left| left < self.settings.requests_reserve)
            {
                warn!(%hook, "the token's rate-limit window is nearly spent; the next run carries on");
                return (attempts, Reading::paused());
            }
        }
        info!(%hook, pages = self.settings.max_pages, "more deliveries than a run reads; the next run carries on from here");
        (attempts, Reading::paused())
    }

    /// One page, tried again after a pause while GitHub answers 5xx.
    async fn list(
        &self,
        hook: &Hook,
        page: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<DeliveryPage, Stop> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.github.list(hook, page).await {
                Ok(listed) => return Ok(listed),
                Err(GithubError::Unavailable(_)) if near(deadline) => return Err(Stop::Deadline),
                Err(GithubError::Unavailable(reason)) if tries < PAGE_TRIES => {
                    warn!(%hook, reason, tries, "GitHub did not list the deliveries; trying again");
                    tokio::time::sleep(PAGE_RETRY_PAUSE * tries).await;
                }
                Err(error) => return Err(stop_for(error)),
            }
        }
    }

    /// Asks for one event's redelivery, unless it arrived or was asked for already.
    async fn redeliver(
        &self,
        hook: &Hook,
        guid: &str,
        failed: &DeliveryAttempt,
        allowance: &mut Allowance,
    ) -> Result<Handled, Stop> {
        let now = (self.clock)();
        // One consistent read per failed event, spent to save a request to GitHub: its
        // content-creating limit (80 a minute) is far scarcer than DynamoDB reads, and a
        // redelivery of an event hookgate has would only be acknowledged as a duplicate.
        // An id hookgate could not key (an empty or odd guid) was never received either.
        if let Ok(key) = IdempotencyKey::from_stable_id(Provider::Github, guid) {
            match self.received.is_recorded(&key, now).await {
                Ok(true) => return Ok(Handled::Received),
                Ok(false) => {}
                Err(error) => return Err(Stop::Failed(error.to_string())),
            }
        }
        let begin = self
            .state
            .begin_redelivery(RedeliveryRequest {
                guid,
                failed_attempt: failed.id,
                now,
                lease: self.settings.lease,
                max_requests: self.settings.max_requests_per_event,
                retention: self.settings.record_retention,
            })
            .await
            .map_err(|error| Stop::Failed(error.to_string()))?;
        let ticket = match begin {
            Begin::Go(ticket) => ticket,
            Begin::AlreadyRequested => return Ok(Handled::Requested),
            Begin::InFlight => return Ok(Handled::InFlight),
            Begin::Exhausted { requests } => {
                warn!(%hook, guid, requests, delivery_id = failed.id, status = failed.status, "GitHub failed to deliver the event every time it was asked; redeliver it by hand once the cause is fixed");
                return Ok(Handled::Exhausted);
            }
        };
        match self.github.redeliver(hook, failed.id).await {
            Ok(()) => {
                allowance.redeliveries_left = allowance.redeliveries_left.saturating_sub(1);
                info!(%hook, guid, delivery_id = failed.id, event = failed.event, status = failed.status, request = ticket.requests + 1, "asked GitHub to redeliver a failed delivery");
                // GitHub has it; a failure to record that only means a later run may ask
                // once more, which hookgate's deduplication absorbs.
                if let Err(error) = self.state.finish_redelivery(&ticket).await {
                    warn!(%hook, guid, %error, "the redelivery was asked for but could not be recorded");
                }
                Ok(Handled::Redelivered)
            }
            // A refusal of this one delivery (too old, gone, unprocessable) will not change:
            // it is recorded as a request made, so that the attempt is not asked for again,
            // and counted with the events given up on.
            Err(GithubError::Refused { status, message }) if is_about_this_request(status) => {
                allowance.redeliveries_left = allowance.redeliveries_left.saturating_sub(1);
                warn!(%hook, guid, delivery_id = failed.id, status, message, "GitHub refused to redeliver this delivery; redeliver the event by hand if it still matters");
                if let Err(error) = self.state.finish_redelivery(&ticket).await {
                    warn!(%hook, guid, %error, "the refusal could not be recorded; a later run asks again");
                }
                Ok(Handled::Refused)
            }
            Err(error) => {
                if let Err(abandon) = self.state.abandon_redelivery(&ticket).await {
                    warn!(%hook, guid, error = %abandon, "could not give the claim up; it frees itself when its lease ends");
                }
                Err(stop_for(error))
            }
        }
    }

    /// Writes the cursor, unless another run moved it first.
    async fn save(
        &self,
        hook: &Hook,
        read: &Cursor,
        next: &CursorPosition,
        caught_up: bool,
        report: &mut HookReport,
    ) -> &'static str {
        match self.state.save_cursor(hook, read, next).await {
            Ok(true) if caught_up => "caught_up",
            Ok(true) => "walk_saved",
            Ok(false) => {
                info!(%hook, "another run moved the cursor first; its reading stands");
                "moved_by_another_run"
            }
            Err(error) => {
                error!(%hook, %error, "cannot save the cursor; the next run reads the same deliveries again");
                report.errors.push(error.to_string());
                "left"
            }
        }
    }

    fn count(&self, report: &HookReport) {
        let dimensions = [("Hook", report.hook.as_str())];
        for (name, value) in [
            ("DeliveriesSeen", report.seen),
            ("DeliveriesFailed", report.failed),
            ("Redelivered", report.redelivered),
            ("RedeliveriesExhausted", report.exhausted),
            ("ReconcilerErrors", report.errors.len()),
        ] {
            self.metrics
                .emit(name, "Count", value as f64, &dimensions, &[&[], &["Hook"]]);
        }
    }
}

/// How a hook's reading ended.
#[derive(Debug)]
struct Reading {
    /// Back to where it had to go (or the list's end).
    reached_the_end: bool,
    stop: Option<Stop>,
    /// The saved walk cannot go on (GitHub refused its page): why.
    walk_lost: Option<String>,
}

impl Reading {
    fn to_the_end() -> Self {
        Self {
            reached_the_end: true,
            stop: None,
            walk_lost: None,
        }
    }
    fn paused() -> Self {
        Self {
            reached_the_end: false,
            stop: None,
            walk_lost: None,
        }
    }
    fn stopped(stop: Stop) -> Self {
        Self {
            reached_the_end: false,
            stop: Some(stop),
            walk_lost: None,
        }
    }
    fn walk_lost(reason: String) -> Self {
        Self {
            reached_the_end: false,
            stop: None,
            walk_lost: Some(reason),
        }
    }
}

/// What became of one event.
enum Handled {
    Redelivered,
    Received,
    Requested,
    InFlight,
    Exhausted,
    /// GitHub refused to redeliver it, for a reason particular to it.
    Refused,
}

fn stop_for(error: GithubError) -> Stop {
    match error {
        GithubError::RateLimited { until } => Stop::RateLimited(until),
        GithubError::Refused { status, message } => Stop::Refused {
            status,
            reason: message,
        },
        other @ GithubError::Unavailable(_) => Stop::Failed(other.to_string()),
    }
}

/// A refusal of the one thing asked for: GitHub documents 400 and 422 for a request it
/// will not carry out as made (a delivery too old to redeliver, a page cursor no longer
/// valid), which asking again cannot change. Every other refusal (401, a 403 that is not a
/// rate limit, which [`GithubError::RateLimited`] is, a 404 for a hook the token cannot
/// see) is about the token or the hook and holds for every request: the cursor waits
/// until someone fixes it.
fn is_about_this_request(status: u16) -> bool {
    matches!(status, 400 | 422)
}

fn describe(stop: &Stop) -> String {
    match stop {
        Stop::RateLimited(until) => format!("rate limited until {until}"),
        Stop::Deadline => "the invocation's deadline came".to_owned(),
        Stop::Failed(reason) => reason.clone(),
        Stop::Refused { status, reason } => {
            format!("GitHub refused the request ({status}): {reason}")
        }
    }
}

fn near(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|deadline| {
        deadline.saturating_duration_since(Instant::now()) < DEADLINE_MARGIN
    })
}

/// The events among `attempts` that no attempt delivered, each with its newest failed
/// attempt (the one to redeliver; GitHub numbers attempts in the order it makes them, which
/// is the order the redelivery records compare, where `delivered_at` has whole seconds), oldest first: those are the nearest to leaving
/// GitHub's redelivery window, so a run with more to ask for than its allowance asks for
/// them before the rest.
fn events_to_redeliver(attempts: &[DeliveryAttempt]) -> Vec<(&str, &DeliveryAttempt)> {
    let mut events: BTreeMap<&str, (bool, Option<&DeliveryAttempt>)> = BTreeMap::new();
    for attempt in attempts {
        let (succeeded, newest_failure) = events.entry(attempt.guid.as_str()).or_default();
        if attempt.succeeded() {
            *succeeded = true;
        } else if newest_failure.is_none_or(|newest| attempt.id > newest.id) {
            *newest_failure = Some(attempt);
        }
    }
    let mut failed: Vec<(&str, &DeliveryAttempt)> = events
        .into_iter()
        .filter(|(_, (succeeded, _))| !succeeded)
        .filter_map(|(guid, (_, failure))| Some((guid, failure?)))
        .collect();
    failed.sort_by_key(|(_, attempt)| attempt.delivered_at);
    failed
}

#[cfg(test)]
mod tests;
