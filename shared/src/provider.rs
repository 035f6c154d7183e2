//! The providers hookgate has a receiver for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A webhook sender whose signature scheme hookgate implements.
///
/// The lowercase name is the path segment (`/webhooks/{provider}`), the prefix of every
/// idempotency key, and the `provider` field and SQS attribute of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Stripe,
    Shopify,
    Slack,
    /// Any Standard Webhooks sender: Svix, OpenAI, Resend, Clerk, Replicate and others.
    Standard,
    /// A sender signing with HMAC-SHA256 in a configurable header and encoding.
    Generic,
}

impl Provider {
    /// Every provider, in the order the documentation lists them.
    pub const ALL: [Provider; 6] = [
        Provider::Github,
        Provider::Stripe,
        Provider::Shopify,
        Provider::Slack,
        Provider::Standard,
        Provider::Generic,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Stripe => "stripe",
            Provider::Shopify => "shopify",
            Provider::Slack => "slack",
            Provider::Standard => "standard",
            Provider::Generic => "generic",
        }
    }

    /// The name capitalised, as the template's logical ids and outputs spell it
    /// (`GithubReceiver`, `GithubWebhookUrl`).
    pub const fn title(self) -> &'static str {
        match self {
            Provider::Github => "Github",
            Provider::Stripe => "Stripe",
            Provider::Shopify => "Shopify",
            Provider::Slack => "Slack",
            Provider::Standard => "Standard",
            Provider::Generic => "Generic",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not one of [`Provider::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown provider `{0}` (expected one of: github, stripe, shopify, slack, standard, generic)"
)]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|provider| provider.as_str() == name)
            .ok_or_else(|| UnknownProvider(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_parses_back_from_its_name() {
        for provider in Provider::ALL {
            assert_eq!(provider.as_str().parse::<Provider>(), Ok(provider));
        }
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_list_of_known_ones() {
        let error = "gitlab".parse::<Provider>().unwrap_err();
        assert!(error.to_string().contains("github, stripe"));
    }
}
