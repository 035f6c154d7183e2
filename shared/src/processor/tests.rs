//! The processor's decisions, against the in-memory store and queue control and a scripted
//! action invoker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::*;
use crate::bodies::{BodyStore, MemoryBodyStore};
use crate::claims::{IdempotencyStore, MemoryStore};
use crate::envelope::RawBody;
use crate::idempotency::IdempotencyKey;
use crate::provider::Provider;

/// Answers each action from a script (default: success) and records every call.
#[derive(Debug, Default)]
struct ScriptedActions {
    script: Mutex<HashMap<String, VecDeque<Result<(), ActionError>>>>,
    calls: Mutex<Vec<(String, String)>>,
    /// The raw body each call was handed.
    bodies: Mutex<Vec<RawBody>>,
    delay: Option<Duration>,
    /// A delay of its own for the action named, in place of `delay`.
    slow_action: Option<(&'static str, Duration)>,
    /// Once the action named is called, this store becomes unreachable.
    outage_after: Option<(&'static str, MemoryStore)>,
    /// Calls under way now, and the most there were at once.
    running: std::sync::atomic::AtomicUsize,
    most_running: std::sync::atomic::AtomicUsize,
}

impl ScriptedActions {
    fn then(self, action: &str, result: Result<(), ActionError>) -> Self {
        self.script
            .lock()
            .unwrap()
            .entry(action.to_owned())
            .or_default()
            .push_back(result);
        self
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ActionInvoker for ScriptedActions {
    async fn invoke(
        &self,
        action: &ActionSpec,
        event: &NormalizedEvent,
    ) -> Result<(), ActionError> {
        self.calls
            .lock()
            .unwrap()
            .push((action.name.clone(), event.idempotency_key.to_string()));
        self.bodies.lock().unwrap().push(event.body.clone());
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(running, Ordering::SeqCst);
        let delay = match self.slow_action {
            Some((slow, delay)) if slow == action.name => Some(delay),
            _ => self.delay,
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        if let Some((name, store)) = &self.outage_after {
            if *name == action.name {
                store.set_unavailable(true);
            }
        }
        let scripted = self
            .script
            .lock()
            .unwrap()
            .get_mut(&action.name)
            .and_then(VecDeque::pop_front);
        scripted.unwrap_or(Ok(()))
    }
}

const ROUTES: &str = r#"
    [[route]]
    provider = "github"
    events = ["pull_request.*"]
    actions = ["agent", "audit"]

    [action.agent]
    type = "log"
    timeout_secs = 5

    [action.audit]
    type = "log"
"#;

struct Fixture {
    processor: Processor,
    store: MemoryStore,
    control: MemoryQueueControl,
    actions: Arc<ScriptedActions>,
}

fn fixture(actions: ScriptedActions) -> Fixture {
    fixture_on(actions, MemoryQueueControl::new())
}

/// A fixture whose queue moves a message on after `max_receive_count` deliveries.
fn fixture_with_max_receive_count(actions: ScriptedActions, max_receive_count: u32) -> Fixture {
    fixture_on(
        actions,
        MemoryQueueControl::new().with_max_receive_count(max_receive_count),
    )
}

fn fixture_on(actions: ScriptedActions, control: MemoryQueueControl) -> Fixture {
    fixture_routed(ROUTES, actions, control)
}

fn fixture_routed(routes: &str, actions: ScriptedActions, control: MemoryQueueControl) -> Fixture {
    let store = MemoryStore::new();
    let actions = Arc::new(actions);
    let processor = processor_routed(
        routes,
        Arc::new(store.clone()),
        actions.clone(),
        control.clone(),
    );
    Fixture {
        processor,
        store,
        control,
        actions,
    }
}

/// The processor's claim lease in these tests.
const LEASE: Duration = Duration::from_secs(60);

fn processor_on(
    store: Arc<dyn IdempotencyStore>,
    actions: Arc<ScriptedActions>,
    control: MemoryQueueControl,
) -> Processor {
    processor_routed(ROUTES, store, actions, control)
}

fn processor_routed(
    routes: &str,
    store: Arc<dyn IdempotencyStore>,
    actions: Arc<ScriptedActions>,
    control: MemoryQueueControl,
) -> Processor {
    Processor::new(
        RouteTable::parse(routes, "routes.toml").unwrap(),
        store,
        actions,
        Arc::new(control),
        ProcessorSettings {
            lease: LEASE,
            retention: Duration::from_secs(7 * 86_400),
            backoff: Backoff {
                base: Duration::from_secs(10),
                cap: Duration::from_secs(300),
            },
        },
    )
    .with_metrics(Metrics::in_memory())
}

/// A GitHub envelope, whose key (`X-GitHub-Delivery`) the signature does not cover; each id
/// has a body of its own.
fn envelope(id: &str, event_type: &str) -> String {
    github_envelope(
        id,
        event_type,
        &format!(r#"{{"action":"opened","issue":"{id}"}}"#),
    )
}

fn github_envelope(id: &str, event_type: &str, body: &str) -> String {
    let body = body.to_owned();
    Envelope::V1(EnvelopeV1 {
        idempotency_key: IdempotencyKey::from_stable_id(Provider::Github, id).unwrap(),
        provider: Provider::Github,
        event_type: event_type.to_owned(),
        delivery_id: Some(id.to_owned()),
        received_at: OffsetDateTime::now_utc(),
        source_ip: None,
        headers: BTreeMap::new(),
        body_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes())),
        body: RawBody::Utf8(body),
        id_signed: false,
        replay: None,
    })
    .to_json()
}

fn delivery(message_id: &str, body: String, receive_count: u32) -> QueuedDelivery {
    QueuedDelivery {
        message_id: message_id.to_owned(),
        receipt_handle: format!("receipt-{message_id}"),
        body,
        receive_count,
    }
}

fn pr(id: &str) -> QueuedDelivery {
    delivery(id, envelope(id, "pull_request.opened"), 1)
}

#[tokio::test]
async fn an_event_runs_its_actions_once_and_a_redelivery_is_a_duplicate() {
    let fixture = fixture(ScriptedActions::default());
    assert_eq!(
        fixture.processor.process(&pr("d-1"), None).await,
        Disposition::Acknowledge(Outcome::Completed)
    );
    assert_eq!(
        fixture.processor.process(&pr("d-1"), None).await,
        Disposition::Acknowledge(Outcome::Duplicate)
    );
    let names: Vec<String> = fixture
        .actions
        .calls()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["agent", "audit"]);
}

/// Routes with one action for GitHub's pull requests and two for its issues.
const ONE_AND_TWO_ACTIONS: &str = r#"
    [[route]]
    provider = "github"
    events = ["pull_request.*"]
    actions = ["agent"]

    [[route]]
    provider = "github"
    events = ["issues.*"]
    actions = ["agent", "audit"]

    [action.agent]
    type = "log"

    [action.audit]
    type = "log"
"#;

/// `envelope`, as from a provider that signs its ids (no body sighting is recorded).
fn signed_envelope(id: &str, event_type: &str) -> String {
    let mut envelope = Envelope::from_json(&envelope(id, event_type))
        .unwrap()
        .v1()
        .clone();
    envelope.id_signed = true;
    Envelope::V1(envelope).to_json()
}

/// The store writes `process` makes for `delivery`.
async fn writes_for(fixture: &Fixture, delivery: &QueuedDelivery) -> (Disposition, usize) {
    let before = fixture.store.writes();
    let disposition = fixture.processor.process(delivery, None).await;
    (disposition, fixture.store.writes() - before)
}

#[tokio::test]
async fn a_new_event_with_one_action_costs_two_writes_and_a_duplicate_one() {
    let fixture = fixture_routed(
        ONE_AND_TWO_ACTIONS,
        ScriptedActions::default(),
        MemoryQueueControl::new(),
    );
    let new = delivery("m-1", signed_envelope("d-1", "pull_request.opened"), 1);

    assert_eq!(
        writes_for(&fixture, &new).await,
        (Disposition::Acknowledge(Outcome::Completed), 2),
        "the claim, and the completion that records the action done"
    );
    assert_eq!(
        writes_for(&fixture, &new).await,
        (Disposition::Acknowledge(Outcome::Duplicate), 1),
        "the claim that finds the event completed"
    );
    assert_eq!(fixture.actions.calls().len(), 1);
}

#[tokio::test]
async fn an_unsigned_id_adds_the_body_sighting_and_a_duplicate_still_costs_one_write() {
    let fixture = fixture_routed(
        ONE_AND_TWO_ACTIONS,
        ScriptedActions::default(),
        MemoryQueueControl::new(),
    );

    assert_eq!(
        writes_for(&fixture, &pr("d-1")).await,
        (Disposition::Acknowledge(Outcome::Completed), 3),
        "the claim, the body's sighting and the completion"
    );
    assert_eq!(
        writes_for(&fixture, &pr("d-1")).await,
        (Disposition::Acknowledge(Outcome::Duplicate), 1)
    );
}

#[tokio::test]
async fn each_of_several_actions_is_recorded_as_it_ends_and_the_event_then_completed() {
    let fixture = fixture_routed(
        ONE_AND_TWO_ACTIONS,
        ScriptedActions::default(),
        MemoryQueueControl::new(),
    );
    let new = delivery("m-1", signed_envelope("d-1", "issues.opened"), 1);

    assert_eq!(
        writes_for(&fixture, &new).await,
        (Disposition::Acknowledge(Outcome::Completed), 4),
        "the claim, one write per action, and the completion"
    );
}

#[tokio::test]
async fn an_event_no_route_matches_is_acknowledged_without_a_claim() {
    let fixture = fixture(ScriptedActions::default());
    fixture.store.set_unavailable(true);
    let push = delivery("d-2", envelope("d-2", "push"), 1);
    assert_eq!(
        fixture.processor.process(&push, None).await,
        Disposition::Acknowledge(Outcome::NoRoute)
    );
    assert!(fixture.actions.calls().is_empty());
}

#[tokio::test]
async fn a_retryable_failure_releases_the_claim_and_puts_the_message_off_with_backoff() {
    let fixture = fixture(
        ScriptedActions::default().then("agent", Err(ActionError::retryable("503 from the agent"))),
    );
    let first = fixture
        .processor
        .process(
            &delivery("d-3", envelope("d-3", "pull_request.opened"), 2),
            None,
        )
        .await;
    let Disposition::Retry(Outcome::RetryScheduled { delay, reason }) = first else {
        panic!("expected a scheduled retry, got {first:?}");
    };
    assert_eq!(reason, "action `agent`: 503 from the agent (retryable)");
    assert!(
        delay >= Duration::from_secs(10) && delay <= Duration::from_secs(20),
        "{delay:?}"
    );
    assert_eq!(
        fixture.control.calls(),
        [ControlCall::RetryAfter {
            message_id: "d-3".into(),
            delay
        }]
    );
    // Released, so the redelivery claims it at once and runs only what is left.
    let second = fixture
        .processor
        .process(
            &delivery("d-3", envelope("d-3", "pull_request.opened"), 3),
            None,
        )
        .await;
    assert_eq!(second, Disposition::Acknowledge(Outcome::Completed));
    let names: Vec<String> = fixture
        .actions
        .calls()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        names,
        ["agent", "audit", "agent"],
        "audit succeeded the first time and is not run again"
    );
}

#[tokio::test]
async fn an_agents_retry_after_lengthens_the_backoff() {
    let hint = ActionError::Retryable {
        reason: "429".into(),
        retry_after: Some(Duration::from_secs(120)),
    };
    let fixture = fixture(ScriptedActions::default().then("agent", Err(hint)));
    let outcome = fixture.processor.process(&pr("d-4"), None).await;
    assert!(
        matches!(
            outcome,
            Disposition::Retry(Outcome::RetryScheduled { delay, .. })
                if delay == Duration::from_secs(120)
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_with_its_reason_and_acknowledged() {
    let fixture = fixture(
        ScriptedActions::default().then("agent", Err(ActionError::permanent("400 from the agent"))),
    );
    let message = pr("d-5");
    let outcome = fixture.processor.process(&message, None).await;
    let Disposition::Acknowledge(Outcome::DeadLettered { reason }) = outcome else {
        panic!("expected a dead letter, got {outcome:?}");
    };
    assert_eq!(
        reason,
        "action `agent` failed permanently: 400 from the agent"
    );
    let calls = fixture.control.calls();
    let [ControlCall::DeadLetter {
        body, reason: sent, ..
    }] = calls.as_slice()
    else {
        panic!("expected one dead letter");
    };
    assert_eq!(
        body, &message.body,
        "the envelope goes to the dead-letter queue as it came"
    );
    assert_eq!(sent, &reason);
}

#[tokio::test]
async fn an_unreadable_envelope_is_dead_lettered_with_its_reason() {
    let fixture = fixture(ScriptedActions::default());
    let outcome = fixture
        .processor
        .process(&delivery("d-6", "{\"version\": 9}".into(), 1), None)
        .await;
    let Disposition::Acknowledge(Outcome::DeadLettered { reason }) = outcome else {
        panic!("expected a dead letter, got {outcome:?}");
    };
    assert!(reason.starts_with("unreadable envelope:"), "{reason}");
    assert!(fixture.actions.calls().is_empty());
}

#[tokio::test]
async fn a_claim_held_by_another_worker_is_retried_later() {
    let fixture = fixture(ScriptedActions::default());
    let key = IdempotencyKey::from_stable_id(Provider::Github, "d-7").unwrap();
    let held_elsewhere = fixture
        .store
        .claim(ClaimRequest {
            key: &key,
            payload_hash: "h",
            now: OffsetDateTime::now_utc(),
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(60),
            archive: None,
        })
        .await
        .unwrap();
    assert!(matches!(held_elsewhere, Claim::Acquired(_)));
    assert_eq!(
        fixture.processor.process(&pr("d-7"), None).await,
        Disposition::Retry(Outcome::InFlightElsewhere)
    );
    assert!(fixture.actions.calls().is_empty());
    // It comes back when the other lease ends (about 60 s from now), not after the queue's
    // whole visibility timeout.
    let delays: Vec<Duration> = fixture
        .control
        .calls()
        .into_iter()
        .filter_map(|call| match call {
            ControlCall::RetryAfter { delay, .. } => Some(delay),
            ControlCall::DeadLetter { .. } => None,
        })
        .collect();
    assert_eq!(delays.len(), 1, "{delays:?}");
    assert!(
        (Duration::from_secs(59)..=Duration::from_secs(60)).contains(&delays[0]),
        "{delays:?}"
    );
}

#[test]
fn a_lease_wait_is_whole_seconds_rounded_up_and_at_least_one() {
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000);
    let wait = |millis: i64| until_lease_ends(now, now + time::Duration::milliseconds(millis));
    assert_eq!(wait(1_500), Duration::from_secs(2));
    assert_eq!(wait(3_000), Duration::from_secs(3));
    assert_eq!(wait(0), Duration::from_secs(1));
    assert_eq!(wait(-5_000), Duration::from_secs(1));
    assert_eq!(wait(100 * 86_400 * 1_000), backoff::MAX_VISIBILITY);
}

#[tokio::test]
async fn an_unreachable_store_fails_every_message_of_the_batch() {
    let fixture = fixture(ScriptedActions::default());
    fixture.store.set_unavailable(true);
    let failed = fixture
        .processor
        .process_batch(vec![pr("d-8"), pr("d-9"), pr("d-10")], None)
        .await;
    assert_eq!(failed, ["d-8", "d-9", "d-10"]);
    assert!(fixture.actions.calls().is_empty());
}

#[tokio::test]
async fn a_batch_reports_only_the_messages_that_failed() {
    let fixture =
        fixture(ScriptedActions::default().then("agent", Err(ActionError::retryable("down"))));
    // Concurrent messages: exactly one of the three meets the scripted failure.
    let failed = fixture
        .processor
        .process_batch(vec![pr("d-11"), pr("d-12"), pr("d-13")], None)
        .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
}

#[tokio::test(start_paused = true)]
async fn an_action_that_outlives_its_timeout_is_a_retryable_failure() {
    let slow = ScriptedActions {
        delay: Some(Duration::from_secs(6)),
        ..ScriptedActions::default()
    };
    let fixture = fixture(slow);
    let outcome = fixture.processor.process(&pr("d-14"), None).await;
    assert!(
        matches!(outcome, Disposition::Retry(Outcome::RetryScheduled { .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_late_worker_whose_claim_was_taken_over_cannot_complete_it() {
    let store = MemoryStore::new();
    let key = IdempotencyKey::from_stable_id(Provider::Github, "d-15").unwrap();
    let request = |now: OffsetDateTime| ClaimRequest {
        key: &key,
        payload_hash: "h",
        now,
        lease: Duration::from_secs(60),
        retention: Duration::from_secs(86_400),
        archive: None,
    };
    let start = OffsetDateTime::now_utc();
    let Claim::Acquired(late) = store.claim(request(start)).await.unwrap() else {
        panic!("first claim")
    };
    let Claim::Acquired(new_holder) = store
        .claim(request(start + Duration::from_secs(61)))
        .await
        .unwrap()
    else {
        panic!("the expired lease is taken over")
    };
    assert!(matches!(
        store
            .complete(&late, None, start, Duration::from_secs(60))
            .await,
        Err(StoreError::ClaimLost { .. })
    ));
    assert!(store
        .complete(&new_holder, None, start, Duration::from_secs(60))
        .await
        .is_ok());
}

/// The delays the processor put messages off by.
fn retry_delays(control: &MemoryQueueControl) -> Vec<Duration> {
    control
        .calls()
        .into_iter()
        .filter_map(|call| match call {
            ControlCall::RetryAfter { delay, .. } => Some(delay),
            ControlCall::DeadLetter { .. } => None,
        })
        .collect()
}

#[tokio::test]
async fn an_unreachable_store_puts_the_message_off_by_a_short_backoff_not_the_visibility_timeout() {
    let fixture = fixture(ScriptedActions::default());
    fixture.store.set_unavailable(true);

    let outcome = fixture.processor.process(&pr("d-16"), None).await;

    assert!(
        matches!(&outcome, Disposition::Retry(Outcome::StoreUnavailable { reason }) if reason.contains("unavailable")),
        "{outcome:?}"
    );
    // The first backoff step (10 s, with equal jitter): seconds, not the queue's 360 s.
    let delays = retry_delays(&fixture.control);
    assert_eq!(delays.len(), 1, "{delays:?}");
    assert!(
        (Duration::from_secs(5)..=Duration::from_secs(10)).contains(&delays[0]),
        "{delays:?}"
    );
}

#[tokio::test]
async fn a_retryable_failure_on_the_last_allowed_delivery_is_dead_lettered_with_its_reason() {
    let fixture = fixture_with_max_receive_count(
        ScriptedActions::default().then("agent", Err(ActionError::retryable("503 from the agent"))),
        3,
    );

    let outcome = fixture
        .processor
        .process(
            &delivery("d-17", envelope("d-17", "pull_request.opened"), 3),
            None,
        )
        .await;

    let Disposition::Acknowledge(Outcome::DeadLettered { reason }) = outcome else {
        panic!("expected a dead letter, got {outcome:?}");
    };
    assert_eq!(
        reason,
        "gave up after 3 deliveries (the queue allows 3); the last failed: \
         action `agent`: 503 from the agent (retryable)"
    );
    assert!(
        retry_delays(&fixture.control).is_empty(),
        "no delay is set on a message that is dead-lettered"
    );
    // Released with its progress: a redrive runs only what is left.
    let redriven = fixture
        .processor
        .process(
            &delivery("d-17", envelope("d-17", "pull_request.opened"), 1),
            None,
        )
        .await;
    assert_eq!(redriven, Disposition::Acknowledge(Outcome::Completed));
    let names: Vec<String> = fixture
        .actions
        .calls()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["agent", "audit", "agent"]);
}

#[tokio::test]
async fn an_unreachable_store_on_the_last_allowed_delivery_is_dead_lettered_saying_so() {
    let fixture = fixture_with_max_receive_count(ScriptedActions::default(), 2);
    fixture.store.set_unavailable(true);

    let before_the_last = fixture
        .processor
        .process(
            &delivery("d-18", envelope("d-18", "pull_request.opened"), 1),
            None,
        )
        .await;
    let last = fixture
        .processor
        .process(
            &delivery("d-18", envelope("d-18", "pull_request.opened"), 2),
            None,
        )
        .await;

    assert!(
        matches!(
            before_the_last,
            Disposition::Retry(Outcome::StoreUnavailable { .. })
        ),
        "{before_the_last:?}"
    );
    let Disposition::Acknowledge(Outcome::DeadLettered { reason }) = last else {
        panic!("expected a dead letter, got {last:?}");
    };
    assert!(
        reason.starts_with("gave up after 2 deliveries") && reason.contains("unavailable"),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn actions_are_cut_short_before_the_deadline_and_the_message_comes_back_once_the_claims_lease_ends(
) {
    let slow = ScriptedActions {
        delay: Some(Duration::from_secs(4)),
        ..ScriptedActions::default()
    };
    let fixture = fixture(slow);
    let deadline = Instant::now() + RECORD_MARGIN + Duration::from_secs(2);

    let outcome = fixture.processor.process(&pr("d-19"), Some(deadline)).await;

    assert_eq!(outcome, Disposition::Retry(Outcome::DeadlineReached));
    assert!(
        Instant::now() <= deadline - RECORD_MARGIN + Duration::from_millis(10),
        "the actions were stopped in time to record their outcome"
    );
    let delays = retry_delays(&fixture.control);
    assert_eq!(delays.len(), 1);
    assert!(
        delays[0] > LEASE - Duration::from_secs(5) && delays[0] <= LEASE,
        "{delays:?}: the rest of the lease"
    );
    // The claim is kept (the agent may still be at work on the dropped request) until its
    // lease ends.
    let key = IdempotencyKey::from_stable_id(Provider::Github, "d-19").unwrap();
    let claim = fixture
        .store
        .claim(ClaimRequest {
            key: &key,
            payload_hash: "h",
            now: OffsetDateTime::now_utc(),
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(60),
            archive: None,
        })
        .await
        .unwrap();
    assert!(matches!(claim, Claim::InFlight { .. }), "{claim:?}");
}

#[tokio::test(start_paused = true)]
async fn a_claim_is_kept_for_its_lease_when_an_action_was_cut_short_even_if_progress_is_lost() {
    let store = MemoryStore::new();
    let actions = Arc::new(ScriptedActions {
        slow_action: Some(("agent", Duration::from_secs(30))),
        // `audit` succeeds at once, and then its success cannot be recorded.
        outage_after: Some(("audit", store.clone())),
        ..ScriptedActions::default()
    });
    let control = MemoryQueueControl::new();
    let processor = processor_on(Arc::new(store.clone()), actions, control.clone());
    let deadline = Instant::now() + RECORD_MARGIN + Duration::from_secs(2);

    let outcome = processor.process(&pr("d-23"), Some(deadline)).await;

    assert!(
        matches!(
            outcome,
            Disposition::Retry(Outcome::StoreUnavailable { .. })
        ),
        "{outcome:?}"
    );
    let delays = retry_delays(&control);
    assert!(
        delays.len() == 1 && delays[0] > LEASE - Duration::from_secs(5),
        "{delays:?}: not before the lease of the claim kept for `agent` ends"
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_is_not_started_with_too_little_of_the_invocation_left() {
    let fixture = fixture(ScriptedActions::default());
    let deadline = Instant::now() + RECORD_MARGIN + Duration::from_millis(500);

    let outcome = fixture.processor.process(&pr("d-20"), Some(deadline)).await;

    assert_eq!(outcome, Disposition::Retry(Outcome::DeadlineReached));
    assert!(fixture.actions.calls().is_empty());
}

/// A store whose every call waits forever: a stuck connection.
#[derive(Debug)]
struct StuckStore;

#[async_trait::async_trait]
impl IdempotencyStore for StuckStore {
    async fn claim(&self, _: ClaimRequest<'_>) -> Result<Claim, StoreError> {
        std::future::pending().await
    }
    async fn record_body(&self, _: BodySighting<'_>) -> Result<FirstSeen, StoreError> {
        std::future::pending().await
    }
    async fn is_recorded(&self, _: &IdempotencyKey, _: OffsetDateTime) -> Result<bool, StoreError> {
        std::future::pending().await
    }
    async fn mark_action_done(&self, _: &HeldClaim, _: &str) -> Result<(), StoreError> {
        std::future::pending().await
    }
    async fn complete(
        &self,
        _: &HeldClaim,
        _: Option<&str>,
        _: OffsetDateTime,
        _: Duration,
    ) -> Result<(), StoreError> {
        std::future::pending().await
    }
    async fn release(
        &self,
        _: &HeldClaim,
        _: Option<&crate::claims::Failure>,
    ) -> Result<(), StoreError> {
        std::future::pending().await
    }
    async fn record(
        &self,
        _: &IdempotencyKey,
        _: OffsetDateTime,
    ) -> Result<Option<crate::claims::EventRecord>, StoreError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_answered_before_the_deadline_whatever_hangs() {
    let processor = processor_on(
        Arc::new(StuckStore),
        Arc::new(ScriptedActions::default()),
        MemoryQueueControl::new(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);

    let failed = processor
        .process_batch(vec![pr("d-21"), pr("d-22")], Some(deadline))
        .await;

    assert_eq!(failed, ["d-21", "d-22"]);
    assert_eq!(Instant::now(), deadline - ANSWER_MARGIN);
}

#[tokio::test]
async fn a_body_replayed_under_a_fresh_unsigned_id_is_a_suspected_replay_and_acts_once() {
    let fixture = fixture(ScriptedActions::default());
    let body = r#"{"action":"opened","pull_request":{"number":1347}}"#;
    let original = delivery(
        "m-1",
        github_envelope("guid-1", "pull_request.opened", body),
        1,
    );
    let replayed = delivery(
        "m-2",
        github_envelope("guid-forged", "pull_request.opened", body),
        1,
    );

    assert_eq!(
        fixture.processor.process(&original, None).await,
        Disposition::Acknowledge(Outcome::Completed)
    );
    let outcome = fixture.processor.process(&replayed, None).await;

    let first = IdempotencyKey::from_stable_id(Provider::Github, "guid-1").unwrap();
    assert_eq!(
        outcome,
        Disposition::Acknowledge(Outcome::SuspectedReplay { first })
    );
    assert_eq!(
        fixture.processor.process(&replayed, None).await,
        Disposition::Acknowledge(Outcome::Duplicate),
        "the replay's key was completed with nothing run: its redeliveries are duplicates"
    );
    assert_eq!(
        fixture.actions.calls().len(),
        2,
        "agent and audit, once each"
    );
}

#[tokio::test]
async fn a_genuine_redelivery_under_the_same_id_is_still_a_plain_duplicate() {
    let fixture = fixture(ScriptedActions::default());
    let body = r#"{"action":"opened","pull_request":{"number":7}}"#;
    let first = delivery(
        "m-1",
        github_envelope("guid-7", "pull_request.opened", body),
        1,
    );
    let redelivered = delivery(
        "m-2",
        github_envelope("guid-7", "pull_request.opened", body),
        1,
    );

    fixture.processor.process(&first, None).await;

    assert_eq!(
        fixture.processor.process(&redelivered, None).await,
        Disposition::Acknowledge(Outcome::Duplicate)
    );
}

#[tokio::test]
async fn events_whose_provider_signs_the_id_are_not_deduplicated_by_body() {
    let fixture = fixture(ScriptedActions::default());
    let body = r#"{"action":"opened"}"#;
    let signed = |id: &str| {
        let mut envelope = Envelope::from_json(&github_envelope(id, "pull_request.opened", body))
            .unwrap()
            .v1()
            .clone();
        envelope.id_signed = true;
        Envelope::V1(envelope).to_json()
    };

    for (message, id) in [("m-1", "id-a"), ("m-2", "id-b")] {
        assert_eq!(
            fixture
                .processor
                .process(&delivery(message, signed(id), 1), None)
                .await,
            Disposition::Acknowledge(Outcome::Completed),
            "{id}: two events that happen to share a body both act"
        );
    }
}

#[tokio::test]
async fn a_suspected_replay_is_counted_by_provider() {
    let fixture = fixture(ScriptedActions::default());
    let body = r#"{"action":"opened","n":1}"#;
    for (message, id) in [("m-1", "guid-a"), ("m-2", "guid-b")] {
        fixture
            .processor
            .process(
                &delivery(message, github_envelope(id, "pull_request.opened", body), 1),
                None,
            )
            .await;
    }

    let replays: Vec<serde_json::Value> = fixture
        .processor
        .metrics
        .captured()
        .into_iter()
        .filter(|document| document.get("SuspectedReplays").is_some())
        .collect();
    assert!(
        replays
            .iter()
            .any(|document| document["Provider"] == "github"),
        "{replays:?}"
    );
}

// ---- bodies stored outside their envelopes ----

/// A GitHub envelope whose `body` was stored in `bodies`, as a receiver queues it.
async fn envelope_with_stored_body(id: &str, body: &[u8], bodies: &MemoryBodyStore) -> String {
    let sha = crate::bodies::sha256_hex(body);
    let reference = bodies
        .put(&bytes::Bytes::copy_from_slice(body), &sha)
        .await
        .unwrap();
    let mut envelope = Envelope::from_json(&envelope(id, "pull_request.opened"))
        .unwrap()
        .v1()
        .clone();
    envelope.body = RawBody::Stored(reference);
    envelope.body_sha256 = sha;
    Envelope::V1(envelope).to_json()
}

fn fixture_with_bodies(bodies: &MemoryBodyStore) -> Fixture {
    fixture_with_bodies_and(bodies, ScriptedActions::default())
}

fn fixture_with_bodies_and(bodies: &MemoryBodyStore, actions: ScriptedActions) -> Fixture {
    let mut fixture = fixture(actions);
    fixture.processor = processor_on(
        Arc::new(fixture.store.clone()),
        fixture.actions.clone(),
        fixture.control.clone(),
    )
    .with_body_store(Arc::new(bodies.clone()));
    fixture
}

#[tokio::test]
async fn a_stored_body_is_fetched_and_handed_to_every_action_byte_for_byte() {
    let bodies = MemoryBodyStore::new();
    let fixture = fixture_with_bodies(&bodies);
    let binary: Vec<u8> = (0..=255_u8).cycle().take(70_000).collect();
    let message = delivery(
        "m-1",
        envelope_with_stored_body("guid-big", &binary, &bodies).await,
        1,
    );

    let outcome = fixture.processor.process(&message, None).await;

    assert_eq!(outcome, Disposition::Acknowledge(Outcome::Completed));
    let handed = fixture.actions.bodies.lock().unwrap().clone();
    assert_eq!(handed.len(), 2);
    for body in handed {
        assert_eq!(body.to_bytes().unwrap(), binary);
    }
}

#[tokio::test]
async fn a_stored_body_that_is_gone_is_dead_lettered_saying_so() {
    let bodies = MemoryBodyStore::new();
    let fixture = fixture_with_bodies(&bodies);
    let message = delivery(
        "m-1",
        envelope_with_stored_body("guid-gone", b"expired", &bodies).await,
        1,
    );
    bodies.forget_all();

    let outcome = fixture.processor.process(&message, None).await;

    let Disposition::Acknowledge(Outcome::DeadLettered { reason }) = outcome else {
        panic!("expected a dead letter, got {outcome:?}");
    };
    assert!(reason.contains("is gone"), "{reason}");
    assert!(fixture.actions.calls().is_empty());
}

#[tokio::test]
async fn an_unreachable_body_store_is_retried_after_a_backoff() {
    let bodies = MemoryBodyStore::new();
    let fixture = fixture_with_bodies(&bodies);
    let message = delivery(
        "m-1",
        envelope_with_stored_body("guid-later", b"later", &bodies).await,
        1,
    );
    bodies.set_unavailable(true);

    let outcome = fixture.processor.process(&message, None).await;

    assert!(
        matches!(
            outcome,
            Disposition::Retry(Outcome::BodyStoreUnavailable { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(retry_delays(&fixture.control).len(), 1);
    assert!(fixture.actions.calls().is_empty());
    bodies.set_unavailable(false);
    assert_eq!(
        fixture.processor.process(&message, None).await,
        Disposition::Acknowledge(Outcome::Completed),
        "the claim was released, and the next delivery acts"
    );
}

#[tokio::test]
async fn a_stored_body_without_a_body_store_to_read_it_is_dead_lettered_naming_the_setting() {
    let bodies = MemoryBodyStore::new();
    let fixture = fixture(ScriptedActions::default());
    let message = delivery(
        "m-1",
        envelope_with_stored_body("guid-nowhere", b"b", &bodies).await,
        1,
    );

    let outcome = fixture.processor.process(&message, None).await;

    let Disposition::Acknowledge(Outcome::DeadLettered { reason }) = outcome else {
        panic!("expected a dead letter, got {outcome:?}");
    };
    assert!(reason.contains("BODY_BUCKET"), "{reason}");
}

/// A batch of three events whose bodies of `size` bytes each (distinct, so that none is
/// taken for a replay of another) were stored in `bodies`.
async fn stored_batch(bodies: &MemoryBodyStore, size: usize) -> Vec<QueuedDelivery> {
    let mut batch = Vec::new();
    for id in ["big-1", "big-2", "big-3"] {
        let mut body = id.as_bytes().to_vec();
        body.resize(size, b'x');
        let envelope = envelope_with_stored_body(id, &body, bodies).await;
        batch.push(delivery(id, envelope, 1));
    }
    batch
}

fn slow_actions(delay: Duration) -> ScriptedActions {
    ScriptedActions {
        delay: Some(delay),
        ..ScriptedActions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn the_largest_stored_bodies_take_turns_within_the_memory_budget() {
    let bodies = MemoryBodyStore::new();
    let fixture = fixture_with_bodies_and(&bodies, slow_actions(Duration::from_secs(1)));
    let half_the_budget = usize::try_from(STORED_BODY_BUDGET_BYTES / 2).unwrap();

    let failed = fixture
        .processor
        .process_batch(stored_batch(&bodies, half_the_budget).await, None)
        .await;

    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(fixture.actions.calls().len(), 6, "every event acted");
    assert_eq!(
        fixture.actions.most_running.load(Ordering::SeqCst),
        4,
        "two events at a time, each with its two actions"
    );
}

#[tokio::test(start_paused = true)]
async fn smaller_stored_bodies_and_inline_ones_do_not_wait() {
    let bodies = MemoryBodyStore::new();
    let stored = fixture_with_bodies_and(&bodies, slow_actions(Duration::from_secs(1)));
    let failed = stored
        .processor
        .process_batch(stored_batch(&bodies, 1_000_000).await, None)
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(stored.actions.most_running.load(Ordering::SeqCst), 6);

    let inline = fixture(slow_actions(Duration::from_secs(1)));
    let failed = inline
        .processor
        .process_batch(vec![pr("d-30"), pr("d-31"), pr("d-32")], None)
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(inline.actions.most_running.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn an_event_waiting_for_its_share_past_the_deadline_comes_back_untouched() {
    let bodies = MemoryBodyStore::new();
    let fixture = fixture_with_bodies_and(&bodies, slow_actions(Duration::from_secs(30)));
    let batch = stored_batch(
        &bodies,
        usize::try_from(STORED_BODY_BUDGET_BYTES / 2).unwrap(),
    )
    .await;
    let deadline = Instant::now() + RECORD_MARGIN + Duration::from_secs(10);

    let failed = fixture.processor.process_batch(batch, Some(deadline)).await;

    assert_eq!(failed.len(), 3, "two cut short, one never started");
    let keys: std::collections::BTreeSet<String> = fixture
        .actions
        .calls()
        .into_iter()
        .map(|(_, key)| key)
        .collect();
    assert_eq!(keys.len(), 2, "the third event never ran: {keys:?}");
    let third = IdempotencyKey::from_stable_id(Provider::Github, "big-3").unwrap();
    let claim = fixture
        .store
        .claim(ClaimRequest {
            key: &third,
            payload_hash: "h",
            now: OffsetDateTime::now_utc(),
            lease: LEASE,
            retention: LEASE,
            archive: None,
        })
        .await
        .unwrap();
    assert!(
        matches!(claim, Claim::Acquired(_)),
        "no claim was taken while it waited: {claim:?}"
    );
}

// ---- the archive ----

/// A fixture whose processor archives every batch in the returned archive.
fn archived_fixture(actions: ScriptedActions) -> (Fixture, crate::archive::MemoryArchive) {
    let mut fixture = fixture(actions);
    let archive = crate::archive::MemoryArchive::new();
    fixture.processor = fixture.processor.with_archive(Arc::new(archive.clone()));
    (fixture, archive)
}

fn github_key(id: &str) -> IdempotencyKey {
    IdempotencyKey::from_stable_id(Provider::Github, id).unwrap()
}

#[tokio::test]
async fn a_batch_is_archived_in_one_write_and_each_record_says_where() {
    use crate::archive::{ArchiveQuery, EventArchive};
    let (fixture, archive) = archived_fixture(ScriptedActions::default());
    let unreadable = delivery("d-bad", "not an envelope".into(), 1);

    let failed = fixture
        .processor
        .process_batch(vec![pr("a-1"), pr("a-2"), unreadable, pr("a-3")], None)
        .await;

    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(archive.writes(), 1, "one write for the whole batch");
    let listed = archive
        .list(&ArchiveQuery::since(OffsetDateTime::UNIX_EPOCH), 10)
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .iter()
        .map(|event| event.envelope.idempotency_key.to_string())
        .collect();
    assert_eq!(keys, ["github:a-1", "github:a-2", "github:a-3"]);
    let record = fixture
        .store
        .record(&github_key("a-2"), OffsetDateTime::now_utc())
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(record.archive.as_deref(), Some(listed[1].location.as_str()));
    assert_eq!(record.state(OffsetDateTime::now_utc()), "completed");
}

#[tokio::test]
async fn an_archive_that_cannot_be_written_puts_the_batch_off_and_acts_on_none() {
    let (fixture, archive) = archived_fixture(ScriptedActions::default());
    archive.set_unavailable(true);

    let failed = fixture
        .processor
        .process_batch(vec![pr("b-1"), pr("b-2")], None)
        .await;

    assert_eq!(failed, ["b-1", "b-2"]);
    assert!(fixture.actions.calls().is_empty());
    assert!(fixture
        .store
        .record(&github_key("b-1"), OffsetDateTime::now_utc())
        .await
        .unwrap()
        .is_none());
    let delays = fixture.control.calls();
    assert_eq!(delays.len(), 2, "each put off with backoff: {delays:?}");

    archive.set_unavailable(false);
    let failed = fixture
        .processor
        .process_batch(vec![pr("b-1"), pr("b-2")], None)
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(fixture.actions.calls().len(), 4, "two actions each, once");
}

#[tokio::test]
async fn a_failed_attempt_leaves_its_reason_in_the_record() {
    let fixture =
        fixture(ScriptedActions::default().then("agent", Err(ActionError::retryable("503 busy"))));

    let outcome = fixture.processor.process(&pr("c-1"), None).await;

    assert!(matches!(outcome, Disposition::Retry(_)), "{outcome:?}");
    let now = OffsetDateTime::now_utc();
    let record = fixture
        .store
        .record(&github_key("c-1"), now)
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(record.state(now), "failed");
    assert_eq!(
        record.done_actions.into_iter().collect::<Vec<_>>(),
        ["audit"]
    );
    assert_eq!(
        record.failed_actions.keys().collect::<Vec<_>>(),
        ["agent"],
        "the action that failed, alone"
    );
    assert!(record.failed_actions["agent"].contains("503 busy"));
    let error = record.last_error.expect("the reason");
    assert!(
        error.contains("action `agent`") && error.contains("503 busy"),
        "{error}"
    );
}

// ---- forced replays ----

/// The message `hookgate replay --force --action ...` sends for the event in `message`.
fn forced_replay(
    message: &QueuedDelivery,
    generation: &str,
    actions: Option<&[&str]>,
) -> QueuedDelivery {
    let Envelope::V1(envelope) = Envelope::from_json(&message.body).unwrap();
    let of = envelope.idempotency_key.clone();
    let archived = crate::archive::ArchivedEvent {
        envelope,
        archived_at: OffsetDateTime::now_utc(),
        location: "memory:archive/test".to_owned(),
    };
    let replay = crate::envelope::Replay {
        id: generation.to_owned(),
        of,
        actions: actions.map(|names| names.iter().map(|name| (*name).to_owned()).collect()),
    };
    let queued = crate::envelope::QueueMessage::replayed(&archived, Some(replay)).unwrap();
    delivery(
        &format!("{}-{generation}", message.message_id),
        queued.body().to_owned(),
        1,
    )
}

#[tokio::test]
async fn a_forced_replay_of_a_completed_event_runs_the_chosen_actions_once_under_its_own_key() {
    let fixture = fixture(ScriptedActions::default());
    let original = pr("r-1");
    fixture.processor.process(&original, None).await;
    let replay = forced_replay(&original, "g1", Some(&["agent"]));

    let first = fixture.processor.process(&replay, None).await;
    let again = fixture.processor.process(&replay, None).await;

    assert_eq!(first, Disposition::Acknowledge(Outcome::Completed));
    assert_eq!(again, Disposition::Acknowledge(Outcome::Duplicate));
    let calls = fixture.actions.calls();
    assert_eq!(
        calls[2..],
        [("agent".to_owned(), "github:r-1#replay-g1".to_owned())],
        "{calls:?}"
    );
    // Another generation runs again; the original stays a duplicate.
    let next = forced_replay(&original, "g2", None);
    assert_eq!(
        fixture.processor.process(&next, None).await,
        Disposition::Acknowledge(Outcome::Completed)
    );
    assert_eq!(fixture.actions.calls().len(), 5, "both actions of g2");
    assert_eq!(
        fixture.processor.process(&original, None).await,
        Disposition::Acknowledge(Outcome::Duplicate)
    );
}

/// An archive whose every call waits forever: a stuck connection.
#[derive(Debug)]
struct StuckArchive;

#[async_trait::async_trait]
impl crate::archive::EventArchive for StuckArchive {
    async fn append(
        &self,
        _: &[&Envelope],
        _: OffsetDateTime,
    ) -> Result<Option<String>, crate::archive::ArchiveError> {
        std::future::pending().await
    }
    async fn read(
        &self,
        _: &str,
    ) -> Result<Vec<crate::archive::ArchivedEvent>, crate::archive::ArchiveError> {
        std::future::pending().await
    }
    async fn list(
        &self,
        _: &crate::archive::ArchiveQuery,
        _: usize,
    ) -> Result<Vec<crate::archive::ArchivedEvent>, crate::archive::ArchiveError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_stuck_archive_cannot_keep_the_batch_past_its_deadline() {
    let mut fixture = fixture(ScriptedActions::default());
    fixture.processor = fixture.processor.with_archive(Arc::new(StuckArchive));
    let deadline = Instant::now() + Duration::from_secs(30);

    let failed = fixture
        .processor
        .process_batch(vec![pr("s-1"), pr("s-2")], Some(deadline))
        .await;

    assert_eq!(failed, ["s-1", "s-2"]);
    assert!(Instant::now() <= deadline - ANSWER_MARGIN);
    assert!(fixture.actions.calls().is_empty());
}
