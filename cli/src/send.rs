//! `hookgate send`: posts a correctly signed sample delivery, as the provider would, and
//! prints the answer.
//!
//! The samples are the ones in `events/<provider>/` (the same payloads, signed now rather
//! than at the time recorded in the file, so a timestamped signature is fresh). A sample
//! keeps its delivery id, so sending it twice shows the gateway's idempotency: both are
//! answered 202, and the second is processed as a duplicate.

use std::time::Duration;

use hookgate::config::{Env, ProcessEnv};
use hookgate::provider::Provider;
use hookgate::secret::SecretError;
use hookgate_samples::{SampleDelivery, SampleEvent, UnknownSample};
use time::OffsetDateTime;

use crate::dev::secret_variable;

/// How long to wait for the answer: longer than any provider waits, so a slow gateway is
/// reported as slow rather than cut off.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The provider: github, stripe, shopify, slack, standard or generic.
    pub provider: Provider,

    /// The sample to send: a file name in events/<provider>/ without `.json`
    /// (default: the provider's first genuine sample).
    #[arg(long, value_name = "NAME")]
    pub event: Option<String>,

    /// Where to POST it (default: a local `hookgate dev`,
    /// http://127.0.0.1:8080/webhooks/<provider>).
    #[arg(long)]
    pub url: Option<String>,

    /// The secret to sign with, as the provider shows it (default:
    /// HOOKGATE_<PROVIDER>_SECRET if set, else the provider's public test secret).
    #[arg(long)]
    pub secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    UnknownSample(#[from] UnknownSample),
    #[error("{provider} has no genuine sample to send")]
    NoSample { provider: Provider },
    #[error("the secret cannot sign a {provider} delivery: {source}")]
    Secret {
        provider: Provider,
        source: SecretError,
    },
    #[error("--secret only applies to genuine samples; `{0}` is signed wrongly on purpose")]
    SecretForRejectedSample(&'static str),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("no answer from {url}: {reason}{hint}")]
    NoAnswer {
        url: String,
        reason: String,
        hint: &'static str,
    },
    #[error("the gateway answered {status}, not 2xx")]
    Refused { status: u16 },
}

pub async fn run(args: &SendArgs) -> Result<(), SendError> {
    let sample = match &args.event {
        Some(name) => SampleEvent::find(args.provider, name)?,
        None => SampleEvent::all()
            .into_iter()
            .find(|event| event.provider() == args.provider && !event.variant().is_rejected())
            .ok_or(SendError::NoSample {
                provider: args.provider,
            })?,
    };
    let delivery = signed_delivery(&sample, args)?;
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:8080/webhooks/{}", args.provider.as_str()));

    println!(
        "POST {url}  ({} sample `{}`, {} bytes)",
        args.provider,
        sample.name(),
        delivery.body.len()
    );
    let client = reqwest::Client::builder()
        .timeout(ANSWER_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(SendError::Client)?;
    let mut request = client.post(&url).body(delivery.body);
    for (name, value) in &delivery.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|error| SendError::NoAnswer {
        url: url.clone(),
        reason: error_chain(&error),
        hint: if error.is_connect() && args.url.is_none() {
            "; is `hookgate dev` running?"
        } else {
            ""
        },
    })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{status}");
    if !body.is_empty() {
        println!("{body}");
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(SendError::Refused {
            status: status.as_u16(),
        })
    }
}

/// The delivery, signed now: with `--secret`, with `HOOKGATE_<PROVIDER>_SECRET`, or with the
/// test secret, in that order. A rejected sample keeps its deliberate flaw.
fn signed_delivery(sample: &SampleEvent, args: &SendArgs) -> Result<SampleDelivery, SendError> {
    let now = OffsetDateTime::now_utc();
    if sample.variant().is_rejected() {
        return match args.secret {
            Some(_) => Err(SendError::SecretForRejectedSample(sample.name())),
            None => Ok(sample.delivery(now)),
        };
    }
    let secret = args
        .secret
        .clone()
        .or_else(|| ProcessEnv.get(&secret_variable(args.provider)));
    match secret {
        None => Ok(sample.delivery(now)),
        Some(secret) => {
            sample
                .delivery_signed_with(now, &secret)
                .map_err(|source| SendError::Secret {
                    provider: args.provider,
                    source,
                })
        }
    }
}

/// reqwest's message names the URL only; the cause (refused, timed out, TLS) is further down.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
