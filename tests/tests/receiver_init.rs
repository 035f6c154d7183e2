//! Building a receiver from its settings against the emulator: a function must fail at
//! init, naming what to fix, rather than start and then answer every webhook 503.
//!
//! `receiver_from_env` takes its settings from an [`Env`](hookgate::config::Env) map but,
//! like a deployed function, the SDK's from the process environment; this test binary sets
//! those once, to the emulator's.

use std::collections::HashMap;
use std::sync::Once;

use hookgate::aws::{receiver_from_env, InitError};
use hookgate::config::ConfigError;
use hookgate::provider::Provider;
use hookgate_tests::emulator;

/// Points the SDK's standard variables at the emulator, once per test binary. Every test
/// calls this first, and only these values are ever set, so no test reads the environment
/// while another changes it.
fn use_the_emulator() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        for (name, value) in emulator::function_environment() {
            std::env::set_var(name, value);
        }
    });
}

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&emulator::sdk_config().await)
}

#[tokio::test]
async fn a_receiver_builds_from_a_queue_that_exists_and_a_secret_in_the_environment() {
    use_the_emulator();
    let queue_url = emulator::create_queue(&sqs().await, "init")
        .await
        .expect("the emulator creates a queue");
    let env = HashMap::from([
        ("QUEUE_URL", queue_url.as_str()),
        ("WEBHOOK_SECRET", "It's a Secret to Everybody"),
    ]);

    let receiver = receiver_from_env(Provider::Github, &env)
        .await
        .expect("a receiver builds");

    assert_eq!(receiver.provider(), Provider::Github);
}

#[tokio::test]
async fn a_queue_url_that_names_no_queue_fails_at_init_naming_the_url() {
    use_the_emulator();
    let queue_url = format!(
        "{}/123456789012/{}",
        emulator::endpoint(),
        emulator::unique_name("never-created")
    );
    let env = HashMap::from([
        ("QUEUE_URL", queue_url.as_str()),
        ("WEBHOOK_SECRET", "It's a Secret to Everybody"),
    ]);

    let error = receiver_from_env(Provider::Github, &env)
        .await
        .expect_err("a missing queue must fail the init");

    assert!(matches!(error, InitError::Queue(_)), "{error:?}");
    assert!(error.to_string().contains(&queue_url), "{error}");
}

#[tokio::test]
async fn a_receiver_builds_with_its_secret_in_secrets_manager() {
    use_the_emulator();
    let config = emulator::sdk_config().await;
    let queue_url = emulator::create_queue(&aws_sdk_sqs::Client::new(&config), "init-arn")
        .await
        .expect("the emulator creates a queue");
    let secret = aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(emulator::unique_name("hookgate/github"))
        .secret_string(r#"{"current": "new-secret", "previous": "old-secret"}"#)
        .send()
        .await
        .expect("the emulator creates a secret");
    let arn = secret.arn().expect("a created secret has an ARN");
    let env = HashMap::from([
        ("QUEUE_URL", queue_url.as_str()),
        ("WEBHOOK_SECRET_ARN", arn),
    ]);

    let receiver = receiver_from_env(Provider::Github, &env)
        .await
        .expect("a receiver builds");

    assert_eq!(receiver.provider(), Provider::Github);
}

#[tokio::test]
async fn a_secret_arn_that_names_no_secret_fails_at_init() {
    use_the_emulator();
    let queue_url = emulator::create_queue(&sqs().await, "init-no-secret")
        .await
        .expect("the emulator creates a queue");
    let secret_id = emulator::unique_name("hookgate/never-created");
    let env = HashMap::from([
        ("QUEUE_URL", queue_url.as_str()),
        ("WEBHOOK_SECRET_ARN", secret_id.as_str()),
    ]);

    let error = receiver_from_env(Provider::Github, &env)
        .await
        .expect_err("a missing secret must fail the init");

    assert!(matches!(error, InitError::Secret(_)), "{error:?}");
    assert!(error.to_string().contains(&secret_id), "{error}");
}

#[tokio::test]
async fn a_missing_queue_url_fails_at_init_naming_queue_url() {
    use_the_emulator();
    let env = HashMap::from([("WEBHOOK_SECRET", "It's a Secret to Everybody")]);

    let error = receiver_from_env(Provider::Github, &env)
        .await
        .expect_err("a receiver without a queue must not start");

    assert!(
        matches!(
            error,
            InitError::Config(ConfigError::Missing { name: "QUEUE_URL" })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("QUEUE_URL"), "{error}");
}
