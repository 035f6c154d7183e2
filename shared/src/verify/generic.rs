//! A generic HMAC-SHA256 sender, configured entirely by settings, for the senders whose
//! hand-written receivers check `X-Signature: <hex>`, `X-Webhook-Signature: <base64>`,
//! `X-AgentX-Signature: sha256=<hex>` and the like.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `SIGNATURE_HEADER` | the header carrying the signature | `X-Signature` |
//! | `SIGNATURE_ENCODING` | `hex` or `base64` | `hex` |
//! | `SIGNATURE_PREFIX` | text before the signature, such as `sha256=` | none |
//! | `TIMESTAMP_HEADER` | a header with the signing time in unix seconds; enables the replay window | none |
//! | `SIGNED_CONTENT` | what is signed: `{body}`, `{timestamp}` and `{id}` with literal text between | `{body}` |
//! | `ID_HEADER` | a header with the sender's stable delivery id | none: the body's SHA-256 |
//! | `EVENT_TYPE_HEADER` | a header with the event type | none |
//! | `EVENT_TYPE_FIELD` | a dot path to the event type in a JSON body (`type`, `event.kind`) | none |
//!
//! The header value may hold several signatures separated by commas or spaces (as during a
//! sender's own key rotation); any may match.

use std::time::Duration;

use http::HeaderName;
use time::OffsetDateTime;

use super::{
    check_hmac, check_window, encode_base64, header, hmac_sha256, json_strings, signature_header,
    unix_timestamp, AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::config::{ConfigError, Env};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

/// The event type when neither `EVENT_TYPE_HEADER` nor `EVENT_TYPE_FIELD` gives one.
pub const UNTYPED_EVENT: &str = "webhook";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Body,
    Timestamp,
    Id,
}

/// What the sender signs, parsed from a template such as `{timestamp}.{body}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedContent(Vec<Part>);

impl SignedContent {
    /// Parses a template. `{body}` must appear exactly once; `{{` and `}}` are literal braces.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{") {
                literal.push('{');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("}}") {
                literal.push('}');
                rest = after;
            } else if c == '{' {
                let end = rest.find('}').ok_or("an unclosed `{`")?;
                let part = match &rest[1..end] {
                    "body" => Part::Body,
                    "timestamp" => Part::Timestamp,
                    "id" => Part::Id,
                    other => return Err(format!("unknown placeholder `{{{other}}}` (expected {{body}}, {{timestamp}} or {{id}})")),
                };
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(part);
                rest = &rest[end + 1..];
            } else if c == '}' {
                return Err("an unmatched `}` (write `}}` for a literal brace)".into());
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        match parts.iter().filter(|part| **part == Part::Body).count() {
            1 => Ok(Self(parts)),
            0 => Err("it must contain `{body}`".into()),
            _ => Err("`{body}` may appear only once".into()),
        }
    }

    fn uses(&self, wanted: &Part) -> bool {
        self.0.iter().any(|part| part == wanted)
    }

    /// The signed bytes, piece by piece, for both checking and signing, so the two cannot
    /// drift apart.
    fn pieces<'a>(&'a self, body: &'a [u8], timestamp: &'a str, id: &'a str) -> Vec<&'a [u8]> {
        self.0
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.as_bytes(),
                Part::Body => body,
                Part::Timestamp => timestamp.as_bytes(),
                Part::Id => id.as_bytes(),
            })
            .collect()
    }
}

/// The generic scheme, as configured.
#[derive(Debug, Clone)]
pub struct Generic {
    signature_header: HeaderName,
    encoding: SignatureEncoding,
    prefix: String,
    timestamp_header: Option<HeaderName>,
    signed_content: SignedContent,
    id_header: Option<HeaderName>,
    event_type_header: Option<HeaderName>,
    event_type_field: Option<String>,
}

fn header_setting(env: &dyn Env, name: &'static str) -> Result<Option<HeaderName>, ConfigError> {
    env.get(name)
        .map(|value| {
            HeaderName::from_bytes(value.trim().as_bytes()).map_err(|_| {
                ConfigError::invalid(name, format!("`{value}` is not an HTTP header name"))
            })
        })
        .transpose()
}

impl Generic {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let signature_header = header_setting(env, "SIGNATURE_HEADER")?
            .unwrap_or_else(|| HeaderName::from_static("x-signature"));
        let encoding = match env.get("SIGNATURE_ENCODING").as_deref().map(str::trim) {
            None | Some("hex") => SignatureEncoding::Hex,
            Some("base64") => SignatureEncoding::Base64,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "SIGNATURE_ENCODING",
                    format!("`{other}` is neither `hex` nor `base64`"),
                ))
            }
        };
        let timestamp_header = header_setting(env, "TIMESTAMP_HEADER")?;
        let id_header = header_setting(env, "ID_HEADER")?;
        let template = env
            .get("SIGNED_CONTENT")
            .unwrap_or_else(|| "{body}".to_owned());
        let signed_content = SignedContent::parse(&template)
            .map_err(|reason| ConfigError::invalid("SIGNED_CONTENT", reason))?;
        if signed_content.uses(&Part::Timestamp) && timestamp_header.is_none() {
            return Err(ConfigError::invalid(
                "SIGNED_CONTENT",
                "`{timestamp}` needs TIMESTAMP_HEADER to be set",
            ));
        }
        if timestamp_header.is_some() && !signed_content.uses(&Part::Timestamp) {
            // A window over a timestamp the sender does not sign stops nothing: a replayer
            // would set the header to "now".
            return Err(ConfigError::invalid(
                "TIMESTAMP_HEADER",
                "the replay window needs a signed timestamp: put `{timestamp}` in SIGNED_CONTENT",
            ));
        }
        if signed_content.uses(&Part::Id) && id_header.is_none() {
            return Err(ConfigError::invalid(
                "SIGNED_CONTENT",
                "`{id}` needs ID_HEADER to be set",
            ));
        }
        let event_type_field = env
            .get("EVENT_TYPE_FIELD")
            .map(|field| field.trim().to_owned());
        if event_type_field
            .as_deref()
            .is_some_and(|field| field.split('.').any(str::is_empty))
        {
            return Err(ConfigError::invalid(
                "EVENT_TYPE_FIELD",
                "a dot path must not have empty segments",
            ));
        }
        Ok(Self {
            signature_header,
            encoding,
            prefix: env.get("SIGNATURE_PREFIX").unwrap_or_default(),
            timestamp_header,
            signed_content,
            id_header,
            event_type_header: header_setting(env, "EVENT_TYPE_HEADER")?,
            event_type_field,
        })
    }

    fn decode(&self, signature: &str) -> Option<Vec<u8>> {
        let signature = signature.strip_prefix(self.prefix.as_str())?;
        match self.encoding {
            SignatureEncoding::Hex => super::decode_hex(signature),
            SignatureEncoding::Base64 => super::decode_base64(signature),
        }
    }
}

impl super::sealed::Sealed for Generic {}

/// The scheme the provider table names for generic.
pub(crate) fn scheme(
    env: &dyn Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Generic::from_env(env)?))
}

impl SignatureScheme for Generic {
    fn provider(&self) -> Provider {
        Provider::Generic
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header_name = self.signature_header.as_str();
        let header = signature_header(request, header_name)?;
        let candidates: Vec<Vec<u8>> = header
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(|entry| self.decode(entry))
            .collect::<Option<_>>()
            .filter(|candidates: &Vec<Vec<u8>>| !candidates.is_empty())
            .ok_or_else(|| AuthFailure::MalformedSignature {
                header: header_name.to_owned(),
            })?;

        let timestamp = match &self.timestamp_header {
            Some(name) => {
                let signed_at = unix_timestamp(request, name.as_str())?;
                check_window(signed_at, now, tolerance)?;
                Some(signed_at.to_string())
            }
            None => None,
        };
        let id = match &self.id_header {
            Some(name) if self.signed_content.uses(&Part::Id) => {
                Some(request.header(name.as_str()).ok_or_else(|| {
                    AuthFailure::MissingSignedHeader {
                        header: name.as_str().to_owned(),
                    }
                })?)
            }
            _ => None,
        };
        let signed = self.signed_content.pieces(
            &request.body,
            timestamp.as_deref().unwrap_or_default(),
            id.unwrap_or_default(),
        );
        check_hmac(keys, &candidates, &signed)
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let stable_id = match &self.id_header {
            Some(name) => Some(request.header(name.as_str()).ok_or_else(|| {
                MalformedRequest::MissingHeader {
                    header: name.as_str().to_owned(),
                }
            })?),
            None => None,
        };
        let from_header = self
            .event_type_header
            .as_ref()
            .and_then(|name| request.header(name.as_str()))
            .map(str::to_owned);
        let event_type = match (from_header, &self.event_type_field) {
            (Some(event_type), _) => event_type,
            (None, Some(field)) => json_strings(&request.body, [field.as_str()])
                .ok()
                .and_then(|[event_type]| event_type)
                .unwrap_or_else(|| UNTYPED_EVENT.to_owned()),
            (None, None) => UNTYPED_EVENT.to_owned(),
        };
        Ok(Delivery::event(stable_id.map(str::to_owned), event_type))
    }

    /// `ID_HEADER` is signed only when `{id}` is in `SIGNED_CONTENT`.
    fn signs_stable_id(&self) -> bool {
        self.signed_content.uses(&Part::Id)
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [
            &self.timestamp_header,
            &self.id_header,
            &self.event_type_header,
        ]
        .into_iter()
        .flatten()
        .map(|name| name.as_str().to_owned())
        .collect()
    }

    /// The configured signature header, and the timestamp and id headers when the
    /// settings make them part of the signature.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let timestamp = delivery.signed_at.unix_timestamp().to_string();
        let mut headers = Vec::new();
        if let Some(name) = &self.timestamp_header {
            headers.push(header(name.as_str(), timestamp.as_str()));
        }
        if let Some(name) = self
            .id_header
            .as_ref()
            .filter(|_| self.signed_content.uses(&Part::Id))
        {
            headers.push(header(name.as_str(), delivery.id));
        }
        // `from_env` refuses `{timestamp}` without a timestamp header, so the timestamp is
        // only ever signed when it is also sent.
        let signed = self
            .signed_content
            .pieces(delivery.body, &timestamp, delivery.id);
        let signature = hmac_sha256(key.as_bytes(), &signed);
        let encoded = match self.encoding {
            SignatureEncoding::Hex => hex::encode(signature),
            SignatureEncoding::Base64 => encode_base64(&signature),
        };
        headers.push(header(
            self.signature_header.as_str(),
            format!("{}{encoded}", self.prefix),
        ));
        headers
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use base64::Engine;

    use super::*;
    use crate::verify::hmac_sha256;
    use crate::verify::test_support::*;

    fn scheme(settings: &[(&str, &str)]) -> Generic {
        let env: HashMap<&str, &str> = settings.iter().copied().collect();
        Generic::from_env(&env).unwrap()
    }

    fn config_error(settings: &[(&str, &str)]) -> ConfigError {
        let env: HashMap<&str, &str> = settings.iter().copied().collect();
        Generic::from_env(&env).unwrap_err()
    }

    const BODY: &str = r#"{"type":"task.completed","id":"t_1"}"#;

    #[test]
    fn the_default_is_a_hex_x_signature_over_the_body() {
        let request =
            InboundRequest::post(BODY).with_header("X-Signature", &hex_hmac("s", BODY.as_bytes()));
        assert_eq!(
            scheme(&[]).check_signature(&request, &keys("s"), at(0), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn a_prefixed_hex_signature_in_a_custom_header_is_accepted() {
        let generic = scheme(&[
            ("SIGNATURE_HEADER", "X-AgentX-Signature"),
            ("SIGNATURE_PREFIX", "sha256="),
        ]);
        let request = InboundRequest::post(BODY).with_header(
            "x-agentx-signature",
            &format!("sha256={}", hex_hmac("s", BODY.as_bytes())),
        );
        assert_eq!(
            generic.check_signature(&request, &keys("s"), at(0), WINDOW),
            Ok(())
        );
        let unprefixed = InboundRequest::post(BODY)
            .with_header("x-agentx-signature", &hex_hmac("s", BODY.as_bytes()));
        assert!(matches!(
            generic.check_signature(&unprefixed, &keys("s"), at(0), WINDOW),
            Err(AuthFailure::MalformedSignature { .. })
        ));
    }

    #[test]
    fn a_base64_signature_is_accepted_when_configured() {
        let generic = scheme(&[
            ("SIGNATURE_HEADER", "X-Webhook-Signature"),
            ("SIGNATURE_ENCODING", "base64"),
        ]);
        let signature =
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(b"s", &[BODY.as_bytes()]));
        let request = InboundRequest::post(BODY).with_header("X-Webhook-Signature", &signature);
        assert_eq!(
            generic.check_signature(&request, &keys("s"), at(0), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn a_timestamped_template_refuses_future_and_missing_timestamps() {
        let generic = scheme(&[
            ("TIMESTAMP_HEADER", "X-Timestamp"),
            ("SIGNED_CONTENT", "{timestamp}.{body}"),
        ]);
        let future = InboundRequest::post(BODY)
            .with_header("X-Timestamp", "1301")
            .with_header(
                "X-Signature",
                &hex_hmac("s", format!("1301.{BODY}").as_bytes()),
            );
        assert_eq!(
            generic.check_signature(&future, &keys("s"), at(1000), WINDOW),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
        let undated = InboundRequest::post(BODY)
            .with_header("X-Signature", &hex_hmac("s", format!(".{BODY}").as_bytes()));
        assert!(matches!(
            generic.check_signature(&undated, &keys("s"), at(1000), WINDOW),
            Err(AuthFailure::MissingTimestamp { .. })
        ));
    }

    #[test]
    fn a_signed_id_that_is_missing_is_refused() {
        let generic = scheme(&[
            ("ID_HEADER", "X-Delivery"),
            ("SIGNED_CONTENT", "{id}:{body}"),
        ]);
        let request = InboundRequest::post(BODY)
            .with_header("X-Signature", &hex_hmac("s", format!(":{BODY}").as_bytes()));
        assert!(matches!(
            generic.check_signature(&request, &keys("s"), at(0), WINDOW),
            Err(AuthFailure::MissingSignedHeader { .. })
        ));
    }

    #[test]
    fn a_timestamp_header_without_a_signed_timestamp_is_refused() {
        let error = config_error(&[("TIMESTAMP_HEADER", "X-Timestamp")]).to_string();
        assert!(error.starts_with("TIMESTAMP_HEADER is invalid"), "{error}");
    }

    #[test]
    fn a_timestamped_template_is_signed_and_windowed() {
        let generic = scheme(&[
            ("TIMESTAMP_HEADER", "X-Timestamp"),
            ("SIGNED_CONTENT", "{timestamp}.{body}"),
        ]);
        let signed = |t: i64| {
            InboundRequest::post(BODY)
                .with_header("X-Timestamp", &t.to_string())
                .with_header(
                    "X-Signature",
                    &hex_hmac("s", format!("{t}.{BODY}").as_bytes()),
                )
        };
        assert_eq!(
            generic.check_signature(&signed(1000), &keys("s"), at(1000), WINDOW),
            Ok(())
        );
        assert!(matches!(
            generic.check_signature(&signed(1000), &keys("s"), at(1301), WINDOW),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        let mut replayed = signed(1000);
        replayed
            .headers
            .insert("x-timestamp", "1001".parse().unwrap());
        assert_eq!(
            generic.check_signature(&replayed, &keys("s"), at(1000), WINDOW),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn an_id_can_be_signed_and_keys_the_delivery() {
        let generic = scheme(&[
            ("ID_HEADER", "X-Delivery"),
            ("SIGNED_CONTENT", "{id}:{body}"),
        ]);
        let request = InboundRequest::post(BODY)
            .with_header("X-Delivery", "d-42")
            .with_header(
                "X-Signature",
                &hex_hmac("s", format!("d-42:{BODY}").as_bytes()),
            );
        assert_eq!(
            generic.check_signature(&request, &keys("s"), at(0), WINDOW),
            Ok(())
        );
        assert_eq!(
            generic.describe(&request).unwrap().stable_id.as_deref(),
            Some("d-42")
        );
    }

    #[test]
    fn any_of_several_listed_signatures_may_match() {
        let good = hex_hmac("s", BODY.as_bytes());
        let request = InboundRequest::post(BODY)
            .with_header("X-Signature", &format!("{}, {good}", "ab".repeat(32)));
        assert_eq!(
            scheme(&[]).check_signature(&request, &keys("s"), at(0), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn rejects_missing_malformed_and_mismatched_signatures() {
        let generic = scheme(&[]);
        let check =
            |request: &InboundRequest| generic.check_signature(request, &keys("s"), at(0), WINDOW);
        assert!(matches!(
            check(&InboundRequest::post(BODY)),
            Err(AuthFailure::MissingSignature { .. })
        ));
        assert!(matches!(
            check(&InboundRequest::post(BODY).with_header("X-Signature", "zz")),
            Err(AuthFailure::MalformedSignature { .. })
        ));
        let wrong_secret =
            InboundRequest::post(BODY).with_header("X-Signature", &hex_hmac("t", BODY.as_bytes()));
        assert_eq!(check(&wrong_secret), Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn signing_matches_a_hand_made_signature_for_every_encoding() {
        let hex_scheme = scheme(&[
            ("SIGNATURE_HEADER", "X-AgentX-Signature"),
            ("SIGNATURE_PREFIX", "sha256="),
        ]);
        assert_eq!(
            hex_scheme.sign(&outgoing(BODY, 0), &raw_key("s")),
            [(
                "x-agentx-signature".to_owned(),
                format!("sha256={}", hex_hmac("s", BODY.as_bytes()))
            )]
        );
        let base64_scheme = scheme(&[("SIGNATURE_ENCODING", "base64")]);
        let expected =
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(b"s", &[BODY.as_bytes()]));
        assert_eq!(
            base64_scheme.sign(&outgoing(BODY, 0), &raw_key("s")),
            [("x-signature".to_owned(), expected)]
        );
    }

    #[test]
    fn a_delivery_signed_with_timestamp_and_id_verifies_until_stale_or_tampered_with() {
        let generic = scheme(&[
            ("SIGNATURE_HEADER", "X-AgentX-Signature"),
            ("SIGNATURE_PREFIX", "sha256="),
            ("TIMESTAMP_HEADER", "X-AgentX-Timestamp"),
            ("ID_HEADER", "X-AgentX-Delivery"),
            ("SIGNED_CONTENT", "{id}:{timestamp}.{body}"),
        ]);
        let check = |request: &InboundRequest, now: i64| {
            generic.check_signature(request, &keys("s"), at(now), WINDOW)
        };
        let headers = generic.sign(&outgoing(BODY, 1_000), &raw_key("s"));
        let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-agentx-timestamp",
                "x-agentx-delivery",
                "x-agentx-signature"
            ]
        );
        let request = request_with(BODY, &headers);
        assert_eq!(check(&request, 1_000), Ok(()));
        assert!(matches!(
            check(&request, 1_301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        let mut other_id = request.clone();
        other_id
            .headers
            .insert("x-agentx-delivery", "d-other".parse().unwrap());
        assert_eq!(check(&other_id, 1_000), Err(AuthFailure::SignatureMismatch));
        assert_eq!(
            check(&with_one_byte_changed(request), 1_000),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn an_id_header_that_is_not_signed_is_left_to_the_sender() {
        let generic = scheme(&[("ID_HEADER", "X-Delivery")]);
        let headers = generic.sign(&outgoing(BODY, 0), &raw_key("s"));
        assert_eq!(
            headers,
            [("x-signature".to_owned(), hex_hmac("s", BODY.as_bytes()))]
        );
    }

    #[test]
    fn the_event_type_comes_from_the_header_then_the_field_then_a_default() {
        let request = InboundRequest::post(BODY).with_header("X-Event", "run.failed");
        let by_header = scheme(&[
            ("EVENT_TYPE_HEADER", "X-Event"),
            ("EVENT_TYPE_FIELD", "type"),
        ]);
        assert_eq!(
            by_header.describe(&request).unwrap().event_type,
            "run.failed"
        );
        let by_field = scheme(&[("EVENT_TYPE_FIELD", "type")]);
        assert_eq!(
            by_field.describe(&request).unwrap().event_type,
            "task.completed"
        );
        assert_eq!(
            scheme(&[]).describe(&request).unwrap(),
            Delivery::event(None, UNTYPED_EVENT)
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_variable() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[("SIGNATURE_ENCODING", "base32")], "SIGNATURE_ENCODING"),
            (&[("SIGNATURE_HEADER", "bad header")], "SIGNATURE_HEADER"),
            (&[("SIGNED_CONTENT", "{timestamp}")], "SIGNED_CONTENT"),
            (
                &[("SIGNED_CONTENT", "{timestamp}.{body}")],
                "SIGNED_CONTENT",
            ),
            (&[("SIGNED_CONTENT", "{body}{nonce}")], "SIGNED_CONTENT"),
            (&[("EVENT_TYPE_FIELD", "event..type")], "EVENT_TYPE_FIELD"),
        ];
        for (settings, variable) in cases {
            let message = config_error(settings).to_string();
            assert!(message.starts_with(variable), "{message}");
        }
    }

    #[test]
    fn a_template_keeps_literal_text_and_escaped_braces() {
        let content = SignedContent::parse("v0:{{x}}:{body}").unwrap();
        assert_eq!(content.0, vec![Part::Literal("v0:{x}:".into()), Part::Body]);
        assert!(SignedContent::parse("{body}.{body}").is_err());
        assert!(SignedContent::parse("{body").is_err());
    }
}
