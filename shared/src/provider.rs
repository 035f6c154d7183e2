//! The providers hookgate has a receiver for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a provider's signing secret comes from, which the stack's secret says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    /// The sender takes a secret it is given: the stack generates one to copy into the
    /// provider's settings.
    Generated,
    /// The provider issues its own: the generated value is a placeholder to replace.
    Issued,
}

/// The provider table: one entry per provider, and nothing else to edit by hand for the
/// enum, its names, its signature scheme, and the template's per-provider resources
/// (`template.in.yaml`).
macro_rules! providers {
    ($(
        $(#[$doc:meta])*
        $variant:ident {
            name: $name:literal,
            display: $display:literal,
            secret: $secret:literal,
            origin: $origin:ident,
            scheme: $scheme:path $(,)?
        }
    ),+ $(,)?) => {
        /// A webhook sender whose signature scheme hookgate implements.
        ///
        /// The lowercase name is the path segment (`/webhooks/{provider}`), the prefix of
        /// every idempotency key, and the `provider` field and SQS attribute of the envelope.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum Provider {
            $($(#[$doc])* $variant,)+
        }

        impl Provider {
            /// How many providers there are.
            pub const COUNT: usize = [$(stringify!($variant),)+].len();

            /// Every provider, in the order the documentation lists them.
            pub const ALL: [Provider; Provider::COUNT] = [$(Provider::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Provider::$variant => $name,)+
                }
            }

            /// The name capitalised, as the template's logical ids and outputs spell it
            /// (`GithubReceiver`, `GithubWebhookUrl`).
            pub const fn title(self) -> &'static str {
                match self {
                    $(Provider::$variant => stringify!($variant),)+
                }
            }

            /// The name people know the provider by (`GitHub`, `Standard Webhooks`).
            pub const fn display_name(self) -> &'static str {
                match self {
                    $(Provider::$variant => $display,)+
                }
            }

            /// What the provider calls the secret it signs with.
            pub const fn secret_name(self) -> &'static str {
                match self {
                    $(Provider::$variant => $secret,)+
                }
            }

            pub const fn secret_origin(self) -> SecretOrigin {
                match self {
                    $(Provider::$variant => SecretOrigin::$origin,)+
                }
            }

            /// The provider's signature scheme, configured from `env` (only the generic
            /// scheme reads settings of its own).
            pub fn scheme(
                self,
                env: &dyn crate::config::Env,
            ) -> Result<Box<dyn crate::verify::SignatureScheme>, crate::config::ConfigError> {
                match self {
                    $(Provider::$variant => $scheme(env),)+
                }
            }
        }
    };
}

providers! {
    Github {
        name: "github",
        display: "GitHub",
        secret: "webhook secret",
        origin: Generated,
        scheme: crate::verify::github::scheme,
    },
    Stripe {
        name: "stripe",
        display: "Stripe",
        secret: "endpoint signing secret (whsec_...)",
        origin: Issued,
        scheme: crate::verify::stripe::scheme,
    },
    Shopify {
        name: "shopify",
        display: "Shopify",
        secret: "app client secret (or the webhook signing key)",
        origin: Issued,
        scheme: crate::verify::shopify::scheme,
    },
    Slack {
        name: "slack",
        display: "Slack",
        secret: "app signing secret",
        origin: Issued,
        scheme: crate::verify::slack::scheme,
    },
    /// Any Standard Webhooks sender: Svix, OpenAI, Resend, Clerk, Replicate and others.
    Standard {
        name: "standard",
        display: "Standard Webhooks",
        secret: "signing secret (whsec_... from Svix, OpenAI, Resend, Clerk...)",
        origin: Issued,
        scheme: crate::verify::standard::scheme,
    },
    Linear {
        name: "linear",
        display: "Linear",
        secret: "webhook signing secret",
        origin: Issued,
        scheme: crate::verify::linear::scheme,
    },
    Intercom {
        name: "intercom",
        display: "Intercom",
        secret: "app client secret",
        origin: Issued,
        scheme: crate::verify::intercom::scheme,
    },
    Zendesk {
        name: "zendesk",
        display: "Zendesk",
        secret: "webhook signing secret",
        origin: Issued,
        scheme: crate::verify::zendesk::scheme,
    },
    Pagerduty {
        name: "pagerduty",
        display: "PagerDuty",
        secret: "webhook subscription secret",
        origin: Issued,
        scheme: crate::verify::pagerduty::scheme,
    },
    Square {
        name: "square",
        display: "Square",
        secret: "subscription signature key",
        origin: Issued,
        scheme: crate::verify::square::scheme,
    },
    Paddle {
        name: "paddle",
        display: "Paddle",
        secret: "notification destination secret key (pdl_ntfset_...)",
        origin: Issued,
        scheme: crate::verify::paddle::scheme,
    },
    Calendly {
        name: "calendly",
        display: "Calendly",
        secret: "webhook signing key",
        origin: Generated,
        scheme: crate::verify::calendly::scheme,
    },
    Sentry {
        name: "sentry",
        display: "Sentry",
        secret: "integration client secret",
        origin: Issued,
        scheme: crate::verify::sentry::scheme,
    },
    Hubspot {
        name: "hubspot",
        display: "HubSpot",
        secret: "app client secret",
        origin: Issued,
        scheme: crate::verify::hubspot::scheme,
    },
    Jira {
        name: "jira",
        display: "Jira",
        secret: "webhook secret",
        origin: Generated,
        scheme: crate::verify::jira::scheme,
    },
    Twilio {
        name: "twilio",
        display: "Twilio",
        secret: "auth token",
        origin: Issued,
        scheme: crate::verify::twilio::scheme,
    },
    Gitlab {
        name: "gitlab",
        display: "GitLab",
        secret: "secret token (or a signing token, whsec_...)",
        origin: Generated,
        scheme: crate::verify::gitlab::scheme,
    },
    Discord {
        name: "discord",
        display: "Discord",
        secret: "application public key (hex)",
        origin: Issued,
        scheme: crate::verify::discord::scheme,
    },
    Sendgrid {
        name: "sendgrid",
        display: "SendGrid",
        secret: "signed event webhook verification key (base64)",
        origin: Issued,
        scheme: crate::verify::sendgrid::scheme,
    },
    Sns {
        name: "sns",
        display: "Amazon SNS",
        secret: "topic ARNs to accept, comma-separated",
        origin: Issued,
        scheme: crate::verify::sns::scheme,
    },
    Msgraph {
        name: "msgraph",
        display: "Microsoft Graph",
        secret: "clientState of the subscription",
        origin: Generated,
        scheme: crate::verify::msgraph::scheme,
    },
    /// A sender signing with HMAC-SHA256 in a configurable header and encoding.
    Generic {
        name: "generic",
        display: "generic HMAC",
        secret: "key",
        origin: Generated,
        scheme: crate::verify::generic::scheme,
    },
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not one of [`Provider::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider `{0}` (expected one of: {known})", known = known_names())]
pub struct UnknownProvider(pub String);

fn known_names() -> String {
    Provider::ALL
        .iter()
        .map(|provider| provider.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

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
    fn a_providers_title_is_its_name_capitalised() {
        for provider in Provider::ALL {
            let mut name = provider.as_str().chars();
            let capitalised: String = name
                .next()
                .map(|first| first.to_uppercase().chain(name).collect())
                .unwrap_or_default();
            assert_eq!(provider.title(), capitalised);
        }
    }

    #[test]
    fn every_provider_parses_back_from_its_name() {
        for provider in Provider::ALL {
            assert_eq!(provider.as_str().parse::<Provider>(), Ok(provider));
        }
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_list_of_known_ones() {
        let error = "bitbucket".parse::<Provider>().unwrap_err();
        assert!(error.to_string().contains("github, stripe"));
    }
}
