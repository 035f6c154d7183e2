//! The CLI against a deployed stack, on the emulator: `--stack NAME` reads the queues, the
//! webhook URL and the secret from a CloudFormation stack whose outputs are named as the
//! template's, and `--json` gives each command's result to scripts.
//!
//! These tests run what `cargo build --workspace --bins` left in `target/debug`.

use hookgate_tests::agent::{Agent, Answer};
use hookgate_tests::emulator;
use hookgate_tests::hookgate_cli::{hookgate, printed};
use serde_json::Value;

/// A stack with the template's queues, a GitHub secret and a webhook URL pointing at `url`.
/// (The secret is made beside the stack: the emulator's CloudFormation leaves out the output
/// of a secret it makes.)
async fn stack(webhook_url: &str, secret: &str) -> String {
    let sdk = emulator::sdk_config().await;
    let client = aws_sdk_cloudformation::Client::new(&sdk);
    let name = emulator::unique_name("hookgate-cli");
    let secret_arn = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(format!("{name}-github"))
        .secret_string(format!(r#"{{"current": "{secret}", "previous": "old"}}"#))
        .send()
        .await
        .expect("the emulator makes the secret")
        .arn()
        .expect("an ARN")
        .to_owned();
    let template = format!(
        r#"
Resources:
  DeadLetterQueue:
    Type: AWS::SQS::Queue
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadLetterQueue.Arn
        maxReceiveCount: 5
Outputs:
  QueueUrl:
    Value: !Ref Queue
  DeadLetterQueueUrl:
    Value: !Ref DeadLetterQueue
  GithubSecretArn:
    Value: "{secret_arn}"
  GithubWebhookUrl:
    Value: "{webhook_url}"
"#
    );
    client
        .create_stack()
        .stack_name(&name)
        .template_body(template)
        .send()
        .await
        .expect("the emulator creates the stack");
    name
}

async fn output(stack: &str, key: &str) -> String {
    let client = aws_sdk_cloudformation::Client::new(&emulator::sdk_config().await);
    let described = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .expect("the emulator describes the stack");
    described.stacks()[0]
        .outputs()
        .iter()
        .find(|output| output.output_key() == Some(key))
        .and_then(|output| output.output_value())
        .unwrap_or_else(|| panic!("no output {key}"))
        .to_owned()
}

async fn run(args: &[&str]) -> std::process::Output {
    let env = emulator::function_environment();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    hookgate(args, &env).await
}

#[tokio::test]
async fn dlq_list_and_redrive_find_the_stacks_queues_and_answer_in_json() {
    let stack = stack("https://unused.example.com/webhooks/github", "unused").await;
    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let dlq_url = output(&stack, "DeadLetterQueueUrl").await;
    sqs.send_message()
        .queue_url(&dlq_url)
        .message_body("not an envelope")
        .send()
        .await
        .expect("a dead letter");

    let listed = run(&["dlq", "list", "--stack", &stack, "--json"]).await;
    assert!(listed.status.success(), "{}", printed(&listed));
    let letters: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let letters = letters.as_array().expect("a list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["envelope"], "not an envelope");

    let redriven = run(&["dlq", "redrive", "--stack", &stack, "--wait", "--json"]).await;
    assert!(redriven.status.success(), "{}", printed(&redriven));
    let said: Value = serde_json::from_slice(&redriven.stdout).expect("JSON");
    assert_eq!(said["move_task"], "completed", "{said}");
    assert_eq!(said["moved"], 1, "{said}");
}

#[tokio::test]
async fn send_signs_with_the_stacks_current_secret_and_posts_to_its_webhook_url() {
    let agent = Agent::builder()
        .otherwise(Answer::status(202).with_body(r#"{"idempotency_key":"github:x"}"#))
        .start()
        .await
        .expect("the agent starts");
    let secret = "the-stacks-github-secret";
    let stack = stack(&agent.url("/webhooks/github"), secret).await;

    let sent = run(&["send", "github", "--stack", &stack, "--json"]).await;

    assert!(sent.status.success(), "{}", printed(&sent));
    let said: Value = serde_json::from_slice(&sent.stdout).expect("JSON");
    assert_eq!(said["status"], 202);
    assert_eq!(said["answer"]["idempotency_key"], "github:x");
    let calls = agent.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/webhooks/github");
    let expected = {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&calls[0].body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    assert_eq!(
        calls[0].header("x-hub-signature-256"),
        Some(expected.as_str()),
        "signed with the current secret, not the previous one"
    );
}

#[tokio::test]
async fn a_provider_the_stack_does_not_receive_from_is_named_in_the_error() {
    let stack = stack("https://unused.example.com/webhooks/github", "unused").await;

    let sent = run(&["send", "stripe", "--stack", &stack]).await;

    assert!(!sent.status.success(), "{}", printed(&sent));
    let error = String::from_utf8_lossy(&sent.stderr);
    assert!(error.contains("has no output StripeWebhookUrl"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_a_stack_uses_its_queue_table_bucket_archive_and_published_routes_and_events_and_replay_find_them(
) {
    use hookgate::routes_source::RoutesSource;
    use hookgate_tests::agent::standard_webhooks_verifier;
    use hookgate_tests::hookgate_cli::{scratch_directory, send_accepted, DevServer, AGENT_SECRET};

    let sdk = emulator::sdk_config().await;
    let queues =
        emulator::create_queue_with_dead_letters(&aws_sdk_sqs::Client::new(&sdk), "dev-stack", 5)
            .await
            .expect("the emulator creates the queues");
    let table =
        emulator::create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), "dev-stack")
            .await
            .expect("the emulator creates the table");
    let s3 = emulator::s3_client().await;
    let bodies = emulator::create_bucket(&s3, "dev-bodies")
        .await
        .expect("a bucket");
    let routes_bucket = emulator::create_versioned_bucket(&s3, "dev-routes")
        .await
        .expect("a versioned bucket");
    let agent = Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent starts");
    hookgate::aws::S3RoutesSource::new(s3.clone(), routes_bucket.clone(), "routes.toml".to_owned())
        .publish(&format!(
            "[[route]]\nname = \"all\"\nprovider = \"*\"\nevents = [\"*\"]\nactions = [\"agent\"]\n\n\
             [action.agent]\ntype = \"http\"\nurl = \"{}\"\nsecret_env = \"AGENT_SECRET\"\n",
            agent.url("/hooks")
        ))
        .await
        .expect("the routes are published");
    let name = emulator::unique_name("hookgate-dev");
    let template = format!(
        r#"
Resources:
  Placeholder:
    Type: AWS::SQS::Queue
Outputs:
  QueueUrl:
    Value: "{queue}"
  DeadLetterQueueUrl:
    Value: "{dlq}"
  IdempotencyTableName:
    Value: "{table}"
  BodyBucketName:
    Value: "{bodies}"
  ArchiveLocation:
    Value: "s3://{bodies}/archive/"
  RoutesLocation:
    Value: "s3://{routes_bucket}/routes.toml"
"#,
        queue = queues.queue_url,
        dlq = queues.dlq_url,
    );
    aws_sdk_cloudformation::Client::new(&sdk)
        .create_stack()
        .stack_name(&name)
        .template_body(template)
        .send()
        .await
        .expect("the emulator creates the stack");
    let mut env: Vec<(&str, String)> = emulator::function_environment();
    env.push(("AGENT_SECRET", AGENT_SECRET.to_owned()));
    let directory = scratch_directory("dev-stack");

    let dev = DevServer::start(&directory.join("unused"), &["--stack", &name], env.clone()).await;
    let sent = send_accepted("github", &dev.webhook_url("github")).await;
    let key = String::from_utf8_lossy(&sent.stdout)
        .lines()
        .find_map(|line| serde_json::from_str::<Value>(line).ok())
        .and_then(|answer| answer["idempotency_key"].as_str().map(str::to_owned))
        .expect("the answer names the key");

    assert_eq!(
        agent
            .wait_for_calls(1, std::time::Duration::from_secs(30))
            .await
            .len(),
        1,
        "{}",
        dev.log()
    );
    assert!(
        !directory.join("unused").join("hookgate.sqlite").exists(),
        "--stack must not use the embedded database"
    );

    // The stack's archive and records, found from its outputs alone.
    let env_refs: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let mut listed = Value::Null;
    for _ in 0..100 {
        let output = hookgate(&["events", "list", "--stack", &name, "--json"], &env_refs).await;
        assert!(output.status.success(), "{}", printed(&output));
        listed = serde_json::from_slice(&output.stdout).expect("JSON");
        if listed[0]["state"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed[0]["idempotency_key"], key.as_str(), "{listed}");
    assert_eq!(listed[0]["state"], "completed", "{listed}");
    let replayed = hookgate(
        &["replay", &key, "--stack", &name, "--force", "--json"],
        &env_refs,
    )
    .await;
    assert!(replayed.status.success(), "{}", printed(&replayed));
    let calls = agent
        .wait_for_calls(2, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(calls.len(), 2, "{}", dev.log());
    assert_eq!(calls[1].header("hookgate-replay-of"), Some(key.as_str()));

    // A stack deployed with ArchiveDays 0 has no ArchiveLocation: said plainly.
    let without = stack("http://127.0.0.1:9/unused", "s").await;
    let output = hookgate(&["events", "list", "--stack", &without], &env_refs).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("keeps no archive"),
        "{}",
        printed(&output)
    );
}
