//! `hookgate events`, `tail` and `replay` through the real binaries: on `hookgate dev`'s
//! embedded archive, and on an archive in S3 with records in DynamoDB (the emulator), as a
//! deployed stack keeps them.

use std::time::Duration;

use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Answer, Call};
use hookgate_tests::emulator;
use hookgate_tests::hookgate_cli::{
    dev_routing_to, hookgate, printed, routes_to_agent, scratch_directory, DevServer, AGENT_SECRET,
};
use serde_json::Value;

/// Runs `hookgate ARGS` and returns its stdout as JSON, failing on a non-zero exit.
async fn json_of(args: &[&str], env: &[(&str, &str)]) -> Value {
    let output = hookgate(args, env).await;
    assert!(output.status.success(), "{args:?}: {}", printed(&output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{args:?} printed no JSON ({error}): {}", printed(&output)))
}

/// Sends a sample with a delivery id never sent before, and returns its idempotency key.
async fn send_new(provider: &str, url: &str) -> String {
    let sent = hookgate(&["send", provider, "--new-id", "--url", url], &[]).await;
    assert!(sent.status.success(), "{}", printed(&sent));
    let stdout = String::from_utf8_lossy(&sent.stdout);
    let answer: Value = stdout
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON answer: {}", printed(&sent)));
    answer["idempotency_key"]
        .as_str()
        .expect("the answer names the key")
        .to_owned()
}

/// `args` followed by the options that name the gateway.
fn on<'a>(args: &[&'a str], target: &[&'a str]) -> Vec<&'a str> {
    args.iter().chain(target).copied().collect()
}

fn keys(listed: &Value) -> Vec<String> {
    listed
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|event| {
            event["idempotency_key"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn idempotency_keys(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|call| {
            call.header("idempotency-key")
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Waits until the process's wall clock has moved past a whole millisecond boundary, and
/// returns the instant between what came before and what comes after, as RFC 3339.
async fn instant_between() -> String {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let now = time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(50)).await;
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("an instant formats")
}

/// What every scenario runs, on whichever gateway `target` and `env` name: two events, one
/// of which fails once; then inspecting, replaying through the gate, a forced replay of a
/// completed event, and forced and gated replays of a time range.
async fn inspect_and_replay(dev: &DevServer, agent: &Agent, target: &[&str], env: &[(&str, &str)]) {
    let tail = {
        let args: Vec<String> = on(
            &["tail", "--json", "--interval", "0.2", "--for", "12"],
            target,
        )
        .into_iter()
        .map(str::to_owned)
        .collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        tokio::spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            hookgate(&args, &env).await
        })
    };
    // The tail takes its first look before anything is sent.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let github = send_new("github", &dev.webhook_url("github")).await;
    let between = instant_between().await;
    let stripe = send_new("stripe", &dev.webhook_url("stripe")).await;
    // The agent refuses the first call (503), takes its retry, and the other event.
    let calls = agent.wait_for_calls(3, Duration::from_secs(30)).await;
    assert_eq!(calls.len(), 3, "{}", dev.log());
    dev.wait_for_log("outcome=\"completed\"", Duration::from_secs(30))
        .await;

    // Listing and filtering.
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = json_of(&on(&["events", "list", "--json"], target), env).await;
        let states: Vec<&str> = listed
            .as_array()
            .expect("a JSON array")
            .iter()
            .filter_map(|event| event["state"].as_str())
            .collect();
        if states == ["completed", "completed"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(keys(&listed), [github.clone(), stripe.clone()], "{listed}");
    let by_provider = json_of(
        &on(
            &["events", "list", "--json", "--provider", "stripe"],
            target,
        ),
        env,
    )
    .await;
    assert_eq!(keys(&by_provider), std::slice::from_ref(&stripe));
    let by_type = json_of(
        &on(
            &["events", "list", "--json", "--type", "pull_request.*"],
            target,
        ),
        env,
    )
    .await;
    assert_eq!(keys(&by_type), std::slice::from_ref(&github));
    let until = json_of(
        &on(
            &[
                "events", "list", "--json", "--since", "1h", "--until", &between,
            ],
            target,
        ),
        env,
    )
    .await;
    assert_eq!(keys(&until), std::slice::from_ref(&github));
    let failed = json_of(
        &on(&["events", "list", "--json", "--status", "failed"], target),
        env,
    )
    .await;
    assert_eq!(keys(&failed), Vec::<String>::new());
    let completed = json_of(
        &on(
            &["events", "list", "--json", "--status", "completed"],
            target,
        ),
        env,
    )
    .await;
    assert_eq!(completed.as_array().expect("a JSON array").len(), 2);

    // One event in full: the envelope as archived and the record, the failed attempt
    // included (whichever event the agent refused first).
    let refused = calls[0]
        .header("idempotency-key")
        .expect("a key")
        .to_owned();
    let shown = json_of(&on(&["events", "show", &refused, "--json"], target), env).await;
    assert_eq!(shown["envelope"]["idempotency_key"], refused.as_str());
    assert_eq!(shown["envelope"]["version"], 1);
    assert_eq!(shown["record"]["status"], "COMPLETED");
    assert_eq!(shown["record"]["attempts"], 2);
    assert_eq!(
        shown["record"]["actions_done"],
        serde_json::json!(["agent"])
    );
    let last_error = shown["record"]["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("503"), "{shown}");
    // The agent's 503 was the first attempt's; the second did it.
    assert_eq!(
        shown["record"]["actions"],
        serde_json::json!([{"name": "agent", "outcome": "succeeded"}])
    );
    let text = hookgate(&on(&["events", "show", &github], target), env).await;
    assert!(text.status.success(), "{}", printed(&text));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("state:        completed"), "{text}");
    let missing = hookgate(
        &on(&["events", "show", "github:never-received"], target),
        env,
    )
    .await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("has no event github:never-received"),
        "{}",
        printed(&missing)
    );

    // A dry run sends nothing.
    let dry = json_of(
        &on(&["replay", &github, "--dry-run", "--json"], target),
        env,
    )
    .await;
    assert_eq!(dry["sent"], 0);
    assert_eq!(dry["events"][0]["state_before"], "completed");
    // Through the gate, a completed event is a duplicate: the agent hears nothing.
    let gated = json_of(&on(&["replay", &github, "--json"], target), env).await;
    assert_eq!(gated["sent"], 1);
    dev.wait_for_log("outcome=\"duplicate\"", Duration::from_secs(30))
        .await;
    // Forced, it runs again as a generation of its own, which the agent can tell.
    let forced = json_of(&on(&["replay", &github, "--force", "--json"], target), env).await;
    let generation = forced["replay_generation"]
        .as_str()
        .expect("a generation")
        .to_owned();
    let calls = agent.wait_for_calls(4, Duration::from_secs(30)).await;
    assert_eq!(calls.len(), 4, "{}", dev.log());
    let replayed = &calls[3];
    assert_eq!(replayed.verified, Ok(()));
    assert_eq!(replayed.header("hookgate-replay-of"), Some(github.as_str()));
    assert_eq!(
        replayed.header("hookgate-replay-id"),
        Some(generation.as_str())
    );
    let replay_key = format!("{github}#replay-{generation}");
    assert_eq!(
        replayed.header("idempotency-key"),
        Some(replay_key.as_str())
    );

    // A time range: forced, only the events received in it run again; through the gate,
    // none does (both completed).
    let range = json_of(
        &on(
            &[
                "replay", "--since", &between, "--force", "--rate", "100", "--json",
            ],
            target,
        ),
        env,
    )
    .await;
    assert_eq!(range["sent"], 1, "{range}");
    assert_eq!(range["events"][0]["idempotency_key"], stripe.as_str());
    let calls = agent.wait_for_calls(5, Duration::from_secs(30)).await;
    assert_eq!(calls.len(), 5, "{}", dev.log());
    assert_eq!(calls[4].header("hookgate-replay-of"), Some(stripe.as_str()));
    let gated_range = json_of(
        &on(
            &["replay", "--since", "1h", "--until", &between, "--json"],
            target,
        ),
        env,
    )
    .await;
    // The replay generation is an archived event of its own, received when its event was.
    assert_eq!(gated_range["sent"], 2, "{gated_range}");
    assert_eq!(gated_range["events"][0]["idempotency_key"], github.as_str());
    assert_eq!(
        gated_range["events"][1]["idempotency_key"],
        replay_key.as_str()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        idempotency_keys(&agent.calls()).len(),
        5,
        "no call for a gated replay of completed events"
    );

    // The tail saw both events arrive and complete.
    let tail = tail.await.expect("the tail ran");
    assert!(tail.status.success(), "{}", printed(&tail));
    let lines: Vec<Value> = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    for key in [&github, &stripe] {
        for state in ["received", "completed"] {
            assert!(
                lines
                    .iter()
                    .any(|line| line["idempotency_key"] == key.as_str() && line["state"] == state),
                "{key} {state} in {lines:#?}"
            );
        }
    }
}

fn agent_failing_once() -> hookgate_tests::agent::AgentBuilder {
    Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .answer(Answer::status(503))
        .otherwise(Answer::ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tail_and_replay_work_on_devs_embedded_archive() {
    let agent = agent_failing_once()
        .start()
        .await
        .expect("the agent starts");
    let directory = scratch_directory("inspect-embedded");
    let (dev, data_dir) = dev_routing_to(
        &directory,
        &agent.url("/hooks"),
        &[("BACKOFF_BASE_SECS", "1"), ("BACKOFF_CAP_SECS", "1")],
    )
    .await;
    let data = data_dir.to_str().expect("UTF-8").to_owned();

    inspect_and_replay(&dev, &agent, &["--data-dir", &data], &[]).await;

    let _ = dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tail_and_replay_work_on_an_archive_in_s3_and_records_in_dynamodb() {
    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
    let s3 = emulator::s3_client().await;
    let queues = emulator::create_queue_with_dead_letters(&sqs, "inspect-aws", 5)
        .await
        .expect("the emulator creates the queues");
    let table = emulator::create_idempotency_table(&dynamodb, "inspect-aws")
        .await
        .expect("the emulator creates the table");
    let bucket = emulator::create_bucket(&s3, "inspect-aws")
        .await
        .expect("the emulator creates the bucket");
    let agent = agent_failing_once()
        .start()
        .await
        .expect("the agent starts");
    let directory = scratch_directory("inspect-aws");
    let routes = routes_to_agent(&directory, "*", &agent.url("/hooks"), 5);
    let mut env: Vec<(&str, String)> = emulator::function_environment();
    env.extend([
        ("QUEUE_URL", queues.queue_url.clone()),
        ("DLQ_URL", queues.dlq_url.clone()),
        ("TABLE_NAME", table.clone()),
        ("BODY_BUCKET", bucket.clone()),
        ("ARCHIVE_BUCKET", bucket.clone()),
        ("AGENT_SECRET", AGENT_SECRET.to_owned()),
        ("BACKOFF_BASE_SECS", "1".to_owned()),
        ("BACKOFF_CAP_SECS", "1".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]);
    let dev = DevServer::start(
        &directory.join("unused"),
        &["--aws", "--routes", routes.to_str().expect("UTF-8")],
        env.clone(),
    )
    .await;
    dev.wait_for_banner(
        &format!("archive: S3, s3://{bucket}/archive/"),
        Duration::from_secs(5),
    )
    .await;
    let env_refs: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();

    inspect_and_replay(&dev, &agent, &["--aws"], &env_refs).await;

    // Each batch is one object of JSON lines under archive/.
    let objects = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("archive/")
        .send()
        .await
        .expect("the emulator lists the bucket");
    assert!(
        objects
            .contents()
            .iter()
            .all(|object| object.key().is_some_and(|key| key.ends_with(".jsonl"))),
        "{objects:?}"
    );
    let _ = dev.stop().await;
}

#[tokio::test]
async fn operating_commands_name_what_is_missing() {
    let directory = scratch_directory("inspect-missing");
    let absent = directory.join("nothing-here");
    let listed = hookgate(
        &["events", "list", "--data-dir", absent.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(!listed.status.success());
    assert!(
        String::from_utf8_lossy(&listed.stderr)
            .contains("does not exist; `hookgate dev --data-dir` creates it"),
        "{}",
        printed(&listed)
    );
    let on_aws = hookgate(&["events", "list", "--aws"], &[]).await;
    assert!(
        String::from_utf8_lossy(&on_aws.stderr).contains("ARCHIVE_BUCKET must be set"),
        "{}",
        printed(&on_aws)
    );
    let unnamed = hookgate(&["replay", "--data-dir", absent.to_str().unwrap()], &[]).await;
    assert!(
        String::from_utf8_lossy(&unnamed.stderr).contains("name the events"),
        "{}",
        printed(&unnamed)
    );
    let bad_time = hookgate(
        &[
            "events",
            "list",
            "--since",
            "last tuesday",
            "--data-dir",
            absent.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&bad_time.stderr).contains("`last tuesday` is not an instant"),
        "{}",
        printed(&bad_time)
    );
    let action_without_force = hookgate(&["replay", "github:x", "--action", "agent"], &[]).await;
    assert!(
        String::from_utf8_lossy(&action_without_force.stderr).contains("--force"),
        "{}",
        printed(&action_without_force)
    );
}
