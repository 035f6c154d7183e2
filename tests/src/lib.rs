//! Support for hookgate's integration and end-to-end tests, which live in `tests/tests/`.
//!
//! Integration tests talk to SQS, DynamoDB and Secrets Manager over the wire, through the
//! AWS-compatible emulator (moto's server) that `scripts/test` starts on 127.0.0.1 and names
//! in `HOOKGATE_TEST_AWS_ENDPOINT`.

pub mod agent;
pub mod contract;
pub mod emulator;
pub mod github_api;
pub mod hookgate_cli;
pub mod lambda_runtime_api;
pub mod template_source;

/// An HTTP client builder for tests, on the TLS trust the functions use ([`hookgate::tls`]):
/// reqwest is built without a default crypto provider, so `reqwest::Client::new()` would
/// refuse to start.
pub fn http_client() -> reqwest::ClientBuilder {
    let trust = hookgate::tls::process_trust().expect("HOOKGATE_CA_FILE, if set, is usable");
    reqwest::Client::builder().tls_backend_preconfigured(trust.rustls_config())
}
