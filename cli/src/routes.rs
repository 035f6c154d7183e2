//! `hookgate routes check FILE`: validates a routes file with the processor's own parser
//! (its TOML, fields, event patterns, timeouts, and that every action a route names is
//! defined), so a mistake is found before a deployment, not by a processor that cannot
//! start. What the processor reads from its environment at start (the actions' secrets,
//! `LEASE_SECS`) is not the file's to check, and the summary says where each comes from.
//!
//! `hookgate routes push FILE --stack NAME`: the same check, then what the stack's processor
//! can do (is each agent function and secret among those its role is granted, and does no
//! action sign with a variable, which a deployed processor has none of), then the file is
//! published where the stack's processor reads its routes (its `RoutesLocation` output),
//! through the same port the processor reads it with. A running processor takes it within
//! `RoutesRefreshSeconds`; if it refuses it anyway, it keeps its last valid routes.

use std::path::PathBuf;

use hookgate::aws::{parse_s3_uri, s3_client, S3RoutesSource};
use hookgate::routes::{ActionKind, ActionSpec, RouteTable, RoutesError, SecretRef};
use hookgate::routes_source::{RoutesSource, RoutesSourceError};
use serde_json::json;

use crate::stack::{AwsOptions, Stack, StackError};

#[derive(Debug, clap::Subcommand)]
pub enum RoutesCommand {
    /// Validate a routes file and list the actions it defines.
    Check {
        /// The routes file (TOML).
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a routes file and publish it where a deployed processor reads its routes.
    Push(PushArgs),
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The routes file (TOML).
    pub file: PathBuf,

    #[command(flatten)]
    pub aws: AwsOptions,

    /// Publish to this object instead of the stack's RoutesLocation (then nothing is
    /// checked against a stack's grants).
    #[arg(long, value_name = "s3://BUCKET/KEY", conflicts_with = "stack")]
    pub to: Option<String>,

    /// Publish even if the stack's processor is not granted what the file names.
    #[arg(long)]
    pub force: bool,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RoutesCommandError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] RoutesError),
    #[error("push needs --stack NAME (or HOOKGATE_STACK), or --to s3://BUCKET/KEY")]
    NoDestination,
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(
        "the stack {stack} serves only the routes built into its processor (RoutesSource = \
         bundled); deploy it with RoutesSource empty to publish routes without a rebuild"
    )]
    Bundled { stack: String },
    #[error("{0}")]
    Destination(String),
    #[error(
        "the stack {stack}'s processor could not run these routes:\n{}\npublish anyway with --force",
        .problems.iter().map(|problem| format!("  - {problem}")).collect::<Vec<_>>().join("\n")
    )]
    NotGranted {
        stack: String,
        problems: Vec<String>,
    },
    #[error(transparent)]
    Publish(#[from] RoutesSourceError),
}

/// Runs `routes check`, which needs no runtime.
pub fn check(file: &PathBuf, as_json: bool) -> Result<(), RoutesCommandError> {
    let (_, routes) = read(file)?;
    if as_json {
        outln!("{}", describe(&file.display().to_string(), &routes));
    } else {
        out!("{}", summary(&file.display().to_string(), &routes));
    }
    Ok(())
}

/// A routes file's text checked as the processor would read it: what it defines, as
/// `routes check --json` prints it, or why it is refused.
pub fn checked(text: &str, source: &str) -> Result<serde_json::Value, RoutesError> {
    let routes = RouteTable::parse(text, source)?;
    Ok(describe(source, &routes))
}

/// Runs `routes push`.
pub async fn push(args: &PushArgs) -> Result<(), RoutesCommandError> {
    let (text, routes) = read(&args.file)?;
    let config = args.aws.sdk_config().await;
    let location = match (&args.to, &args.aws.stack) {
        (Some(to), _) => to.clone(),
        (None, None) => return Err(RoutesCommandError::NoDestination),
        (None, Some(name)) => {
            let stack = Stack::describe(&config, name).await?;
            let location = stack.output("RoutesLocation")?.to_owned();
            if location == "bundled" {
                return Err(RoutesCommandError::Bundled { stack: stack.name });
            }
            let problems = ungranted(&routes, &stack);
            if !problems.is_empty() {
                if !args.force {
                    return Err(RoutesCommandError::NotGranted {
                        stack: stack.name,
                        problems,
                    });
                }
                for problem in &problems {
                    eprintln!("hookgate: warning: {problem}");
                }
            }
            location
        }
    };
    let (bucket, key) = parse_s3_uri(&location)
        .map_err(|error| RoutesCommandError::Destination(error.to_string()))?;
    let source = S3RoutesSource::new(s3_client(&config), bucket, key);
    let version = source.publish(&text).await?;
    if args.json {
        let mut described = describe(&args.file.display().to_string(), &routes);
        described["published"] = json!({ "location": location, "version": version });
        outln!("{described}");
    } else {
        out!("{}", summary(&args.file.display().to_string(), &routes));
        outln!(
            "published to {location} (version {version}); a running processor acts on it \
             within its RoutesRefreshSeconds"
        );
    }
    Ok(())
}

/// Reads and checks a routes file.
fn read(file: &PathBuf) -> Result<(String, RouteTable), RoutesCommandError> {
    let text = std::fs::read_to_string(file).map_err(|source| RoutesCommandError::Read {
        path: file.clone(),
        source,
    })?;
    let routes = RouteTable::parse(&text, &file.display().to_string())?;
    Ok((text, routes))
}

/// What the routes name that the stack's processor is not given: an agent function not in
/// `AgentFunctionArns`, a secret not in `AgentSecretArns`, a signing secret read from a
/// variable (a deployed processor has only the variables the template sets).
fn ungranted(routes: &RouteTable, stack: &Stack) -> Vec<String> {
    let functions = stack.list_parameter("AgentFunctionArns");
    let secrets = stack.list_parameter("AgentSecretArns");
    let mut problems = Vec::new();
    for action in routes.actions() {
        match &action.kind {
            ActionKind::Lambda { function, .. } => {
                if !functions
                    .iter()
                    .any(|grant| function_granted(grant, function))
                {
                    problems.push(format!(
                        "action `{}` invokes {function}, which AgentFunctionArns does not list \
                         (add its ARN, or ARN:* for its versions and aliases, and deploy)",
                        action.name
                    ));
                }
            }
            ActionKind::Http {
                secret: SecretRef::Arn(arn),
                ..
            } if !secrets.contains(arn) => problems.push(format!(
                "action `{}` signs with the secret {arn}, which AgentSecretArns does not list \
                 (add it and deploy)",
                action.name
            )),
            ActionKind::Http {
                secret: SecretRef::Env(variable),
                ..
            } => problems.push(format!(
                "action `{}` signs with the variable {variable}, which a deployed processor \
                 does not have: use secret_arn with a secret listed in AgentSecretArns",
                action.name
            )),
            ActionKind::Http { .. } | ActionKind::Log => {}
        }
    }
    problems
}

/// Whether the IAM resource `grant` (a function's ARN, or ARN:* for its versions and
/// aliases) lets the processor invoke `function` as a route names it: a name, `name:alias`,
/// or an ARN. A name is compared by name alone; the account and region are the stack's.
fn function_granted(grant: &str, function: &str) -> bool {
    let (grant_function, grant_qualifier) = function_parts(grant);
    let (function_name, qualifier) = function_parts(function);
    let same_function = if function.starts_with("arn:") {
        grant_function == function_name
    } else {
        grant_function.rsplit(':').next() == function_name.rsplit(':').next()
    };
    same_function
        && match (grant_qualifier, qualifier) {
            (Some("*"), Some(_)) => true,
            (grant, qualifier) => grant == qualifier,
        }
}

/// An ARN or name split into the function (everything up to its name) and its qualifier.
fn function_parts(function: &str) -> (&str, Option<&str>) {
    // arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER], or NAME[:QUALIFIER].
    let name_at = match function.find(":function:") {
        Some(at) => at + ":function:".len(),
        None => 0,
    };
    match function[name_at..].split_once(':') {
        Some((name, qualifier)) => (&function[..name_at + name.len()], Some(qualifier)),
        None => (function, None),
    }
}

/// The routes and actions a file defines, as JSON.
fn describe(source: &str, routes: &RouteTable) -> serde_json::Value {
    let actions: Vec<serde_json::Value> = routes.actions().map(describe_action).collect();
    json!({
        "file": source,
        "valid": true,
        "routes": routes.route_count(),
        "actions": actions,
    })
}

fn describe_action(action: &ActionSpec) -> serde_json::Value {
    let mut described = match &action.kind {
        ActionKind::Http { url, secret } => {
            let secret = match secret {
                SecretRef::Env(variable) => json!({ "env": variable }),
                SecretRef::Arn(arn) => json!({ "arn": arn }),
            };
            json!({ "type": "http", "url": url, "secret": secret })
        }
        ActionKind::Lambda {
            function,
            invocation,
        } => {
            json!({ "type": "lambda", "function": function, "invocation": format!("{invocation:?}") })
        }
        ActionKind::Log => json!({ "type": "log" }),
    };
    described["name"] = json!(action.name);
    described["timeout_secs"] = json!(action.timeout.as_secs());
    described
}

/// What the file defines, one action a line, with where each secret comes from.
fn summary(source: &str, routes: &RouteTable) -> String {
    let actions: Vec<_> = routes.actions().collect();
    let mut out = format!(
        "{source} is valid: {} route(s), {} action(s)\n",
        routes.route_count(),
        actions.len()
    );
    for action in actions {
        let what = match &action.kind {
            ActionKind::Http { url, secret } => {
                let secret = match secret {
                    SecretRef::Env(variable) => format!("secret from ${variable}"),
                    SecretRef::Arn(arn) => format!("secret {arn}"),
                };
                format!("http {url}, {secret}")
            }
            ActionKind::Lambda {
                function,
                invocation,
            } => format!("lambda {function} ({invocation:?})"),
            ActionKind::Log => "log".to_owned(),
        };
        out.push_str(&format!(
            "  {}: {what}, timeout {} s\n",
            action.name,
            action.timeout.as_secs()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_each_action_and_where_its_secret_comes_from() {
        let routes = RouteTable::parse(
            r#"
[[route]]
name = "prs"
provider = "github"
events = ["pull_request.*"]
actions = ["agent", "log"]

[action.agent]
type = "http"
url = "https://agent.example.com/hooks"
secret_env = "AGENT_SECRET"
timeout_secs = 10

[action.log]
type = "log"
"#,
            "routes.toml",
        )
        .unwrap();
        let summary = summary("routes.toml", &routes);
        assert!(
            summary.starts_with("routes.toml is valid: 1 route(s), 2 action(s)\n"),
            "{summary}"
        );
        assert!(summary.contains(
            "  agent: http https://agent.example.com/hooks, secret from $AGENT_SECRET, timeout 10 s\n"
        ));
        assert!(summary.contains("  log: log, timeout"), "{summary}");
    }

    const BILLING: &str = "arn:aws:lambda:us-east-1:123456789012:function:billing";

    #[test]
    fn a_function_is_granted_by_its_arn_and_its_versions_and_aliases_by_arn_star() {
        let star = format!("{BILLING}:*");
        for (grant, function, granted) in [
            (BILLING, BILLING, true),
            (BILLING, "billing", true),
            (BILLING, "billing:live", false),
            (BILLING, &format!("{BILLING}:live") as &str, false),
            (&star as &str, "billing:live", true),
            (&star, &format!("{BILLING}:7"), true),
            (&star, "billing", false),
            (
                BILLING,
                "arn:aws:lambda:eu-west-1:123456789012:function:billing",
                false,
            ),
            (BILLING, "invoicing", false),
            (BILLING, "bill", false),
        ] {
            assert_eq!(
                function_granted(grant, function),
                granted,
                "{grant} grants {function}?"
            );
        }
    }

    #[test]
    fn push_names_every_function_secret_and_variable_the_stack_does_not_grant() {
        let routes = RouteTable::parse(
            r#"
[action.granted-function]
type = "lambda"
function = "billing"

[action.other-function]
type = "lambda"
function = "invoicing"

[action.granted-secret]
type = "http"
url = "https://agent.example.com/a"
secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:agent-AbCdEf"

[action.other-secret]
type = "http"
url = "https://agent.example.com/b"
secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf"

[action.variable]
type = "http"
url = "https://agent.example.com/c"
secret_env = "AGENT_SECRET"

[action.log]
type = "log"
"#,
            "routes.toml",
        )
        .unwrap();
        let stack = Stack {
            name: "hookgate".to_owned(),
            parameters: [
                ("AgentFunctionArns".to_owned(), BILLING.to_owned()),
                (
                    "AgentSecretArns".to_owned(),
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:agent-AbCdEf".to_owned(),
                ),
            ]
            .into(),
            ..Stack::default()
        };
        let problems = ungranted(&routes, &stack);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with(
            "action `other-function` invokes invoicing, which AgentFunctionArns does not list"
        ));
        assert!(problems[1].starts_with("action `other-secret` signs with the secret arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf, which AgentSecretArns does not list"));
        assert!(problems[2].starts_with("action `variable` signs with the variable AGENT_SECRET"));
    }

    #[test]
    fn the_json_description_lists_each_action_with_its_kind_and_timeout() {
        let routes = RouteTable::parse(
            "[[route]]\nname = \"all\"\nprovider = \"*\"\nevents = [\"*\"]\nactions = [\"log\"]\n\n[action.log]\ntype = \"log\"\ntimeout_secs = 3\n",
            "routes.toml",
        )
        .unwrap();
        assert_eq!(
            describe("routes.toml", &routes),
            json!({
                "file": "routes.toml",
                "valid": true,
                "routes": 1,
                "actions": [{ "type": "log", "name": "log", "timeout_secs": 3 }],
            })
        );
    }
}
