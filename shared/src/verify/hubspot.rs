//! HubSpot (signature v3): `X-HubSpot-Signature-v3: <base64>`, HMAC-SHA256 of
//! `{method}{uri}{body}{timestamp}` with the app's client secret, where the timestamp is
//! `X-HubSpot-Request-Timestamp` in unix **milliseconds** and the URI is the full URL HubSpot
//! called (the request's, or `WEBHOOK_URL`: see [`public_url`](super::public_url)) with
//! `%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B` decoded to `: / ? @ ! $ ' ( ) * , ;`
//! and every other escape left as it is. The hex digits of an escape are read in either
//! case, as percent-encoding defines them (RFC 3986, 2.1); HubSpot's table writes them in
//! capitals.
//!
//! HubSpot rejects requests older than five minutes; hookgate refuses a timestamp further
//! than the receiver's `tolerance` either way, like every scheme that signs one. The older
//! v1 and v2 signatures (`X-HubSpot-Signature`, a plain SHA-256 without a timestamp) are not
//! checked.
//!
//! A webhooks-API delivery is a JSON array of up to 100 events. Each has an `eventId`, which
//! HubSpot says "is not guaranteed to be unique", and an `attemptNumber` that grows with
//! every retry, so a batch has no id of its own, and its bytes change from one attempt to the
//! next. Its id is therefore the SHA-256 of the batch with every `attemptNumber` left out
//! (`batch-<hex>`): a retry is the same event, while two batches that differ in anything else
//! are two. It is signed, as the body is. The type is the events' `subscriptionType`
//! (`contact.creation`) when all share one, else `batch`; a single event sent as an object is
//! typed by its own. Workflow and extension requests are signed the same way but carry no
//! `subscriptionType`: they are answered 400, as this receiver is for webhook subscriptions.
//!
//! Sources: developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests
//! (the v3 steps and the decoding table), the webhooks API reference (payload fields), and
//! `Signature.get_signature` in hubspot-api-python, whose test gives the known-answer vector.

use std::time::Duration;

use time::OffsetDateTime;

use super::public_url::PublicUrl;
use super::{
    check_hmac, check_window, decode_base64, encode_base64, header, hmac_sha256,
    parse_unix_seconds, signature_header, AuthFailure, Delivery, MalformedRequest,
    OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

const SIGNATURE: &str = "x-hubspot-signature-v3";
const TIMESTAMP: &str = "x-hubspot-request-timestamp";

use super::MIXED_BATCH;

#[derive(Debug, Clone, Default)]
pub struct Hubspot {
    url: PublicUrl,
}

impl super::sealed::Sealed for Hubspot {}

/// The scheme the provider table names for hubspot: `WEBHOOK_URL`, when set, is the
/// target URL configured in the app.
pub(crate) fn scheme(
    env: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Hubspot {
        url: PublicUrl::from_env(env)?,
    }))
}

/// The URI as HubSpot signs it: the escapes of its table decoded, the others kept.
fn signed_uri(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        let decoded = escape.and_then(|escape| match escape[1..].to_ascii_uppercase().as_str() {
            "3A" => Some(':'),
            "2F" => Some('/'),
            "3F" => Some('?'),
            "40" => Some('@'),
            "21" => Some('!'),
            "24" => Some('$'),
            "27" => Some('\''),
            "28" => Some('('),
            "29" => Some(')'),
            "2A" => Some('*'),
            "2C" => Some(','),
            "3B" => Some(';'),
            _ => None,
        });
        match decoded {
            Some(character) => {
                out.push(character);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl SignatureScheme for Hubspot {
    fn provider(&self) -> Provider {
        Provider::Hubspot
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let header = signature_header(request, SIGNATURE)?;
        let signature = decode_base64(header).ok_or_else(|| AuthFailure::MalformedSignature {
            header: SIGNATURE.to_owned(),
        })?;
        let timestamp = request
            .header(TIMESTAMP)
            .ok_or_else(|| AuthFailure::MissingTimestamp {
                header: TIMESTAMP.to_owned(),
            })?;
        let millis =
            parse_unix_seconds(timestamp).ok_or_else(|| AuthFailure::MalformedTimestamp {
                header: TIMESTAMP.to_owned(),
            })?;
        check_window(millis.div_euclid(1000), now, tolerance)?;
        let uri = signed_uri(&self.url.signed_url(request)?);
        let signed = [
            request.method.as_str().as_bytes(),
            uri.as_bytes(),
            &request.body,
            timestamp.as_bytes(),
        ];
        check_hmac(keys, &[signature], &signed)
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let body: serde_json::Value = serde_json::from_slice(&request.body)
            .map_err(|error| MalformedRequest::BodyNotJson(error.to_string()))?;
        let events = match &body {
            serde_json::Value::Array(events) => events.as_slice(),
            single => std::slice::from_ref(single),
        };
        let missing = || MalformedRequest::MissingField("subscriptionType".into());
        let mut types = events.iter().map(|event| {
            event
                .get("subscriptionType")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(missing)
        });
        let first = types.next().ok_or_else(missing)??;
        let mut event_type = first;
        for other in types {
            if other? != first {
                event_type = MIXED_BATCH;
            }
        }
        Ok(Delivery::event(Some(batch_id(&body)), event_type))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        vec![TIMESTAMP.to_owned()]
    }

    /// A `POST` to `delivery.url`, as the webhooks API sends, timed to the second.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let timestamp = (delivery.signed_at.unix_timestamp() * 1000).to_string();
        let uri = signed_uri(delivery.url);
        let signature = hmac_sha256(
            key.as_bytes(),
            &[b"POST", uri.as_bytes(), delivery.body, timestamp.as_bytes()],
        );
        vec![
            header(TIMESTAMP, timestamp),
            header(SIGNATURE, encode_base64(&signature)),
        ]
    }
}

/// The batch's id across its attempts: the SHA-256 of its JSON with every event's
/// `attemptNumber` removed. serde_json writes an object's keys sorted, so the id does not
/// depend on the order HubSpot writes them in either.
fn batch_id(body: &serde_json::Value) -> String {
    let mut body = body.clone();
    let events = match &mut body {
        serde_json::Value::Array(events) => events.iter_mut().collect::<Vec<_>>(),
        single => vec![single],
    };
    for event in events {
        if let Some(event) = event.as_object_mut() {
            event.remove("attemptNumber");
        }
    }
    format!(
        "batch-{}",
        crate::bodies::sha256_hex(body.to_string().as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_batch_keeps_its_id_while_another_batch_has_its_own() {
        let first = br#"[{"eventId":1,"subscriptionId":7,"attemptNumber":0,"subscriptionType":"contact.creation"}]"#;
        let retry = br#"[{"attemptNumber":1,"eventId":1,"subscriptionId":7,"subscriptionType":"contact.creation"}]"#;
        let other = br#"[{"eventId":2,"subscriptionId":7,"attemptNumber":0,"subscriptionType":"contact.creation"}]"#;
        let id = |body: &'static [u8]| {
            Hubspot::default()
                .describe(&InboundRequest::post(body))
                .unwrap()
                .stable_id
                .unwrap()
        };
        assert_eq!(id(first), id(retry));
        assert_ne!(id(first), id(other));
        assert!(id(first).starts_with("batch-"), "{}", id(first));
    }
    use crate::verify::test_support::*;

    // hubspot-api-python, tests/spec/utils/test_signature.py, `test_get_signature__v3`.
    const SDK_SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const SDK_URL: &str = "https://www.example.com/webhook_uri";
    const SDK_BODY: &str = "{'example_field':'example_value'}";
    const SDK_MILLIS: &str = "1693657560000";
    const SDK_SIGNATURE: &str = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";
    const SDK_SECONDS: i64 = 1_693_657_560;

    // The body of HubSpot's v1 example, for the vectors computed here.
    const BATCH: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;

    fn request(body: &str, url: &str, millis: &str, signature: &str) -> InboundRequest {
        InboundRequest::post(body.to_owned())
            .with_url(url)
            .with_header("X-HubSpot-Request-Timestamp", millis)
            .with_header("X-HubSpot-Signature-v3", signature)
    }

    fn sdk_request() -> InboundRequest {
        request(SDK_BODY, SDK_URL, SDK_MILLIS, SDK_SIGNATURE)
    }

    fn check_at(request: &InboundRequest, secret: &str, now: i64) -> Result<(), AuthFailure> {
        Hubspot::default().check_signature(request, &keys(secret), at(now), WINDOW)
    }

    #[test]
    fn accepts_the_hubspot_sdk_vector() {
        assert_eq!(check_at(&sdk_request(), SDK_SECRET, SDK_SECONDS), Ok(()));
    }

    #[test]
    fn accepts_a_url_with_the_documented_escapes_decoded_and_the_others_kept() {
        // Computed independently with python3's hmac over the URL decoded by HubSpot's
        // table (a lowercase `%2c` included); `%3D`, `%26`, `%5B`, `%5D`, `%7E` stay.
        let url = "https://hooks.example.com/webhooks/hubspot%3Bv%3D3/%7Eteam?portal=62515&callback=https%3A%2F%2Fexample.com%2Fdone%3Fa%3D1%26b%3D%5B2%5D&who=%40ops%2c%21%24%27%28%29%2A";
        assert_eq!(
            signed_uri(url),
            "https://hooks.example.com/webhooks/hubspot;v%3D3/%7Eteam?portal=62515&callback=https://example.com/done?a%3D1%26b%3D%5B2%5D&who=@ops,!$'()*"
        );
        let signed = request(
            BATCH,
            url,
            "1564113600000",
            "XvUGnDup7QTFCjhRaeKHdlzAN/pu5ebUAbuWrSaoKz0=",
        );
        assert_eq!(check_at(&signed, SDK_SECRET, 1_564_113_600), Ok(()));
    }

    #[test]
    fn a_percent_sign_that_starts_no_escape_is_kept() {
        assert_eq!(signed_uri("https://h/a%2"), "https://h/a%2");
        assert_eq!(signed_uri("https://h/%%3A%"), "https://h/%:%");
        assert_eq!(signed_uri("https://h/%é3A"), "https://h/%é3A");
    }

    #[test]
    fn accepts_a_timestamp_inside_the_window_either_side() {
        for now in [SDK_SECONDS - 300, SDK_SECONDS + 300] {
            assert_eq!(check_at(&sdk_request(), SDK_SECRET, now), Ok(()));
        }
    }

    #[test]
    fn rejects_a_stale_timestamp() {
        assert_eq!(
            check_at(&sdk_request(), SDK_SECRET, SDK_SECONDS + 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
    }

    #[test]
    fn rejects_a_timestamp_from_the_future() {
        assert_eq!(
            check_at(&sdk_request(), SDK_SECRET, SDK_SECONDS - 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
    }

    #[test]
    fn rejects_a_timestamp_in_seconds_as_stale() {
        let seconds = request(SDK_BODY, SDK_URL, "1693657560", SDK_SIGNATURE);
        assert!(matches!(
            check_at(&seconds, SDK_SECRET, SDK_SECONDS),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
    }

    #[test]
    fn rejects_a_missing_signature() {
        let mut unsigned = sdk_request();
        unsigned.headers.remove(SIGNATURE);
        assert!(matches!(
            check_at(&unsigned, SDK_SECRET, SDK_SECONDS),
            Err(AuthFailure::MissingSignature { .. })
        ));
    }

    #[test]
    fn rejects_a_signature_that_is_not_base64_of_32_bytes() {
        let hex = hex_hmac(SDK_SECRET, SDK_BODY.as_bytes());
        for bad in [
            "not base64!",
            "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/Qu",
            hex.as_str(),
        ] {
            assert!(
                matches!(
                    check_at(
                        &request(SDK_BODY, SDK_URL, SDK_MILLIS, bad),
                        SDK_SECRET,
                        SDK_SECONDS
                    ),
                    Err(AuthFailure::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_a_missing_timestamp() {
        let mut undated = sdk_request();
        undated.headers.remove(TIMESTAMP);
        assert!(matches!(
            check_at(&undated, SDK_SECRET, SDK_SECONDS),
            Err(AuthFailure::MissingTimestamp { .. })
        ));
    }

    #[test]
    fn rejects_a_timestamp_that_is_not_plain_digits() {
        for bad in ["1693657560000.0", "-1693657560000", "2023-09-02T12:26:00Z"] {
            assert!(
                matches!(
                    check_at(
                        &request(SDK_BODY, SDK_URL, bad, SDK_SIGNATURE),
                        SDK_SECRET,
                        SDK_SECONDS
                    ),
                    Err(AuthFailure::MalformedTimestamp { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_a_signature_made_for_another_timestamp() {
        let moved = request(SDK_BODY, SDK_URL, "1693657560001", SDK_SIGNATURE);
        assert_eq!(
            check_at(&moved, SDK_SECRET, SDK_SECONDS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_signature_made_for_another_url_or_method() {
        let other_url = request(
            SDK_BODY,
            "https://www.example.com/webhook_url",
            SDK_MILLIS,
            SDK_SIGNATURE,
        );
        assert_eq!(
            check_at(&other_url, SDK_SECRET, SDK_SECONDS),
            Err(AuthFailure::SignatureMismatch)
        );
        let mut put = sdk_request();
        put.method = http::Method::PUT;
        assert_eq!(
            check_at(&put, SDK_SECRET, SDK_SECONDS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_another_client_secret() {
        assert_eq!(
            check_at(
                &sdk_request(),
                "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
                SDK_SECONDS
            ),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_request_whose_url_cannot_be_known() {
        let relative = InboundRequest::post(SDK_BODY)
            .with_header(TIMESTAMP, SDK_MILLIS)
            .with_header(SIGNATURE, SDK_SIGNATURE);
        assert_eq!(
            check_at(&relative, SDK_SECRET, SDK_SECONDS),
            Err(AuthFailure::MissingSignedHeader {
                header: "host".into()
            })
        );
    }

    #[test]
    fn signing_reproduces_the_hubspot_sdk_vector() {
        let delivery = OutgoingDelivery {
            url: SDK_URL,
            ..outgoing(SDK_BODY, SDK_SECONDS)
        };
        assert_eq!(
            Hubspot::default().sign(&delivery, &raw_key(SDK_SECRET)),
            [
                (TIMESTAMP.to_owned(), SDK_MILLIS.to_owned()),
                (SIGNATURE.to_owned(), SDK_SIGNATURE.to_owned())
            ]
        );
    }

    #[test]
    fn a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let delivery = outgoing(BATCH, 1_000);
        let signed = request_with(BATCH, &Hubspot::default().sign(&delivery, &raw_key("s")))
            .with_url(delivery.url);
        assert_eq!(check_at(&signed, "s", 1_000), Ok(()));
        assert!(matches!(
            check_at(&signed, "s", 1_301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        assert_eq!(
            check_at(&with_one_byte_changed(signed), "s", 1_000),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn a_batch_is_keyed_by_its_events_and_typed_by_its_subscription_type() {
        let described = Hubspot::default()
            .describe(&InboundRequest::post(BATCH))
            .unwrap();
        assert_eq!(described.event_type, "contact.creation");
        assert!(described
            .stable_id
            .is_some_and(|id| id.starts_with("batch-")));
    }

    #[test]
    fn a_batch_of_several_types_is_typed_batch() {
        let body = r#"[{"eventId":1,"subscriptionType":"contact.creation"},{"eventId":2,"subscriptionType":"deal.creation"},{"eventId":3,"subscriptionType":"contact.creation"}]"#;
        assert_eq!(
            Hubspot::default()
                .describe(&InboundRequest::post(body))
                .map(|described| described.event_type),
            Ok(MIXED_BATCH.to_owned())
        );
    }

    #[test]
    fn a_single_event_object_is_typed_by_its_own_subscription_type() {
        let body = r#"{"eventId":1,"subscriptionType":"deal.propertyChange"}"#;
        assert_eq!(
            Hubspot::default()
                .describe(&InboundRequest::post(body))
                .map(|described| described.event_type),
            Ok("deal.propertyChange".to_owned())
        );
    }

    #[test]
    fn an_empty_batch_or_an_event_without_a_type_or_not_json_is_malformed() {
        let missing = Err(MalformedRequest::MissingField("subscriptionType".into()));
        for body in [
            "[]",
            r#"[{"eventId":1,"subscriptionType":"contact.creation"},{"eventId":2}]"#,
            r#"[{"eventId":1,"subscriptionType":7}]"#,
            r#"{"eventId":1}"#,
        ] {
            assert_eq!(
                Hubspot::default().describe(&InboundRequest::post(body)),
                missing,
                "{body}"
            );
        }
        assert!(matches!(
            Hubspot::default().describe(&InboundRequest::post("eventId=1")),
            Err(MalformedRequest::BodyNotJson(_))
        ));
    }
}
