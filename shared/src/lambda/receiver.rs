//! The receivers' Lambda adapter: API Gateway HTTP API (payload 2.0) events in, HTTP answers out.
//!
//! The handler never returns `Err`: an `Err` from a Lambda HTTP handler becomes an opaque
//! 5xx at API Gateway, while every outcome here, refusals included, is a deliberate answer.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;

use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::receiver::{Answer, Receiver};
use crate::request::InboundRequest;

/// The service `lambda_http::run` drives: each event is answered by `receiver`.
pub fn receiver_service(
    receiver: &Receiver,
) -> impl lambda_http::Service<
    Request,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send + '_,
> + '_ {
    lambda_http::service_fn(move |event: Request| async move { Ok(handle(receiver, event).await) })
}

/// Answers one API Gateway event.
pub async fn handle(receiver: &Receiver, event: Request) -> Response<Body> {
    let request_id = request_id(&event);
    let span = tracing::info_span!("webhook", api_request_id = %request_id);
    let answer = receiver
        .answer(inbound_request(event))
        .instrument(span)
        .await;
    crate::telemetry::flush_metrics();
    into_response(answer)
}

/// The provider-neutral request: raw body bytes (API Gateway's base64 already decoded by
/// `lambda_http`), headers, method and the caller's address as API Gateway saw it.
pub fn inbound_request(event: Request) -> InboundRequest {
    let source_ip = source_ip(&event);
    let (parts, body) = event.into_parts();
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        // `Body` is non-exhaustive; a future variant would need handling here.
        #[allow(unreachable_patterns)]
        _ => Bytes::new(),
    };
    InboundRequest {
        method: parts.method,
        // lambda_http builds it from the Host header, the raw path and the raw query string.
        uri: parts.uri,
        headers: parts.headers,
        body,
        source_ip,
        received_at: OffsetDateTime::now_utc(),
    }
}

fn source_ip(event: &Request) -> Option<IpAddr> {
    match event.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref()?.parse().ok(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn request_id(event: &Request) -> String {
    match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => {
            context.request_id.clone().unwrap_or_default()
        }
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}

/// The API Gateway response for an answer.
pub fn into_response(answer: Answer) -> Response<Body> {
    answer.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str, is_base64: bool) -> Request {
        let json = serde_json::json!({
            "version": "2.0",
            "routeKey": "ANY /webhooks/github",
            "rawPath": "/webhooks/github",
            "rawQueryString": "",
            "headers": {"content-type": "application/json", "X-Hub-Signature-256": "sha256=00"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "api",
                "domainName": "api.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "api",
                "http": {"method": "POST", "path": "/webhooks/github", "protocol": "HTTP/1.1", "sourceIp": "192.30.252.10", "userAgent": "GitHub-Hookshot/1"},
                "requestId": "req-1",
                "routeKey": "ANY /webhooks/github",
                "stage": "$default",
                "time": "23/Nov/2026:09:30:00 +0000",
                "timeEpoch": 1_795_426_200_000_u64
            },
            "body": body,
            "isBase64Encoded": is_base64
        });
        lambda_http::request::from_str(&json.to_string()).unwrap()
    }

    #[test]
    fn a_base64_body_from_api_gateway_is_decoded_to_the_signed_bytes() {
        let request = inbound_request(event("/wD+", true));
        assert_eq!(request.body.as_ref(), [0xff, 0x00, 0xfe]);
    }

    #[test]
    fn a_text_body_keeps_every_byte_and_headers_are_case_insensitive() {
        let request = inbound_request(event("{ \"a\" :\t1 }\r\n", false));
        assert_eq!(request.body.as_ref(), b"{ \"a\" :\t1 }\r\n");
        assert_eq!(request.header("x-hub-signature-256"), Some("sha256=00"));
        assert_eq!(request.method, http::Method::POST);
    }

    #[test]
    fn the_source_ip_and_request_id_come_from_the_request_context() {
        let event = event("{}", false);
        assert_eq!(request_id(&event), "req-1");
        assert_eq!(
            inbound_request(event).source_ip,
            Some("192.30.252.10".parse().unwrap())
        );
    }

    #[test]
    fn an_answer_becomes_a_response_with_its_status_type_and_headers() {
        let answer = Answer {
            status: http::StatusCode::METHOD_NOT_ALLOWED,
            content_type: "application/json",
            body: "{}".into(),
            headers: vec![("allow", "POST")],
        };
        let response = into_response(answer);
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        assert_eq!(response.headers()["content-type"], "application/json");
    }
}
