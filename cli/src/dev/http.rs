//! The local HTTP front door: `POST /webhooks/{provider}` on loopback, answered by the same
//! [`Receiver`] the Lambda functions run. This file only translates between hyper and the
//! receiver, as `hookgate::lambda::receiver` does between API Gateway and the receiver.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hookgate::provider::Provider;
use hookgate::receiver::{Answer, ReceiveError, Receiver};
use hookgate::request::InboundRequest;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{warn, Instrument};

/// The most a request body may be before it is refused unread. The receiver enforces its own,
/// smaller limit (`MAX_REQUEST_BODY_BYTES`) with a precise answer; this one only keeps a
/// runaway client from filling memory.
const READ_LIMIT: usize = 8 * 1024 * 1024;

/// One receiver per provider.
pub type Receivers = HashMap<Provider, Receiver>;

/// Serves until `shutdown` turns true, then stops accepting. A request already being
/// answered is answered or dropped; either way nothing is lost, because a 202 is only ever
/// sent after the queue has stored the message.
pub async fn serve(
    listener: TcpListener,
    receivers: Arc<Receivers>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let receivers = Arc::clone(&receivers);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let receivers = Arc::clone(&receivers);
                async move { Ok::<_, Infallible>(answer(&receivers, request, peer).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
}

/// Answers one request.
async fn answer(
    receivers: &Receivers,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let Some(receiver) = receiver_for(receivers, &path) else {
        return not_found(&path);
    };
    // No fields: the line the receiver logs for each webhook names its provider already.
    let span = tracing::info_span!("webhook");
    async {
        let (parts, body) = request.into_parts();
        let limit = receiver.settings().max_body_bytes;
        let body = match Limited::new(body, READ_LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                // Reading stopped at READ_LIMIT: the body is at least that large.
                let too_large = ReceiveError::PayloadTooLarge {
                    size: READ_LIMIT,
                    limit,
                };
                return into_response(Answer::from_outcome(&Err(too_large)));
            }
            Err(error) => {
                warn!(%error, "the request body could not be read");
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                );
            }
        };
        let inbound = InboundRequest {
            uri: absolute_uri(&parts),
            method: parts.method,
            headers: parts.headers,
            body,
            source_ip: Some(peer.ip()),
            received_at: OffsetDateTime::now_utc(),
        };
        into_response(receiver.answer(inbound).await)
    }
    .instrument(span)
    .await
}

/// The URL the caller asked for, made absolute from its `Host` header as API Gateway makes
/// it: `http://` here, as dev serves plain HTTP.
fn absolute_uri(parts: &http::request::Parts) -> http::Uri {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok());
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    host.and_then(|host| format!("http://{host}{path}").parse().ok())
        .unwrap_or_else(|| parts.uri.clone())
}

/// `/webhooks/{provider}`, with or without a trailing slash, as API Gateway routes it.
fn receiver_for<'a>(receivers: &'a Receivers, path: &str) -> Option<&'a Receiver> {
    let name = path.strip_prefix("/webhooks/")?.trim_end_matches('/');
    let provider: Provider = name.parse().ok()?;
    receivers.get(&provider)
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    let known: Vec<String> = Provider::ALL
        .iter()
        .map(|provider| format!("/webhooks/{provider}"))
        .collect();
    let body = serde_json::json!({
        "error": format!("nothing is served at {path}; webhooks are POSTed to one of: {}", known.join(", ")),
    });
    json(StatusCode::NOT_FOUND, body.to_string())
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn into_response(answer: Answer) -> Response<Full<Bytes>> {
    answer.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_keeps_its_status_type_headers_and_body() {
        let response = into_response(Answer {
            status: StatusCode::METHOD_NOT_ALLOWED,
            content_type: "application/json",
            body: "{\"error\":\"POST only\"}".into(),
            headers: vec![("allow", "POST")],
        });
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "POST");
        assert_eq!(response.headers()["content-type"], "application/json");
    }

    #[test]
    fn every_providers_webhook_path_has_its_receiver_and_no_other_path_has_one() {
        let queue: Arc<dyn hookgate::queue::EventQueue> =
            Arc::new(hookgate::queue::MemoryQueue::new());
        let no_overrides: HashMap<&str, &str> = HashMap::new();
        let (receivers, _) = super::super::receivers(&queue, None, &no_overrides).unwrap();
        for provider in Provider::ALL {
            for path in [
                format!("/webhooks/{provider}"),
                format!("/webhooks/{provider}/"),
            ] {
                let found = receiver_for(&receivers, &path).map(Receiver::provider);
                assert_eq!(found, Some(provider), "{path}");
            }
        }
        for path in ["/webhooks/bitbucket", "/github", "/webhooks/", "/"] {
            assert!(receiver_for(&receivers, path).is_none(), "{path}");
        }
        assert_eq!(not_found("/hooks/x").status(), StatusCode::NOT_FOUND);
    }
}
