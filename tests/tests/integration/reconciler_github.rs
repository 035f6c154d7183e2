//! The GitHub reconciler end to end: the built `reconciler-github` binary, run as Lambda
//! runs it (through `hookgate_tests::lambda_runtime_api`), against the emulator's DynamoDB
//! (the idempotency table, the reconciler's state table) and Secrets Manager (the token),
//! and a local stand-in for GitHub's deliveries API that follows GitHub's documented
//! shapes (`hookgate_tests::github_api`).
//!
//! These tests run what `cargo build --workspace --bins` left in `target/debug`.

use std::time::Duration;

use hookgate::aws::DynamoStore;
use hookgate::claims::{ClaimRequest, IdempotencyStore};
use hookgate::idempotency::IdempotencyKey;
use hookgate::provider::Provider;
use hookgate_tests::emulator;
use hookgate_tests::github_api::{Attempt, FakeGithub, Scripted};
use hookgate_tests::lambda_runtime_api::LambdaFunction;
use http::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;

const TOKEN: &str = "github_pat_reconciler_test_token";
const REPO_HOOK: &str = "/repos/octo-org/agent/hooks/42";
const ORG_HOOK: &str = "/orgs/octo-org/hooks/7";

/// The emulator's tables and token, the fake GitHub, and how to run the reconciler on them.
struct Setup {
    github: FakeGithub,
    env: Vec<(&'static str, String)>,
    records: DynamoStore,
}

impl Setup {
    async fn new(token: &str, page_size: usize) -> Self {
        let sdk = emulator::sdk_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let table = emulator::create_idempotency_table(&dynamodb, "reconciled")
            .await
            .expect("the emulator creates the idempotency table");
        let state = emulator::create_reconciler_state_table(&dynamodb, "reconciler")
            .await
            .expect("the emulator creates the state table");
        let secret = aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(emulator::unique_name("hookgate/github-token"))
            .secret_string(token)
            .send()
            .await
            .expect("the emulator creates the secret")
            .arn
            .expect("a secret has an ARN");
        let github = FakeGithub::start(TOKEN, page_size)
            .await
            .expect("the fake GitHub listens");
        github.add_hook(REPO_HOOK);
        github.add_hook(ORG_HOOK);
        let mut env = emulator::function_environment();
        env.extend([
            (
                "GITHUB_HOOKS",
                "repo:octo-org/agent:42,org:octo-org:7".to_owned(),
            ),
            ("GITHUB_TOKEN_ARN", secret),
            ("GITHUB_API_URL", github.base_url()),
            ("STATE_TABLE_NAME", state),
            ("TABLE_NAME", table.clone()),
        ]);
        let records = DynamoStore::connect(dynamodb, table)
            .await
            .expect("the idempotency table exists");
        Self {
            github,
            env,
            records,
        }
    }

    async fn reconciler(&self) -> LambdaFunction {
        LambdaFunction::start_ready("reconciler-github", self.env.clone()).await
    }

    /// One scheduled run; its report.
    async fn run(&self, function: &LambdaFunction) -> Value {
        function
            .invoke_within(&json!({}), Duration::from_secs(60))
            .await
            .unwrap_or_else(|error| panic!("{error}\n{}", function.output()))
    }

    /// hookgate took the event keyed by `guid`: a processor claimed it.
    async fn received(&self, guid: &str) {
        let key = IdempotencyKey::from_stable_id(Provider::Github, guid).expect("a usable id");
        self.records
            .claim(ClaimRequest {
                key: &key,
                payload_hash: "h",
                now: OffsetDateTime::now_utc(),
                lease: Duration::from_secs(60),
                retention: Duration::from_secs(16 * 86_400),
                archive: None,
            })
            .await
            .expect("the claim is written");
    }
}

fn minutes_ago(minutes: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::minutes(minutes)
}

fn attempt(id: u64, guid: &str, minutes: i64, status_code: u16) -> Attempt {
    Attempt {
        id,
        guid: guid.to_owned(),
        delivered_at: minutes_ago(minutes),
        status_code,
        redelivery: false,
    }
}

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

/// 250 attempts on the repository's hook, three pages of 100, oldest first: every tenth a
/// 503, every 25th a timeout, and a few events whose story is told below.
async fn busy_repository_hook(setup: &Setup) -> Vec<u64> {
    let mut expected = Vec::new();
    for n in 1..=250_u64 {
        let minutes = 300 - n as i64;
        let attempt = match n {
            // A failure GitHub then delivered by hand: not redelivered.
            5 => attempt(n, "g-fixed", minutes, 503),
            6 => attempt(n, "g-fixed", minutes, 202),
            // A timeout whose event hookgate queued all the same: not redelivered.
            7 => attempt(n, "g-late", minutes, 0),
            _ if n % 25 == 0 => attempt(n, &format!("g-{n}"), minutes, 0),
            _ if n % 10 == 0 => attempt(n, &format!("g-{n}"), minutes, 503),
            _ => attempt(n, &format!("g-{n}"), minutes, 202),
        };
        if !attempt.succeeded_in_test() && !["g-fixed", "g-late"].contains(&attempt.guid.as_str()) {
            expected.push(n);
        }
        setup.github.add(REPO_HOOK, attempt);
    }
    setup.received("g-late").await;
    expected
}

trait Succeeded {
    fn succeeded_in_test(&self) -> bool;
}

impl Succeeded for Attempt {
    fn succeeded_in_test(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

#[tokio::test]
async fn a_run_redelivers_every_failed_event_hookgate_never_received_on_every_page_of_every_hook() {
    let setup = Setup::new(TOKEN, 100).await;
    let mut expected = busy_repository_hook(&setup).await;
    setup.github.add(ORG_HOOK, attempt(9_001, "g-org", 20, 500));
    expected.push(9_001);
    let reconciler = setup.reconciler().await;

    let report = setup.run(&reconciler).await;

    assert_eq!(
        sorted(setup.github.redelivered()),
        sorted(expected),
        "{report}"
    );
    let listed = setup.github.listings();
    let repository_pages: Vec<&str> = listed
        .iter()
        .filter(|request| request.path.starts_with(REPO_HOOK))
        .map(|request| request.query.as_str())
        .collect();
    assert_eq!(repository_pages.len(), 3, "{repository_pages:?}");
    assert!(repository_pages[0].contains("per_page=100"));
    assert!(repository_pages[1].contains("cursor="));
    for hook in report["hooks"].as_array().expect("hooks") {
        assert_eq!(hook["cursor"], "caught_up", "{report}");
    }
}

#[tokio::test]
async fn a_second_run_reads_only_the_newest_page_and_asks_only_for_what_is_new() {
    let setup = Setup::new(TOKEN, 100).await;
    busy_repository_hook(&setup).await;
    let reconciler = setup.reconciler().await;
    setup.run(&reconciler).await;
    setup.github.forget_requests();

    setup.github.add(REPO_HOOK, attempt(300, "g-new", 0, 503));
    let report = setup.run(&reconciler).await;

    assert_eq!(setup.github.redelivered(), [300], "{report}");
    let repository_pages: Vec<String> = setup
        .github
        .listings()
        .into_iter()
        .filter(|request| request.path.starts_with(REPO_HOOK))
        .map(|request| request.query)
        .collect();
    assert_eq!(repository_pages.len(), 1, "{repository_pages:?}");
}

#[tokio::test]
async fn a_rate_limit_stops_the_run_and_the_next_run_asks_for_everything() {
    let setup = Setup::new(TOKEN, 100).await;
    setup.github.add(REPO_HOOK, attempt(1, "g-1", 30, 503));
    setup.github.add(ORG_HOOK, attempt(2, "g-2", 20, 503));
    let reset = OffsetDateTime::now_utc() + time::Duration::minutes(10);
    setup
        .github
        .script(Scripted::rate_limited(Method::GET, "/deliveries", reset));
    let reconciler = setup.reconciler().await;

    let limited = setup.run(&reconciler).await;

    assert!(
        limited["rate_limited_until"].is_string(),
        "the run says when the limit lifts: {limited}"
    );
    assert!(setup.github.redelivered().is_empty());
    assert_eq!(
        setup.github.listings().len(),
        1,
        "no request after the limit was hit"
    );

    let next = setup.run(&reconciler).await;
    assert_eq!(sorted(setup.github.redelivered()), [1, 2], "{next}");
}

#[tokio::test]
async fn a_5xx_from_github_is_tried_again_and_a_refused_redelivery_is_asked_again_next_run() {
    let setup = Setup::new(TOKEN, 100).await;
    setup.github.add(REPO_HOOK, attempt(1, "g-1", 30, 503));
    setup
        .github
        .script(Scripted::status(Method::GET, REPO_HOOK, 502));
    setup
        .github
        .script(Scripted::status(Method::POST, "/attempts", 500));
    let reconciler = setup.reconciler().await;

    let first = setup.run(&reconciler).await;

    let lists = setup.github.listings();
    assert_eq!(
        lists
            .iter()
            .filter(|request| request.path.starts_with(REPO_HOOK))
            .count(),
        2,
        "the page GitHub failed to list was asked for again: {first}"
    );
    assert_eq!(
        setup.github.redelivered(),
        [1],
        "asked, and refused with a 500"
    );
    assert_eq!(first["hooks"][0]["cursor"], "left", "{first}");

    let second = setup.run(&reconciler).await;
    assert_eq!(
        setup.github.redelivered(),
        [1, 1],
        "asked again by the next run: {second}"
    );
    assert_eq!(second["hooks"][0]["cursor"], "caught_up", "{second}");
}

#[tokio::test]
async fn overlapping_runs_ask_for_each_event_once() {
    let setup = Setup::new(TOKEN, 10).await;
    let mut expected = Vec::new();
    for n in 1..=40_u64 {
        setup.github.add(
            REPO_HOOK,
            attempt(n, &format!("g-{n}"), 100 - n as i64, 503),
        );
        expected.push(n);
    }
    let (first, second) = tokio::join!(setup.reconciler(), setup.reconciler());

    let (a, b) = tokio::join!(setup.run(&first), setup.run(&second));

    assert_eq!(sorted(setup.github.redelivered()), expected, "{a}\n{b}");
}

#[tokio::test]
async fn a_token_github_refuses_is_reported_and_nothing_is_asked_for() {
    let setup = Setup::new("ghp_revoked", 100).await;
    setup.github.add(REPO_HOOK, attempt(1, "g-1", 30, 503));
    let reconciler = setup.reconciler().await;

    let report = setup.run(&reconciler).await;

    assert!(setup.github.redelivered().is_empty());
    let errors = report["hooks"][0]["errors"].to_string();
    assert!(errors.contains("Bad credentials"), "{report}");
    assert!(
        reconciler.output().contains("ReconcilerErrors"),
        "the errors are counted for the alarm"
    );
}
