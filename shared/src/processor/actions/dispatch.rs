//! The processor's one [`ActionInvoker`]: built from the routes at init, it hands each action
//! to the adapter of its kind.
//!
//! Everything an action needs is resolved here, once, before the first event: the HTTP
//! client, every `http` action's signing secret (from its environment variable, or read
//! from Secrets Manager), the Lambda client. An action that cannot run (its variable unset,
//! its secret not a `whsec_…` secret, a `lambda` action where there is no AWS) fails the
//! processor's init with an error naming it, instead of failing every event routed to it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;

use super::{
    ActionError, ActionInvoker, ActionSetupError, HttpActions, LogActions, NormalizedEvent,
};
use crate::aws::{LambdaActions, SecretsManagerSource};
use crate::config::Env;
use crate::processor::ActionsFactory;
use crate::routes::{ActionKind, ActionSpec, RouteTable, SecretRef};
use crate::secret::{KeyEncoding, KeyRing, SecretError, SecretSource, StaticSecrets};

/// How long an `http` action's Secrets Manager value is cached before it is read again, so
/// that a rotation reaches the signer without a restart; the receivers' default too.
pub const ACTION_SECRET_REFRESH: Duration = Duration::from_secs(300);

/// Routes each action to the adapter of its kind: [`HttpActions`], [`LambdaActions`] or
/// [`LogActions`]. An adapter is only built when some action needs it.
#[derive(Debug)]
pub struct ActionDispatcher {
    http: Option<HttpActions>,
    lambda: Option<Arc<dyn ActionInvoker>>,
    log: LogActions,
}

impl ActionDispatcher {
    /// A dispatcher with the given adapters; an action whose kind has none fails
    /// permanently. For wiring of one's own (tests, another Lambda client).
    pub fn new(http: Option<HttpActions>, lambda: Option<Arc<dyn ActionInvoker>>) -> Self {
        Self {
            http,
            lambda,
            log: LogActions,
        }
    }

    /// Sets up every action the routes define. `aws` is the SDK configuration when the
    /// processor runs with AWS; without it, `secret_arn` and `lambda` actions are refused.
    ///
    /// Secrets Manager secrets are read here (one read per secret, however many actions
    /// share it), so an unreadable one fails the init.
    pub async fn from_routes(
        routes: &RouteTable,
        env: &dyn Env,
        aws: Option<&SdkConfig>,
    ) -> Result<Self, ActionSetupError> {
        let mut secrets = Secrets {
            env,
            aws,
            secrets_manager: None,
            loaded: BTreeMap::new(),
        };
        let mut http: Option<HttpActions> = None;
        let mut lambda: Option<Arc<dyn ActionInvoker>> = None;
        for action in routes.actions() {
            match &action.kind {
                ActionKind::Http { secret, .. } => {
                    let source = secrets.resolve(&action.name, secret).await?;
                    let actions = match http.take() {
                        Some(actions) => actions,
                        None => HttpActions::new()?,
                    };
                    http = Some(actions.with_signing_secret(action.name.clone(), source));
                }
                ActionKind::Lambda { .. } => {
                    if lambda.is_none() {
                        let sdk = aws.ok_or_else(|| ActionSetupError::NeedsAws {
                            action: action.name.clone(),
                            what: "a `lambda` action",
                        })?;
                        lambda = Some(Arc::new(LambdaActions::new(aws_sdk_lambda::Client::new(
                            sdk,
                        ))));
                    }
                }
                ActionKind::Log => {}
            }
        }
        Ok(Self::new(http, lambda))
    }
}

/// Sets up a dispatcher for each routes table a processor reads while it runs, from the
/// same environment and SDK configuration as the first.
pub struct DispatcherFactory {
    env: Box<dyn Env>,
    aws: Option<SdkConfig>,
}

impl std::fmt::Debug for DispatcherFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherFactory")
            .field("aws", &self.aws.is_some())
            .finish_non_exhaustive()
    }
}

impl DispatcherFactory {
    pub fn new(env: Box<dyn Env>, aws: Option<SdkConfig>) -> Self {
        Self { env, aws }
    }
}

#[async_trait]
impl ActionsFactory for DispatcherFactory {
    async fn actions_for(
        &self,
        routes: &RouteTable,
    ) -> Result<Arc<dyn ActionInvoker>, ActionSetupError> {
        Ok(Arc::new(
            ActionDispatcher::from_routes(routes, &*self.env, self.aws.as_ref()).await?,
        ))
    }
}

/// Resolving `http` actions' secrets, each variable or secret once.
struct Secrets<'a> {
    env: &'a dyn Env,
    aws: Option<&'a SdkConfig>,
    secrets_manager: Option<aws_sdk_secretsmanager::Client>,
    loaded: BTreeMap<String, Arc<dyn SecretSource>>,
}

impl Secrets<'_> {
    async fn resolve(
        &mut self,
        action: &str,
        secret: &SecretRef,
    ) -> Result<Arc<dyn SecretSource>, ActionSetupError> {
        let origin = match secret {
            SecretRef::Env(variable) => format!("the variable {variable}"),
            SecretRef::Arn(arn) => format!("Secrets Manager secret {arn}"),
        };
        if let Some(source) = self.loaded.get(&origin) {
            return Ok(Arc::clone(source));
        }
        let in_origin = |source: SecretError| ActionSetupError::Secret {
            action: action.to_owned(),
            origin: origin.clone(),
            source,
        };
        let source: Arc<dyn SecretSource> = match secret {
            SecretRef::Env(variable) => {
                let value = self.env.get(variable).ok_or_else(|| {
                    ActionSetupError::MissingSecretVariable {
                        action: action.to_owned(),
                        variable: variable.clone(),
                    }
                })?;
                let keys = KeyRing::from_secrets(&value, None, KeyEncoding::StandardWebhooks)
                    .map_err(in_origin)?;
                Arc::new(StaticSecrets::new(keys))
            }
            SecretRef::Arn(arn) => {
                let sdk = self.aws.ok_or_else(|| ActionSetupError::NeedsAws {
                    action: action.to_owned(),
                    what: "a `secret_arn`",
                })?;
                let client = self
                    .secrets_manager
                    .get_or_insert_with(|| aws_sdk_secretsmanager::Client::new(sdk))
                    .clone();
                Arc::new(
                    SecretsManagerSource::load(
                        client,
                        arn.clone(),
                        KeyEncoding::StandardWebhooks,
                        ACTION_SECRET_REFRESH,
                    )
                    .await
                    .map_err(in_origin)?,
                )
            }
        };
        self.loaded.insert(origin, Arc::clone(&source));
        Ok(source)
    }
}

#[async_trait]
impl ActionInvoker for ActionDispatcher {
    async fn invoke(
        &self,
        action: &ActionSpec,
        event: &NormalizedEvent,
    ) -> Result<(), ActionError> {
        let adapter: Option<&dyn ActionInvoker> = match &action.kind {
            ActionKind::Http { .. } => self.http.as_ref().map(|http| http as &dyn ActionInvoker),
            ActionKind::Lambda { .. } => self.lambda.as_deref(),
            ActionKind::Log => Some(&self.log),
        };
        match adapter {
            Some(adapter) => adapter.invoke(action, event).await,
            // Only a dispatcher wired by hand can lack an adapter; retrying would not add it.
            None => Err(ActionError::permanent(format!(
                "no adapter was set up for the action `{}`",
                action.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::envelope::RawBody;
    use crate::idempotency::IdempotencyKey;
    use crate::provider::Provider;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn routes(actions: &str) -> RouteTable {
        let text = format!(
            "[[route]]\nprovider = \"*\"\nevents = [\"*\"]\nactions = [\"agent\"]\n{actions}"
        );
        RouteTable::parse(&text, "routes.toml").unwrap()
    }

    const HTTP_FROM_ENV: &str = "[action.agent]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/hooks\"\nsecret_env = \"AGENT_SECRET\"\n";

    async fn setup_error(actions: &str, env: &[(&str, &str)]) -> String {
        let env: HashMap<&str, &str> = env.iter().copied().collect();
        ActionDispatcher::from_routes(&routes(actions), &env, None)
            .await
            .unwrap_err()
            .to_string()
    }

    fn event() -> NormalizedEvent {
        NormalizedEvent {
            idempotency_key: IdempotencyKey::from_stable_id(Provider::Standard, "msg_1").unwrap(),
            provider: Provider::Standard,
            event_type: "ping".into(),
            delivery_id: Some("msg_1".into()),
            received_at: time::OffsetDateTime::UNIX_EPOCH,
            payload: serde_json::Value::Null,
            body: RawBody::Utf8("ping".into()),
            replay: None,
        }
    }

    #[tokio::test]
    async fn an_http_action_whose_secret_variable_is_unset_fails_the_init_naming_both() {
        assert_eq!(
            setup_error(HTTP_FROM_ENV, &[]).await,
            "action `agent`: its signing secret variable AGENT_SECRET is not set"
        );
    }

    #[tokio::test]
    async fn a_secret_that_is_not_a_standard_webhooks_secret_is_refused_without_echoing_it() {
        let error = setup_error(HTTP_FROM_ENV, &[("AGENT_SECRET", "whsec_not base64!")]).await;
        assert!(
            error.starts_with("action `agent`: the signing secret in the variable AGENT_SECRET: "),
            "{error}"
        );
        assert!(!error.contains("not base64!"), "{error}");
    }

    #[tokio::test]
    async fn lambda_actions_and_secret_arns_need_aws() {
        let lambda = "[action.agent]\ntype = \"lambda\"\nfunction = \"agent-fn\"\n";
        assert_eq!(
            setup_error(lambda, &[]).await,
            "action `agent`: a `lambda` action needs AWS, and this processor runs without it"
        );
        let arn = "[action.agent]\ntype = \"http\"\nurl = \"https://a.example\"\nsecret_arn = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:agent\"\n";
        assert_eq!(
            setup_error(arn, &[]).await,
            "action `agent`: a `secret_arn` needs AWS, and this processor runs without it"
        );
    }

    #[tokio::test]
    async fn routes_with_usable_secrets_set_up_and_log_actions_run() {
        let env = HashMap::from([("AGENT_SECRET", SECRET)]);
        let text = format!("{HTTP_FROM_ENV}[action.audit]\ntype = \"log\"\n");
        let dispatcher = ActionDispatcher::from_routes(&routes(&text), &env, None)
            .await
            .unwrap();
        assert!(dispatcher.http.is_some());
        assert!(dispatcher.lambda.is_none());
        let audit = ActionSpec {
            name: "audit".into(),
            kind: ActionKind::Log,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(dispatcher.invoke(&audit, &event()).await, Ok(()));
    }

    #[tokio::test]
    async fn an_action_without_an_adapter_fails_permanently() {
        let dispatcher = ActionDispatcher::new(None, None);
        let lambda = ActionSpec {
            name: "billing".into(),
            kind: ActionKind::Lambda {
                function: "billing".into(),
                invocation: crate::routes::InvocationType::Event,
            },
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            dispatcher.invoke(&lambda, &event()).await,
            Err(ActionError::Permanent { .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_a_signing_key() {
        let keys = KeyRing::from_secrets(SECRET, None, KeyEncoding::StandardWebhooks).unwrap();
        let http = HttpActions::new()
            .unwrap()
            .with_signing_secret("agent", Arc::new(StaticSecrets::new(keys)));
        let printed = format!("{:?}", ActionDispatcher::new(Some(http), None));
        assert!(!printed.contains("MfKQ9r8G"), "{printed}");
        assert!(printed.contains("redacted"), "{printed}");
    }
}
