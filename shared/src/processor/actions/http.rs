//! The `http` action: the normalized event POSTed to an agent's URL, signed with Standard
//! Webhooks headers so the agent can check it came from hookgate.
//!
//! The request carries `content-type: application/json`, `webhook-id` (the idempotency key),
//! `webhook-timestamp`, `webhook-signature: v1,<base64>` made with the action's current key,
//! and `Idempotency-Key` (the same key, for agents that deduplicate by that header). A forced
//! replay (`hookgate replay --force`) also carries `Hookgate-Replay-Of` (the key of the
//! event replayed) and `Hookgate-Replay-Id` (its replay generation); its key, and so its
//! `Idempotency-Key`, is `{original key}#replay-{generation}`: new to the agent, and the same
//! on every retry of that generation.
//!
//! How the agent's answer is read:
//!
//! | answer | result |
//! |---|---|
//! | 2xx | done |
//! | 408, 429, 5xx, a timeout, a connection error | retryable, honouring `Retry-After` |
//! | 3xx | permanent: redirects are not followed |
//! | any other status | permanent, quoting the start of the body |
//!
//! Redirects are refused rather than followed: a redirected POST may turn into a GET or
//! reach a host the routes file never named, and either way the agent's URL is wrong.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

use super::{excerpt, ActionError, ActionInvoker, ActionSetupError, NormalizedEvent};

/// On a forced replay: the key of the event replayed.
pub const REPLAY_OF: &str = "hookgate-replay-of";
/// On a forced replay: its generation, one per `hookgate replay --force` run.
pub const REPLAY_ID: &str = "hookgate-replay-id";
use crate::routes::{ActionKind, ActionSpec};
use crate::secret::SecretSource;
use crate::verify::standard::StandardWebhooks;
use crate::verify::{OutgoingDelivery, SignatureScheme};

/// The `user-agent` of every request to an agent.
pub const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));

/// The longest `Retry-After` honoured. An agent asking for more (or a broken header asking
/// for years) still gets its retry within the hour; the backoff may wait longer on its own.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// The most of an answer's body read. A success's body is read (up to this) so that its
/// connection goes back to the pool; an error's start is quoted in the reason.
const MAX_BODY_READ: usize = 64 * 1024;

/// Runs `http` actions: one HTTP client for all of them, so connections to an agent are
/// pooled and reused across events, and each action's signing secret, resolved at init.
#[derive(Debug)]
pub struct HttpActions {
    client: reqwest::Client,
    secrets: BTreeMap<String, Arc<dyn SecretSource>>,
}

impl HttpActions {
    /// Builds the HTTP client, on the process's TLS trust ([`crate::tls`]), with no signing
    /// secret yet.
    pub fn new() -> Result<Self, ActionSetupError> {
        let trust = crate::tls::process_trust()
            .map_err(|error| ActionSetupError::HttpClient(error.to_string()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(trust.rustls_config())
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| ActionSetupError::HttpClient(error.to_string()))?;
        Ok(Self {
            client,
            secrets: BTreeMap::new(),
        })
    }

    /// Signs the action named `action` with the current key of `secret`. A source that
    /// refreshes (Secrets Manager) makes a rotation take effect without a restart.
    pub fn with_signing_secret(
        mut self,
        action: impl Into<String>,
        secret: Arc<dyn SecretSource>,
    ) -> Self {
        self.secrets.insert(action.into(), secret);
        self
    }
}

#[async_trait]
impl ActionInvoker for HttpActions {
    async fn invoke(
        &self,
        action: &ActionSpec,
        event: &NormalizedEvent,
    ) -> Result<(), ActionError> {
        let ActionKind::Http { url, .. } = &action.kind else {
            return Err(ActionError::permanent(format!(
                "`{}` is not an http action",
                action.name
            )));
        };
        let secret = self.secrets.get(&action.name).ok_or_else(|| {
            ActionError::permanent(format!(
                "no signing secret was set up for the http action `{}`",
                action.name
            ))
        })?;
        // A source only fails here when it has never held keys; worth another try later.
        let keys = secret.key_ring().await.map_err(|error| {
            ActionError::retryable(format!("the signing secret cannot be read: {error}"))
        })?;
        let id = event.idempotency_key.as_str();
        let key_header = HeaderValue::from_str(id).map_err(|_| {
            ActionError::permanent("the idempotency key cannot be sent in an HTTP header")
        })?;
        let body = event.to_json();

        // A ring's first key is its current one: that one signs. (A ring always has one; an
        // unsigned delivery is never sent.)
        let key = keys.keys().next().ok_or_else(|| {
            ActionError::retryable("the signing secret holds no key to sign with")
        })?;
        let delivery = OutgoingDelivery {
            body: body.as_bytes(),
            signed_at: OffsetDateTime::now_utc(),
            id,
            url: url.as_str(),
        };
        let mut request = self
            .client
            .post(url)
            .timeout(action.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header("idempotency-key", key_header);
        for (name, value) in StandardWebhooks.sign(&delivery, key) {
            request = request.header(name, value);
        }
        if let Some(replay) = &event.replay {
            let header = |value: &str| {
                HeaderValue::from_str(value).map_err(|_| {
                    ActionError::permanent("the replay cannot be named in an HTTP header")
                })
            };
            request = request
                .header(REPLAY_OF, header(replay.of.as_str())?)
                .header(REPLAY_ID, header(&replay.id)?);
        }

        let mut response = request
            .body(body)
            .send()
            .await
            .map_err(|error| send_failure(error, action.timeout))?;
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header(RETRY_AFTER)
            .and_then(|value| parse_retry_after(&value, OffsetDateTime::now_utc()));
        let location = header(LOCATION);
        // A body that fails midway still leaves the status to decide on.
        let body = read_bounded(&mut response).await;
        classify(
            status,
            retry_after,
            location.as_deref(),
            &String::from_utf8_lossy(&body),
        )
    }
}

/// Up to [`MAX_BODY_READ`] bytes of an answer's body, however much of it arrives.
async fn read_bounded(response: &mut reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_BODY_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_BODY_READ);
    body
}

/// Why a request got no answer. Every such failure may pass (the agent restarts, the
/// network recovers) except a request that cannot even be built.
fn send_failure(error: reqwest::Error, timeout: Duration) -> ActionError {
    // An agent's URL may carry a token in its query, and reasons reach the log and the
    // dead-letter queue: the action's name says which agent it was.
    let error = error.without_url();
    if error.is_builder() {
        return ActionError::permanent(format!(
            "the request cannot be built: {}",
            error_chain(&error)
        ));
    }
    if error.is_timeout() {
        return ActionError::retryable(format!(
            "the agent did not answer within {} s",
            timeout.as_secs_f64()
        ));
    }
    let what = if error.is_connect() {
        "cannot connect to the agent"
    } else {
        "the request to the agent failed"
    };
    ActionError::retryable(format!("{what}: {}", error_chain(&error)))
}

/// The error and its causes on one line; reqwest's own message alone ("error sending
/// request") does not say what went wrong.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        let current_text = current.to_string();
        // Some layers repeat their inner error's message in their own: say each thing once.
        if !text.contains(&current_text) {
            text.push_str(": ");
            text.push_str(&current_text);
        }
        cause = current.source();
    }
    excerpt(&text)
}

/// Decides an answered request by its status. `body` is quoted (its start) in a permanent
/// or retryable reason; `location` names a redirect's target.
fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    location: Option<&str>,
    body: &str,
) -> Result<(), ActionError> {
    if status.is_success() {
        return Ok(());
    }
    let answered = match excerpt(body) {
        quoted if quoted.is_empty() => format!("the agent answered {status}"),
        quoted => format!("the agent answered {status}: {quoted}"),
    };
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        return Err(ActionError::Retryable {
            reason: answered,
            retry_after,
        });
    }
    if status.is_redirection() {
        let target = location.map_or_else(|| "nowhere".to_owned(), excerpt);
        return Err(ActionError::permanent(format!(
            "the agent answered {status}, a redirect to {target}; redirects are not followed, \
             so set the action's url to the final address"
        )));
    }
    Err(ActionError::permanent(answered))
}

/// A `Retry-After` value: delta-seconds or an HTTP-date, capped at [`MAX_RETRY_AFTER`]. A
/// date in the past means "now". Unreadable values are ignored, leaving the backoff to
/// decide.
fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // All digits yet too large for u64 is still "a very long time".
        value
            .parse::<u64>()
            .map_or(MAX_RETRY_AFTER, Duration::from_secs)
    } else {
        let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
        Duration::try_from(at - now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn outcome(code: u16) -> Result<(), ActionError> {
        classify(StatusCode::from_u16(code).unwrap(), None, None, "the body")
    }

    #[test]
    fn every_2xx_answer_is_done() {
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(outcome(code), Ok(()), "{code}");
        }
    }

    #[test]
    fn timeouts_throttling_and_server_errors_are_retryable() {
        for code in [408, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(outcome(code), Err(ActionError::Retryable { .. })),
                "{code}"
            );
        }
    }

    #[test]
    fn other_client_errors_are_permanent_and_quote_the_status_and_body() {
        for code in [400, 401, 403, 404, 409, 410, 413, 422] {
            let Err(ActionError::Permanent { reason }) = outcome(code) else {
                panic!("{code} is not permanent");
            };
            assert!(reason.contains(&code.to_string()), "{reason}");
            assert!(reason.ends_with(": the body"), "{reason}");
        }
    }

    #[test]
    fn a_redirect_is_permanent_and_names_its_target() {
        let result = classify(
            StatusCode::FOUND,
            None,
            Some("https://elsewhere.example/hooks"),
            "",
        );
        let Err(ActionError::Permanent { reason }) = result else {
            panic!("a redirect is not permanent: {result:?}");
        };
        assert!(reason.contains("302 Found"), "{reason}");
        assert!(
            reason.contains("https://elsewhere.example/hooks"),
            "{reason}"
        );
        assert!(reason.contains("not followed"), "{reason}");
    }

    #[test]
    fn a_retryable_answer_carries_the_agents_retry_after() {
        let result = classify(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(7)),
            None,
            "",
        );
        assert_eq!(
            result,
            Err(ActionError::Retryable {
                reason: "the agent answered 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(7)),
            })
        );
    }

    #[test]
    fn a_long_error_body_is_quoted_only_in_part() {
        let body = "x".repeat(10_000);
        let Err(ActionError::Permanent { reason }) =
            classify(StatusCode::BAD_REQUEST, None, None, &body)
        else {
            panic!("400 is not permanent");
        };
        assert!(reason.chars().count() < 260, "{}", reason.len());
    }

    #[test]
    fn retry_after_in_seconds_is_read_as_is() {
        assert_eq!(parse_retry_after("7", at(0)), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 120 ", at(0)),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", at(0)), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_time_until_then() {
        // 1994-11-06T08:49:37Z, RFC 9110's example date.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(date, at(784_111_777 - 90)),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn retry_after_in_the_past_means_now() {
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(784_111_777 + 60)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_is_capped() {
        for huge in ["86400", "99999999999999999999999999"] {
            assert_eq!(
                parse_retry_after(huge, at(0)),
                Some(MAX_RETRY_AFTER),
                "{huge}"
            );
        }
        assert_eq!(
            parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", at(784_111_777)),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn an_unreadable_retry_after_is_ignored() {
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "tomorrow at noon",
            "Sun, 06 Nov 1994",
        ] {
            assert_eq!(parse_retry_after(bad, at(0)), None, "{bad:?}");
        }
    }
}
