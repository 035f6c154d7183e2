//! Reading typed settings from the environment, failing fast with the variable's name.

use std::collections::HashMap;
use std::str::FromStr;

/// Where settings come from: the process environment in a function, a map in tests.
/// Shareable across tasks, since a processor reading routes while it runs sets up their
/// actions from it then.
pub trait Env: Send + Sync {
    /// The variable's value; unset and empty are the same (CloudFormation cannot unset).
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .filter(|value| !value.is_empty())
            .cloned()
    }
}

impl Env for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .filter(|value| !value.is_empty())
            .map(|value| (*value).to_owned())
    }
}

/// An environment with some variables set over another's: a command-line flag over the
/// variable it stands for.
#[derive(Clone, Copy)]
pub struct Overridden<'a> {
    pub overrides: &'a [(&'a str, String)],
    pub base: &'a dyn Env,
}

impl Env for Overridden<'_> {
    fn get(&self, name: &str) -> Option<String> {
        match self
            .overrides
            .iter()
            .find(|(overridden, _)| *overridden == name)
        {
            Some((_, value)) => Some(value.clone()).filter(|value| !value.is_empty()),
            None => self.base.get(name),
        }
    }
}

impl std::fmt::Debug for Overridden<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: only the names overridden are shown.
        let names: Vec<&str> = self.overrides.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Overridden")
            .field("overrides", &names)
            .finish_non_exhaustive()
    }
}

/// A setting is missing or cannot be used. The message always names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be set")]
    Missing { name: &'static str },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl ConfigError {
    pub fn invalid(name: &'static str, reason: impl ToString) -> Self {
        ConfigError::Invalid {
            name,
            reason: reason.to_string(),
        }
    }
}

/// A variable that must be set.
pub fn required(env: &dyn Env, name: &'static str) -> Result<String, ConfigError> {
    env.get(name).ok_or(ConfigError::Missing { name })
}

/// A variable parsed with [`FromStr`], or `default` when unset.
pub fn parsed_or<T>(env: &dyn Env, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match env.get(name) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|error| ConfigError::invalid(name, format!("`{value}`: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let env = HashMap::from([("QUEUE_URL", "")]);
        assert_eq!(
            required(&env, "QUEUE_URL"),
            Err(ConfigError::Missing { name: "QUEUE_URL" })
        );
    }

    #[test]
    fn a_bad_number_is_refused_with_the_variable_and_the_value() {
        let env = HashMap::from([("MAX_BODY_BYTES", "lots")]);
        let error = parsed_or(&env, "MAX_BODY_BYTES", 1_u64).unwrap_err();
        assert!(error
            .to_string()
            .starts_with("MAX_BODY_BYTES is invalid: `lots`"));
    }

    #[test]
    fn an_override_wins_over_the_base_and_the_rest_falls_through() {
        let base = HashMap::from([("ROUTES_FILE", "base.toml"), ("LEASE_SECS", "40")]);
        let overrides = [("ROUTES_FILE", "flag.toml".to_owned())];
        let env = Overridden {
            overrides: &overrides,
            base: &base,
        };
        assert_eq!(env.get("ROUTES_FILE").as_deref(), Some("flag.toml"));
        assert_eq!(env.get("LEASE_SECS").as_deref(), Some("40"));
        assert_eq!(env.get("TABLE_NAME"), None);
        assert!(!format!("{env:?}").contains("flag.toml"));
    }
}
