//! The REST adapter of [`GithubDeliveries`], on `https://api.github.com` or a GitHub
//! Enterprise Server's `https://HOST/api/v3`.
//!
//! Every request carries the headers GitHub asks for (`Accept: application/vnd.github+json`,
//! `X-GitHub-Api-Version: 2022-11-28`, a `User-Agent`) and the token as a bearer. Pages are
//! followed through the `Link` header's `rel="next"` URL as GitHub gives it (the cursor in it
//! is opaque), and only while it stays on the API's own origin: the token is never sent
//! anywhere else.
//!
//! Rate limits are read as GitHub documents them: a 403 or 429 with
//! `x-ratelimit-remaining: 0` waits for `x-ratelimit-reset`; one with `retry-after` waits
//! that long; a 429, or a 403 saying "rate limit", without either waits a minute.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, LINK, RETRY_AFTER, USER_AGENT};
use reqwest::{Method, StatusCode};
use time::OffsetDateTime;

use crate::deliveries::{DeliveryAttempt, DeliveryPage, GithubDeliveries, GithubError};
use crate::hooks::Hook;
use crate::token::TokenSource;

/// The API version every request pins.
pub const API_VERSION: &str = "2022-11-28";

/// The most deliveries GitHub lists on one page.
const PER_PAGE: u32 = 100;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What a secondary rate limit without a hint waits, as GitHub's documentation says.
const SECONDARY_LIMIT_WAIT: time::Duration = time::Duration::minutes(1);

/// GitHub's REST API.
#[derive(Debug, Clone)]
pub struct GithubApi {
    client: reqwest::Client,
    /// The base URL, without a trailing slash.
    base: String,
    token: Arc<dyn TokenSource>,
}

impl GithubApi {
    /// A client of the API at `base` (`https://api.github.com`), authenticating with the
    /// tokens `token` gives.
    pub fn new(base: &str, token: Arc<dyn TokenSource>) -> Result<Self, GithubError> {
        let trust = hookgate::tls::process_trust()
            .map_err(|error| GithubError::Unavailable(error.to_string()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(trust.rustls_config())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // A redirect could take the bearer token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| {
                GithubError::Unavailable(format!("cannot build the client: {error}"))
            })?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Sends one request and reads what GitHub's answer means.
    async fn send(&self, method: Method, url: &str) -> Result<reqwest::Response, GithubError> {
        let token = self.token.token().map_err(|error| GithubError::Refused {
            status: 401,
            message: format!("no token to send: {error}"),
        })?;
        let response = self
            .client
            .request(method, url)
            .header(ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header(
                USER_AGENT,
                concat!("hookgate-reconciler/", env!("CARGO_PKG_VERSION")),
            )
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .send()
            .await
            .map_err(|error| GithubError::Unavailable(format!("{url}: {error}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let message = response.text().await.unwrap_or_default();
        Err(classify(
            status,
            &headers,
            &message,
            OffsetDateTime::now_utc(),
        ))
    }

    /// Whether `url` is on the API's origin (and under its path, for a GitHub Enterprise
    /// Server's `/api/v3`).
    fn is_ours(&self, url: &str) -> bool {
        url.strip_prefix(&self.base)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// What a refusal means: a rate limit (with when it lifts), GitHub being unavailable, or a
/// refusal that retrying will not change.
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: OffsetDateTime,
) -> GithubError {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let remaining = header("x-ratelimit-remaining").and_then(|value| value.parse::<u64>().ok());
    let reset = header("x-ratelimit-reset")
        .and_then(|value| value.parse::<i64>().ok())
        .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok());
    let retry_after = header(RETRY_AFTER.as_str())
        .and_then(|value| value.parse::<i64>().ok())
        .map(time::Duration::seconds);
    let says_rate_limit = body.to_ascii_lowercase().contains("rate limit");
    if matches!(status.as_u16(), 403 | 429) {
        if remaining == Some(0) {
            return GithubError::RateLimited {
                until: reset.unwrap_or(now + SECONDARY_LIMIT_WAIT),
            };
        }
        if let Some(wait) = retry_after {
            return GithubError::RateLimited { until: now + wait };
        }
        if status == StatusCode::TOO_MANY_REQUESTS || says_rate_limit {
            return GithubError::RateLimited {
                until: now + SECONDARY_LIMIT_WAIT,
            };
        }
    }
    let message = message_of(body);
    if status.is_server_error() {
        return GithubError::Unavailable(format!("{status}: {message}"));
    }
    GithubError::Refused {
        status: status.as_u16(),
        message,
    }
}

/// GitHub's `message`, or the start of the body when it is not GitHub's JSON.
fn message_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// The `rel="next"` URL of a `Link` header.
pub(crate) fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|param| param.trim().eq_ignore_ascii_case(r#"rel="next""#));
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_owned())
    })
}

#[async_trait]
impl GithubDeliveries for GithubApi {
    async fn list(&self, hook: &Hook, page: Option<&str>) -> Result<DeliveryPage, GithubError> {
        let url = match page {
            Some(url) if self.is_ours(url) => url.to_owned(),
            Some(url) => {
                return Err(GithubError::Refused {
                    status: 0,
                    message: format!("the next page {url} is not on {}", self.base),
                })
            }
            None => format!(
                "{}{}/deliveries?per_page={PER_PAGE}",
                self.base,
                hook.api_path()
            ),
        };
        let response = self.send(Method::GET, &url).await?;
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|error| GithubError::Unavailable(format!("{url}: {error}")))?;
        let attempts: Vec<DeliveryAttempt> = serde_json::from_slice(&body).map_err(|error| {
            GithubError::Unavailable(format!(
                "{url} answered what is not a delivery list: {error}"
            ))
        })?;
        Ok(DeliveryPage {
            attempts,
            next: headers
                .get(LINK)
                .and_then(|link| link.to_str().ok())
                .and_then(next_link),
            requests_left: headers
                .get("x-ratelimit-remaining")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok()),
        })
    }

    async fn redeliver(&self, hook: &Hook, delivery_id: u64) -> Result<(), GithubError> {
        let url = format!(
            "{}{}/deliveries/{delivery_id}/attempts",
            self.base,
            hook.api_path()
        );
        self.send(Method::POST, &url).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    reqwest::header::HeaderName::from_static(name),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_next_page_is_the_link_marked_next() {
        let link = r#"<https://api.github.com/repositories/1/hooks/42/deliveries?per_page=100&cursor=v1_38443%3D>; rel="next", <https://api.github.com/repositories/1/hooks/42/deliveries?per_page=100>; rel="first""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/repositories/1/hooks/42/deliveries?per_page=100&cursor=v1_38443%3D")
        );
        assert_eq!(next_link(r#"<https://a/b>; rel="prev""#), None);
    }

    #[test]
    fn an_exhausted_primary_limit_waits_for_its_reset() {
        let error = classify(
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1700000600"),
            ]),
            r#"{"message":"API rate limit exceeded"}"#,
            at(1_700_000_000),
        );
        assert_eq!(
            error,
            GithubError::RateLimited {
                until: at(1_700_000_600)
            }
        );
    }

    #[test]
    fn a_secondary_limit_waits_its_retry_after_or_a_minute() {
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                &headers(&[("retry-after", "30"), ("x-ratelimit-remaining", "4000")]),
                "{}",
                at(1_000)
            ),
            GithubError::RateLimited { until: at(1_030) }
        );
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                &headers(&[]),
                r#"{"message":"You have exceeded a secondary rate limit"}"#,
                at(1_000)
            ),
            GithubError::RateLimited { until: at(1_060) }
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers(&[]), "", at(1_000)),
            GithubError::RateLimited { until: at(1_060) }
        );
    }

    #[test]
    fn a_forbidden_without_a_rate_limit_is_a_refusal_and_a_5xx_is_unavailable() {
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                &headers(&[("x-ratelimit-remaining", "4999")]),
                r#"{"message":"Resource not accessible by personal access token"}"#,
                at(0)
            ),
            GithubError::Refused {
                status: 403,
                message: "Resource not accessible by personal access token".into()
            }
        );
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &headers(&[]), "<html>", at(0)),
            GithubError::Unavailable(_)
        ));
    }
}
