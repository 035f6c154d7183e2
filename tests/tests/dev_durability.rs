//! `hookgate dev` killed with SIGKILL mid-stream and started again on the same data: every
//! delivery it answered 202 is still acted on, and none is acted on twice.
//!
//! The agent is slow (a second an event), so at the kill the queue holds a backlog of
//! accepted events and one batch is in flight. What may legitimately happen again after a
//! crash is only the delivery of an action that was in flight at the kill (the agent may
//! have acted, but hookgate never heard back): it is re-sent with the same `webhook-id`, so
//! an agent that dedupes on it acts once. Everything else, including every delivery the
//! "provider" sends again after the restart, must be acted on exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookgate::provider::Provider;
use hookgate::samples::{sample_scheme, STANDARD_TEST_SECRET};
use hookgate::secret::{KeyEncoding, SigningKey};
use hookgate::verify::OutgoingDelivery;
use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Answer};
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
/// How long the agent takes to act: the window in which the kill lands, with a batch of
/// actions delivered but not yet answered.
const AGENT_DELAY: Duration = Duration::from_secs(1);

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
            ("LEASE_SECS", "4"),
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
    let agent = Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .otherwise(Answer::ok().after(AGENT_DELAY))
        .start()
        .await
        .expect("the agent starts");
    let routes = routes_to_agent(&directory, "standard", &agent.url("/hooks"), 3);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");

    // Phase 1: a sender posts every event in turn while the test kills the process once
    // enough are accepted, so the kill lands between, or in the middle of, requests.
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
    // The kill lands once enough is accepted and the agent is in the middle of a batch.
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
    let acted_on_before_kill = agent.calls().len();
    sender
        .await
        .expect("the sender ends once the process is gone");
    let accepted_before_restart = accepted.lock().expect("not poisoned").clone();
    assert!(
        acted_on_before_kill < accepted_before_restart.len(),
        "the kill must land with accepted events still queued ({acted_on_before_kill} acted on, {} accepted)",
        accepted_before_restart.len()
    );

    // Phase 2: the same data, a new process. The provider sends every event again (those
    // never answered 202, and those that were: a provider retries on any doubt).
    let second = start_dev(&data_dir, &routes).await;
    let url = second.webhook_url("standard");
    for number in 0..EVENTS {
        let delivery = delivery(number);
        assert!(
            post(&client, &url, &delivery).await,
            "the restarted process refused {}: {}",
            delivery.id,
            second.log()
        );
    }

    // Everything settles: the backlog from before the kill, the batch that was in flight
    // (back after its visibility timeout), and the deliveries sent again.
    wait_until_drained(&data_dir, Duration::from_secs(90)).await;
    let mut by_delivery: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in agent.calls() {
        let delivery_id = call.json()["delivery_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let webhook_id = call.header("webhook-id").unwrap_or_default().to_owned();
        by_delivery.entry(delivery_id).or_default().push(webhook_id);
    }
    let missing: Vec<String> = (0..EVENTS)
        .map(|number| delivery(number).id)
        .filter(|id| !by_delivery.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "lost: {missing:?} (of which answered 202 before the kill: {:?})\n{}",
        missing
            .iter()
            .filter(|id| accepted_before_restart.contains(*id))
            .collect::<Vec<_>>(),
        second.log()
    );

    // Acted on twice: only an action in flight at the kill may be delivered again, and
    // then as the same delivery (the same webhook-id), which the agent dedupes.
    let repeated: BTreeMap<&String, &Vec<String>> = by_delivery
        .iter()
        .filter(|(_, webhook_ids)| webhook_ids.len() > 1)
        .collect();
    assert!(
        !repeated.is_empty(),
        "the batch in flight at the kill was never delivered again"
    );
    assert!(
        repeated.len() <= BATCH,
        "{} events were delivered more than once; at most one batch ({BATCH}) was in flight: {repeated:?}",
        repeated.len()
    );
    for (delivery_id, webhook_ids) in &by_delivery {
        let distinct: BTreeSet<&String> = webhook_ids.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "{delivery_id} reached the agent as different deliveries: {webhook_ids:?}"
        );
        assert!(
            webhook_ids.len() <= 2,
            "{delivery_id} was delivered {} times",
            webhook_ids.len()
        );
    }
    let _ = second.stop().await;
}
