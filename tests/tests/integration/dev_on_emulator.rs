//! `hookgate dev --aws` and `hookgate dlq --aws`: the same commands on SQS and DynamoDB,
//! reached over the wire through the emulator with the standard AWS variables.

use std::time::{Duration, Instant};

use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Answer};
use hookgate_tests::emulator;
use hookgate_tests::hookgate_cli::{
    hookgate, printed, routes_to_agent, scratch_directory, send_accepted, DevServer, AGENT_SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_on_sqs_and_dynamodb_acts_once_and_dlq_lists_shows_and_redrives_with_the_move_task() {
    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
    let queues = emulator::create_queue_with_dead_letters(&sqs, "dev-aws", 5)
        .await
        .expect("the emulator creates the queues");
    let table = emulator::create_idempotency_table(&dynamodb, "dev-aws")
        .await
        .expect("the emulator creates the table");
    let agent = Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .answer(Answer::status(422).with_body("unknown event shape"))
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent starts");
    let directory = scratch_directory("dev-aws");
    let routes = routes_to_agent(&directory, "*", &agent.url("/hooks"), 5);
    let mut env: Vec<(&str, String)> = emulator::function_environment();
    env.extend([
        ("QUEUE_URL", queues.queue_url.clone()),
        ("DLQ_URL", queues.dlq_url.clone()),
        ("TABLE_NAME", table.clone()),
        ("AGENT_SECRET", AGENT_SECRET.to_owned()),
        // The test reads the outcomes in the log, whatever RUST_LOG the test runs with.
        ("RUST_LOG", "info".to_owned()),
    ]);
    let env_refs: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();

    let dev = DevServer::start(
        &directory.join("unused"),
        &["--aws", "--routes", routes.to_str().expect("UTF-8")],
        env.clone(),
    )
    .await;
    assert!(
        !directory.join("unused").join("hookgate.sqlite").exists(),
        "--aws must not use the embedded database"
    );

    // The agent refuses the first delivery for good: the event is dead-lettered on SQS.
    send_accepted("stripe", &dev.webhook_url("stripe")).await;
    assert_eq!(
        agent.wait_for_calls(1, Duration::from_secs(30)).await.len(),
        1,
        "{}",
        dev.log()
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let listing = loop {
        let listed = hookgate(&["dlq", "list", "--aws"], &env_refs).await;
        assert!(listed.status.success(), "{}", printed(&listed));
        let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
        if listing.contains("stripe invoice.paid") {
            break listing;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter appeared: {listing}\n{}",
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(listing.contains("422"), "{listing}");
    let id = listing.split_whitespace().next().expect("an id").to_owned();

    let shown = hookgate(&["dlq", "show", &id, "--aws"], &env_refs).await;
    assert!(shown.status.success(), "{}", printed(&shown));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["envelope"]["provider"], "stripe");

    let redriven = hookgate(&["dlq", "redrive", "--aws", "--wait"], &env_refs).await;
    assert!(redriven.status.success(), "{}", printed(&redriven));
    let said = String::from_utf8_lossy(&redriven.stdout);
    assert!(said.contains("started an SQS message move task"), "{said}");
    assert!(said.contains("completed: 1 message(s) moved"), "{said}");

    // Back on the main queue, the dev processor takes it up again and the agent accepts it.
    let calls = agent.wait_for_calls(2, Duration::from_secs(30)).await;
    assert_eq!(calls.len(), 2, "{}", dev.log());
    assert_eq!(calls[0].header("webhook-id"), calls[1].header("webhook-id"));

    // The provider sending it again is a duplicate in DynamoDB: no third call.
    send_accepted("stripe", &dev.webhook_url("stripe")).await;
    dev.wait_for_log("outcome=\"duplicate\"", Duration::from_secs(30))
        .await;
    assert_eq!(agent.calls().len(), 2);
    let _ = dev.stop().await;
}

#[tokio::test]
async fn dlq_on_sqs_without_its_queue_urls_names_the_missing_variable() {
    let listed = hookgate(&["dlq", "list", "--aws"], &[]).await;
    assert!(!listed.status.success(), "{}", printed(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stderr).contains("DLQ_URL must be set"),
        "{}",
        printed(&listed)
    );
}
