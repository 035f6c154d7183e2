//! The URL a provider signed, for the schemes whose signature covers it (Square, HubSpot,
//! Twilio).
//!
//! A provider signs the URL it was given. Where the provider calls API Gateway directly,
//! that is the URL the request arrived at, which the edge makes absolute
//! ([`InboundRequest::uri`]: `https://<domain>/<path>?<query>` from API Gateway,
//! `http://127.0.0.1:<port>/…` from `hookgate dev`). Behind a custom domain with a base path,
//! a CDN or a proxy, the scheme, host or path the receiver sees differ from the ones the
//! provider called, so the receiver is given the URL as configured at the provider in
//! `WEBHOOK_URL`, whose scheme, host, port and path then replace the request's.
//!
//! The query is the request's own even then: the provider calls the configured URL with its
//! query, and may add parameters of its own to it (Twilio's `bodySHA256`), so the query that
//! arrives is the one signed. A query in `WEBHOOK_URL` is used only for a request that arrives
//! with none, behind a front end that drops it. A fragment in `WEBHOOK_URL` (Twilio's
//! connection overrides, `#rc=3`) is left out: it never reaches the receiver, and Twilio's own
//! validators check the URL the request arrived at, so it cannot be part of what is signed.
//!
//! The configured URL is taken as written, not normalised: the provider signs the text it was
//! given (Square signs its `notification_url` verbatim), trailing slash and all.

use std::fmt;

use crate::config::{ConfigError, Env};
use crate::request::InboundRequest;

use super::AuthFailure;

/// The variable naming the URL the provider was given, when the receiver is reached at
/// another.
pub(crate) const WEBHOOK_URL: &str = "WEBHOOK_URL";

/// Where a scheme reads the URL the provider signed: the request's own, or the one
/// configured in `WEBHOOK_URL`.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct PublicUrl {
    configured: Option<Configured>,
}

#[derive(Clone, PartialEq, Eq)]
struct Configured {
    /// Scheme, authority and path, as written.
    base: String,
    query: Option<String>,
}

impl PublicUrl {
    /// Reads `WEBHOOK_URL`; unset means the request's own URL.
    pub(crate) fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        match env.get(WEBHOOK_URL) {
            None => Ok(Self::default()),
            // The value is not echoed: a Twilio URL may carry basic-auth credentials.
            Some(value) => Self::configured(value.trim())
                .map_err(|reason| ConfigError::invalid(WEBHOOK_URL, reason)),
        }
    }

    /// A receiver reached at `url` as configured at the provider.
    pub(crate) fn configured(url: &str) -> Result<Self, &'static str> {
        let url = url.split_once('#').map_or(url, |(url, _)| url);
        let uri: http::Uri = url.parse().map_err(|_| {
            "it is not an absolute URL (such as https://hooks.example.com/webhooks/square)"
        })?;
        if !matches!(uri.scheme_str(), Some("https" | "http")) {
            return Err("it is not an http:// or https:// URL");
        }
        if uri
            .authority()
            .is_none_or(|authority| authority.host().is_empty())
        {
            return Err("it has no host");
        }
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query).filter(|query| !query.is_empty())),
            None => (url, None),
        };
        Ok(Self {
            configured: Some(Configured {
                base: base.to_owned(),
                query: query.map(str::to_owned),
            }),
        })
    }

    /// The URL the provider signed for `request`. A request that arrived at a relative URL
    /// (no `Host` header reached the edge) with no `WEBHOOK_URL` configured cannot be
    /// checked: the host is part of what is signed.
    pub(crate) fn signed_url(&self, request: &InboundRequest) -> Result<String, AuthFailure> {
        let query = request.uri.query().filter(|query| !query.is_empty());
        match &self.configured {
            Some(configured) => Ok(match query.or(configured.query.as_deref()) {
                Some(query) => format!("{}?{query}", configured.base),
                None => configured.base.clone(),
            }),
            None if request.uri.scheme().is_some() && request.uri.authority().is_some() => {
                Ok(request.uri.to_string())
            }
            None => Err(AuthFailure::MissingSignedHeader {
                header: "host".to_owned(),
            }),
        }
    }
}

/// Shows the configured URL without any credentials in it.
impl fmt::Debug for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.configured {
            None => f.write_str("PublicUrl(the request's)"),
            Some(configured) => {
                let shown = match configured.base.split_once("://") {
                    Some((scheme, rest)) => match rest.split_once('@') {
                        Some((_, host_and_path)) => {
                            format!("{scheme}://<redacted>@{host_and_path}")
                        }
                        None => configured.base.clone(),
                    },
                    None => configured.base.clone(),
                };
                write!(f, "PublicUrl({shown})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from_env(value: &str) -> Result<PublicUrl, ConfigError> {
        PublicUrl::from_env(&HashMap::from([(WEBHOOK_URL, value)]))
    }

    fn configured(value: &str) -> PublicUrl {
        from_env(value).expect("a valid WEBHOOK_URL")
    }

    #[cfg(feature = "receiver")]
    #[test]
    fn the_url_api_gateway_gives_is_the_one_signed() {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "ANY /webhooks/twilio",
            "rawPath": "/webhooks/twilio",
            "rawQueryString": "tenant=7&bodySHA256=0a1f",
            "headers": {
                "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
                "x-forwarded-proto": "https"
            },
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "a1b2c3d4e5",
                "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "a1b2c3d4e5",
                "http": {"method": "POST", "path": "/webhooks/twilio", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "TwilioProxy/1.1"},
                "requestId": "req-1",
                "routeKey": "ANY /webhooks/twilio",
                "stage": "$default",
                "time": "02/Jun/2025:09:30:00 +0000",
                "timeEpoch": 1_748_856_600_000_u64
            },
            "body": "",
            "isBase64Encoded": false
        });
        let event = lambda_http::request::from_str(&event.to_string()).unwrap();
        let request = crate::lambda::inbound_request(event);
        assert_eq!(
            PublicUrl::default().signed_url(&request),
            Ok(
                "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/webhooks/twilio?tenant=7&bodySHA256=0a1f"
                    .to_owned()
            )
        );
    }

    #[test]
    fn an_absolute_request_url_is_used_as_it_arrived() {
        let request =
            InboundRequest::post("").with_url("http://127.0.0.1:8080/webhooks/square?a=1");
        assert_eq!(
            PublicUrl::default().signed_url(&request),
            Ok("http://127.0.0.1:8080/webhooks/square?a=1".to_owned())
        );
    }

    #[test]
    fn a_configured_url_replaces_the_scheme_host_and_path_but_not_the_query() {
        let request = InboundRequest::post("").with_url(
            "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/webhooks/twilio?bodySHA256=0a1f",
        );
        assert_eq!(
            configured("https://hooks.example.com/sms/inbound").signed_url(&request),
            Ok("https://hooks.example.com/sms/inbound?bodySHA256=0a1f".to_owned())
        );
        assert_eq!(
            configured("https://hooks.example.com/sms/inbound?tenant=7").signed_url(&request),
            Ok("https://hooks.example.com/sms/inbound?bodySHA256=0a1f".to_owned()),
            "the query that arrives is the one signed"
        );
    }

    #[test]
    fn a_configured_query_is_used_when_the_request_arrives_without_one() {
        let request = InboundRequest::post("").with_url("https://a1b2.example/webhooks/square");
        assert_eq!(
            configured("https://hooks.example.com/square?tenant=7").signed_url(&request),
            Ok("https://hooks.example.com/square?tenant=7".to_owned())
        );
        assert_eq!(
            configured("https://hooks.example.com/square").signed_url(&InboundRequest::post("")),
            Ok("https://hooks.example.com/square".to_owned()),
            "a relative request URL is fine once the URL is configured"
        );
    }

    #[test]
    fn a_configured_url_is_kept_as_written_less_its_fragment() {
        let request = InboundRequest::post("").with_url("https://a1b2.example/webhooks/twilio");
        assert_eq!(
            configured(" https://Hooks.Example.com:443/twilio/#rc=3&rp=all ").signed_url(&request),
            Ok("https://Hooks.Example.com:443/twilio/".to_owned())
        );
    }

    #[test]
    fn a_relative_request_url_without_a_configured_one_cannot_be_verified() {
        assert_eq!(
            PublicUrl::default().signed_url(&InboundRequest::post("")),
            Err(AuthFailure::MissingSignedHeader {
                header: "host".to_owned()
            })
        );
    }

    #[test]
    fn a_webhook_url_that_is_not_an_absolute_http_url_is_refused_without_echoing_it() {
        for bad in [
            "/webhooks/square",
            "hooks.example.com/webhooks/square",
            "ftp://hooks.example.com/webhooks/square",
            "https://user:s3cret@/webhooks",
            "https://exa mple.com/s3cret",
        ] {
            let error = from_env(bad).expect_err(bad).to_string();
            assert!(
                error.starts_with("WEBHOOK_URL is invalid"),
                "{bad}: {error}"
            );
            assert!(!error.contains("s3cret"), "{bad}: {error}");
        }
    }

    #[test]
    fn an_unset_webhook_url_means_the_requests_own() {
        assert_eq!(
            PublicUrl::from_env(&HashMap::<&str, &str>::new()),
            Ok(PublicUrl::default())
        );
        assert_eq!(from_env(""), Ok(PublicUrl::default()));
    }

    #[test]
    fn credentials_in_a_configured_url_are_never_shown() {
        let shown = format!(
            "{:?}",
            configured("https://ops:s3cret@hooks.example.com/twilio")
        );
        assert_eq!(
            shown,
            "PublicUrl(https://<redacted>@hooks.example.com/twilio)"
        );
    }
}
