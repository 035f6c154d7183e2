//! `hookgate dev`: the whole pipeline on one machine.
//!
//! Six receivers behind `POST /webhooks/{provider}` on 127.0.0.1, a queue, the processor
//! running continuously, and the actions the routes name: the same [`Receiver`] and
//! [`Processor`] the Lambda functions run, wired to the embedded SQLite queue and
//! idempotency store (durable: what was answered 202 survives `kill -9`), or with `--aws` to
//! SQS and DynamoDB (AWS itself, or an emulator through `AWS_ENDPOINT_URL`).

mod forward;
mod http;
mod lock;
mod worker;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hookgate::aws::{self, InitError, SqsEventQueue, SqsQueueConsumer};
use hookgate::bodies::{BodyStore, BodyStoreError};
use hookgate::claims::StoreError;
use hookgate::config::{required, ConfigError, Env, Overridden, ProcessEnv};
use hookgate::processor::actions::{ActionDispatcher, ActionSetupError};
use hookgate::processor::{routes_from_env, settings_from_env, Processor, QueueConsumer};
use hookgate::provider::Provider;
use hookgate::queue::{EventQueue, QueueError};
use hookgate::receiver::{Receiver, ReceiverSettings};
use hookgate::secret::{KeyRing, SecretError, StaticSecrets};
use hookgate::sqlite::{
    SqliteArchive, SqliteBodyStore, SqliteQueue, SqliteQueueSettings, SqliteStore,
};
use hookgate::telemetry::Metrics;
use hookgate::verify::scheme_for;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tracing::info;

pub use self::http::Receivers;

/// The embedded database's file name inside `--data-dir`.
pub const DATABASE_FILE: &str = "hookgate.sqlite";

/// How much longer than the claim's lease a received message stays hidden: a message is
/// only offered again once the claim on it can be taken over.
const VISIBILITY_MARGIN: Duration = Duration::from_secs(5);

/// SDK timeouts for `--aws`: a long-polling receive waits up to a second, so the attempt
/// timeout must be longer than that, unlike a receiver's in Lambda.
const AWS_TIMEOUTS: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(20));

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The port to serve on, on 127.0.0.1 only; 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// Where the embedded queue and idempotency records are kept (created if missing).
    #[arg(long, default_value = ".hookgate", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// A routes file to use instead of the bundled one, which logs every event.
    #[arg(long, env = "ROUTES_FILE", value_name = "FILE")]
    pub routes: Option<PathBuf>,

    /// Send every event to this agent URL, signed as Standard Webhooks with a secret the
    /// banner prints (made for the data directory and kept there), without a routes file.
    #[arg(long, value_name = "URL", conflicts_with_all = ["routes", "stack"])]
    pub forward_to: Option<String>,

    /// How many times a message is received before it goes to the dead-letter queue
    /// (embedded queue; an SQS queue has its own redrive policy).
    #[arg(long, default_value_t = 5, value_name = "N", conflicts_with = "aws")]
    pub max_receive_count: u32,

    /// Use SQS and DynamoDB instead of the embedded backends: QUEUE_URL, DLQ_URL and
    /// TABLE_NAME name them, and the standard AWS variables (AWS_REGION, AWS_ENDPOINT_URL,
    /// credentials) say where.
    #[arg(long)]
    pub aws: bool,

    /// Use a deployed stack's queue, table, body bucket and routes (a stack of your own for
    /// development: this process consumes its queue beside the stack's processor). Implies
    /// --aws; the standard AWS variables say where. Never read from HOOKGATE_STACK: only
    /// asked for by name.
    #[arg(long, value_name = "NAME", conflicts_with = "max_receive_count")]
    pub stack: Option<String>,
}

/// Why `hookgate dev` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("the queue: {0}")]
    Queue(#[from] QueueError),
    #[error("the idempotency store: {0}")]
    Store(#[from] StoreError),
    #[error("the body store: {0}")]
    Bodies(#[from] BodyStoreError),
    #[error("the archive: {0}")]
    Archive(#[from] hookgate::archive::ArchiveError),
    #[error(transparent)]
    Actions(#[from] ActionSetupError),
    #[error("the {provider} receiver's secret (from {origin}): {source}")]
    Secret {
        provider: Provider,
        origin: String,
        source: SecretError,
    },
    #[error("cannot serve on 127.0.0.1:{port}: {source} (is another `hookgate dev` running? pick another --port)")]
    Listen { port: u16, source: std::io::Error },
    #[error("{part} {reason}; stopping, with everything accepted kept in the queue")]
    Stopped { part: &'static str, reason: String },
    #[error(transparent)]
    Stack(#[from] crate::stack::StackError),
    #[error(transparent)]
    DataDir(#[from] lock::LockError),
    #[error(transparent)]
    Forward(#[from] forward::ForwardError),
}

/// The queue, the consumer, the body store and the processor, on one backend.
struct Pipeline {
    queue: Arc<dyn EventQueue>,
    consumer: Arc<dyn QueueConsumer>,
    /// Where bodies too large for a message go, as the receivers and the processor share it.
    bodies: Option<Arc<dyn BodyStore>>,
    processor: Processor,
    /// What the banner says about the backend.
    description: Vec<String>,
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> Result<(), DevError> {
    let mut overrides: Vec<(&str, String)> = args
        .routes
        .iter()
        .map(|path| ("ROUTES_FILE", path.display().to_string()))
        .collect();
    if let Some(name) = &args.stack {
        overrides.extend(stack_variables(name, args.routes.is_some()).await?);
    }
    let embedded = !(args.aws || args.stack.is_some());
    // Taken before anything is written to the directory, and held until this returns.
    let _data_dir = embedded
        .then(|| lock::lock_data_dir(&args.data_dir))
        .transpose()?;
    let forwarding = match &args.forward_to {
        Some(url) => Some(forward::prepare(url, &args.data_dir)?),
        None => None,
    };
    if let Some(forwarding) = &forwarding {
        overrides.push(("ROUTES_FILE", forwarding.routes_file.display().to_string()));
        overrides.push((forward::SECRET_VARIABLE, forwarding.secret.clone()));
    }
    let env = Overridden {
        overrides: &overrides,
        base: &ProcessEnv,
    };
    let mut pipeline = if embedded {
        embedded_pipeline(&args, &env).await?
    } else {
        aws_pipeline(&env).await?
    };
    if let Some(forwarding) = &forwarding {
        pipeline
            .description
            .retain(|line| !line.starts_with("routes:"));
        pipeline.description.push(format!(
            "routes: every event to {} (--forward-to), signed as Standard Webhooks with\n          {} (kept in {})",
            forwarding.url,
            forwarding.secret,
            args.data_dir.join(forward::SECRET_FILE).display()
        ));
    }
    let (receivers, secrets) = receivers(&pipeline.queue, pipeline.bodies.as_ref(), &env)?;

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .await
        .map_err(|source| DevError::Listen {
            port: args.port,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| DevError::Listen {
        port: args.port,
        source,
    })?;
    // Listening for signals before the banner: a script that reads the banner and then
    // stops the process must find the handler in place.
    let mut signals = Signals::install();
    print_banner(address, &secrets, &pipeline.description);

    // A received message stays hidden until its claim could be taken over.
    let visibility = pipeline.processor.settings().lease + VISIBILITY_MARGIN;
    let (stop, stopped) = watch::channel(false);
    let mut server = tokio::spawn(http::serve(listener, Arc::new(receivers), stopped.clone()));
    let mut worker = tokio::spawn(worker::run(
        pipeline.consumer,
        Arc::new(pipeline.processor),
        visibility,
        stopped,
    ));
    // Either half ending on its own is a bug (a panic in an action adapter, say): stop
    // rather than answer 202s that nothing processes.
    let ended = tokio::select! {
        () = signals.next() => None,
        result = &mut server => Some(("the HTTP server", result)),
        result = &mut worker => Some(("the processor", result)),
    };
    if let Some((part, result)) = ended {
        let _ = stop.send(true);
        let reason = match result {
            Err(error) if error.is_panic() => "panicked".to_owned(),
            Err(error) => error.to_string(),
            Ok(()) => "ended".to_owned(),
        };
        return Err(DevError::Stopped { part, reason });
    }
    info!("stopping: no new requests; the batch in hand is finished first (Ctrl-C again to stop at once)");
    let _ = stop.send(true);
    // A second signal stops at once: everything answered 202 is already stored, and an
    // unfinished batch is delivered again after its visibility timeout.
    tokio::select! {
        _ = async { let _ = (&mut server).await; let _ = (&mut worker).await; } => {}
        () = signals.next() => info!("stopped at once; the batch in hand will be delivered again"),
    }
    Ok(())
}

async fn embedded_pipeline(args: &DevArgs, env: &dyn Env) -> Result<Pipeline, DevError> {
    let path = args.data_dir.join(DATABASE_FILE);
    let queue = SqliteQueue::open(
        &path,
        SqliteQueueSettings {
            max_receive_count: args.max_receive_count,
        },
    )?;
    let store = SqliteStore::open(&path)?;
    let bodies: Arc<dyn BodyStore> = Arc::new(SqliteBodyStore::open(&path)?);
    let archive = SqliteArchive::open(&path)?;
    let routes = routes_from_env(env)?;
    let settings = settings_from_env(env, routes.longest_action_timeout())?;
    let actions = ActionDispatcher::from_routes(&routes, env, None).await?;
    let description = vec![
        format!(
            "queue:  embedded, in {} ({} receives before the dead-letter queue)",
            path.display(),
            args.max_receive_count
        ),
        format!("claims: embedded, in {}", path.display()),
        format!(
            "bodies: embedded, in {} (those too large for a queue message)",
            path.display()
        ),
        format!(
            "archive: embedded, in {} (hookgate events, hookgate replay)",
            path.display()
        ),
        routes_line(env, routes.route_count()),
    ];
    let processor = Processor::new(
        routes,
        Arc::new(store),
        Arc::new(actions),
        Arc::new(queue.clone()),
        settings,
    )
    .with_body_store(Arc::clone(&bodies))
    .with_archive(Arc::new(archive))
    .with_metrics(Metrics::off());
    let queue = Arc::new(queue);
    Ok(Pipeline {
        queue: queue.clone(),
        consumer: queue,
        bodies: Some(bodies),
        processor,
        description,
    })
}

/// The variables `--aws` reads, from a deployed stack's outputs; its routes too, unless
/// `--routes` names a file.
async fn stack_variables(
    name: &str,
    routes_given: bool,
) -> Result<Vec<(&'static str, String)>, DevError> {
    let config = crate::stack::AwsOptions::default().sdk_config().await;
    let stack = crate::stack::Stack::describe(&config, name).await?;
    let mut variables = vec![
        ("QUEUE_URL", stack.output("QueueUrl")?.to_owned()),
        ("DLQ_URL", stack.output("DeadLetterQueueUrl")?.to_owned()),
        (
            "TABLE_NAME",
            stack.output("IdempotencyTableName")?.to_owned(),
        ),
        ("BODY_BUCKET", stack.output("BodyBucketName")?.to_owned()),
    ];
    if let Some(bucket) = stack.archive_bucket()? {
        variables.push(("ARCHIVE_BUCKET", bucket));
    }
    match stack.output("RoutesLocation")? {
        "bundled" => {}
        _ if routes_given => {}
        location => variables.push(("ROUTES_SOURCE", location.to_owned())),
    }
    Ok(variables)
}

async fn aws_pipeline(env: &dyn Env) -> Result<Pipeline, DevError> {
    let queue_url = required(env, "QUEUE_URL")?;
    let table_name = required(env, "TABLE_NAME")?;
    // The processor exactly as the Lambda function builds it, from the same variables.
    let processor = aws::processor_on(env, &aws::DefaultChain)
        .await?
        .with_metrics(Metrics::off());
    let client = aws_sdk_sqs::Client::new(
        &aws::sdk_config(AWS_TIMEOUTS)
            .await
            .map_err(InitError::from)?,
    );
    let queue = SqsEventQueue::connect(client.clone(), queue_url.clone()).await?;
    let consumer = SqsQueueConsumer::connect(client, queue_url.clone()).await?;
    // The processor reads the same bucket, from the same variable.
    let bodies: Option<Arc<dyn BodyStore>> = match env.get("BODY_BUCKET") {
        Some(bucket) => Some(Arc::new(aws::body_store(bucket, &aws::DefaultChain).await?)),
        None => None,
    };
    let description = vec![
        format!("queue:  SQS, {queue_url}"),
        format!("claims: DynamoDB, table {table_name}"),
        match env.get("BODY_BUCKET") {
            Some(bucket) => format!("bodies: S3, bucket {bucket}"),
            None => "bodies: none (BODY_BUCKET unset: bodies too large for SQS get 413)".to_owned(),
        },
        match env.get("ARCHIVE_BUCKET") {
            Some(bucket) => format!("archive: S3, s3://{bucket}/archive/"),
            None => "archive: none (ARCHIVE_BUCKET unset)".to_owned(),
        },
        routes_line(env, processor.routing().now().routes.route_count()),
    ];
    Ok(Pipeline {
        queue: Arc::new(queue),
        consumer: Arc::new(consumer),
        bodies,
        processor,
        description,
    })
}

fn routes_line(env: &dyn Env, count: usize) -> String {
    match (env.get("ROUTES_SOURCE"), env.get("ROUTES_FILE")) {
        (Some(source), _) => format!("routes: {source}, read while running ({count} routes now)"),
        (None, Some(path)) => format!("routes: {path} ({count} routes)"),
        (None, None) => "routes: the bundled routes.toml (every event to the log)".to_owned(),
    }
}

/// What the banner shows of a receiver's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretShown {
    /// The public test secret `hookgate send` signs with by default.
    Test(&'static str),
    /// A secret of the user's, from this variable; never printed.
    FromVariable(String),
}

/// One receiver per provider, each checking the provider's test secret unless
/// `HOOKGATE_<PROVIDER>_SECRET` sets another (to point a real provider at this machine
/// through a tunnel).
pub fn receivers(
    queue: &Arc<dyn EventQueue>,
    bodies: Option<&Arc<dyn BodyStore>>,
    env: &dyn Env,
) -> Result<(Receivers, Vec<(Provider, SecretShown)>), DevError> {
    let mut receivers = Receivers::new();
    let mut shown = Vec::new();
    for provider in Provider::ALL {
        let variable = secret_variable(provider);
        let scheme = match provider {
            // SNS's samples are signed with a public test key, which only the samples'
            // scheme trusts: a receiver given topics of the user's own trusts SNS's real
            // certificates alone, fetched from SNS as the Lambda receiver does.
            Provider::Sns if env.get(&variable).is_some() => scheme_for(provider, env)?,
            // The generic receiver takes the samples' settings, as `hookgate send` signs them.
            _ => hookgate_samples::sample_scheme(provider),
        };
        let (secret, secret_shown) = match env.get(&variable) {
            Some(secret) => (secret, SecretShown::FromVariable(variable.clone())),
            None => (
                hookgate_samples::test_secret(provider).to_owned(),
                SecretShown::Test(hookgate_samples::test_secret(provider)),
            ),
        };
        let keys =
            KeyRing::from_secrets(&secret, None, scheme.key_encoding()).map_err(|source| {
                DevError::Secret {
                    provider,
                    origin: variable,
                    source,
                }
            })?;
        let receiver = match bodies {
            Some(bodies) => Receiver::new(
                scheme,
                Arc::new(StaticSecrets::new(keys)),
                Arc::clone(queue),
                ReceiverSettings::with_body_store(),
            )
            .with_body_store(Arc::clone(bodies)),
            None => Receiver::new(
                scheme,
                Arc::new(StaticSecrets::new(keys)),
                Arc::clone(queue),
                ReceiverSettings::default(),
            ),
        }
        .with_metrics(Metrics::off());
        receivers.insert(provider, receiver);
        shown.push((provider, secret_shown));
    }
    Ok((receivers, shown))
}

/// `HOOKGATE_GITHUB_SECRET` and so on.
pub fn secret_variable(provider: Provider) -> String {
    format!("HOOKGATE_{}_SECRET", provider.as_str().to_uppercase())
}

/// The first line is what scripts wait for: `hookgate dev: serving on http://ADDRESS`.
fn print_banner(address: SocketAddr, secrets: &[(Provider, SecretShown)], backend: &[String]) {
    let mut out = String::new();
    out.push_str(&format!("hookgate dev: serving on http://{address}\n\n"));
    for (provider, secret) in secrets {
        out.push_str(&banner_line(address, *provider, secret));
    }
    out.push('\n');
    for line in backend {
        out.push_str(&format!("  {line}\n"));
    }
    let tool = tool_command();
    out.push_str(&format!(
        "\nSend a signed sample, a new event each time:\n  \
         {tool} send github --new-id --url http://{address}/webhooks/github\n\
         Your own payload, signed as GitHub signs it:\n  \
         {tool} send github --data FILE --url http://{address}/webhooks/github\n\
         The samples: {tool} send --list. Every event to your agent: {tool} dev --forward-to URL\n\
         Stop with Ctrl-C.\n"
    ));
    let mut stdout = std::io::stdout().lock();
    // Scripts read the banner through a pipe: flush it now, not when a buffer fills.
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// A receiver's line of the banner: its URL and the secret it checks.
fn banner_line(address: SocketAddr, provider: Provider, secret: &SecretShown) -> String {
    let secret = match secret {
        SecretShown::Test(secret) => {
            let signing = hookgate_samples::signing_secret(provider);
            if signing == *secret {
                format!("test secret {secret}")
            } else if signing.len() > 100 {
                // What the receiver holds (a public key, SNS's topics) checks; a PEM or DER
                // key would fill the screen, and `hookgate send` knows it.
                format!("checks {secret} (send signs with the samples' private key)")
            } else {
                // A public key checks; `hookgate send` signs with its private half.
                format!("checks {secret} (send signs with {signing})")
            }
        }
        SecretShown::FromVariable(variable) => format!("secret from {variable}"),
    };
    format!(
        "  {:<9} http://{address}/webhooks/{:<9} {secret}\n",
        provider.as_str(),
        provider.as_str()
    )
}

/// How to run this tool again, as the banner's commands say it: `cargo run --bin hookgate
/// --` when it runs from a cargo build directory (the README's first command), its name
/// otherwise.
fn tool_command() -> String {
    let from_cargo = std::env::current_exe().ok().is_some_and(|exe| {
        exe.parent()
            .and_then(|profile| profile.parent())
            .and_then(|target| target.file_name())
            .is_some_and(|name| name == "target")
    });
    if from_cargo {
        "cargo run --bin hookgate --".to_owned()
    } else {
        "hookgate".to_owned()
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, as one stream, caught from the moment it is installed.
struct Signals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl Signals {
    fn install() -> Self {
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next Ctrl-C or SIGTERM (never, for a signal that could not be caught).
    async fn next(&mut self) {
        async fn received(signal: &mut Option<Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = received(&mut self.interrupt) => {}
            () = received(&mut self.terminate) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str = "127.0.0.1:8080";

    #[test]
    fn a_shared_secret_is_shown_as_the_secret_send_signs_with() {
        let line = banner_line(
            ADDRESS.parse().unwrap(),
            Provider::Github,
            &SecretShown::Test(hookgate_samples::test_secret(Provider::Github)),
        );
        assert!(
            line.contains("http://127.0.0.1:8080/webhooks/github"),
            "{line}"
        );
        assert!(
            line.contains("test secret hookgate-test-github-secret"),
            "{line}"
        );
    }

    #[test]
    fn a_public_key_is_shown_with_the_private_key_send_signs_with() {
        let public = hookgate_samples::test_secret(Provider::Discord);
        let private = hookgate_samples::signing_secret(Provider::Discord);
        assert_ne!(public, private, "Discord's receiver holds a public key");
        let line = banner_line(
            ADDRESS.parse().unwrap(),
            Provider::Discord,
            &SecretShown::Test(public),
        );
        assert!(line.contains(&format!("checks {public}")), "{line}");
        assert!(line.contains(private), "{line}");
    }

    #[test]
    fn a_secret_from_a_variable_is_never_printed() {
        let line = banner_line(
            ADDRESS.parse().unwrap(),
            Provider::Stripe,
            &SecretShown::FromVariable("HOOKGATE_STRIPE_SECRET".to_owned()),
        );
        assert!(
            line.contains("secret from HOOKGATE_STRIPE_SECRET"),
            "{line}"
        );
    }
}
