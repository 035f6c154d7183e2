//! The one place where a receiver's outcome becomes an HTTP answer.
//!
//! | outcome | status |
//! |---|---|
//! | verified and durably queued | 202, with the idempotency key; 200 with the provider's own acknowledgement where it expects one (Discord, Linear, Twilio) |
//! | provider handshake | 200, with what the provider expects |
//! | missing or invalid signature, timestamp outside the window | 401, one generic message |
//! | source address not allowed | 403 |
//! | method other than POST | 405 |
//! | body over the limit | 413 |
//! | body or headers malformed | 400 |
//! | secrets, body store, queue or a call to the provider unavailable | 503, so the provider retries (if it does) |
//!
//! Refusal details go to the log, never to the caller, except for 400s: those come from a
//! caller whose signature already held, and saying what is missing helps them fix it.

use http::StatusCode;
use serde_json::json;

use super::{Accepted, ReceiveError};
use crate::verify::{Handshake, Rejection};

/// An HTTP answer, independent of what carries it (API Gateway, a local server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
    /// Extra headers: `Allow` on a 405, `Retry-After` on a 503.
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Answer {
    fn json(status: StatusCode, body: serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_string(),
            headers: Vec::new(),
        }
    }

    fn error(status: StatusCode, message: &str) -> Self {
        Self::json(status, json!({ "error": message }))
    }

    fn handshake(handshake: &Handshake) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: handshake.content_type,
            body: handshake.body.clone(),
            headers: Vec::new(),
        }
    }

    pub fn from_outcome(outcome: &Result<Accepted, ReceiveError>) -> Self {
        match outcome {
            Ok(Accepted::Queued {
                acknowledgement: Some(acknowledgement),
                ..
            }) => Self::handshake(acknowledgement),
            Ok(Accepted::Queued {
                idempotency_key, ..
            }) => Self::json(
                StatusCode::ACCEPTED,
                json!({ "status": "accepted", "idempotency_key": idempotency_key }),
            ),
            Ok(Accepted::Handshake(handshake)) => Self::handshake(handshake),
            Err(ReceiveError::Rejected(Rejection::Unauthenticated(_))) => {
                Self::error(StatusCode::UNAUTHORIZED, "signature verification failed")
            }
            Err(ReceiveError::Rejected(Rejection::Malformed(malformed))) => Self::error(
                StatusCode::BAD_REQUEST,
                &format!("malformed webhook: {malformed}"),
            ),
            Err(ReceiveError::SourceNotAllowed(_)) => {
                Self::error(StatusCode::FORBIDDEN, "forbidden")
            }
            Err(ReceiveError::MethodNotAllowed(_)) => Self {
                headers: vec![("allow", "POST")],
                ..Self::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "webhooks must be sent with POST",
                )
            },
            Err(ReceiveError::PayloadTooLarge { limit, .. }) => Self::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the payload is over the limit of {limit} bytes"),
            ),
            Err(
                ReceiveError::SecretsUnavailable(_)
                | ReceiveError::BodyStoreUnavailable(_)
                | ReceiveError::QueueUnavailable(_)
                | ReceiveError::ProviderUnavailable(_),
            ) => Self {
                headers: vec![("retry-after", "5")],
                ..Self::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily unavailable, retry later",
                )
            },
        }
    }

    /// The answer as an HTTP response with any body type that can be made from text: the
    /// API Gateway adapter's and the local server's alike.
    pub fn into_response<B: From<String>>(self) -> http::Response<B> {
        let mut response = http::Response::new(B::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(self.content_type),
        );
        for (name, value) in self.headers {
            headers.insert(name, http::HeaderValue::from_static(value));
        }
        response
    }
}
