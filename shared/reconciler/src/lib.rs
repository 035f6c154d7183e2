//! The GitHub reconciler: GitHub never redelivers a failed webhook delivery by itself, so
//! a delivery refused with a 503 (the queue down), a 429 (throttled) or a 413, or timed
//! out, is lost unless someone asks for it again. This asks, every few minutes, for each
//! delivery no attempt succeeded at and hookgate never received.
//!
//! - [`hooks`]: the watched hooks (`GITHUB_HOOKS`);
//! - [`deliveries`]: the port onto GitHub's deliveries API, and [`github`], its REST adapter;
//! - [`state`]: the port onto what the reconciler remembers between runs, with its
//!   in-memory adapter, and [`dynamodb`], its DynamoDB adapter;
//! - [`token`]: the GitHub token, from Secrets Manager;
//! - [`reconcile`]: the service, one run over every hook;
//! - [`config`]: the settings, and [`reconciler_from_env`], the function's wiring.

pub mod config;
pub mod deliveries;
pub mod dynamodb;
pub mod github;
pub mod hooks;
pub mod reconcile;
pub mod state;
pub mod token;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hookgate::aws::{DynamoStore, FunctionEnvironment, InitError, SdkSource, SecretsManagerValue};
use hookgate::config::{ConfigError, Env};

use crate::config::{ReconcilerConfig, TokenConfig};
use crate::dynamodb::DynamoState;
use crate::github::GithubApi;
use crate::reconcile::{Reconciler, RunReport};
use crate::token::{StaticToken, Token, TokenSource};

/// The reconciler's SDK calls: a run is a few dozen small calls, each well under a second.
const TIMEOUTS: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(10));

/// The reconciler could not start. The message names what to fix.
#[derive(thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("the reconciler's state table: {0}")]
    State(#[from] state::StateError),
    #[error("the GitHub client: {0}")]
    Github(#[from] deliveries::GithubError),
}

/// `main` prints the error with `Debug`: make that the readable message.
impl std::fmt::Debug for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Builds the reconciler from the environment: the hooks, the token (read once here), the
/// GitHub client, its state table and the idempotency table, each checked and warmed. A
/// failure is logged as JSON before it is returned.
pub async fn reconciler_from_env(env: &dyn Env) -> Result<Reconciler, StartError> {
    let reconciler = build(env).await;
    if let Err(error) = &reconciler {
        tracing::error!(%error, "the reconciler cannot start");
    }
    reconciler
}

async fn build(env: &dyn Env) -> Result<Reconciler, StartError> {
    let config = ReconcilerConfig::from_env(env)?;
    let sdk = FunctionEnvironment
        .load(TIMEOUTS)
        .await
        .map_err(InitError::from)?;
    let token: Arc<dyn TokenSource> = match config.token {
        TokenConfig::Fixed(token) => Arc::new(StaticToken::new(token)),
        TokenConfig::SecretsManager { secret_id, refresh } => {
            let secret = SecretsManagerValue::new(
                aws_sdk_secretsmanager::Client::new(&sdk),
                secret_id,
                Token::parse,
            );
            Arc::new(secret.load(refresh).await.map_err(InitError::Secret)?)
        }
    };
    let github = GithubApi::new(&config.api_url, token)?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let state = DynamoState::connect(dynamodb.clone(), config.state_table).await?;
    let received = DynamoStore::connect(dynamodb, config.idempotency_table)
        .await
        .map_err(InitError::Store)?;
    Ok(Reconciler::new(
        config.hooks,
        Arc::new(github),
        Arc::new(state),
        Arc::new(received),
        config.settings,
    ))
}

/// One scheduled run, bounded by the invocation's deadline. The report is the invocation's
/// result, and its outcome a log line; the handler never fails, since the next run carries
/// on from wherever this one stopped.
pub async fn handle_run(
    reconciler: &Reconciler,
    event: lambda_runtime::LambdaEvent<serde_json::Value>,
) -> Result<RunReport, Infallible> {
    let deadline = hookgate::lambda::deadline(&event.context);
    let report = reconciler.run(deadline).await;
    let redelivered: usize = report.hooks.iter().map(|hook| hook.redelivered).sum();
    let errors: usize = report.hooks.iter().map(|hook| hook.errors.len()).sum();
    tracing::info!(hooks = report.hooks.len(), redelivered, errors, rate_limited_until = ?report.rate_limited_until, "reconciliation run done");
    hookgate::telemetry::flush_metrics();
    Ok(report)
}
