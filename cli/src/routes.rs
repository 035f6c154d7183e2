//! `hookgate routes check FILE`: validates a routes file with the processor's own parser
//! (its TOML, fields, event patterns, timeouts, and that every action a route names is
//! defined), so a mistake is found before a deployment, not by a processor that cannot
//! start. What the processor reads from its environment at start (the actions' secrets,
//! `LEASE_SECS`) is not the file's to check, and the summary says where each comes from.

use std::path::PathBuf;

use hookgate::routes::{ActionKind, RouteTable, RoutesError, SecretRef};

#[derive(Debug, clap::Subcommand)]
pub enum RoutesCommand {
    /// Validate a routes file and list the actions it defines.
    Check {
        /// The routes file (TOML).
        file: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RoutesCheckError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] RoutesError),
}

pub fn run(command: &RoutesCommand) -> Result<(), RoutesCheckError> {
    let RoutesCommand::Check { file } = command;
    let text = std::fs::read_to_string(file).map_err(|source| RoutesCheckError::Read {
        path: file.clone(),
        source,
    })?;
    let routes = RouteTable::parse(&text, &file.display().to_string())?;
    print!("{}", summary(&file.display().to_string(), &routes));
    Ok(())
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
}
