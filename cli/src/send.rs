//! `hookgate send`: posts a correctly signed sample delivery, as the provider would, and
//! prints the answer.
//!
//! The samples are the ones in `events/<provider>/` (the same payloads, signed now rather
//! than at the time recorded in the file, so a timestamped signature is fresh); `--list`
//! lists them. A sample keeps its delivery id, so sending it twice shows the gateway's
//! idempotency: both are answered 202, and the second is processed as a duplicate.
//! `--new-id` gives it an id never sent before (in a header or in the body, where the
//! provider carries it), and `--data FILE` sends one's own payload with the sample's
//! headers, signed.
//!
//! With `--stack NAME`, the delivery goes to that deployed stack's webhook URL for the
//! provider, signed with the secret the stack's receiver checks (read from Secrets Manager):
//! a real end-to-end test of a deployment.

use std::time::Duration;

use hookgate::config::{Env, ProcessEnv};
use hookgate::provider::Provider;
use hookgate::secret::SecretError;
use hookgate_samples::{ChangeError, Changes, SampleDelivery, SampleEvent, UnknownSample};
use time::OffsetDateTime;

use crate::dev::secret_variable;
use crate::stack::{AwsOptions, Stack, StackError};

/// How long to wait for the answer: longer than any provider waits, so a slow gateway is
/// reported as slow rather than cut off.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The provider: github, stripe, shopify, slack, standard or generic.
    #[arg(required_unless_present = "list")]
    pub provider: Option<Provider>,

    /// List the samples (of PROVIDER, or of every provider) instead of sending one.
    #[arg(long)]
    pub list: bool,

    /// Give the delivery an id never sent before, so that it is a new event and not a
    /// duplicate of the last one sent (re-signed; in the body for Stripe and Slack).
    #[arg(long)]
    pub new_id: bool,

    /// Send this file's bytes as the body instead of the sample's, with the sample's
    /// headers, signed. With --new-id, the provider's id field in it is renewed.
    #[arg(long, value_name = "FILE")]
    pub data: Option<std::path::PathBuf>,

    /// The sample to send: a file name in events/<provider>/ without `.json`
    /// (default: the provider's first genuine sample).
    #[arg(long, value_name = "NAME")]
    pub event: Option<String>,

    /// Where to POST it (default: a local `hookgate dev`,
    /// http://127.0.0.1:8080/webhooks/<provider>).
    #[arg(long)]
    pub url: Option<String>,

    /// The secret to sign with, as the provider shows it (default: the stack's, with
    /// --stack; else HOOKGATE_<PROVIDER>_SECRET if set, else the provider's public test
    /// secret).
    #[arg(long)]
    pub secret: Option<String>,

    #[command(flatten)]
    pub aws: AwsOptions,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
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
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("cannot read {}: {source}", path.display())]
    Data {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
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
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("cannot read the stack's {provider} secret {arn}: {reason}")]
    StackSecret {
        provider: Provider,
        arn: String,
        reason: String,
    },
}

pub async fn run(args: &SendArgs) -> Result<(), SendError> {
    let Some(provider) = args.provider.filter(|_| !args.list) else {
        let samples = listed_samples(args.provider);
        if args.json {
            let samples: Vec<serde_json::Value> = samples
                .iter()
                .map(|(event, answer)| {
                    serde_json::json!({
                        "provider": event.provider().as_str(),
                        "name": event.name(),
                        "answer": answer,
                    })
                })
                .collect();
            outln!("{}", serde_json::Value::Array(samples));
        } else {
            out!("{}", sample_list(&samples));
        }
        return Ok(());
    };
    let delivered = deliver(provider, args, |sample, url, bytes| {
        if !args.json {
            outln!(
                "POST {url}  ({provider} sample `{}`, {bytes} bytes)",
                sample.name()
            );
        }
    })
    .await?;
    if args.json {
        outln!("{}", delivered.to_json());
    } else {
        outln!("{}", delivered.status);
        if !delivered.body.is_empty() {
            outln!("{}", delivered.body);
        }
    }
    if delivered.status.is_success() {
        Ok(())
    } else {
        Err(SendError::Refused {
            status: delivered.status.as_u16(),
        })
    }
}

/// A delivery sent, and the gateway's answer.
#[derive(Debug)]
pub struct Delivered {
    pub url: String,
    pub provider: Provider,
    pub sample: &'static str,
    pub status: reqwest::StatusCode,
    pub body: String,
}

impl Delivered {
    /// What `send --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url,
            "provider": self.provider.as_str(),
            "sample": self.sample,
            "status": self.status.as_u16(),
            "answer": serde_json::from_str::<serde_json::Value>(&self.body)
                .unwrap_or(serde_json::Value::String(self.body.clone())),
        })
    }
}

/// Signs `provider`'s sample as `args` ask and posts it; `sending` hears of it just before
/// (the sample, the URL, the body's length). Any answer is returned, a refusal included.
pub async fn deliver(
    provider: Provider,
    args: &SendArgs,
    sending: impl FnOnce(&SampleEvent, &str, usize),
) -> Result<Delivered, SendError> {
    let sample = match &args.event {
        Some(name) => SampleEvent::find(provider, name)?,
        None => SampleEvent::all()
            .into_iter()
            .find(|event| event.provider() == provider && !event.variant().is_rejected())
            .ok_or(SendError::NoSample { provider })?,
    };
    let deployed = match &args.aws.stack {
        Some(name) => Some(deployed_endpoint(args, provider, name).await?),
        None => None,
    };
    let (url, stack_secret) = match (&args.url, deployed) {
        (Some(url), deployed) => (url.clone(), deployed.map(|(_, secret)| secret)),
        (None, Some((url, secret))) => (url, Some(secret)),
        (None, None) => (
            format!("http://127.0.0.1:8080/webhooks/{}", provider.as_str()),
            None,
        ),
    };
    let data = match &args.data {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| SendError::Data {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let changes = Changes {
        body: data.as_deref(),
        new_id: args.new_id,
        url: Some(&url),
    };
    let delivery = signed_delivery(&sample, args, changes, stack_secret)?;
    sending(&sample, &url, delivery.body.len());
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::trust().rustls_config())
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
        hint: if error.is_connect() && args.url.is_none() && args.aws.stack.is_none() {
            "; is `hookgate dev` running?"
        } else {
            ""
        },
    })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Ok(Delivered {
        url,
        provider,
        sample: sample.name(),
        status,
        body,
    })
}

/// The deployed stack's webhook URL for the provider, and the secret its receiver checks
/// (the current one, when the secret holds `{"current": …, "previous": …}`).
async fn deployed_endpoint(
    args: &SendArgs,
    provider: Provider,
    stack: &str,
) -> Result<(String, String), SendError> {
    let config = args.aws.sdk_config().await;
    let stack = Stack::describe(&config, stack).await?;
    let name = provider.title();
    let url = stack.output(&format!("{name}WebhookUrl"))?.to_owned();
    let arn = stack.output(&format!("{name}SecretArn"))?.to_owned();
    let unreadable = |reason: String| SendError::StackSecret {
        provider,
        arn: arn.clone(),
        reason,
    };
    let value = aws_sdk_secretsmanager::Client::new(&config)
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|error| {
            unreadable(aws_sdk_secretsmanager::error::DisplayErrorContext(&error).to_string())
        })?;
    let text = value
        .secret_string()
        .ok_or_else(|| unreadable("it holds no text".to_owned()))?;
    let current = current_secret(text).map_err(|error| unreadable(error.to_string()))?;
    Ok((url, current))
}

/// The current secret of a secret's value, read as the receivers read it: the value
/// itself, or the `current` of `{"current": …, "previous": …}`.
fn current_secret(value: &str) -> Result<String, SecretError> {
    let (current, _) = hookgate::secret::rotating_parts(value)?;
    Ok(current.trim().to_owned())
}

/// The delivery, signed now: with `--secret`, with the stack's secret, with
/// `HOOKGATE_<PROVIDER>_SECRET`, or with the test secret, in that order. A rejected sample
/// keeps its deliberate flaw.
fn signed_delivery(
    sample: &SampleEvent,
    args: &SendArgs,
    changes: Changes<'_>,
    stack_secret: Option<String>,
) -> Result<SampleDelivery, SendError> {
    let now = OffsetDateTime::now_utc();
    let provider = sample.provider();
    if sample.variant().is_rejected() && (changes.new_id || changes.body.is_some()) {
        return Err(ChangeError::RejectedSample(sample.name()).into());
    }
    if sample.variant().is_rejected() {
        return match args.secret {
            Some(_) => Err(SendError::SecretForRejectedSample(sample.name())),
            None => Ok(sample.delivery_to(changes.url.unwrap_or_default(), now)),
        };
    }
    // A receiver that holds a public key (Discord, SendGrid) or a list (SNS) cannot lend its
    // secret to sign: only --secret (the private key) or the samples' own key can.
    let scheme = hookgate_samples::sample_scheme(provider);
    let secret_signs = scheme.signing_key_encoding() == scheme.key_encoding();
    let secret = args
        .secret
        .clone()
        .or(stack_secret.filter(|_| secret_signs))
        .or_else(|| {
            ProcessEnv
                .get(&secret_variable(provider))
                .filter(|_| secret_signs)
        })
        .unwrap_or_else(|| hookgate_samples::signing_secret(provider).to_owned());
    sample
        .delivery_changed(now, &secret, changes)
        .map_err(|error| match error {
            ChangeError::Secret(source) => SendError::Secret { provider, source },
            other => SendError::Change(other),
        })
}

/// The samples `send --list` lists (of `provider`, or of all), each with what a receiver
/// answers it.
fn listed_samples(provider: Option<Provider>) -> Vec<(SampleEvent, &'static str)> {
    SampleEvent::all()
        .into_iter()
        .filter(|event| provider.is_none_or(|provider| event.provider() == provider))
        .map(|event| {
            // As the receiver answers it: what it does not queue, it answers itself.
            let now = OffsetDateTime::now_utc();
            let answer = if event.variant().is_rejected() {
                "401, signed wrongly on purpose"
            } else if event.acknowledgement(now).is_some() {
                "200, queued and answered as the provider expects"
            } else if event.queue_message(now).is_some() {
                "202, queued"
            } else {
                "200, a handshake answered at once"
            };
            (event, answer)
        })
        .collect()
}

/// `send --list`: each sample's provider, name and answer, then how to send one.
fn sample_list(samples: &[(SampleEvent, &'static str)]) -> String {
    let mut out = String::new();
    for (event, answer) in samples {
        out.push_str(&format!(
            "{:<9} {:<28} {answer}\n",
            event.provider().as_str(),
            event.name()
        ));
    }
    out.push_str(
        "\nhookgate send PROVIDER [--event NAME] [--new-id] [--data FILE]; without --event, \
         the provider's first sample\n",
    );
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_every_sample_once_with_its_answer() {
        let all = listed_samples(None);
        assert_eq!(all.len(), SampleEvent::all().len());
        let stripe = listed_samples(Some(Provider::Stripe));
        assert!(stripe
            .iter()
            .all(|(event, _)| event.provider() == Provider::Stripe));
        let text = sample_list(&stripe);
        assert!(
            text.contains("stripe    invoice.paid                 202, queued\n"),
            "{text}"
        );
        assert!(text.contains("rejected-wrong-secret        401"), "{text}");
    }

    #[test]
    fn a_stacks_secret_is_its_value_or_the_current_one_while_rotating() {
        assert_eq!(current_secret("s3cr3t\n").unwrap(), "s3cr3t");
        assert_eq!(
            current_secret(r#"{"current": "new", "previous": "old"}"#).unwrap(),
            "new"
        );
        assert_eq!(current_secret("whsec_abc").unwrap(), "whsec_abc");
    }
}
