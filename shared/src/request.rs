//! An inbound webhook request as the receiver sees it, whatever carried it (API Gateway,
//! a local HTTP server, a test).

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use time::OffsetDateTime;

/// The raw request: the exact body bytes the provider signed and its headers, which
/// [`HeaderMap`] looks up case-insensitively.
#[derive(Debug, Clone)]
pub struct InboundRequest {
    pub method: Method,
    /// The URL the sender called. Absolute (scheme, host, path and query) where the edge
    /// says what the host was, as API Gateway and `hookgate dev` do; schemes that sign the
    /// URL (Square, HubSpot, Twilio) read it, or the URL configured in its place.
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The caller's address as the edge saw it, when known.
    pub source_ip: Option<IpAddr>,
    pub received_at: OffsetDateTime,
}

impl InboundRequest {
    /// A `POST` with no headers, received now; for building requests in tests and tools.
    pub fn post(body: impl Into<Bytes>) -> Self {
        Self {
            method: Method::POST,
            uri: Uri::from_static("/"),
            headers: HeaderMap::new(),
            body: body.into(),
            source_ip: None,
            received_at: OffsetDateTime::now_utc(),
        }
    }

    /// Adds a header; a name or value that HTTP does not allow is a programming error.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = http::HeaderName::from_bytes(name.as_bytes()).expect("a valid header name");
        let value = http::HeaderValue::from_str(value).expect("a valid header value");
        self.headers.append(name, value);
        self
    }

    /// The same request sent to `url`; a URL that is not one is a programming error.
    pub fn with_url(mut self, url: &str) -> Self {
        self.uri = url.parse().expect("a valid URL");
        self
    }

    /// A query parameter, percent-decoded; the first where it repeats.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.uri.query()?.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// Whether the body is an HTML form (`application/x-www-form-urlencoded`), as GitHub's
    /// form-style hooks and Slack's commands and interactivity send it.
    pub fn is_form_encoded(&self) -> bool {
        self.has_media_type("application/x-www-form-urlencoded")
    }

    /// Whether `Content-Type` names `media_type` (lowercase), whatever its parameters
    /// (`; charset=…`). Media types are case-insensitive (RFC 9110, 8.3.1): a sender writing
    /// `Application/JSON` means `application/json`.
    pub fn has_media_type(&self, media_type: &str) -> bool {
        self.header("content-type").is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case(media_type)
        })
    }

    /// A header's value as text. `None` when absent; a value that is not visible ASCII
    /// counts as absent too, since no signature scheme uses such bytes.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_type_is_matched_whatever_its_case_and_parameters() {
        for value in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded",
            "application/x-www-form-urlencoded ; charset=utf-8",
        ] {
            let request = InboundRequest::post("a=1").with_header("content-type", value);
            assert!(request.is_form_encoded(), "{value}");
        }
        for value in ["application/x-www-form-urlencodedx", "text/plain", ""] {
            let request = InboundRequest::post("a=1").with_header("content-type", value);
            assert!(!request.is_form_encoded(), "{value:?}");
        }
        assert!(!InboundRequest::post("a=1").is_form_encoded());
    }
}
