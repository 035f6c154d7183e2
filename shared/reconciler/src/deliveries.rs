//! Port: a webhook's recent deliveries as GitHub lists them, and asking GitHub to redeliver
//! one.

use std::fmt;

use async_trait::async_trait;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::hooks::Hook;

/// One delivery attempt, as `GET …/hooks/{id}/deliveries` lists it. A redelivery is an
/// attempt of its own, with a new `id` and the same `guid`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeliveryAttempt {
    pub id: u64,
    /// The event's id, the same across redeliveries and the `X-GitHub-Delivery` header
    /// hookgate keys the event by.
    pub guid: String,
    #[serde(with = "time::serde::rfc3339")]
    pub delivered_at: OffsetDateTime,
    #[serde(default)]
    pub redelivery: bool,
    /// GitHub's words: `OK`, `Invalid HTTP Response: 503`, `timed out`, …
    #[serde(default)]
    pub status: String,
    /// The receiver's HTTP status; 0 when there was none (a timeout, a refused connection).
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub event: String,
}

impl DeliveryAttempt {
    /// Whether the receiver took it: a 2xx answer, as hookgate gives once the event is
    /// queued.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// One page of a hook's deliveries, newest first, and where the next page is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPage {
    pub attempts: Vec<DeliveryAttempt>,
    /// The next (older) page's URL, from the `Link` header, when there is one.
    pub next: Option<String>,
    /// The requests the token has left in its rate-limit window, when GitHub says.
    pub requests_left: Option<u32>,
}

/// GitHub did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubError {
    /// A primary or secondary rate limit: no request before `until`.
    #[error("GitHub's rate limit is reached until {until}")]
    RateLimited { until: OffsetDateTime },
    /// GitHub answered 5xx, or could not be reached: worth trying again soon.
    #[error("GitHub is unavailable: {0}")]
    Unavailable(String),
    /// GitHub refused the request (a bad token, missing permission, unknown hook, a
    /// delivery too old to redeliver): trying again will not help until something changes.
    #[error("GitHub refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
}

/// Port: GitHub's webhook deliveries API.
#[async_trait]
pub trait GithubDeliveries: Send + Sync + fmt::Debug {
    /// The first page of `hook`'s deliveries (newest first), or the page at `page`, a URL an
    /// earlier page's `next` gave.
    async fn list(&self, hook: &Hook, page: Option<&str>) -> Result<DeliveryPage, GithubError>;

    /// Asks GitHub to deliver `delivery_id` of `hook` again.
    async fn redeliver(&self, hook: &Hook, delivery_id: u64) -> Result<(), GithubError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_reads_from_githubs_documented_example() {
        let attempt: DeliveryAttempt = serde_json::from_str(
            r#"{"id":12345678,"guid":"0b989ba4-242f-11e5-81e1-c7b6966d2516",
                "delivered_at":"2019-06-03T00:57:16Z","redelivery":false,"duration":0.27,
                "status":"OK","status_code":200,"event":"issues","action":"opened",
                "installation_id":123,"repository_id":456,"throttled_at":"2019-06-03T00:57:16Z"}"#,
        )
        .unwrap();
        assert_eq!(attempt.id, 12_345_678);
        assert_eq!(attempt.guid, "0b989ba4-242f-11e5-81e1-c7b6966d2516");
        assert!(attempt.succeeded());
    }

    #[test]
    fn only_a_2xx_answer_is_a_success() {
        let attempt = |status_code| DeliveryAttempt {
            id: 1,
            guid: "g".into(),
            delivered_at: OffsetDateTime::UNIX_EPOCH,
            redelivery: false,
            status: String::new(),
            status_code,
            event: "push".into(),
        };
        assert!(attempt(202).succeeded());
        for failed in [0, 302, 413, 429, 503] {
            assert!(!attempt(failed).succeeded(), "{failed}");
        }
    }
}
