//! The GitHub token: a fine-grained personal access token (repository or organisation
//! permission "Webhooks": read and write) or a GitHub App installation token kept fresh in
//! the secret by whatever mints it. Read from Secrets Manager and refreshed in the
//! background, so that a rotated token is picked up without a deploy.

use std::fmt;
use std::sync::Arc;

use hookgate::aws::SecretsManagerValue;
use hookgate::secret::refreshing::Refreshing;
use hookgate::secret::SecretError;
use serde::Deserialize;

/// A token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The secret's value: the token alone, or `{"token": "…"}` as token-minting jobs often
    /// store it.
    pub fn parse(value: &str) -> Result<Self, SecretError> {
        #[derive(Deserialize)]
        struct Stored {
            token: String,
        }
        let value = value.trim();
        let token = if value.starts_with('{') {
            serde_json::from_str::<Stored>(value)
                .map_err(|error| {
                    SecretError::InvalidJson(format!("expected {{\"token\": \"…\"}}: {error}"))
                })?
                .token
        } else {
            value.to_owned()
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(SecretError::Empty);
        }
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(SecretError::Unavailable(
                "the token has spaces or characters a header cannot carry".into(),
            ));
        }
        Ok(Self(token.to_owned()))
    }

    /// The token itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where the token comes from.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// The token to send now; never waits on the secret store.
    fn token(&self) -> Result<Arc<Token>, SecretError>;
}

/// A fixed token (local runs, tests).
#[derive(Debug, Clone)]
pub struct StaticToken(Arc<Token>);

impl StaticToken {
    pub fn new(token: Token) -> Self {
        Self(Arc::new(token))
    }
}

impl TokenSource for StaticToken {
    fn token(&self) -> Result<Arc<Token>, SecretError> {
        Ok(Arc::clone(&self.0))
    }
}

impl TokenSource for Refreshing<SecretsManagerValue<Token>> {
    fn token(&self) -> Result<Arc<Token>, SecretError> {
        self.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_plain_value_or_the_token_field_of_json() {
        assert_eq!(
            Token::parse(" ghp_abc123\n").unwrap().expose(),
            "ghp_abc123"
        );
        assert_eq!(
            Token::parse(r#"{"token": "ghs_installation", "expires_at": "…"}"#)
                .unwrap()
                .expose(),
            "ghs_installation"
        );
    }

    #[test]
    fn an_empty_or_unusable_token_is_refused_without_echoing_it() {
        assert_eq!(Token::parse("  "), Err(SecretError::Empty));
        let error = Token::parse("ghp_abc def").unwrap_err();
        assert!(!error.to_string().contains("ghp_abc"), "{error}");
        assert!(Token::parse(r#"{"tokn": "x"}"#).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let printed = format!("{:?}", Token::parse("ghp_secret").unwrap());
        assert!(!printed.contains("ghp_secret"), "{printed}");
    }
}
