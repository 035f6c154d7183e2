//! Port: the HTTPS GETs a scheme makes to its provider, and their adapters.
//!
//! Amazon SNS is the one provider whose verification needs a call out: its signing
//! certificate is fetched from the URL the message names, and a subscription is confirmed
//! by visiting the URL the confirmation message carries (`verify::sns`). The scheme checks
//! that such a URL is one of SNS's own before it asks; this port only fetches.
//!
//! The contract every adapter keeps (tested below against each, the real one on a local TLS
//! server):
//!
//! - only `https://` URLs are called; any other is refused without a connection;
//! - a 2xx answer gives its body, refused past `limit` bytes;
//! - any other answer is [`HttpsError::Status`], with its code;
//! - no answer at all (no connection, a TLS failure, a timeout) is
//!   [`HttpsError::Unreachable`].
//!
//! Adapters: [`TlsHttps`], the AWS SDK's own HTTP connector (hyper and rustls on ring,
//! already in every receiver, so the port links no second HTTP library; at run time it is a
//! connector and connection pool of its own, built once at start), trusting what the SDK's
//! clients trust; [`MemoryHttps`], answers set beforehand, for tests and for
//! `hookgate dev`'s samples; and, in a build without the AWS adapters (the fuzz targets),
//! none that calls anything ([`default_client`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

/// A GET could not give a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpsError {
    #[error("{url} is not an https URL")]
    NotHttps { url: String },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered with more than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
}

impl HttpsError {
    /// Whether asking again later may succeed: no answer, a server error, or throttling.
    /// Anything else is the URL's final answer.
    pub fn is_transient(&self) -> bool {
        match self {
            HttpsError::Unreachable { .. } => true,
            HttpsError::Status { status, .. } => *status == 429 || *status >= 500,
            HttpsError::NotHttps { .. } | HttpsError::TooLarge { .. } => false,
        }
    }
}

/// Port: GETs an HTTPS URL.
#[async_trait]
pub trait HttpsGet: Send + Sync + fmt::Debug {
    /// The body of a 2xx answer to a GET of `url`, at most `limit` bytes.
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, HttpsError>;
}

fn refuse_unless_https(url: &str) -> Result<(), HttpsError> {
    if url.starts_with("https://") {
        Ok(())
    } else {
        Err(HttpsError::NotHttps {
            url: url.to_owned(),
        })
    }
}

/// The client a scheme built from the environment calls with: [`TlsHttps`] on the process's
/// trust where the AWS adapters are built in, else one that reaches nothing.
pub fn default_client() -> Result<Arc<dyn HttpsGet>, crate::config::ConfigError> {
    #[cfg(feature = "aws")]
    {
        Ok(Arc::new(TlsHttps::new(crate::tls::process_trust()?)))
    }
    #[cfg(not(feature = "aws"))]
    {
        Ok(Arc::new(Unconnected))
    }
}

/// Reaches nothing: a build without the AWS adapters has no HTTP client.
#[cfg(not(feature = "aws"))]
#[derive(Debug, Clone, Copy)]
struct Unconnected;

#[cfg(not(feature = "aws"))]
#[async_trait]
impl HttpsGet for Unconnected {
    async fn get(&self, url: &str, _limit: usize) -> Result<Bytes, HttpsError> {
        refuse_unless_https(url)?;
        Err(HttpsError::Unreachable {
            url: url.to_owned(),
            reason: "this build has no HTTP client".to_owned(),
        })
    }
}

/// What [`MemoryHttps`] answers for a URL.
#[derive(Debug, Clone)]
enum Canned {
    Answer { status: u16, body: Bytes },
    Unreachable,
}

/// Answers set beforehand, by URL; any other URL is answered 404. Records every URL asked
/// for, in order. Clones share their answers and record.
#[derive(Debug, Clone, Default)]
pub struct MemoryHttps {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    answers: HashMap<String, Canned>,
    calls: Vec<String>,
}

impl MemoryHttps {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `url` with `status` and `body`.
    pub fn answer(self, url: &str, status: u16, body: impl Into<Bytes>) -> Self {
        self.set(
            url,
            Canned::Answer {
                status,
                body: body.into(),
            },
        )
    }

    /// Makes `url` unreachable, as a network failure or a timeout would.
    pub fn unreachable(self, url: &str) -> Self {
        self.set(url, Canned::Unreachable)
    }

    fn set(self, url: &str, canned: Canned) -> Self {
        self.lock().answers.insert(url.to_owned(), canned);
        self
    }

    /// Every URL a GET was made of (refused ones included), in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic elsewhere while holding the lock leaves nothing half-written here.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl HttpsGet for MemoryHttps {
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, HttpsError> {
        let canned = {
            let mut inner = self.lock();
            inner.calls.push(url.to_owned());
            inner.answers.get(url).cloned()
        };
        refuse_unless_https(url)?;
        match canned {
            Some(Canned::Unreachable) => Err(HttpsError::Unreachable {
                url: url.to_owned(),
                reason: "unreachable, as set".to_owned(),
            }),
            Some(Canned::Answer { status, body }) if (200..300).contains(&status) => {
                if body.len() > limit {
                    return Err(HttpsError::TooLarge {
                        url: url.to_owned(),
                        limit,
                    });
                }
                Ok(body)
            }
            Some(Canned::Answer { status, .. }) => Err(HttpsError::Status {
                url: url.to_owned(),
                status,
            }),
            None => Err(HttpsError::Status {
                url: url.to_owned(),
                status: 404,
            }),
        }
    }
}

#[cfg(feature = "aws")]
pub use tls_adapter::TlsHttps;

#[cfg(feature = "aws")]
mod tls_adapter {
    use std::time::Duration;

    use aws_smithy_http_client::tls::{self as smithy_tls, rustls_provider::CryptoMode};
    use aws_smithy_http_client::Connector;
    use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_types::body::SdkBody;
    use http_body_util::{BodyExt, Limited};

    use super::*;

    /// Each call must end well inside a provider's deadline, so that a slow AWS endpoint
    /// is answered 503 (and retried by SNS) rather than timed out by SNS: the receiver's SDK
    /// calls' bounds.
    const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
    const READ_TIMEOUT: Duration = Duration::from_millis(2_500);
    const OVERALL_TIMEOUT: Duration = Duration::from_millis(3_000);

    /// GETs over the AWS SDK's own connector (hyper, rustls on ring), which every receiver
    /// links already, trusting what the SDK's clients trust ([`crate::tls::Trust`]).
    #[derive(Debug)]
    pub struct TlsHttps {
        connector: Connector,
    }

    impl TlsHttps {
        pub fn new(trust: &crate::tls::Trust) -> Self {
            Self::with_tls_context(trust.aws_tls_context())
        }

        pub(crate) fn with_tls_context(context: smithy_tls::TlsContext) -> Self {
            let connector = Connector::builder()
                .connector_settings(
                    HttpConnectorSettings::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .read_timeout(READ_TIMEOUT)
                        .build(),
                )
                .tls_provider(smithy_tls::Provider::rustls(CryptoMode::Ring))
                .tls_context(context)
                .build();
            Self { connector }
        }

        async fn call(&self, url: &str, limit: usize) -> Result<Bytes, HttpsError> {
            let unreachable = |reason: String| HttpsError::Unreachable {
                url: url.to_owned(),
                reason,
            };
            let request = http::Request::get(url)
                .header(http::header::USER_AGENT, "hookgate")
                .body(SdkBody::empty())
                .map_err(|error| unreachable(format!("not a URL: {error}")))?;
            let request = HttpRequest::try_from(request)
                .map_err(|error| unreachable(format!("not a URL: {error}")))?;
            let response = self
                .connector
                .call(request)
                .await
                .map_err(|error| unreachable(error.to_string()))?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(HttpsError::Status {
                    url: url.to_owned(),
                    status,
                });
            }
            match Limited::new(response.into_body(), limit).collect().await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                    Err(HttpsError::TooLarge {
                        url: url.to_owned(),
                        limit,
                    })
                }
                Err(error) => Err(unreachable(format!("the body broke off: {error}"))),
            }
        }
    }

    #[async_trait]
    impl HttpsGet for TlsHttps {
        async fn get(&self, url: &str, limit: usize) -> Result<Bytes, HttpsError> {
            refuse_unless_https(url)?;
            tokio::time::timeout(OVERALL_TIMEOUT, self.call(url, limit))
                .await
                .unwrap_or_else(|_| {
                    Err(HttpsError::Unreachable {
                        url: url.to_owned(),
                        reason: format!("no answer within {OVERALL_TIMEOUT:?}"),
                    })
                })
        }
    }
}

#[cfg(test)]
mod tests;
