//! `hookgate mcp`, spoken to as an agent would: the official Rust SDK's client starts the
//! built binary and talks the Model Context Protocol to it over stdio, beside a running
//! `hookgate dev`.

use std::collections::BTreeSet;
use std::time::Duration;

use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Answer};
use hookgate_tests::hookgate_cli::{
    binary, dev_routing_to, hookgate, printed, scratch_directory, AGENT_SECRET,
};
use hookgate_tests::lambda_runtime_api::clean_command;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

type Client = RunningService<RoleClient, ()>;

/// `hookgate mcp ARGS`, started and initialized by the SDK's client.
async fn connect(args: &[&str]) -> Client {
    let mut command = clean_command(&binary());
    command.arg("mcp").args(args);
    let transport = TokioChildProcess::new(command).expect("hookgate mcp starts");
    tokio::time::timeout(Duration::from_secs(30), ().serve(transport))
        .await
        .expect("the handshake finishes in time")
        .expect("hookgate mcp completes the MCP handshake")
}

/// Calls `tool` with `arguments` and returns the result, whether or not it is an error.
async fn call(client: &Client, tool: &'static str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        client.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments)),
    )
    .await
    .unwrap_or_else(|_| panic!("{tool} answers in time"))
    .unwrap_or_else(|error| panic!("{tool} answers: {error}"))
}

/// The structured result of a call that must succeed, checked against its text too.
async fn ok(client: &Client, tool: &'static str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    let structured = result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool}: no structured content: {result:?}"));
    assert_eq!(result.is_error, Some(false), "{tool}: {structured}");
    let text = result.content[0]
        .as_text()
        .map(|text| text.text.clone())
        .expect("a text block");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("the text is the JSON"),
        structured
    );
    structured
}

/// The error message of a call that must fail.
async fn refused(client: &Client, tool: &'static str, arguments: Value) -> String {
    let result = call(client, tool, arguments).await;
    assert_eq!(result.is_error, Some(true), "{tool}: {result:?}");
    result.structured_content.expect("structured content")["error"]
        .as_str()
        .expect("an error message")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_lists_shows_and_replays_events_through_the_mcp_server_read_only_unless_allowed() {
    let agent = Agent::builder()
        .verify_with(standard_webhooks_verifier(AGENT_SECRET))
        .otherwise(Answer::ok())
        .start()
        .await
        .expect("the agent starts");
    let directory = scratch_directory("mcp");
    let (dev, data_dir) = dev_routing_to(&directory, &agent.url("/hooks"), &[]).await;
    let data = data_dir.to_str().expect("UTF-8").to_owned();
    let routes = directory.join("routes.toml");
    let sent = hookgate(
        &[
            "send",
            "stripe",
            "--url",
            &dev.webhook_url("stripe"),
            "--json",
        ],
        &[],
    )
    .await;
    assert!(sent.status.success(), "{}", printed(&sent));
    let key = serde_json::from_slice::<Value>(&sent.stdout).expect("JSON")["answer"]
        ["idempotency_key"]
        .as_str()
        .expect("a key")
        .to_owned();
    assert_eq!(
        agent.wait_for_calls(1, Duration::from_secs(30)).await.len(),
        1
    );
    dev.wait_for_log("outcome=\"completed\"", Duration::from_secs(30))
        .await;

    let reader = connect(&["--data-dir", &data]).await;
    let info = reader.peer_info().expect("the server introduced itself");
    assert_eq!(
        info.server_info.as_ref().map(|server| server.name.as_str()),
        Some("hookgate")
    );
    assert!(
        info.instructions
            .as_deref()
            .is_some_and(|text| text.contains("Read-only")),
        "{info:?}"
    );
    let tools = reader.list_all_tools().await.expect("the tools are listed");
    let names: BTreeSet<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "check_routes",
            "list_dead_letters",
            "list_events",
            "redrive_dead_letters",
            "replay_events",
            "send_sample",
            "show_dead_letter",
            "show_event",
        ])
    );
    for tool in &tools {
        let read_only = tool
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.read_only_hint);
        let writes =
            ["replay_events", "redrive_dead_letters", "send_sample"].contains(&tool.name.as_ref());
        assert_eq!(read_only, Some(!writes), "{}", tool.name);
        assert!(
            tool.input_schema.get("type") == Some(&json!("object")),
            "{}",
            tool.name
        );
    }

    // Reading.
    let listed = ok(&reader, "list_events", json!({ "provider": "stripe" })).await;
    assert_eq!(listed["events"][0]["idempotency_key"], key.as_str());
    assert_eq!(listed["events"][0]["state"], "completed");
    let shown = ok(&reader, "show_event", json!({ "key": key })).await;
    assert_eq!(shown["record"]["status"], "COMPLETED");
    assert_eq!(shown["envelope"]["provider"], "stripe");
    let letters = ok(&reader, "list_dead_letters", json!({})).await;
    assert_eq!(letters["dead_letters"], json!([]));
    let missing = refused(&reader, "show_event", json!({ "key": "stripe:evt_never" })).await;
    assert!(
        missing.contains("has no event stripe:evt_never"),
        "{missing}"
    );
    let bad_key = refused(&reader, "show_event", json!({ "key": "no-provider" })).await;
    assert!(bad_key.contains("no-provider"), "{bad_key}");
    let routes_checked = ok(
        &reader,
        "check_routes",
        json!({ "path": routes.to_str().unwrap() }),
    )
    .await;
    assert_eq!(routes_checked["valid"], true);
    assert_eq!(routes_checked["actions"][0]["name"], "agent");
    let bad_routes = refused(
        &reader,
        "check_routes",
        json!({ "toml": "[[route]]\nprovider = \"github\"\nevents = [\"*\"]\nactions = [\"nowhere\"]\n" }),
    )
    .await;
    assert!(bad_routes.contains("nowhere"), "{bad_routes}");

    // Read-only: a dry run is allowed, nothing that changes the gateway is.
    let dry = ok(
        &reader,
        "replay_events",
        json!({ "keys": [key], "force": true, "dry_run": true }),
    )
    .await;
    assert_eq!(dry["sent"], 0);
    assert_eq!(dry["events"][0]["idempotency_key"], key.as_str());
    for (tool, arguments) in [
        ("replay_events", json!({ "keys": [key], "force": true })),
        ("redrive_dead_letters", json!({})),
        (
            "send_sample",
            json!({ "provider": "github", "url": dev.webhook_url("github") }),
        ),
    ] {
        let error = refused(&reader, tool, arguments).await;
        assert!(error.contains("--allow-write"), "{tool}: {error}");
    }
    assert_eq!(agent.calls().len(), 1, "nothing was sent");
    reader.cancel().await.expect("the session closes");

    // With --allow-write: a forced replay reaches the agent as one, a sample is sent, the
    // (empty) dead-letter queue is redriven.
    let writer = connect(&["--data-dir", &data, "--allow-write"]).await;
    let replayed = ok(
        &writer,
        "replay_events",
        json!({ "keys": [key], "force": true }),
    )
    .await;
    assert_eq!(replayed["sent"], 1);
    let calls = agent.wait_for_calls(2, Duration::from_secs(30)).await;
    assert_eq!(calls.len(), 2, "{}", dev.log());
    assert_eq!(calls[1].header("hookgate-replay-of"), Some(key.as_str()));
    let delivered = ok(
        &writer,
        "send_sample",
        json!({ "provider": "github", "url": dev.webhook_url("github") }),
    )
    .await;
    assert_eq!(delivered["status"], 202, "{delivered}");
    assert_eq!(
        agent.wait_for_calls(3, Duration::from_secs(30)).await.len(),
        3
    );
    let redriven = ok(&writer, "redrive_dead_letters", json!({})).await;
    assert_eq!(redriven["moved"], 0);
    writer.cancel().await.expect("the session closes");
    let _ = dev.stop().await;
}
