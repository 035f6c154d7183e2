//! `hookgate mcp`: a Model Context Protocol server over stdio, for agents that operate the
//! gateway: list and show events and dead letters, replay events, redrive dead letters,
//! send a signed sample, check a routes file.
//!
//! It works on the gateway the usual options name (`--data-dir`, `--stack`, `--aws`), with
//! the same code the commands run, and answers every tool with JSON (as structured
//! content, and as text for clients that read only that). It is read-only unless started
//! with `--allow-write`: replaying (other than a dry run), redriving and sending are refused
//! with a result that says how to allow them. A failure is a tool result marked as an
//! error, with the message the command would print, so the agent can read it and act.
//!
//! Standard output is the protocol's: nothing else is ever written there (progress and the
//! log go to standard error).

use std::sync::Arc;

use hookgate::idempotency::IdempotencyKey;
use hookgate::provider::Provider;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, ErrorData, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::events::{self, EventFilter};
use crate::gateway::{parse_when, Gateway, Target};
use crate::replay::{self, ReplayArgs};
use crate::send::{self, SendArgs};

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub target: Target,

    /// Allow the tools that change something: replay (other than a dry run), redrive, and
    /// send a sample.
    #[arg(long)]
    pub allow_write: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("the MCP session failed: {0}")]
    Session(String),
}

/// Serves until the client closes standard input.
pub async fn run(args: McpArgs) -> Result<(), McpError> {
    let server = GatewayServer::new(args.target, args.allow_write);
    let service = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|error| McpError::Session(error.to_string()))?;
    service
        .waiting()
        .await
        .map_err(|error| McpError::Session(error.to_string()))?;
    Ok(())
}

/// The tools, on one gateway.
#[derive(Debug, Clone)]
pub struct GatewayServer {
    target: Target,
    allow_write: bool,
    /// Opened on the first tool that needs it, and kept.
    gateway: Arc<tokio::sync::OnceCell<Gateway>>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListEvents {
    /// Received at or after this: RFC 3339, a day (2026-11-24) or a time ago (6h, 7d).
    /// Default: 24h.
    pub since: Option<String>,
    /// Received before this.
    pub until: Option<String>,
    /// Only this provider's events: github, stripe, shopify, slack, standard, generic.
    pub provider: Option<String>,
    /// Only event types matching this: an exact type, `prefix.*`, or `*`.
    pub event_type: Option<String>,
    /// Only events in this state: completed, in_progress, failed, pending, unclaimed.
    pub status: Option<String>,
    /// At most this many (default 50).
    pub max: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ShowEvent {
    /// The idempotency key, as list_events gives it.
    pub key: String,
    /// Where to search the archive when the event has no record any more (default 30d).
    pub since: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListDeadLetters {
    /// At most this many (default 50).
    pub max: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ShowDeadLetter {
    /// The id list_dead_letters gives (the processor's log's `message_id`).
    pub id: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ReplayEvents {
    /// The events to replay, by idempotency key. Without keys, every archived event the
    /// filters and `since` take.
    pub keys: Option<Vec<String>>,
    /// Events received at or after this (required without keys).
    pub since: Option<String>,
    /// Events received before this.
    pub until: Option<String>,
    pub provider: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<String>,
    /// Run the actions again as a new replay generation, even where done. Without it, the
    /// idempotency gate skips what was done and runs what failed.
    pub force: Option<bool>,
    /// With force: only these actions run again.
    pub actions: Option<Vec<String>>,
    /// Events a second (default 10).
    pub rate: Option<f64>,
    /// At most this many events (default 1000).
    pub max: Option<usize>,
    /// List what would be sent, and what the gate would do, sending nothing. Allowed
    /// without --allow-write.
    pub dry_run: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendSample {
    /// github, stripe, shopify, slack, standard or generic.
    pub provider: String,
    /// The sample's name (default: the provider's first genuine sample).
    pub sample: Option<String>,
    /// Where to POST it (default: a local hookgate dev on port 8080).
    pub url: Option<String>,
    /// A delivery id never sent before, so that it is a new event (default true).
    pub new_id: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct CheckRoutes {
    /// A routes file on this machine.
    pub path: Option<String>,
    /// Or the routes file's text.
    pub toml: Option<String>,
}

/// A tool's JSON answer; results that are not objects (the protocol's structured content
/// must be one) are wrapped in `{"result": …}`.
fn answer(value: Value) -> CallToolResult {
    match value {
        Value::Object(_) => CallToolResult::structured(value),
        other => CallToolResult::structured(json!({ "result": other })),
    }
}

/// A failure the agent can read: the message the command would have printed.
fn failure(message: impl std::fmt::Display) -> CallToolResult {
    CallToolResult::structured_error(json!({ "error": message.to_string() }))
}

/// `Ok` with the tool's answer either way: failures are results, not protocol errors.
type ToolResult = Result<CallToolResult, ErrorData>;

fn parsed<T: std::str::FromStr>(value: Option<&str>, what: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    value
        .map(|text| {
            text.parse()
                .map_err(|error| format!("{what} `{text}`: {error}"))
        })
        .transpose()
}

fn filter(
    provider: Option<&str>,
    event_type: Option<String>,
    status: Option<String>,
) -> Result<EventFilter, String> {
    if let Some(status) = &status {
        if !crate::gateway::STATES.contains(&status.as_str()) {
            return Err(format!(
                "status `{status}` is not one of {}",
                crate::gateway::STATES.join(", ")
            ));
        }
    }
    Ok(EventFilter {
        provider: parsed::<Provider>(provider, "provider")?,
        event_type,
        status,
    })
}

#[tool_router]
impl GatewayServer {
    pub fn new(target: Target, allow_write: bool) -> Self {
        Self {
            target,
            allow_write,
            gateway: Arc::new(tokio::sync::OnceCell::new()),
            tool_router: Self::tool_router(),
        }
    }

    async fn gateway(&self) -> Result<&Gateway, String> {
        self.gateway
            .get_or_try_init(|| self.target.open())
            .await
            .map_err(|error| error.to_string())
    }

    /// Refuses a write unless the server was started with `--allow-write`.
    fn writable(&self, what: &str) -> Result<(), CallToolResult> {
        if self.allow_write {
            return Ok(());
        }
        Err(failure(format!(
            "{what} changes the gateway, and this server is read-only: start it with \
             `hookgate mcp --allow-write` to allow it"
        )))
    }

    #[tool(
        description = "List archived events (oldest received first) with where each stands: completed, in_progress, failed, pending or unclaimed, its attempts, the actions done and the last error.",
        annotations(read_only_hint = true)
    )]
    async fn list_events(&self, Parameters(request): Parameters<ListEvents>) -> ToolResult {
        let now = OffsetDateTime::now_utc();
        let listed = async {
            let filter = filter(
                request.provider.as_deref(),
                request.event_type,
                request.status,
            )?;
            let query = filter
                .query(
                    request.since.as_deref().unwrap_or("24h"),
                    request.until.as_deref(),
                    now,
                )
                .map_err(|error| error.to_string())?;
            let gateway = self.gateway().await?;
            let events = events::list(gateway, &query, &filter, request.max.unwrap_or(50), now)
                .await
                .map_err(|error| error.to_string())?;
            Ok::<_, String>(events)
        }
        .await;
        Ok(match listed {
            Ok(events) => answer(json!({
                "events": events.iter().map(|event| events::summary(event, now)).collect::<Vec<_>>(),
            })),
            Err(error) => failure(error),
        })
    }

    #[tool(
        description = "Show one event: its envelope as archived (headers, raw body, hash) and its idempotency record (status, attempts, each action's outcome with its error, the last error, when).",
        annotations(read_only_hint = true)
    )]
    async fn show_event(&self, Parameters(request): Parameters<ShowEvent>) -> ToolResult {
        let now = OffsetDateTime::now_utc();
        let shown = async {
            let key: IdempotencyKey = request
                .key
                .parse()
                .map_err(|error| format!("key `{}`: {error}", request.key))?;
            let since = parse_when(request.since.as_deref().unwrap_or("30d"), now)?;
            let gateway = self.gateway().await?;
            let event = gateway
                .find(&key, since, now)
                .await
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("the archive of {} has no event {key}", gateway.name))?;
            Ok::<_, String>(events::detail(&event, now))
        }
        .await;
        Ok(shown.map_or_else(failure, answer))
    }

    #[tool(
        description = "List the dead-letter queue: each dead letter's id, when, idempotency key, the reason it was given up on, and its envelope.",
        annotations(read_only_hint = true)
    )]
    async fn list_dead_letters(
        &self,
        Parameters(request): Parameters<ListDeadLetters>,
    ) -> ToolResult {
        let listed = async {
            let (queue, _) = crate::dlq::open(&self.target)
                .await
                .map_err(|error| error.to_string())?;
            let letters = queue
                .list(request.max.unwrap_or(50))
                .await
                .map_err(|error| error.to_string())?;
            Ok::<_, String>(json!({
                "dead_letters": letters.iter().map(crate::dlq::described).collect::<Vec<_>>(),
            }))
        }
        .await;
        Ok(listed.map_or_else(failure, answer))
    }

    #[tool(
        description = "Show one dead letter: its envelope and why it was given up on.",
        annotations(read_only_hint = true)
    )]
    async fn show_dead_letter(
        &self,
        Parameters(request): Parameters<ShowDeadLetter>,
    ) -> ToolResult {
        let shown = async {
            let (queue, _) = crate::dlq::open(&self.target)
                .await
                .map_err(|error| error.to_string())?;
            let letter = queue
                .show(&request.id)
                .await
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("the dead-letter queue has no message {}", request.id))?;
            Ok::<_, String>(crate::dlq::described(&letter))
        }
        .await;
        Ok(shown.map_or_else(failure, answer))
    }

    #[tool(
        description = "Send archived events through the queue again, by key or by filters and a time range, at a bounded rate. Through the idempotency gate by default (done actions are skipped, failed ones run); with force, as a new replay generation whose actions run again (the agent sees Hookgate-Replay-Of and Hookgate-Replay-Id). dry_run lists what would happen. Needs --allow-write unless dry_run.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn replay_events(&self, Parameters(request): Parameters<ReplayEvents>) -> ToolResult {
        let dry_run = request.dry_run.unwrap_or(false);
        if !dry_run {
            if let Err(refused) = self.writable("replaying") {
                return Ok(refused);
            }
        }
        let replayed = async {
            let keys = request
                .keys
                .unwrap_or_default()
                .iter()
                .map(|key| key.parse().map_err(|error| format!("key `{key}`: {error}")))
                .collect::<Result<Vec<IdempotencyKey>, String>>()?;
            let force = request.force.unwrap_or(false);
            let actions = request.actions.unwrap_or_default();
            if !actions.is_empty() && !force {
                return Err("actions apply only with force".to_owned());
            }
            let args = ReplayArgs {
                keys,
                target: self.target.clone(),
                filter: filter(
                    request.provider.as_deref(),
                    request.event_type,
                    request.status,
                )?,
                since: request.since,
                until: request.until,
                force,
                actions,
                rate: request.rate.unwrap_or(10.0),
                max: request.max.unwrap_or(1_000),
                dry_run,
                json: true,
            };
            replay::replay(&args)
                .await
                .map_err(|error| error.to_string())
        }
        .await;
        Ok(replayed.map_or_else(failure, answer))
    }

    #[tool(
        description = "Move every dead letter back to the main queue for the processor to try again; actions already done are not run twice. Needs --allow-write.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn redrive_dead_letters(&self) -> ToolResult {
        if let Err(refused) = self.writable("redriving") {
            return Ok(refused);
        }
        let redriven = async {
            let (queue, _) = crate::dlq::open(&self.target)
                .await
                .map_err(|error| error.to_string())?;
            let redrive = queue.redrive().await.map_err(|error| error.to_string())?;
            Ok::<_, String>(match redrive {
                hookgate::dead_letters::Redrive::Moved { count } => json!({ "moved": count }),
                hookgate::dead_letters::Redrive::Started {
                    task,
                    approximate_count,
                } => json!({ "move_task": task, "approximate_count": approximate_count }),
            })
        }
        .await;
        Ok(redriven.map_or_else(failure, answer))
    }

    #[tool(
        description = "Post a correctly signed sample delivery of a provider to a gateway (by default a local hookgate dev), with a new delivery id unless new_id is false, and answer what the gateway answered. Needs --allow-write.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = true
        )
    )]
    async fn send_sample(&self, Parameters(request): Parameters<SendSample>) -> ToolResult {
        if let Err(refused) = self.writable("sending a sample") {
            return Ok(refused);
        }
        let sent = async {
            let provider: Provider = request
                .provider
                .parse()
                .map_err(|error| format!("provider `{}`: {error}", request.provider))?;
            let args = SendArgs {
                provider: Some(provider),
                list: false,
                new_id: request.new_id.unwrap_or(true),
                data: None,
                event: request.sample,
                url: request.url,
                secret: None,
                aws: self.target.stack.clone(),
                json: true,
            };
            send::deliver(provider, &args, |_, _, _| {})
                .await
                .map(|delivered| delivered.to_json())
                .map_err(|error| error.to_string())
        }
        .await;
        Ok(sent.map_or_else(failure, answer))
    }

    #[tool(
        description = "Check a routes file as the processor reads it (fields, event patterns, timeouts, that every action a route names exists) and list its actions and where each secret comes from. Give a path or the file's text.",
        annotations(read_only_hint = true)
    )]
    async fn check_routes(&self, Parameters(request): Parameters<CheckRoutes>) -> ToolResult {
        let checked = match (request.path, request.toml) {
            (Some(path), None) => std::fs::read_to_string(&path)
                .map_err(|error| format!("cannot read {path}: {error}"))
                .and_then(|text| {
                    crate::routes::checked(&text, &path).map_err(|error| error.to_string())
                }),
            (None, Some(text)) => {
                crate::routes::checked(&text, "the routes given").map_err(|error| error.to_string())
            }
            _ => Err("give either path or toml".to_owned()),
        };
        Ok(checked.map_or_else(failure, answer))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for GatewayServer {
    fn get_info(&self) -> ServerConfig {
        let mode = if self.allow_write {
            "Writes are allowed (replay, redrive, send_sample)."
        } else {
            "Read-only: replay (other than a dry run), redrive and send_sample are refused; the operator starts the server with --allow-write to allow them."
        };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("hookgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Operate a hookgate webhook gateway: list_events and show_event to see what \
                 arrived and where each event stands; list_dead_letters and show_dead_letter \
                 for what the processor gave up on; replay_events (try dry_run first) and \
                 redrive_dead_letters to run events again; send_sample to try the pipeline; \
                 check_routes before publishing routes. {mode}"
            ))
    }
}
