//! Routes that change while the processor runs, through the built `processor` binary (run as
//! Lambda runs it, through `hookgate_tests::lambda_runtime_api`) against the emulator: its
//! routes are an object in a versioned S3 bucket (`ROUTES_SOURCE`), published with the same
//! adapter `hookgate routes push` uses, and the processor is never restarted.
//!
//! These tests run what `cargo build --workspace --bins` left in `target/debug`.

use std::time::Duration;

use hookgate::aws::S3RoutesSource;
use hookgate::routes_source::RoutesSource;
use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Answer};
use hookgate_tests::emulator;
use hookgate_tests::hookgate_cli::AGENT_SECRET;
use hookgate_tests::lambda_runtime_api::LambdaFunction;
use serde_json::{json, Value};

/// How often the processor under test checks its routes.
const REFRESH: Duration = Duration::from_secs(1);

/// A fresh versioned bucket, and the source of `routes.toml` in it.
async fn routes_bucket() -> (String, S3RoutesSource) {
    let client = emulator::s3_client().await;
    let bucket = emulator::create_versioned_bucket(&client, "routes")
        .await
        .expect("the emulator creates a versioned bucket");
    let source = S3RoutesSource::new(client, bucket.clone(), "routes.toml".to_owned());
    (bucket, source)
}

/// Routes sending `provider`'s events to the agent at `url`, as the action `name`.
fn route(provider: &str, name: &str, url: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\nprovider = \"{provider}\"\nevents = [\"*\"]\nactions = [\"{name}\"]\n\n\
         [action.{name}]\ntype = \"http\"\nurl = \"{url}\"\nsecret_env = \"AGENT_SECRET\"\ntimeout_secs = 5\n\n"
    )
}

/// `processor` reading its routes from `s3://{bucket}/routes.toml`.
async fn processor(bucket: &str) -> LambdaFunction {
    let mut env = emulator::processor_environment("live-routes").await;
    env.extend([
        ("ROUTES_SOURCE", format!("s3://{bucket}/routes.toml")),
        ("ROUTES_REFRESH_SECS", REFRESH.as_secs().to_string()),
        ("AGENT_SECRET", AGENT_SECRET.to_owned()),
    ]);
    LambdaFunction::start_ready("processor", env).await
}

/// The sample SQS event `events/processor/{name}.json`.
fn sample(name: &str) -> Value {
    emulator::sample_event(&format!("processor/{name}"))
}

/// An agent that checks hookgate's signature and accepts everything.
async fn agent() -> Agent {
    Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent starts")
}

/// Hands `event` to the processor and expects every message done.
async fn process(processor: &LambdaFunction, event: &Value) {
    let answer = processor
        .invoke(event)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", processor.output()));
    assert_eq!(
        answer["batchItemFailures"],
        json!([]),
        "{answer}\n{}",
        processor.output()
    );
}

/// The paths the agent was called on, in order.
fn paths(agent: &Agent) -> Vec<String> {
    agent.calls().into_iter().map(|call| call.path).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_published_while_the_processor_runs_is_used_without_a_restart() {
    let agent = agent().await;
    let (bucket, source) = routes_bucket().await;
    source
        .publish(&route("github", "coding", &agent.url("/coding")))
        .await
        .expect("the first routes are published");
    let processor = processor(&bucket).await;

    process(&processor, &sample("github-pull_request.opened")).await;
    process(&processor, &sample("stripe-invoice.paid")).await;
    assert_eq!(paths(&agent), ["/coding"], "stripe has no route yet");

    source
        .publish(&format!(
            "{}{}",
            route("github", "coding", &agent.url("/coding")),
            route("shopify", "orders", &agent.url("/orders"))
        ))
        .await
        .expect("a route is added");
    tokio::time::sleep(REFRESH + Duration::from_millis(200)).await;

    process(&processor, &sample("shopify-orders-create")).await;
    assert_eq!(
        paths(&agent),
        ["/coding", "/orders"],
        "{}",
        processor.output()
    );
    assert!(
        processor.output().contains("new routes in force"),
        "{}",
        processor.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_update_is_refused_and_counted_and_the_last_valid_routes_keep_working() {
    let agent = agent().await;
    let (bucket, source) = routes_bucket().await;
    source
        .publish(&route("*", "everything", &agent.url("/everything")))
        .await
        .expect("the first routes are published");
    let processor = processor(&bucket).await;
    process(&processor, &sample("github-pull_request.opened")).await;

    for invalid in [
        // Not TOML.
        "[[route]\nname = ".to_owned(),
        // A route naming an action nobody defined.
        "[[route]]\nname = \"x\"\nprovider = \"github\"\nevents = [\"*\"]\nactions = [\"nobody\"]\n"
            .to_owned(),
        // Valid as a file, but its secret variable is not set in the function.
        route("*", "unsigned", &agent.url("/unsigned"))
            .replace("AGENT_SECRET", "SECRET_NOBODY_SET"),
    ] {
        source.publish(&invalid).await.expect("published");
        tokio::time::sleep(REFRESH + Duration::from_millis(200)).await;
        process(&processor, &sample("stripe-invoice.paid")).await;
        process(&processor, &sample("shopify-orders-create")).await;
    }

    assert_eq!(
        paths(&agent),
        ["/everything", "/everything", "/everything"],
        "the last valid routes served every event (later ones are duplicates)\n{}",
        processor.output()
    );
    let output = processor.output();
    assert_eq!(
        output.matches("new routes refused").count(),
        3,
        "one refusal logged per invalid version\n{output}"
    );
    let invalid_metrics = output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("InvalidRoutes").is_some())
        .count();
    assert!(
        invalid_metrics >= 3,
        "each refusal is counted: {invalid_metrics}\n{output}"
    );
    for expected in [
        "TOML parse error",
        "no [action.nobody] is defined",
        "SECRET_NOBODY_SET is not set",
    ] {
        assert!(output.contains(expected), "{expected}\n{output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_starting_on_an_invalid_upload_serves_the_newest_valid_version() {
    let agent = agent().await;
    let (bucket, source) = routes_bucket().await;
    source
        .publish(&route("*", "valid", &agent.url("/valid")))
        .await
        .expect("published");
    source
        .publish("this is not a routes file")
        .await
        .expect("published");

    let processor = processor(&bucket).await;
    process(&processor, &sample("github-pull_request.opened")).await;

    assert_eq!(paths(&agent), ["/valid"], "{}", processor.output());
    assert!(
        processor
            .output()
            .contains("serving the newest valid version before them"),
        "{}",
        processor.output()
    );
}
