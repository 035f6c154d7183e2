//! The processor's decisions, against the in-memory store and queue control and a scripted
//! action invoker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use super::*;
use crate::claims::MemoryStore;
use crate::envelope::RawBody;
use crate::idempotency::IdempotencyKey;
use crate::provider::Provider;

/// Answers each action from a script (default: success) and records every call.
#[derive(Debug, Default)]
struct ScriptedActions {
    script: Mutex<HashMap<String, VecDeque<Result<(), ActionError>>>>,
    calls: Mutex<Vec<(String, String)>>,
    delay: Option<Duration>,
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
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
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
    let store = MemoryStore::new();
    let control = MemoryQueueControl::new();
    let actions = Arc::new(actions);
    let processor = Processor::new(
        RouteTable::parse(ROUTES, "routes.toml").unwrap(),
        Arc::new(store.clone()),
        actions.clone(),
        Arc::new(control.clone()),
        ProcessorSettings {
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 86_400),
            backoff: Backoff {
                base: Duration::from_secs(10),
                cap: Duration::from_secs(300),
            },
        },
    )
    .with_metrics(Metrics::in_memory());
    Fixture {
        processor,
        store,
        control,
        actions,
    }
}

fn envelope(id: &str, event_type: &str) -> String {
    let body = format!(r#"{{"action":"opened","number":{}}}"#, id.len());
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
        fixture.processor.process(&pr("d-1")).await,
        Disposition::Acknowledge(Outcome::Completed)
    );
    assert_eq!(
        fixture.processor.process(&pr("d-1")).await,
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

#[tokio::test]
async fn an_event_no_route_matches_is_acknowledged_without_a_claim() {
    let fixture = fixture(ScriptedActions::default());
    fixture.store.set_unavailable(true);
    let push = delivery("d-2", envelope("d-2", "push"), 1);
    assert_eq!(
        fixture.processor.process(&push).await,
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
        .process(&delivery("d-3", envelope("d-3", "pull_request.opened"), 2))
        .await;
    let Disposition::Retry(Outcome::RetryScheduled { delay }) = first else {
        panic!("expected a scheduled retry, got {first:?}");
    };
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
        .process(&delivery("d-3", envelope("d-3", "pull_request.opened"), 3))
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
    let outcome = fixture.processor.process(&pr("d-4")).await;
    assert_eq!(
        outcome,
        Disposition::Retry(Outcome::RetryScheduled {
            delay: Duration::from_secs(120)
        })
    );
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_with_its_reason_and_acknowledged() {
    let fixture = fixture(
        ScriptedActions::default().then("agent", Err(ActionError::permanent("400 from the agent"))),
    );
    let message = pr("d-5");
    let outcome = fixture.processor.process(&message).await;
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
        .process(&delivery("d-6", "{\"version\": 9}".into(), 1))
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
        })
        .await
        .unwrap();
    assert!(matches!(held_elsewhere, Claim::Acquired(_)));
    assert_eq!(
        fixture.processor.process(&pr("d-7")).await,
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
        .process_batch(vec![pr("d-8"), pr("d-9"), pr("d-10")])
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
        .process_batch(vec![pr("d-11"), pr("d-12"), pr("d-13")])
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
    let outcome = fixture.processor.process(&pr("d-14")).await;
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
        store.complete(&late, start, Duration::from_secs(60)).await,
        Err(StoreError::ClaimLost { .. })
    ));
    assert!(store
        .complete(&new_holder, start, Duration::from_secs(60))
        .await
        .is_ok());
}
