//! The `http` action against a real local agent: what it sends (a Standard Webhooks
//! signature the agent verifies with the same secret, the idempotency key in `webhook-id`
//! and `Idempotency-Key`) and how it reads each kind of answer.
//!
//! No AWS is involved: the action is set up the way the processor sets it up, from a routes
//! file and a secret in the environment.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hookgate::envelope::RawBody;
use hookgate::idempotency::IdempotencyKey;
use hookgate::processor::actions::{
    ActionDispatcher, ActionError, ActionInvoker, NormalizedEvent, USER_AGENT,
};
use hookgate::provider::Provider;
use hookgate::routes::{ActionSpec, RouteTable};
use hookgate_tests::agent::{standard_webhooks_verifier, Agent, Answer, Call};
use time::OffsetDateTime;

/// The secret the action signs with and the agent verifies with.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

async fn agent(answers: impl IntoIterator<Item = Answer>) -> Agent {
    Agent::builder()
        .verify_with(standard_webhooks_verifier(SECRET))
        .answers(answers)
        .start()
        .await
        .expect("the agent listens on 127.0.0.1")
}

/// The action and the processor's invoker for it, set up from a routes file as at init.
async fn http_action(url: &str, timeout_secs: u64) -> (ActionSpec, ActionDispatcher) {
    let routes = RouteTable::parse(
        &format!(
            r#"
            [[route]]
            provider = "*"
            events = ["*"]
            actions = ["agent"]

            [action.agent]
            type = "http"
            url = "{url}"
            secret_env = "AGENT_SECRET"
            timeout_secs = {timeout_secs}
            "#
        ),
        "routes.toml",
    )
    .expect("valid routes");
    let env = HashMap::from([("AGENT_SECRET", SECRET)]);
    let dispatcher = ActionDispatcher::from_routes(&routes, &env, None)
        .await
        .expect("the action sets up");
    let action = routes.actions().next().expect("one action").clone();
    (action, dispatcher)
}

fn event() -> NormalizedEvent {
    let body = r#"{"action":"opened","number":42}"#;
    NormalizedEvent {
        idempotency_key: IdempotencyKey::from_stable_id(
            Provider::Github,
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        )
        .expect("a usable id"),
        provider: Provider::Github,
        event_type: "pull_request.opened".into(),
        delivery_id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
        received_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("a time"),
        payload: serde_json::from_str(body).expect("JSON"),
        body: RawBody::Utf8(body.into()),
        replay: None,
    }
}

/// Posts the event once to an agent answering `answer`, and returns what the action made of
/// it with the calls the agent got.
async fn outcome_of(answer: Answer) -> (Result<(), ActionError>, Vec<Call>) {
    let agent = agent([answer]).await;
    let (action, dispatcher) = http_action(&agent.url("/hooks"), 5).await;
    let result = dispatcher.invoke(&action, &event()).await;
    (result, agent.calls())
}

#[tokio::test]
async fn a_2xx_answer_is_done_and_the_agent_verifies_our_signature() {
    let (result, calls) = outcome_of(Answer::ok()).await;

    assert_eq!(result, Ok(()));
    let [call] = calls.as_slice() else {
        panic!("expected one call, got {calls:?}");
    };
    assert_eq!(call.verified, Ok(()));
    assert_eq!(call.method, http::Method::POST);
    assert_eq!(call.path, "/hooks");
    let key = event().idempotency_key.to_string();
    assert_eq!(call.header("webhook-id"), Some(key.as_str()));
    assert_eq!(call.header("idempotency-key"), Some(key.as_str()));
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(call.header("user-agent"), Some(USER_AGENT));
    assert!(USER_AGENT.starts_with("hookgate/"), "{USER_AGENT}");
    let signed_at: i64 = call
        .header("webhook-timestamp")
        .and_then(|value| value.parse().ok())
        .expect("a unix timestamp");
    assert!((OffsetDateTime::now_utc().unix_timestamp() - signed_at).abs() <= 5);
    assert_eq!(
        call.json(),
        serde_json::from_str::<serde_json::Value>(&event().to_json()).expect("JSON")
    );
    assert_eq!(call.json()["payload"]["number"], 42);
}

#[tokio::test]
async fn a_forced_replay_tells_the_agent_which_event_and_generation_under_a_key_of_its_own() {
    let agent = agent([Answer::ok()]).await;
    let (action, dispatcher) = http_action(&agent.url("/hooks"), 5).await;
    let original = event().idempotency_key;
    let mut replayed = event();
    replayed.idempotency_key =
        hookgate::envelope::Replay::key(&original, "r20261127T2300Z-9f3a").expect("a key");
    replayed.replay = Some(hookgate::envelope::Replay {
        id: "r20261127T2300Z-9f3a".to_owned(),
        of: original.clone(),
        actions: None,
    });

    dispatcher
        .invoke(&action, &replayed)
        .await
        .expect("the agent takes it");

    let calls = agent.calls();
    let [call] = calls.as_slice() else {
        panic!("expected one call, got {calls:?}");
    };
    assert_eq!(call.verified, Ok(()));
    assert_eq!(call.header("hookgate-replay-of"), Some(original.as_str()));
    assert_eq!(
        call.header("hookgate-replay-id"),
        Some("r20261127T2300Z-9f3a")
    );
    let key = format!("{original}#replay-r20261127T2300Z-9f3a");
    assert_eq!(call.header("idempotency-key"), Some(key.as_str()));
    assert_eq!(call.header("webhook-id"), Some(key.as_str()));
    assert_eq!(call.json()["replay"]["of"], original.as_str());
    // The original carries neither header.
    let (_, calls) = outcome_of(Answer::ok()).await;
    assert_eq!(calls[0].header("hookgate-replay-of"), None);
    assert!(calls[0].json().get("replay").is_none());
}

#[tokio::test]
async fn an_agent_with_another_secret_refuses_the_delivery_and_the_failure_is_permanent() {
    let agent = Agent::builder()
        .verify_with(standard_webhooks_verifier(OTHER_SECRET))
        .start()
        .await
        .expect("the agent listens");
    let (action, dispatcher) = http_action(&agent.url("/hooks"), 5).await;

    let result = dispatcher.invoke(&action, &event()).await;

    let calls = agent.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].verified.is_err(), "{:?}", calls[0].verified);
    assert!(
        matches!(&result, Err(ActionError::Permanent { reason }) if reason.contains("401")),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_500_answer_is_retryable_without_a_hint() {
    let (result, _) = outcome_of(Answer::status(500).with_body("upstream down")).await;
    assert_eq!(
        result,
        Err(ActionError::Retryable {
            reason: "the agent answered 500 Internal Server Error: upstream down".into(),
            retry_after: None,
        })
    );
}

#[tokio::test]
async fn a_429_answer_is_retryable_after_the_agents_retry_after() {
    let (result, _) = outcome_of(Answer::status(429).with_header("retry-after", "7")).await;
    assert!(
        matches!(
            result,
            Err(ActionError::Retryable {
                retry_after: Some(wait),
                ..
            }) if wait == Duration::from_secs(7)
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_400_answer_is_permanent_and_quotes_the_agents_reason() {
    let (result, _) = outcome_of(Answer::status(400).with_body("missing field `type`")).await;
    assert_eq!(
        result,
        Err(ActionError::Permanent {
            reason: "the agent answered 400 Bad Request: missing field `type`".into()
        })
    );
}

#[tokio::test]
async fn a_redirect_is_permanent_and_its_target_is_never_called() {
    let target = Agent::start().await.expect("the target listens");
    let moved = target.url("/moved");
    let (result, calls) = outcome_of(Answer::status(302).with_header("location", &moved)).await;

    assert!(
        matches!(&result, Err(ActionError::Permanent { reason })
            if reason.contains("302 Found") && reason.contains(&moved) && reason.contains("not followed")),
        "{result:?}"
    );
    assert_eq!(calls.len(), 1);
    assert!(target.calls().is_empty(), "{:?}", target.calls());
}

#[tokio::test]
async fn an_agent_slower_than_the_timeout_is_retryable_once_the_timeout_passes() {
    let agent = agent([Answer::ok().after(Duration::from_secs(30))]).await;
    let (action, dispatcher) = http_action(&agent.url("/hooks"), 1).await;

    let started = Instant::now();
    let result = dispatcher.invoke(&action, &event()).await;
    let elapsed = started.elapsed();

    assert!(
        matches!(&result, Err(ActionError::Retryable { reason, retry_after: None }) if reason.contains("did not answer within 1 s")),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(agent.calls().len(), 1);
}

#[tokio::test]
async fn an_agent_that_is_not_listening_is_retryable() {
    // A port that was just free: nothing listens on it once the listener is dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let (action, dispatcher) = http_action(&format!("http://127.0.0.1:{port}/hooks"), 5).await;

    let result = dispatcher.invoke(&action, &event()).await;

    assert!(
        matches!(&result, Err(ActionError::Retryable { reason, .. }) if reason.starts_with("cannot connect to the agent")),
        "{result:?}"
    );
    assert!(!format!("{result:?}").contains("127.0.0.1"), "{result:?}");
}

#[tokio::test]
async fn a_scripted_agent_fails_twice_then_takes_the_event_each_time_signed_anew() {
    let agent = agent([Answer::status(500), Answer::status(503)]).await;
    let (action, dispatcher) = http_action(&agent.url("/hooks"), 5).await;

    let mut results = Vec::new();
    for _ in 0..3 {
        results.push(dispatcher.invoke(&action, &event()).await);
    }

    assert!(matches!(results[0], Err(ActionError::Retryable { .. })));
    assert!(matches!(results[1], Err(ActionError::Retryable { .. })));
    assert_eq!(results[2], Ok(()));
    let calls = agent.calls();
    assert_eq!(calls.len(), 3);
    let key = event().idempotency_key.to_string();
    for call in &calls {
        assert_eq!(call.verified, Ok(()));
        assert_eq!(call.header("webhook-id"), Some(key.as_str()));
    }
    // One client for every event: the connection opened for the first call is reused.
    assert!(
        calls.iter().all(|call| call.peer == calls[0].peer),
        "{:?}",
        calls.iter().map(|call| call.peer).collect::<Vec<_>>()
    );
}
