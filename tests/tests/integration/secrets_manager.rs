//! The Secrets Manager secret source against the emulator: what it reads at init, how a
//! rotation reaches it, and that a Secrets Manager outage after init does not turn into
//! rejected webhooks.

use std::time::Duration;

use hookgate::aws::SecretsManagerSource;
use hookgate::secret::{KeyEncoding, KeyRing, SecretError, SecretSource};
use hookgate_tests::emulator;

/// Long enough that no test's own steps outlast it.
const NO_REFRESH: Duration = Duration::from_secs(300);
const QUICK_REFRESH: Duration = Duration::from_secs(1);

async fn client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&emulator::sdk_config().await)
}

/// Creates a secret of its own and returns its name.
async fn create_secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    let name = emulator::unique_name("hookgate/test-secret");
    client
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .expect("the emulator creates a secret");
    name
}

async fn load(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    refresh: Duration,
) -> Result<SecretsManagerSource, SecretError> {
    SecretsManagerSource::load(client.clone(), name.to_owned(), KeyEncoding::Raw, refresh).await
}

fn ring(current: &str, previous: Option<&str>) -> KeyRing {
    KeyRing::from_secrets(current, previous, KeyEncoding::Raw).expect("usable test secrets")
}

async fn keys_of(source: &SecretsManagerSource) -> KeyRing {
    let keys = source
        .key_ring()
        .await
        .expect("a loaded source always has keys");
    (*keys).clone()
}

#[tokio::test]
async fn a_plain_string_secret_yields_one_key() {
    let client = client().await;
    let name = create_secret(&client, "It's a Secret to Everybody").await;

    let source = load(&client, &name, NO_REFRESH).await.expect("loads");

    let keys = keys_of(&source).await;
    assert_eq!(keys.keys().count(), 1);
    assert_eq!(keys, ring("It's a Secret to Everybody", None));
}

#[tokio::test]
async fn a_current_and_previous_pair_yields_both_keys_current_first() {
    let client = client().await;
    let name = create_secret(
        &client,
        r#"{"current": "new-secret", "previous": "old-secret"}"#,
    )
    .await;

    let source = load(&client, &name, NO_REFRESH).await.expect("loads");

    let keys = keys_of(&source).await;
    let bytes: Vec<&[u8]> = keys.keys().map(|key| key.as_bytes()).collect();
    assert_eq!(bytes, [b"new-secret".as_slice(), b"old-secret".as_slice()]);
}

#[tokio::test]
async fn a_changed_secret_is_not_read_again_before_the_refresh_interval() {
    let client = client().await;
    let name = create_secret(&client, "first").await;
    let source = load(&client, &name, NO_REFRESH).await.expect("loads");

    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string("second")
        .send()
        .await
        .expect("the emulator stores a new version");

    assert_eq!(keys_of(&source).await, ring("first", None));
}

#[tokio::test]
async fn a_rotated_secret_is_served_once_the_refresh_interval_has_passed() {
    let client = client().await;
    let name = create_secret(&client, "first").await;
    let source = load(&client, &name, QUICK_REFRESH).await.expect("loads");

    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string(r#"{"current": "second", "previous": "first"}"#)
        .send()
        .await
        .expect("the emulator stores a new version");
    tokio::time::sleep(QUICK_REFRESH).await;

    // Bounded, for a loaded machine: the refresh is due now, but the emulator may be slow.
    let rotated = ring("second", Some("first"));
    let mut keys = keys_of(&source).await;
    for _ in 0..20 {
        if keys == rotated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        keys = keys_of(&source).await;
    }
    assert_eq!(keys, rotated);
}

#[tokio::test]
async fn a_secret_that_does_not_exist_fails_the_load() {
    let client = client().await;
    let name = emulator::unique_name("hookgate/never-created");

    let error = load(&client, &name, NO_REFRESH)
        .await
        .expect_err("a missing secret cannot be loaded");

    assert!(
        matches!(&error, SecretError::Unavailable(message) if message.contains(&name)),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_secret_that_becomes_unreadable_after_load_keeps_serving_the_cached_keys() {
    let client = client().await;
    let name = create_secret(&client, "still-good").await;
    let source = load(&client, &name, QUICK_REFRESH).await.expect("loads");

    client
        .delete_secret()
        .secret_id(&name)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("the emulator deletes the secret");
    let direct = client.get_secret_value().secret_id(&name).send().await;
    assert!(direct.is_err(), "the secret is still readable: {direct:?}");
    tokio::time::sleep(QUICK_REFRESH + Duration::from_millis(100)).await;

    // The refresh is due, and fails: the keys already held must keep serving.
    assert_eq!(keys_of(&source).await, ring("still-good", None));
    assert_eq!(keys_of(&source).await, ring("still-good", None));
}
