//! End to end through the real `hookgate` binary: `hookgate dev` serving on loopback with
//! its embedded queue and store, `hookgate send` posting signed samples to it, an `http`
//! action delivering to a local agent that checks hookgate's signature, and `hookgate dlq`
//! and `hookgate routes` working on what `dev` left behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

use hookgate::envelope::RawBody;
use hookgate::provider::Provider;
use hookgate::secret::{KeyEncoding, SigningKey};
use hookgate::sqlite::{SqliteQueue, SqliteQueueSettings};
use hookgate::verify::github::Github;
use hookgate::verify::{OutgoingDelivery, SignatureScheme};
use hookgate_samples::{SampleDelivery, SampleEvent, GITHUB_TEST_SECRET};
use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Answer};
use hookgate_tests::contract::look;
use hookgate_tests::hookgate_cli::{
    hookgate, hookgate_into_a_closed_pipe, printed, routes_to_agent, scratch_directory,
    send_accepted, wait_until_drained, DevServer, AGENT_SECRET,
};

/// Every event from every provider to the agent.
fn routes_file(directory: &Path, agent_url: &str) -> PathBuf {
    routes_to_agent(directory, "*", agent_url, 5)
}

/// An agent that checks hookgate's signature with `AGENT_SECRET` and answers 200.
async fn checking_agent() -> Agent {
    Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent starts")
}

async fn start_dev(data_dir: &Path, routes: &Path) -> DevServer {
    DevServer::start(
        data_dir,
        &["--routes", routes.to_str().expect("a UTF-8 path")],
        [("AGENT_SECRET", AGENT_SECRET), ("RUST_LOG", "info")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_from_every_provider_sent_with_hookgate_send_reaches_the_agent_once() {
    let directory = scratch_directory("dev-every-provider");
    let agent = checking_agent().await;
    let routes = routes_file(&directory, &agent.url("/hooks"));
    let dev = start_dev(&directory.join("data"), &routes).await;

    for provider in Provider::ALL {
        let url = dev.webhook_url(provider.as_str());
        let sent = send_accepted(provider.as_str(), &url).await;
        let stdout = String::from_utf8_lossy(&sent.stdout);
        // 202, or 200 with the answer the provider expects (Discord, Linear, Twilio).
        let sample = hookgate_samples::SampleEvent::all()
            .into_iter()
            .find(|event| event.provider() == provider && !event.variant().is_rejected())
            .expect("every provider has a genuine sample");
        let answer = match sample.acknowledgement(time::OffsetDateTime::now_utc()) {
            Some(_) => "\n200 OK\n",
            None => "\n202 Accepted\n",
        };
        assert!(stdout.contains(answer), "{}", printed(&sent));
    }

    let calls = agent
        .wait_for_calls(Provider::ALL.len(), Duration::from_secs(30))
        .await;
    assert_eq!(calls.len(), Provider::ALL.len(), "{}", dev.log());
    let log = dev.log();
    let enqueued: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("webhook enqueued"))
        .collect();
    assert_eq!(enqueued.len(), Provider::ALL.len(), "{log}");
    for line in enqueued {
        assert_eq!(line.matches("provider=").count(), 1, "named once: {line}");
    }
    let mut providers: Vec<String> = calls
        .iter()
        .map(|call| {
            assert_eq!(
                call.verified,
                Ok(()),
                "the agent checks hookgate's signature"
            );
            call.json()["provider"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    providers.sort();
    let mut expected: Vec<String> = Provider::ALL
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    expected.sort();
    assert_eq!(providers, expected);

    // The same sample again: the provider retrying. Accepted, and processed as a duplicate.
    send_accepted("github", &dev.webhook_url("github")).await;
    wait_until_drained(&directory.join("data"), Duration::from_secs(20)).await;
    assert_eq!(agent.calls().len(), Provider::ALL.len(), "{}", dev.log());
    dev.wait_for_log("outcome=\"duplicate\"", Duration::from_secs(10))
        .await;

    let stopped = dev.stop().await;
    assert!(
        stopped.is_some_and(|status| status.success()),
        "SIGTERM stops hookgate dev cleanly: {stopped:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoiled_sample_is_refused_401_and_hookgate_send_fails() {
    let directory = scratch_directory("dev-refused");
    let agent = Agent::start().await.expect("the agent starts");
    let routes = routes_file(&directory, &agent.url("/hooks"));
    let dev = start_dev(&directory.join("data"), &routes).await;

    for (provider, event) in [
        ("github", "rejected-wrong-secret"),
        ("stripe", "rejected-stale-timestamp"),
        ("slack", "rejected-tampered-body"),
    ] {
        let sent = hookgate(
            &[
                "send",
                provider,
                "--event",
                event,
                "--url",
                &dev.webhook_url(provider),
            ],
            &[],
        )
        .await;
        assert!(!sent.status.success(), "{}", printed(&sent));
        assert!(
            String::from_utf8_lossy(&sent.stdout).contains("\n401 Unauthorized\n"),
            "{}",
            printed(&sent)
        );
    }
    let depth = SqliteQueue::open(
        &directory.join("data").join("hookgate.sqlite"),
        SqliteQueueSettings::default(),
    )
    .and_then(|queue| queue.depth())
    .expect("the queue answers");
    assert_eq!(
        (depth.visible, depth.in_flight),
        (0, 0),
        "nothing was queued"
    );
    assert!(agent.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_signed_with_the_gateways_own_secret_is_accepted_and_the_test_secret_refused() {
    let directory = scratch_directory("dev-own-secret");
    let agent = Agent::start().await.expect("the agent starts");
    let routes = routes_file(&directory, &agent.url("/hooks"));
    let dev = DevServer::start(
        &directory.join("data"),
        &["--routes", routes.to_str().expect("a UTF-8 path")],
        [
            ("AGENT_SECRET", AGENT_SECRET),
            ("HOOKGATE_GITHUB_SECRET", "a-secret-of-our-own"),
        ],
    )
    .await;
    let url = dev.webhook_url("github");

    let with_test_secret = hookgate(&["send", "github", "--url", &url], &[]).await;
    assert!(
        String::from_utf8_lossy(&with_test_secret.stdout).contains("\n401 Unauthorized\n"),
        "{}",
        printed(&with_test_secret)
    );
    let with_own_secret = hookgate(
        &[
            "send",
            "github",
            "--url",
            &url,
            "--secret",
            "a-secret-of-our-own",
        ],
        &[],
    )
    .await;
    assert!(
        with_own_secret.status.success(),
        "{}",
        printed(&with_own_secret)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_failing_action_is_dead_lettered_then_listed_shown_and_redriven() {
    let directory = scratch_directory("dev-dlq");
    let data_dir = directory.join("data");
    let data = data_dir.to_str().expect("a UTF-8 path");
    let agent = Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .answer(Answer::status(422).with_body("unknown event shape"))
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent starts");
    let routes = routes_file(&directory, &agent.url("/hooks"));
    let dev = start_dev(&data_dir, &routes).await;

    send_accepted("stripe", &dev.webhook_url("stripe")).await;
    assert_eq!(
        agent.wait_for_calls(1, Duration::from_secs(20)).await.len(),
        1
    );
    wait_until_drained(&data_dir, Duration::from_secs(20)).await;

    let listed = hookgate(&["dlq", "list", "--data-dir", data], &[]).await;
    assert!(listed.status.success(), "{}", printed(&listed));
    let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.contains("stripe invoice.paid"), "{listing}");
    assert!(listing.contains("422"), "{listing}");
    let id = listing.split_whitespace().next().expect("an id").to_owned();
    // The id is the one the processor's log printed as it gave up on the message, and the
    // line names the event's idempotency key.
    dev.wait_for_log("sent to the dead-letter queue", Duration::from_secs(10))
        .await;
    let log = dev.log();
    let given_up = log
        .lines()
        .find(|line| line.contains("sent to the dead-letter queue"))
        .expect("the processor logged it");
    assert!(
        given_up.contains(&format!("message_id={id}")),
        "{id} not in: {given_up}"
    );
    assert!(listing.contains("  stripe:evt_"), "{listing}");

    let shown = hookgate(&["dlq", "show", &id, "--data-dir", data], &[]).await;
    assert!(shown.status.success(), "{}", printed(&shown));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("show prints JSON");
    assert_eq!(shown["message_id"], id.as_str());
    assert!(
        shown["idempotency_key"]
            .as_str()
            .is_some_and(|key| key.starts_with("stripe:evt_")),
        "{shown}"
    );
    assert_ne!(shown["dead_letter_message_id"], id.as_str(), "{shown}");
    assert_eq!(shown["envelope"]["provider"], "stripe");
    assert!(
        shown["reason"].as_str().unwrap_or_default().contains("422"),
        "{shown}"
    );

    let (status, stderr) =
        hookgate_into_a_closed_pipe(&["dlq", "show", &id, "--data-dir", data]).await;
    assert!(
        status.success() && stderr.is_empty(),
        "`dlq show | head` ends quietly when head stops reading: {status}, {stderr}"
    );

    let unknown = hookgate(&["dlq", "show", "no-such-id", "--data-dir", data], &[]).await;
    assert!(!unknown.status.success(), "{}", printed(&unknown));

    let redriven = hookgate(&["dlq", "redrive", "--data-dir", data], &[]).await;
    assert!(redriven.status.success(), "{}", printed(&redriven));
    assert!(
        String::from_utf8_lossy(&redriven.stdout).contains("moved 1 message(s)"),
        "{}",
        printed(&redriven)
    );
    let calls = agent.wait_for_calls(2, Duration::from_secs(20)).await;
    assert_eq!(calls.len(), 2, "{}", dev.log());
    assert_eq!(
        calls[0].header("webhook-id"),
        calls[1].header("webhook-id"),
        "a redriven event is the same delivery to the agent"
    );
    let empty = hookgate(&["dlq", "list", "--data-dir", data], &[]).await;
    assert_eq!(
        String::from_utf8_lossy(&empty.stdout),
        "the dead-letter queue is empty\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_still_failing_on_its_last_allowed_delivery_is_dead_lettered_with_its_reason() {
    let directory = scratch_directory("dev-last-delivery");
    let data_dir = directory.join("data");
    let data = data_dir.to_str().expect("a UTF-8 path");
    let agent = Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .otherwise(Answer::status(503).with_body("agent down for maintenance"))
        .start()
        .await
        .expect("the agent starts");
    let routes = routes_file(&directory, &agent.url("/hooks"));
    let dev = DevServer::start(
        &data_dir,
        &[
            "--routes",
            routes.to_str().expect("a UTF-8 path"),
            "--max-receive-count",
            "2",
        ],
        [
            ("AGENT_SECRET", AGENT_SECRET),
            ("RUST_LOG", "info"),
            ("BACKOFF_BASE_SECS", "1"),
            ("BACKOFF_CAP_SECS", "1"),
        ],
    )
    .await;

    send_accepted("github", &dev.webhook_url("github")).await;
    dev.wait_for_log("sent to the dead-letter queue", Duration::from_secs(30))
        .await;

    assert_eq!(agent.calls().len(), 2, "{}", dev.log());
    let log = dev.log();
    assert!(
        log.contains("gave up after 2 deliveries"),
        "the log says why: {log}"
    );
    let listed = hookgate(&["dlq", "list", "--data-dir", data], &[]).await;
    let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listing.contains("gave up after 2 deliveries") && listing.contains("503"),
        "{}",
        printed(&listed)
    );
}

/// Posts a sample delivery as it is, and returns the status.
async fn post_delivery(url: &str, delivery: &SampleDelivery) -> u16 {
    post_bytes(url, delivery, delivery.body.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_delivery_replayed_under_a_fresh_id_is_refused_and_a_redelivery_is_a_duplicate() {
    let directory = scratch_directory("dev-replay");
    let agent = checking_agent().await;
    let routes = routes_file(&directory, &agent.url("/hooks"));
    let dev = start_dev(&directory.join("data"), &routes).await;
    let url = dev.webhook_url("github");
    let genuine = SampleEvent::find(Provider::Github, "pull_request.opened")
        .expect("the GitHub sample")
        .delivery(OffsetDateTime::now_utc());
    // What someone who captured the delivery can make of it: the signed body and its
    // signature as they were, under a delivery id of their own, which GitHub does not sign.
    let mut replayed = genuine.clone();
    replayed.headers.insert(
        "x-github-delivery".to_owned(),
        "00000000-0000-4000-8000-00000000f0e9".to_owned(),
    );

    assert_eq!(post_delivery(&url, &genuine).await, 202);
    assert_eq!(
        agent.wait_for_calls(1, Duration::from_secs(20)).await.len(),
        1
    );
    assert_eq!(
        post_delivery(&url, &replayed).await,
        202,
        "the signature holds, so the receiver queues it"
    );
    dev.wait_for_log("suspected_replay", Duration::from_secs(20))
        .await;
    assert_eq!(
        post_delivery(&url, &genuine).await,
        202,
        "a redelivery keeps its id"
    );
    dev.wait_for_log("duplicate delivery acknowledged", Duration::from_secs(20))
        .await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(agent.calls().len(), 1, "{}", dev.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_700_kb_json_body_and_a_3_mb_binary_body_reach_the_agent_byte_for_byte() {
    let directory = scratch_directory("dev-large");
    let agent = checking_agent().await;
    let routes = routes_file(&directory, &agent.url("/hooks"));
    let dev = start_dev(&directory.join("data"), &routes).await;
    let json_body: Vec<u8> = {
        let commit = r#"{"id":"0f0e","message":"Fix \"quoting\" in módulo","added":["src/a.rs"]}"#;
        let commits = vec![commit; 700 * 1024 / commit.len()].join(",");
        format!(r#"{{"ref":"refs/heads/main","commits":[{commits}]}}"#).into_bytes()
    };
    let binary_body: Vec<u8> = (0..=255_u8).cycle().take(3 * 1024 * 1024).collect();

    for (id, body, content_type) in [
        ("d-dev-large-json", &json_body, "application/json"),
        (
            "d-dev-large-binary",
            &binary_body,
            "application/octet-stream",
        ),
    ] {
        let mut delivery = SampleDelivery {
            headers: Github
                .sign(
                    &OutgoingDelivery {
                        body,
                        signed_at: OffsetDateTime::now_utc(),
                        id,
                        url: "http://127.0.0.1/webhooks/github",
                    },
                    &SigningKey::parse(GITHUB_TEST_SECRET, KeyEncoding::Raw).expect("a key"),
                )
                .into_iter()
                .collect(),
            body: String::new(),
            url: "http://127.0.0.1/webhooks/github".to_owned(),
        };
        delivery.headers.extend([
            ("content-type".to_owned(), content_type.to_owned()),
            ("x-github-delivery".to_owned(), id.to_owned()),
            ("x-github-event".to_owned(), "push".to_owned()),
        ]);
        assert_eq!(
            post_bytes(&dev.webhook_url("github"), &delivery, body).await,
            202,
            "{id}"
        );
    }

    let calls = agent.wait_for_calls(2, Duration::from_secs(30)).await;
    assert_eq!(calls.len(), 2, "{}", dev.log());
    for call in &calls {
        let event = call.json();
        let body: RawBody = serde_json::from_value(event["body"].clone()).expect("the raw body");
        let body = body.to_bytes().expect("carried in the event");
        let expected = match event["delivery_id"].as_str() {
            Some("d-dev-large-json") => &json_body,
            Some("d-dev-large-binary") => &binary_body,
            other => panic!("an unexpected delivery {other:?}"),
        };
        assert!(
            body == *expected,
            "{:?} changed on the way",
            event["delivery_id"]
        );
    }
    // The 3 MB body was kept beside the queue, as the stack keeps it in its bucket; the
    // 700 KB one travelled in its envelope.
    let stored: Vec<i64> = look(&directory.join("data").join("hookgate.sqlite"))
        .prepare("SELECT length(body) FROM stored_bodies")
        .expect("the table exists")
        .query_map([], |row| row.get(0))
        .expect("the rows read")
        .collect::<Result<_, _>>()
        .expect("the rows read");
    assert_eq!(stored, [binary_body.len() as i64]);
}

/// Posts `body` with a delivery's headers, and returns the status.
async fn post_bytes(url: &str, delivery: &SampleDelivery, body: &[u8]) -> u16 {
    let mut request = hookgate_tests::http_client()
        .build()
        .expect("a client")
        .post(url)
        .body(body.to_vec());
    for (name, value) in &delivery.headers {
        request = request.header(name, value);
    }
    request
        .send()
        .await
        .expect("hookgate dev answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn dlq_commands_refuse_a_data_directory_that_does_not_exist() {
    let directory = scratch_directory("dev-no-data");
    let missing = directory.join("nothing-here");
    let listed = hookgate(
        &[
            "dlq",
            "list",
            "--data-dir",
            missing.to_str().expect("UTF-8"),
        ],
        &[],
    )
    .await;
    assert!(!listed.status.success(), "{}", printed(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stderr).contains("does not exist"),
        "{}",
        printed(&listed)
    );
    assert!(!missing.exists(), "looking must not create a database");
}

#[tokio::test]
async fn routes_check_accepts_a_valid_file_and_names_the_field_of_an_invalid_one() {
    let directory = scratch_directory("routes-check");
    let valid = routes_file(&directory, "https://agent.example.com/hooks");
    let checked = hookgate(&["routes", "check", valid.to_str().expect("UTF-8")], &[]).await;
    assert!(checked.status.success(), "{}", printed(&checked));
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("is valid: 1 route(s), 1 action(s)"),
        "{}",
        printed(&checked)
    );

    let invalid = directory.join("invalid.toml");
    std::fs::write(
        &invalid,
        "[[route]]\nprovider = \"bitbucket\"\nevents = [\"*\"]\nactions = [\"log\"]\n\n[action.log]\ntype = \"log\"\n",
    )
    .expect("written");
    let refused = hookgate(&["routes", "check", invalid.to_str().expect("UTF-8")], &[]).await;
    assert!(!refused.status.success(), "{}", printed(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("route[0]") && stderr.contains("bitbucket"),
        "{stderr}"
    );

    let bundled = hookgate(
        &[
            "routes",
            "check",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../functions/processor/routes.toml"
            ),
        ],
        &[],
    )
    .await;
    assert!(bundled.status.success(), "{}", printed(&bundled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dev_on_a_taken_port_fails_naming_the_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("an address").port().to_string();
    let directory = scratch_directory("dev-taken-port");
    let data = directory.join("data");
    let output = hookgate(
        &[
            "dev",
            "--port",
            &port,
            "--data-dir",
            data.to_str().expect("UTF-8"),
        ],
        &[],
    )
    .await;
    assert!(!output.status.success(), "{}", printed(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("127.0.0.1:{port}")),
        "{}",
        printed(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hookgate_dev_on_the_same_data_directory_is_refused_and_the_first_serves_on() {
    let directory = scratch_directory("dev-twice");
    let agent = Agent::builder()
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent starts");
    let routes = routes_file(&directory, &agent.url("/hooks"));
    let data = directory.join("data");
    let first = start_dev(&data, &routes).await;

    let second = hookgate(
        &[
            "dev",
            "--port",
            "0",
            "--data-dir",
            data.to_str().expect("a UTF-8 path"),
        ],
        &[],
    )
    .await;

    assert!(!second.status.success(), "{}", printed(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another `hookgate dev`") && stderr.contains("--data-dir"),
        "{}",
        printed(&second)
    );
    send_accepted("github", &first.webhook_url("github")).await;
    let calls = agent.wait_for_calls(1, Duration::from_secs(30)).await;
    assert_eq!(calls.len(), 1, "the first still serves: {}", first.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_sent_with_a_new_id_is_a_new_event_and_ones_own_data_arrives_as_given() {
    let directory = scratch_directory("dev-new-id");
    let agent = checking_agent().await;
    let routes = routes_file(&directory, &agent.url("/hooks"));
    let dev = start_dev(&directory.join("data"), &routes).await;
    let stripe = dev.webhook_url("stripe");
    let own = directory.join("own.json");
    std::fs::write(
        &own,
        r#"{"id": "evt_own_1", "type": "customer.created", "data": {}}"#,
    )
    .expect("the payload is written");

    for args in [
        vec!["send", "stripe", "--url", &stripe],
        vec!["send", "stripe", "--url", &stripe],
        vec!["send", "stripe", "--url", &stripe, "--new-id"],
        vec!["send", "stripe", "--url", &stripe, "--new-id"],
        vec![
            "send",
            "stripe",
            "--url",
            &stripe,
            "--data",
            own.to_str().expect("UTF-8"),
        ],
    ] {
        let sent = hookgate(&args, &[]).await;
        assert!(sent.status.success(), "{args:?}: {}", printed(&sent));
    }

    // The sample twice is one event; each new id is an event of its own; the own payload is
    // one more.
    let calls = agent.wait_for_calls(4, Duration::from_secs(30)).await;
    wait_until_drained(&directory.join("data"), Duration::from_secs(20)).await;
    let calls = agent
        .wait_for_calls(calls.len().max(4), Duration::from_secs(1))
        .await;
    let ids: std::collections::BTreeSet<String> = calls
        .iter()
        .map(|call| {
            call.json()["delivery_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!((calls.len(), ids.len()), (4, 4), "{ids:?}\n{}", dev.log());
    assert!(ids.contains("evt_own_1"), "{ids:?}");
    let own_call = calls
        .iter()
        .find(|call| call.json()["delivery_id"] == "evt_own_1")
        .expect("the own payload arrived");
    assert_eq!(own_call.json()["event_type"], "customer.created");
}

/// The banner's lines that are commands, as a user would copy them.
fn banner_commands(banner: &str) -> Vec<Vec<String>> {
    banner
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("cargo run --bin hookgate -- "))
        .map(|line| {
            line.trim_start_matches("cargo run --bin hookgate -- ")
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_sends_every_event_to_one_agent_signed_with_the_printed_secret() {
    let directory = scratch_directory("dev-forward");
    // The agent checks the signature with the secret the banner prints, which it learns
    // only once dev has started: it records every call and is checked afterwards.
    let agent = Agent::builder()
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent starts");
    let data = directory.join("data");
    let dev = DevServer::start(
        &data,
        &["--forward-to", &agent.url("/hooks")],
        std::iter::empty::<(&str, &str)>(),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dev.banner().contains("Stop with Ctrl-C") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let banner = dev.banner();
    // The word after the routes line's "with" (the receivers' test secrets come earlier).
    let secret = banner
        .split("signed as Standard Webhooks with")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|word| word.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("the banner prints the secret:\n{banner}"))
        .to_owned();

    // The banner's send command, run as printed (with this build's binary for `cargo run`),
    // twice: --new-id makes each a new event.
    let commands = banner_commands(&banner);
    let send = commands
        .iter()
        .find(|command| command.contains(&"--new-id".to_owned()))
        .unwrap_or_else(|| panic!("a send command:\n{banner}"));
    for _ in 0..2 {
        let args: Vec<&str> = send.iter().map(String::as_str).collect();
        let sent = hookgate(&args, &[]).await;
        assert!(sent.status.success(), "{}", printed(&sent));
    }

    let calls = agent.wait_for_calls(2, Duration::from_secs(30)).await;
    assert_eq!(calls.len(), 2, "{}", dev.log());
    let verifier = standard_webhooks_verifier(&secret);
    for call in &calls {
        assert_eq!(
            verifier(&call.headers, &call.body),
            Ok(()),
            "signed with the printed secret"
        );
        assert_eq!(call.json()["provider"], "github");
    }
    assert_ne!(
        calls[0].json()["delivery_id"],
        calls[1].json()["delivery_id"]
    );
    // Reaped before the restart: a process killed but still exiting holds the data
    // directory's lock, and the second `dev` would be refused.
    dev.kill_hard().await;

    // The secret is the data directory's: a restart signs with the same one.
    let again = DevServer::start(
        &data,
        &["--forward-to", &agent.url("/hooks")],
        std::iter::empty::<(&str, &str)>(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(again.banner().contains(&secret), "{}", again.banner());
}

#[tokio::test]
async fn send_with_data_that_cannot_be_read_fails_naming_the_file() {
    let directory = scratch_directory("send-no-data");
    let missing = directory.join("missing.json");
    let missing = missing.to_str().expect("UTF-8");

    let sent = hookgate(&["send", "stripe", "--data", missing], &[]).await;

    assert!(!sent.status.success(), "{}", printed(&sent));
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert!(
        stderr.contains(&format!("cannot read {missing}")),
        "{}",
        printed(&sent)
    );
}
