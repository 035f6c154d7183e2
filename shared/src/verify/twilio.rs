//! Twilio: `X-Twilio-Signature: <base64>`, HMAC-SHA1 with the account's Auth Token of the
//! full URL Twilio called followed by the form's parameters sorted by name, each name then
//! its value (a repeated name once per distinct value, values sorted). A JSON body is not
//! signed as parameters: Twilio adds `bodySHA256=<hex SHA-256 of the body>` to the URL's
//! query and signs the URL alone, and the body must hash to it.
//!
//! The URL is the request's, or `WEBHOOK_URL` with the request's query where a custom domain
//! or proxy stands in front ([`public_url`](super::public_url)). As twilio-python and
//! twilio-node do, both the URL without any port and the URL with its port (the scheme's,
//! 443 or 80, when it has none) are tried, "since signature generation on the back end is
//! inconsistent".
//!
//! Surprising, and Twilio's design: the signature covers the parameters, not the body's
//! bytes, so the same parameters in another order or encoding (`+` or `%20`) carry the same
//! signature. Twilio signs no timestamp. A request that is not a form is read as one all the
//! same (a body that is not a form yields parameters Twilio never signed, and fails), so no
//! body goes unsigned whatever its `Content-Type`.
//!
//! Id: what the signature covers, so that a captured request cannot come back as a new
//! event. For a form, `params-` and the SHA-256 of the signed parameters (each name then
//! its value, sorted, as signed): re-encoding the form, reordering it, repeating a value or
//! moving the boundary between a name and its value leaves both signature and key as they
//! were. For a JSON body, whose bytes the URL's `bodySHA256` signs, the body's hash. A retry
//! carries the same parameters, so it is the same event. Twilio's `I-Twilio-Idempotency-Token`
//! is not the key: the signature does not cover it, so a replay could change it at will; it
//! is forwarded to the agent. Two callbacks with the very same parameters are one event,
//! which the Sids and statuses Twilio sends make rare; the Sids alone are no key (a call's
//! `CallSid` and `CallStatus` repeat across its distinct `<Gather>` callbacks). Type: the
//! parameters' `EventType` where Twilio sends one (Conversations, TaskRouter), else
//! `message.<MessageStatus or SmsStatus>` (`message.received` for an inbound SMS,
//! `message.delivered` for a status callback), else `call.<CallStatus>`, else `webhook`.
//!
//! Twilio reads the answer to an inbound message or call as TwiML instructions, and logs an
//! error for anything else (a JSON body is "Invalid Content-Type"; on a voice call, "an
//! application error has occurred"). A queued event is therefore acknowledged with an empty
//! `<Response/>`, 200 `text/xml`: do nothing more. The receivers take `POST` only, Twilio's
//! default method for its webhooks.
//!
//! HMAC-SHA1 is ring's (`HMAC_SHA1_FOR_LEGACY_USE_ONLY`, the library rustls already links):
//! the `sha1` crate in the lockfile comes with the AWS SDK's checksums and is not a
//! dependency of this crate. A Webhook Rule's HMAC-SHA256 signing with a shared key
//! (`X-Twilio-Webhooks-Signature-Settings`, in beta) is not supported.
//!
//! Sources: twilio.com/docs/usage/webhooks/webhooks-security (the algorithm, its worked
//! example), and `RequestValidator` in twilio-python (`twilio/request_validator.py`) and
//! `validateRequest` in twilio-node (`src/webhooks/webhooks.ts`), whose tests give the
//! vectors below.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::public_url::PublicUrl;
use super::{
    any_sha1_signature_matches, encode_base64, header, hmac_sha1, signature_header, AuthFailure,
    Delivery, Handshake, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-twilio-signature";
const IDEMPOTENCY_TOKEN: &str = "i-twilio-idempotency-token";
const BODY_SHA256: &str = "bodySHA256";

/// The type of a request whose parameters name none.
pub const UNTYPED_EVENT: &str = "webhook";

/// TwiML that asks Twilio for nothing: no reply to a message, the end of a call.
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

#[derive(Debug, Clone, Default)]
pub struct Twilio {
    url: PublicUrl,
}

impl super::sealed::Sealed for Twilio {}

/// The scheme the provider table names for twilio: `WEBHOOK_URL`, when set, is the webhook
/// URL configured at Twilio.
pub(crate) fn scheme(
    env: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Twilio {
        url: PublicUrl::from_env(env)?,
    }))
}

/// The form's parameters as Twilio signs them: sorted by name, each name's distinct values
/// sorted. `String`'s order is the code points' order, which is Python's `sorted`.
fn parameters(form: &[u8]) -> BTreeMap<String, BTreeSet<String>> {
    let mut parameters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(form) {
        parameters
            .entry(name.into_owned())
            .or_default()
            .insert(value.into_owned());
    }
    parameters
}

/// The `bodySHA256` of a URL's query, which Twilio adds when it signs a JSON body.
fn body_sha256_of(url: &str) -> Option<String> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == BODY_SHA256)
        .map(|(_, hash)| hash.into_owned())
}

/// The SHA-256, hex, of the parameters as the signature covers them: each name then its
/// value, in order, with nothing between them.
fn signed_parameters_sha256(parameters: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut digest = Sha256::new();
    for (name, values) in parameters {
        for value in values {
            digest.update(name.as_bytes());
            digest.update(value.as_bytes());
        }
    }
    hex::encode(digest.finalize())
}

/// What Twilio signs, in order: the URL, then each parameter's name and value.
fn signed_parts<'p>(
    url: &'p str,
    parameters: &'p BTreeMap<String, BTreeSet<String>>,
) -> Vec<&'p [u8]> {
    let mut parts = vec![url.as_bytes()];
    for (name, values) in parameters {
        for value in values {
            parts.extend([name.as_bytes(), value.as_bytes()]);
        }
    }
    parts
}

/// The URL without any port, and with its port or else the scheme's: twilio-python's
/// `remove_port` and `add_port`.
fn with_and_without_port(url: &str) -> [String; 2] {
    let Some((scheme, rest)) = url.split_once("://") else {
        return [url.to_owned(), url.to_owned()];
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host_and_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_and_port)) => (format!("{userinfo}@"), host_and_port),
        None => (String::new(), authority),
    };
    let host_end = if host_and_port.starts_with('[') {
        host_and_port
            .find(']')
            .map_or(host_and_port.len(), |at| at + 1)
    } else {
        host_and_port.rfind(':').unwrap_or(host_and_port.len())
    };
    let (host, port) = match host_and_port.split_at(host_end) {
        (host, port) if port.len() > 1 && port[1..].bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(&port[1..]))
        }
        _ => (host_and_port, None),
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    };
    let port = port.unwrap_or(default_port);
    [
        format!("{scheme}://{userinfo}{host}{tail}"),
        format!("{scheme}://{userinfo}{host}:{port}{tail}"),
    ]
}

impl SignatureScheme for Twilio {
    fn provider(&self) -> Provider {
        Provider::Twilio
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        _now: OffsetDateTime,
        _tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(header)
            .ok()
            .filter(|signature| signature.len() == 20)
            .ok_or_else(|| AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            })?;
        let url = self.url.signed_url(request)?;
        let signed_parameters = match &body_sha256_of(&url) {
            // The SDKs compare the lowercase hex digest as text.
            Some(hash) if *hash != hex::encode(Sha256::digest(&request.body)) => {
                return Err(AuthFailure::SignatureMismatch);
            }
            Some(_) => BTreeMap::new(),
            None => parameters(&request.body),
        };
        let signature = [signature];
        let matches = with_and_without_port(&url).iter().any(|url| {
            any_sha1_signature_matches(keys, &signature, &signed_parts(url, &signed_parameters))
        });
        if matches {
            Ok(())
        } else {
            Err(AuthFailure::SignatureMismatch)
        }
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let parameters = parameters(&request.body);
        // A JSON body signed through the URL's `bodySHA256` is keyed by its bytes' hash.
        let json = self
            .url
            .signed_url(request)
            .is_ok_and(|url| body_sha256_of(&url).is_some());
        let id = (!json).then(|| format!("params-{}", signed_parameters_sha256(&parameters)));
        let value = |name: &str| {
            parameters
                .get(name)
                .and_then(|values| values.iter().find(|value| !value.is_empty()))
        };
        let event_type = if let Some(event_type) = value("EventType") {
            event_type.clone()
        } else if let Some(status) = value("MessageStatus").or_else(|| value("SmsStatus")) {
            format!("message.{status}")
        } else if let Some(status) = value("CallStatus") {
            format!("call.{status}")
        } else {
            UNTYPED_EVENT.to_owned()
        };
        Ok(Delivery {
            acknowledgement: Some(Handshake {
                content_type: "text/xml",
                body: EMPTY_TWIML.to_owned(),
            }),
            ..Delivery::event(id, event_type)
        })
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [IDEMPOTENCY_TOKEN, "x-home-region"]
            .map(str::to_owned)
            .to_vec()
    }

    /// The body signed as a form, Twilio's usual delivery. A JSON delivery's `bodySHA256`
    /// belongs in the URL it is sent to, which a signer returning headers cannot change; a
    /// caller sending one signs a `delivery.url` that already carries it, and an empty body.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let parameters = parameters(delivery.body);
        let signature = hmac_sha1(key.as_bytes(), &signed_parts(delivery.url, &parameters));
        vec![header(SIGNATURE, encode_base64(&signature))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    // twilio.com/docs/usage/webhooks/webhooks-security, "Validating signatures from Twilio".
    const DOC_FORM: &str =
        "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
    const DOC_SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
    // twilio-python, tests/unit/test_request_validator.py (also twilio-node's
    // spec/validation.spec.js): the parameters in the order the test lists them.
    const SDK_FORM: &str =
        "CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";
    const SDK_SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

    fn request(url: &str, body: &str, signature: &str) -> InboundRequest {
        InboundRequest::post(body.to_owned())
            .with_url(url)
            .with_header("Content-Type", "application/x-www-form-urlencoded")
            .with_header("X-Twilio-Signature", signature)
    }

    fn check(request: &InboundRequest, token: &str) -> Result<(), AuthFailure> {
        Twilio::default().check_signature(request, &keys(token), at(0), WINDOW)
    }

    #[test]
    fn accepts_the_example_in_twilios_documentation() {
        assert_eq!(check(&request(URL, DOC_FORM, DOC_SIGNATURE), TOKEN), Ok(()));
    }

    #[test]
    fn accepts_the_twilio_sdk_vector() {
        assert_eq!(check(&request(URL, SDK_FORM, SDK_SIGNATURE), TOKEN), Ok(()));
    }

    #[test]
    fn accepts_a_signature_made_with_the_schemes_port_the_url_lacks() {
        // twilio-python: "hash of uri with port 443", and of the http URI with port 80.
        assert_eq!(
            check(
                &request(URL, SDK_FORM, "kvajT1Ptam85bY51eRf/AJRuM3w="),
                TOKEN
            ),
            Ok(())
        );
        let http = URL.replace("https", "http");
        assert_eq!(
            check(
                &request(&http, SDK_FORM, "0ZXoZLH/DfblKGATFgpif+LLRf4="),
                TOKEN
            ),
            Ok(())
        );
    }

    #[test]
    fn accepts_a_signature_made_without_the_port_the_url_has_or_with_it() {
        let https_1234 = URL.replace(".com", ".com:1234");
        assert_eq!(
            check(&request(&https_1234, SDK_FORM, SDK_SIGNATURE), TOKEN),
            Ok(())
        );
        // "hash of http uri with port 1234".
        let http_1234 = https_1234.replace("https", "http");
        assert_eq!(
            check(
                &request(&http_1234, SDK_FORM, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
                TOKEN
            ),
            Ok(())
        );
    }

    #[test]
    fn accepts_repeated_names_with_sorted_distinct_values() {
        // twilio-python's `test_compute_signature_duplicate_query_dict`.
        let form = "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234";
        assert_eq!(
            check(&request(URL, form, "IK+Dwps556ElfBT0I3Rgjkr1wJU="), TOKEN),
            Ok(())
        );
        // twilio-node: "regardless of the position of values in the array".
        let form =
            "MessagingBinding.Address=%2B1415xxxxxxx&MessagingBinding.Address=%2B1325xxxxxxx";
        assert_eq!(
            check(&request(URL, form, "83O6e2vORAoJHUNzJjDWN1jz+BA="), TOKEN),
            Ok(())
        );
    }

    #[test]
    fn accepts_a_json_body_whose_hash_the_signed_url_carries() {
        // twilio-python's `test_validation_of_body_succeeds`.
        let body = r#"{"property": "value", "boolean": true}"#;
        let url = format!(
            "{URL}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let json = request(&url, body, "a9nBmqA0ju/hNViExpshrM61xv4=")
            .with_header("Content-Type", "application/json");
        assert_eq!(check(&json, TOKEN), Ok(()));
    }

    #[test]
    fn rejects_a_json_body_that_does_not_hash_to_the_signed_url_s_body_sha256() {
        let url = format!(
            "{URL}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let changed = request(
            &url,
            r#"{"property": "value", "boolean": false}"#,
            "a9nBmqA0ju/hNViExpshrM61xv4=",
        );
        assert_eq!(check(&changed, TOKEN), Err(AuthFailure::SignatureMismatch));
    }

    #[test]
    fn rejects_a_body_sha256_in_capitals_as_twilios_sdks_do() {
        // Signed with python3's hmac over the URL with the digest in capitals.
        let body = r#"{"property": "value", "boolean": true}"#;
        let url = format!(
            "{URL}&bodySHA256={}",
            "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620".to_uppercase()
        );
        assert_eq!(
            check(&request(&url, body, "KF9uuYbODKamvlRt1B1bFONb+Q8="), TOKEN),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_missing_signature() {
        let unsigned = InboundRequest::post(SDK_FORM).with_url(URL);
        assert!(matches!(
            check(&unsigned, TOKEN),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_that_is_not_base64_of_20_bytes() {
        for bad in [
            "WRONG_SIGNATURE",
            "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
        ] {
            assert!(
                matches!(
                    check(&request(URL, SDK_FORM, bad), TOKEN),
                    Err(AuthFailure::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_another_auth_token() {
        assert_eq!(
            check(&request(URL, SDK_FORM, SDK_SIGNATURE), "54321"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_changed_added_or_dropped_parameter() {
        for form in [
            SDK_FORM.replace("Digits=1234", "Digits=1235"),
            format!("{SDK_FORM}&Body=hi"),
            SDK_FORM.replace("&Digits=1234", ""),
        ] {
            assert_eq!(
                check(&request(URL, &form, SDK_SIGNATURE), TOKEN),
                Err(AuthFailure::SignatureMismatch),
                "{form}"
            );
        }
    }

    #[test]
    fn rejects_a_signature_made_for_another_url() {
        for url in [
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            "https://mycompany.com/myapp.php",
            "https://evil.example/myapp.php?foo=1&bar=2",
        ] {
            assert_eq!(
                check(&request(url, SDK_FORM, SDK_SIGNATURE), TOKEN),
                Err(AuthFailure::SignatureMismatch),
                "{url}"
            );
        }
    }

    #[test]
    fn rejects_a_request_whose_url_cannot_be_known() {
        let relative = InboundRequest::post(SDK_FORM).with_header(SIGNATURE, SDK_SIGNATURE);
        assert_eq!(
            check(&relative, TOKEN),
            Err(AuthFailure::MissingSignedHeader {
                header: "host".into()
            })
        );
    }

    #[test]
    fn parameters_in_another_order_or_encoding_carry_the_same_signature() {
        let reordered = "To=%2B18005551212&Caller=%2B14158675309&CallSid=CA1234567890ABCDE&From=%2B14158675309&Digits=1234";
        assert_eq!(
            check(&request(URL, reordered, SDK_SIGNATURE), TOKEN),
            Ok(())
        );
    }

    #[test]
    fn a_configured_url_is_signed_with_the_query_the_request_arrived_with() {
        let twilio = Twilio {
            url: PublicUrl::configured("https://mycompany.com/myapp.php").unwrap(),
        };
        let behind_proxy = request(
            "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/webhooks/twilio?foo=1&bar=2",
            SDK_FORM,
            SDK_SIGNATURE,
        );
        assert_eq!(
            twilio.check_signature(&behind_proxy, &keys(TOKEN), at(0), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn the_port_variants_are_twilio_pythons() {
        assert_eq!(
            with_and_without_port("https://h.example/p?q=1"),
            ["https://h.example/p?q=1", "https://h.example:443/p?q=1"]
        );
        assert_eq!(
            with_and_without_port("http://127.0.0.1:8080/webhooks/twilio"),
            [
                "http://127.0.0.1/webhooks/twilio",
                "http://127.0.0.1:8080/webhooks/twilio"
            ]
        );
        assert_eq!(
            with_and_without_port("https://user:pw@[::1]:8443"),
            ["https://user:pw@[::1]", "https://user:pw@[::1]:8443"]
        );
        assert_eq!(
            with_and_without_port("http://h.example?x=a:1"),
            ["http://h.example?x=a:1", "http://h.example:80?x=a:1"]
        );
    }

    #[test]
    fn signing_reproduces_the_twilio_sdk_vector() {
        let delivery = OutgoingDelivery {
            url: URL,
            ..outgoing(SDK_FORM, 0)
        };
        assert_eq!(
            Twilio::default().sign(&delivery, &raw_key(TOKEN)),
            [(SIGNATURE.to_owned(), SDK_SIGNATURE.to_owned())]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_and_fails_once_tampered_with() {
        let delivery = outgoing(SDK_FORM, 0);
        let signed = request_with(SDK_FORM, &Twilio::default().sign(&delivery, &raw_key("t")))
            .with_url(delivery.url);
        assert_eq!(check(&signed, "t"), Ok(()));
        assert_eq!(
            check(&with_one_byte_changed(signed), "t"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    fn described(body: &str) -> Delivery {
        Twilio::default()
            .describe(&InboundRequest::post(body.to_owned()))
            .unwrap()
    }

    #[test]
    fn the_key_is_what_the_signature_covers_not_the_idempotency_token() {
        let request = InboundRequest::post(SDK_FORM).with_header(
            "I-Twilio-Idempotency-Token",
            "c5c1a2e8-9a4f-4d3b-8e7f-1a2b3c4d5e6f",
        );
        let key = Twilio::default().describe(&request).unwrap().stable_id;
        assert_eq!(key, described(SDK_FORM).stable_id);
        assert!(key.is_some_and(|key| key.starts_with("params-")));
        assert!(Twilio::default().signs_stable_id());
    }

    #[test]
    fn a_form_reencoded_reordered_or_with_a_moved_boundary_keeps_its_key() {
        // Each of these carries the same signature as the first: Twilio signs the sorted
        // name-value concatenation, not the bytes.
        let original = described("Body=hi+there&From=%2B1415").stable_id;
        for same in [
            "From=%2B1415&Body=hi%20there",
            "Body=hi+there&Body=hi+there&From=%2B1415",
            "Bo=dyhi+there&From=%2B1415",
        ] {
            assert_eq!(described(same).stable_id, original, "{same}");
        }
        assert_ne!(described("Body=hi&From=%2B1415").stable_id, original);
    }

    #[test]
    fn a_json_body_signed_through_its_hash_is_keyed_by_its_bytes() {
        let request = InboundRequest::post(r#"{"a":1}"#)
            .with_url("https://h.example.com/webhooks/twilio?bodySHA256=00");
        assert_eq!(
            Twilio::default().describe(&request).unwrap().stable_id,
            None
        );
    }

    #[test]
    fn an_inbound_message_is_typed_message_received() {
        let inbound = "SmsStatus=received&Body=Hi&MessageSid=SM1&From=%2B14155550123";
        assert_eq!(described(inbound).event_type, "message.received");
    }

    #[test]
    fn a_message_status_callback_is_typed_by_its_message_status() {
        let callback = "SmsStatus=delivered&MessageStatus=delivered&MessageSid=SM1";
        assert_eq!(described(callback).event_type, "message.delivered");
    }

    #[test]
    fn a_call_is_typed_by_its_call_status() {
        assert_eq!(described(DOC_FORM).event_type, UNTYPED_EVENT);
        assert_eq!(
            described("CallSid=CA1&CallStatus=ringing&Direction=inbound").event_type,
            "call.ringing"
        );
    }

    #[test]
    fn an_event_type_parameter_comes_first() {
        let conversations = "EventType=onMessageAdded&ConversationSid=CH1&SmsStatus=received";
        assert_eq!(described(conversations).event_type, "onMessageAdded");
    }

    #[test]
    fn a_queued_event_is_acknowledged_with_empty_twiml() {
        let acknowledgement = described(SDK_FORM)
            .acknowledgement
            .expect("an acknowledgement");
        assert_eq!(acknowledgement.content_type, "text/xml");
        assert_eq!(
            acknowledgement.body,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#
        );
    }

    #[test]
    fn a_body_naming_no_type_is_an_untyped_webhook() {
        assert_eq!(
            described(r#"{"property": "value"}"#).event_type,
            UNTYPED_EVENT
        );
        assert_eq!(
            described("MessageStatus=&CallStatus=").event_type,
            UNTYPED_EVENT
        );
    }
}
