//! Routes: which agent actions an event triggers.
//!
//! A routes file is TOML. Each `[[route]]` names a provider (or `*`), event-type patterns
//! and the actions to run; each `[action.<name>]` says what an action is. An event runs the
//! actions of every route it matches, each action once, in the order first named.
//!
//! ```toml
//! [[route]]
//! name = "pull requests to the coding agent"
//! provider = "github"
//! events = ["pull_request.*", "issue_comment.created"]
//! actions = ["coding-agent", "audit"]
//!
//! [action.coding-agent]
//! type = "http"
//! url = "https://agent.example.com/webhooks/hookgate"
//! secret_env = "CODING_AGENT_SECRET"   # or secret_arn = "arn:aws:secretsmanager:…"
//! timeout_secs = 10
//!
//! [action.audit]
//! type = "log"
//! ```
//!
//! Event patterns are an exact type (`invoice.paid`), a prefix (`pull_request.*` matches
//! `pull_request.opened` but not `pull_request` itself), or `*`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::provider::Provider;

/// The longest an action may be given. Every action of a batch runs inside one processor
/// invocation, whose timeout is 60 s, and the claim and its records need their own share of
/// it; an action allowed longer could be cut off by Lambda with its outcome unrecorded. Longer work belongs behind an agent that answers quickly
/// and works on (or a `lambda` action with `invocation = "Event"`).
pub const MAX_ACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The default per-action timeout.
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A routes file that cannot be used. The message names the route or action and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct RoutesError {
    pub location: String,
    pub reason: String,
}

impl RoutesError {
    fn new(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            reason: reason.into(),
        }
    }
}

/// An event-type pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    Exact(String),
    /// `prefix.*`: the prefix with its dot, so `pull_request.*` is `pull_request.`.
    Prefix(String),
    Any,
}

impl EventPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let pattern = pattern.trim();
        if pattern == "*" {
            return Ok(EventPattern::Any);
        }
        if pattern.is_empty() {
            return Err("an event pattern is empty".into());
        }
        let (stem, is_prefix) = match pattern.strip_suffix(".*") {
            Some(stem) => (stem, true),
            None => (pattern, false),
        };
        if stem.is_empty() || stem.contains('*') {
            return Err(format!(
                "`{pattern}` is not a pattern: use an exact type, `prefix.*` or `*`"
            ));
        }
        Ok(if is_prefix {
            EventPattern::Prefix(format!("{stem}."))
        } else {
            EventPattern::Exact(stem.to_owned())
        })
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            EventPattern::Exact(exact) => event_type == exact,
            EventPattern::Prefix(prefix) => event_type.starts_with(prefix.as_str()),
            EventPattern::Any => true,
        }
    }
}

/// Where an `http` action's signing secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable holding the `whsec_…` secret (local use).
    Env(String),
    /// A Secrets Manager secret holding it.
    Arn(String),
}

/// How a `lambda` action invokes its function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum InvocationType {
    /// Wait for the function; its error is a retryable failure.
    RequestResponse,
    /// Hand the event to Lambda's own async queue; accepted means done.
    Event,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    Http {
        url: String,
        secret: SecretRef,
    },
    Lambda {
        function: String,
        invocation: InvocationType,
    },
    Log,
}

/// A named action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec {
    pub name: String,
    pub kind: ActionKind,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    name: String,
    provider: Option<Provider>,
    events: Vec<EventPattern>,
    actions: Vec<String>,
}

/// A validated routes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
    actions: BTreeMap<String, ActionSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    action: BTreeMap<String, RawAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    provider: String,
    events: Vec<String>,
    actions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    secret_env: Option<String>,
    secret_arn: Option<String>,
    function: Option<String>,
    invocation: Option<InvocationType>,
    timeout_secs: Option<u64>,
}

impl RouteTable {
    /// Parses and validates a routes file. `source` names it in errors.
    pub fn parse(toml_text: &str, source: &str) -> Result<Self, RoutesError> {
        let raw: RawFile = toml::from_str(toml_text)
            .map_err(|error| RoutesError::new(source, error.to_string().trim_end().to_owned()))?;
        let mut actions = BTreeMap::new();
        for (name, raw_action) in raw.action {
            let spec = parse_action(&name, raw_action)?;
            actions.insert(name, spec);
        }
        let mut routes = Vec::with_capacity(raw.route.len());
        for (index, raw_route) in raw.route.into_iter().enumerate() {
            let label = match &raw_route.name {
                Some(name) => format!("route[{index}] ({name:?})"),
                None => format!("route[{index}]"),
            };
            routes.push(parse_route(&label, raw_route, &actions)?);
        }
        Ok(Self { routes, actions })
    }

    /// The actions an event runs: every matching route's, each once, in first-named order.
    pub fn actions_for(&self, provider: Provider, event_type: &str) -> Vec<&ActionSpec> {
        let mut selected: Vec<&ActionSpec> = Vec::new();
        let matching = self.routes.iter().filter(|route| {
            route.provider.is_none_or(|wanted| wanted == provider)
                && route
                    .events
                    .iter()
                    .any(|pattern| pattern.matches(event_type))
        });
        for route in matching {
            for name in &route.actions {
                if selected.iter().all(|action| &action.name != name) {
                    if let Some(action) = self.actions.get(name) {
                        selected.push(action);
                    }
                }
            }
        }
        selected
    }

    /// Every action the file defines.
    pub fn actions(&self) -> impl Iterator<Item = &ActionSpec> {
        self.actions.values()
    }

    /// How many routes the file has.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// The longest timeout of any action, which the claim lease must outlive.
    pub fn longest_action_timeout(&self) -> Duration {
        self.actions
            .values()
            .map(|action| action.timeout)
            .max()
            .unwrap_or_default()
    }
}

fn parse_route(
    label: &str,
    raw: RawRoute,
    actions: &BTreeMap<String, ActionSpec>,
) -> Result<Route, RoutesError> {
    let provider =
        match raw.provider.trim() {
            "*" => None,
            name => Some(name.parse::<Provider>().map_err(|error| {
                RoutesError::new(format!("{label}.provider"), error.to_string())
            })?),
        };
    if raw.events.is_empty() {
        return Err(RoutesError::new(
            format!("{label}.events"),
            "lists no event pattern (use [\"*\"] for every event)",
        ));
    }
    let events = raw
        .events
        .iter()
        .enumerate()
        .map(|(index, pattern)| {
            EventPattern::parse(pattern)
                .map_err(|reason| RoutesError::new(format!("{label}.events[{index}]"), reason))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if raw.actions.is_empty() {
        return Err(RoutesError::new(
            format!("{label}.actions"),
            "lists no action",
        ));
    }
    for (index, action) in raw.actions.iter().enumerate() {
        if !actions.contains_key(action) {
            return Err(RoutesError::new(
                format!("{label}.actions[{index}]"),
                format!("no [action.{action}] is defined"),
            ));
        }
    }
    Ok(Route {
        name: raw.name.unwrap_or_else(|| label.to_owned()),
        provider,
        events,
        actions: raw.actions,
    })
}

fn parse_action(name: &str, raw: RawAction) -> Result<ActionSpec, RoutesError> {
    let at = |field: &str| format!("action.{name}.{field}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(RoutesError::new(
            format!("action.{name}"),
            "an action name may only use letters, digits, `-` and `_`",
        ));
    }
    let timeout = match raw.timeout_secs {
        None => DEFAULT_ACTION_TIMEOUT,
        Some(0) => return Err(RoutesError::new(at("timeout_secs"), "must be at least 1")),
        Some(secs) if Duration::from_secs(secs) > MAX_ACTION_TIMEOUT => {
            return Err(RoutesError::new(
                at("timeout_secs"),
                format!(
                    "{secs} is over the maximum of {}",
                    MAX_ACTION_TIMEOUT.as_secs()
                ),
            ))
        }
        Some(secs) => Duration::from_secs(secs),
    };
    let unexpected = |field: &str, present: bool| -> Result<(), RoutesError> {
        if present {
            Err(RoutesError::new(
                at(field),
                format!("does not apply to a `{}` action", raw.kind),
            ))
        } else {
            Ok(())
        }
    };
    let kind = match raw.kind.as_str() {
        "http" => {
            unexpected("function", raw.function.is_some())?;
            unexpected("invocation", raw.invocation.is_some())?;
            let url = raw
                .url
                .ok_or_else(|| RoutesError::new(at("url"), "is required for an `http` action"))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(RoutesError::new(
                    at("url"),
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
            let secret = match (raw.secret_env, raw.secret_arn) {
                (Some(variable), None) => SecretRef::Env(variable),
                (None, Some(arn)) => SecretRef::Arn(arn),
                (None, None) => {
                    return Err(RoutesError::new(
                        at("secret_env"),
                        "an `http` action needs secret_env or secret_arn to sign with",
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err(RoutesError::new(
                        at("secret_arn"),
                        "give secret_env or secret_arn, not both",
                    ))
                }
            };
            ActionKind::Http { url, secret }
        }
        "lambda" => {
            unexpected("url", raw.url.is_some())?;
            unexpected("secret_env", raw.secret_env.is_some())?;
            unexpected("secret_arn", raw.secret_arn.is_some())?;
            let function = raw.function.ok_or_else(|| {
                RoutesError::new(at("function"), "is required for a `lambda` action")
            })?;
            ActionKind::Lambda {
                function,
                invocation: raw.invocation.unwrap_or(InvocationType::RequestResponse),
            }
        }
        "log" => {
            for (field, present) in [
                ("url", raw.url.is_some()),
                ("secret_env", raw.secret_env.is_some()),
                ("secret_arn", raw.secret_arn.is_some()),
                ("function", raw.function.is_some()),
                ("invocation", raw.invocation.is_some()),
            ] {
                unexpected(field, present)?;
            }
            ActionKind::Log
        }
        other => {
            return Err(RoutesError::new(
                at("type"),
                format!("`{other}` is not an action type (http, lambda or log)"),
            ))
        }
    };
    Ok(ActionSpec {
        name: name.to_owned(),
        kind,
        timeout,
    })
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventPattern::Exact(exact) => f.write_str(exact),
            EventPattern::Prefix(prefix) => write!(f, "{prefix}*"),
            EventPattern::Any => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [[route]]
        name = "pull requests"
        provider = "github"
        events = ["pull_request.*", "issue_comment.created"]
        actions = ["agent", "audit"]

        [[route]]
        provider = "*"
        events = ["*"]
        actions = ["audit"]

        [[route]]
        provider = "stripe"
        events = ["invoice.paid"]
        actions = ["billing"]

        [action.agent]
        type = "http"
        url = "https://agent.example.com/hooks"
        secret_env = "AGENT_SECRET"
        timeout_secs = 20

        [action.audit]
        type = "log"

        [action.billing]
        type = "lambda"
        function = "arn:aws:lambda:us-east-1:123456789012:function:billing"
        invocation = "Event"
    "#;

    fn table() -> RouteTable {
        RouteTable::parse(EXAMPLE, "routes.toml").unwrap()
    }

    fn names(actions: Vec<&ActionSpec>) -> Vec<&str> {
        actions
            .into_iter()
            .map(|action| action.name.as_str())
            .collect()
    }

    #[test]
    fn patterns_match_exactly_by_prefix_or_everything() {
        let prefix = EventPattern::parse("pull_request.*").unwrap();
        assert!(prefix.matches("pull_request.opened"));
        assert!(!prefix.matches("pull_request"));
        assert!(!prefix.matches("pull_request_review.submitted"));
        assert!(EventPattern::parse("ping").unwrap().matches("ping"));
        assert!(!EventPattern::parse("ping").unwrap().matches("ping.x"));
        assert!(EventPattern::parse("*").unwrap().matches("anything"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "pull_*", "*.opened", ".*", "a.*.*"] {
            assert!(EventPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_event_runs_every_matching_routes_actions_once_in_first_named_order() {
        let table = table();
        assert_eq!(
            names(table.actions_for(Provider::Github, "pull_request.opened")),
            ["agent", "audit"]
        );
        assert_eq!(
            names(table.actions_for(Provider::Github, "push")),
            ["audit"]
        );
        assert_eq!(
            names(table.actions_for(Provider::Stripe, "invoice.paid")),
            ["audit", "billing"]
        );
    }

    #[test]
    fn an_event_no_route_matches_runs_nothing() {
        let table = RouteTable::parse(
            "[[route]]\nprovider = \"github\"\nevents = [\"push\"]\nactions = [\"a\"]\n[action.a]\ntype = \"log\"\n",
            "routes.toml",
        )
        .unwrap();
        assert!(table.actions_for(Provider::Github, "ping").is_empty());
        assert!(table.actions_for(Provider::Slack, "push").is_empty());
    }

    #[test]
    fn actions_carry_their_kind_and_timeout() {
        let table = table();
        let agent = table
            .actions()
            .find(|action| action.name == "agent")
            .unwrap();
        assert_eq!(agent.timeout, Duration::from_secs(20));
        assert_eq!(
            agent.kind,
            ActionKind::Http {
                url: "https://agent.example.com/hooks".into(),
                secret: SecretRef::Env("AGENT_SECRET".into())
            }
        );
        assert_eq!(table.longest_action_timeout(), Duration::from_secs(20));
    }

    fn error_of(toml_text: &str) -> String {
        RouteTable::parse(toml_text, "routes.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_route_and_the_field() {
        let cases = [
            (
                "[[route]]\nname = \"prs\"\nprovider = \"bitbucket\"\nevents = [\"*\"]\nactions = [\"a\"]\n[action.a]\ntype = \"log\"\n",
                "route[0] (\"prs\").provider: unknown provider `bitbucket`",
            ),
            (
                "[[route]]\nprovider = \"github\"\nevents = [\"*\", \"pull_*\"]\nactions = [\"a\"]\n[action.a]\ntype = \"log\"\n",
                "route[0].events[1]: `pull_*` is not a pattern",
            ),
            (
                "[[route]]\nprovider = \"github\"\nevents = [\"*\"]\nactions = [\"missing\"]\n",
                "route[0].actions[0]: no [action.missing] is defined",
            ),
            (
                "[[route]]\nprovider = \"github\"\nevents = []\nactions = [\"a\"]\n[action.a]\ntype = \"log\"\n",
                "route[0].events: lists no event pattern",
            ),
            ("[action.a]\ntype = \"http\"\nsecret_env = \"S\"\n", "action.a.url: is required"),
            ("[action.a]\ntype = \"http\"\nurl = \"https://x\"\n", "action.a.secret_env: an `http` action needs"),
            ("[action.a]\ntype = \"log\"\nurl = \"https://x\"\n", "action.a.url: does not apply to a `log` action"),
            ("[action.a]\ntype = \"email\"\n", "action.a.type: `email` is not an action type"),
            ("[action.a]\ntype = \"log\"\ntimeout_secs = 0\n", "action.a.timeout_secs: must be at least 1"),
            ("[action.a]\ntype = \"lambda\"\n", "action.a.function: is required"),
        ];
        for (toml_text, expected) in cases {
            let error = error_of(toml_text);
            assert!(
                error.starts_with(expected),
                "expected {expected:?}, got {error:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_bad_toml_are_refused_with_their_position() {
        let error = error_of("[[route]]\nprovider = \"github\"\nevent = [\"*\"]\nactions = []\n");
        assert!(error.starts_with("routes.toml: "), "{error}");
        assert!(error.contains("unknown field `event`"), "{error}");
        assert!(error_of("[[route]\n").starts_with("routes.toml: "));
    }
}
