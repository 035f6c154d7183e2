//! `hookgate dev` killed with SIGKILL mid-stream and started again on the same data: every
//! delivery it answered 202 is still acted on, and none is acted on twice.
//!
//! The agent holds its answers back until the kill, so at the kill the queue holds a
//! backlog of accepted events and one batch of actions is in flight: delivered to the
//! agent, unanswered. Those, and only those, are delivered again after the restart (the
//! agent may have acted, but hookgate never heard back), each with the same `webhook-id`,
//! so an agent that dedupes on it acts once. Everything else is acted on exactly once,
//! including every delivery the "provider" sends again after the restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookgate::provider::Provider;
use hookgate::secret::{KeyEncoding, SigningKey};
use hookgate::verify::OutgoingDelivery;
use hookgate_samples::{sample_scheme, STANDARD_TEST_SECRET};
use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Call, Gate};
use hookgate_tests::hookgate_cli::{
    routes_to_agent, scratch_directory, wait_until_drained, DevServer, AGENT_SECRET,
};
use time::OffsetDateTime;

/// How many distinct events the "provider" sends in all.
const EVENTS: usize = 60;
/// How many must be answered 202 before the kill.
const ACCEPTED_BEFORE_KILL: usize = 25;
/// The most events one receive hands the processor, and so the most in flight at a kill.
const BATCH: usize = 10;
/// The action's timeout, long enough that the held actions are still in flight at the kill
/// on a slow machine; the lease outlives it, as the processor requires.
const ACTION_TIMEOUT_SECS: u64 = 10;
const LEASE_SECS: &str = "11";
/// How long the queue may take to settle after the restart: the in-flight batch comes back
/// after its visibility timeout (the lease plus 5 s).
const SETTLE: Duration = Duration::from_secs(90);

/// One Standard Webhooks delivery: its id, headers and body, signed with the test secret.
struct Delivery {
    id: String,
    headers: BTreeMap<String, String>,
    body: String,
}

fn delivery(number: usize) -> Delivery {
    let id = format!("msg_durability_{number:03}");
    let body = format!(r#"{{"type":"task.updated","data":{{"task":{number}}}}}"#);
    let key = SigningKey::parse(STANDARD_TEST_SECRET, KeyEncoding::StandardWebhooks)
        .expect("the test secret is valid");
    let scheme = sample_scheme(Provider::Standard);
    let mut headers: BTreeMap<String, String> = scheme
        .sign(
            &OutgoingDelivery {
                body: body.as_bytes(),
                signed_at: OffsetDateTime::now_utc(),
                id: &id,
                url: "http://127.0.0.1/webhooks/github",
            },
            &key,
        )
        .into_iter()
        .collect();
    headers.insert("content-type".into(), "application/json".into());
    Delivery { id, headers, body }
}

/// Posts a delivery; `true` when it was answered 202.
async fn post(client: &reqwest::Client, url: &str, delivery: &Delivery) -> bool {
    let mut request = client.post(url).body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(name, value);
    }
    matches!(request.send().await, Ok(response) if response.status() == 202)
}

async fn start_dev(data_dir: &Path, routes: &Path) -> DevServer {
    DevServer::start(
        data_dir,
        &["--routes", routes.to_str().expect("a UTF-8 path")],
        // A short lease and backoff, so a claim held by the killed process is taken over,
        // and a delivery that found it held is retried, in seconds rather than minutes.
        [
            ("AGENT_SECRET", AGENT_SECRET),
            ("LEASE_SECS", LEASE_SECS),
            ("BACKOFF_BASE_SECS", "1"),
            ("BACKOFF_CAP_SECS", "2"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_answered_202_is_lost_or_acted_on_twice_across_a_kill_9() {
    let directory = scratch_directory("dev-durability");
    let data_dir = directory.join("data");
    let gate = Gate::closed();
    let agent = Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .hold_answers_until(gate.clone())
        .start()
        .await
        .expect("the agent starts");
    let routes = routes_to_agent(
        &directory,
        "standard",
        &agent.url("/hooks"),
        ACTION_TIMEOUT_SECS,
    );
    let client = hookgate_tests::http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");

    // Phase 1: a sender posts every event in turn; the test kills the process once enough
    // are accepted and the agent holds a batch, so the kill lands between, or in the
    // middle of, requests.
    let first = start_dev(&data_dir, &routes).await;
    let url = first.webhook_url("standard");
    let accepted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sender = {
        let accepted = Arc::clone(&accepted);
        let client = client.clone();
        tokio::spawn(async move {
            for number in 0..EVENTS {
                let delivery = delivery(number);
                if post(&client, &url, &delivery).await {
                    accepted.lock().expect("not poisoned").insert(delivery.id);
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.lock().expect("not poisoned").len() < ACCEPTED_BEFORE_KILL
        || agent.calls().is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the first process accepted too little: {}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill_hard().await;
    let in_flight_at_kill: BTreeSet<String> = agent.calls().iter().map(delivery_id).collect();
    sender
        .await
        .expect("the sender ends once the process is gone");
    gate.open();
    let accepted_before_kill = accepted.lock().expect("not poisoned").clone();
    assert!(
        !in_flight_at_kill.is_empty() && in_flight_at_kill.len() <= BATCH,
        "one batch is in flight at the kill: {in_flight_at_kill:?}"
    );
    assert!(
        in_flight_at_kill.len() < accepted_before_kill.len(),
        "accepted events are still queued at the kill"
    );

    // Phase 2: the same data, a new process. The provider first sends again what was never
    // answered 202; what was answered 202 is not sent again yet, so it can only reach the
    // agent from the queue the first process left.
    let second = start_dev(&data_dir, &routes).await;
    let url = second.webhook_url("standard");
    for number in 0..EVENTS {
        let delivery = delivery(number);
        if !accepted_before_kill.contains(&delivery.id) {
            assert!(
                post(&client, &url, &delivery).await,
                "the restarted process refused {}: {}",
                delivery.id,
                second.log()
            );
        }
    }
    wait_until_drained(&data_dir, SETTLE).await;
    let calls = calls_by_delivery(&agent.calls());
    let lost: Vec<&String> = accepted_before_kill
        .iter()
        .filter(|id| !calls.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "answered 202, then lost: {lost:?}\n{}",
        second.log()
    );
    assert_eq!(calls.len(), EVENTS, "every event reached the agent");

    // Acted on twice: exactly the actions in flight at the kill are delivered again, each
    // as the same delivery (the same webhook-id), which the agent dedupes.
    let repeated: BTreeSet<String> = calls
        .iter()
        .filter(|(_, webhook_ids)| webhook_ids.len() > 1)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(repeated, in_flight_at_kill, "{calls:?}");
    for (id, webhook_ids) in &calls {
        let distinct: BTreeSet<&String> = webhook_ids.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "{id} reached the agent as different deliveries: {webhook_ids:?}"
        );
        assert!(
            webhook_ids.len() <= 2,
            "{id} was delivered {} times",
            webhook_ids.len()
        );
    }

    // Then the provider sends again what was answered 202 before the kill: every one is a
    // duplicate now, and nothing more reaches the agent.
    let calls_before_resend = agent.calls().len();
    for number in 0..EVENTS {
        let delivery = delivery(number);
        if accepted_before_kill.contains(&delivery.id) {
            assert!(post(&client, &url, &delivery).await, "{}", second.log());
        }
    }
    wait_until_drained(&data_dir, SETTLE).await;
    assert_eq!(
        agent.calls().len(),
        calls_before_resend,
        "a delivery sent again after the restart was acted on again"
    );
    let _ = second.stop().await;
}

/// The provider's delivery id a call to the agent is about (`msg_durability_NNN`).
fn delivery_id(call: &Call) -> String {
    call.json()["delivery_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Each delivery's calls, as the `webhook-id` of each.
fn calls_by_delivery(calls: &[Call]) -> BTreeMap<String, Vec<String>> {
    let mut by_delivery: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in calls {
        let webhook_id = call.header("webhook-id").unwrap_or_default().to_owned();
        by_delivery
            .entry(delivery_id(call))
            .or_default()
            .push(webhook_id);
    }
    by_delivery
}
