//! SendGrid's Signed Event Webhook: `X-Twilio-Email-Event-Webhook-Signature: <base64>`, an
//! ECDSA P-256 SHA-256 signature (ASN.1 DER) of `{timestamp}{body}` (no separator), with
//! the time in `X-Twilio-Email-Event-Webhook-Timestamp`. It is checked with the verification
//! key SendGrid shows (base64 of the DER `SubjectPublicKeyInfo`); SendGrid keeps the private
//! half.
//!
//! From SendGrid's docs ("Getting Started with the Event Webhook Security Features") and its
//! SDKs' `EventWebhook` (sendgrid-python `sendgrid/helpers/eventwebhook`, sendgrid-nodejs
//! `packages/eventwebhook`), whose test vectors are below. Those verifiers check no
//! timestamp age; hookgate refuses a timestamp outside the receiver's window, as the
//! signature covers it and every POST (retries included) is signed when it is sent.
//!
//! A delivery is a batch: a JSON array of events, each with its own `sg_event_id`. The batch
//! has no id of its own, so it is keyed by its body's hash: a retry of the same bytes
//! collapses into one event, and SendGrid, which says duplicates happen, recommends that
//! consumers deduplicate events by `sg_event_id` ("Troubleshooting the Event Webhook"), which
//! the agent handling the batch still must. The type is the events' `event` (`delivered`,
//! `open`…) when they all share one, else `batch`.

use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    any_p256_key_verifies, encode_base64, header, p256_sign, signature_header, timestamp_in_window,
    AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyEncoding, KeyRing, SigningKey};

const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

use super::MIXED_BATCH;

/// The longest DER encoding of a P-256 signature: two 33-byte integers and their headers.
const MAX_SIGNATURE_LEN: usize = 72;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sendgrid;

impl super::sealed::Sealed for Sendgrid {}

/// The scheme the provider table names for sendgrid.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Sendgrid))
}

/// The field of an event hookgate reads; serde skips the rest.
#[derive(Deserialize)]
struct Event {
    event: Option<String>,
}

impl SignatureScheme for Sendgrid {
    fn provider(&self) -> Provider {
        Provider::Sendgrid
    }

    fn key_encoding(&self) -> KeyEncoding {
        KeyEncoding::P256PublicBase64
    }

    fn signing_key_encoding(&self) -> KeyEncoding {
        KeyEncoding::P256PrivateBase64
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        use base64::Engine;
        let header = signature_header(request, SIGNATURE)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(header)
            .ok()
            .filter(|der| !der.is_empty() && der.len() <= MAX_SIGNATURE_LEN)
            .ok_or_else(|| AuthFailure::MalformedSignature {
                header: SIGNATURE.to_owned(),
            })?;
        let timestamp = timestamp_in_window(request, TIMESTAMP, now, tolerance)?;
        let signed = [timestamp.as_bytes(), &request.body].concat();
        if any_p256_key_verifies(keys, &signed, &signature) {
            Ok(())
        } else {
            Err(AuthFailure::SignatureMismatch)
        }
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let events: Vec<Event> = serde_json::from_slice(&request.body)
            .map_err(|error| MalformedRequest::BodyNotJson(error.to_string()))?;
        let mut types = events.into_iter().map(|event| event.event);
        let first = types
            .next()
            .flatten()
            .ok_or_else(|| MalformedRequest::MissingField("event".into()))?;
        let mut mixed = false;
        for event_type in types {
            let event_type =
                event_type.ok_or_else(|| MalformedRequest::MissingField("event".into()))?;
            mixed |= event_type != first;
        }
        let event_type = if mixed { MIXED_BATCH.to_owned() } else { first };
        Ok(Delivery::event(None, event_type))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        vec![TIMESTAMP.to_owned()]
    }

    /// The timestamp and a base64 DER signature, as SendGrid sends them; `key` is a P-256
    /// private key (PKCS#8). A key of another kind signs nothing.
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)> {
        let timestamp = delivery.signed_at.unix_timestamp().to_string();
        let signed = [timestamp.as_bytes(), delivery.body].concat();
        match p256_sign(key, &signed) {
            Some(signature) => vec![
                header(TIMESTAMP, timestamp),
                header(SIGNATURE, encode_base64(&signature)),
            ],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // The single-event vector of sendgrid-python `test/unit/test_eventwebhook.py` and
    // sendgrid-nodejs `packages/eventwebhook/src/eventwebhook.spec.js`: the body is the
    // compact JSON the tests build, with the trailing CRLF SendGrid sends.
    const SDK_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SDK_SIGNATURE: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const SDK_TS: i64 = 1_600_112_502;
    const SDK_BODY: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";
    /// The SDKs' "invalid key" case: a well-formed P-256 key that did not sign the vector.
    const SDK_OTHER_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
    /// The SDKs' "bad signature" case: a well-formed signature of something else.
    const SDK_OTHER_SIGNATURE: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";

    // A key pair made with openssl for these tests.
    const PRIVATE_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgH4NKVvDMet8lUJBU8jz+yktFpKVsFCygI26JBhCHjzShRANCAATlJ3oYg4CA5BPWfZLzuQ9Fy7CdT/0pJDadNfvQKOImwAet/8LD0fb2gsa9RdfyDSoATKlmIumR6vIniInF4ilN";
    const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE5Sd6GIOAgOQT1n2S87kPRcuwnU/9KSQ2nTX70CjiJsAHrf/Cw9H29oLGvUXX8g0qAEypZiLpkeryJ4iJxeIpTQ==";

    fn ring(public_key: &str) -> KeyRing {
        KeyRing::from_secrets(public_key, None, KeyEncoding::P256PublicBase64).unwrap()
    }

    fn sdk_request(body: &str, signature: &str, timestamp: &str) -> InboundRequest {
        InboundRequest::post(body.to_owned())
            .with_header("X-Twilio-Email-Event-Webhook-Signature", signature)
            .with_header("X-Twilio-Email-Event-Webhook-Timestamp", timestamp)
    }

    fn sdk_vector() -> InboundRequest {
        sdk_request(SDK_BODY, SDK_SIGNATURE, &SDK_TS.to_string())
    }

    fn check_at(request: &InboundRequest, now: i64) -> Result<(), AuthFailure> {
        Sendgrid.check_signature(request, &ring(SDK_KEY), at(now), WINDOW)
    }

    fn events(body: &str) -> Result<Delivery, MalformedRequest> {
        Sendgrid.describe(&InboundRequest::post(body.to_owned()))
    }

    #[test]
    fn accepts_the_sdks_single_event_vector() {
        assert_eq!(check_at(&sdk_vector(), SDK_TS), Ok(()));
    }

    #[test]
    fn accepts_the_nodejs_sdks_multiple_event_vector() {
        // Two events, each followed by CRLF as SendGrid sends them.
        let body = "[{\"email\":\"invalid@gmail.com\",\"event\":\"processed\",\"send_at\":0,\"sg_event_id\":\"cHJvY2Vzc2VkLTE5OTQyMTEyLXFOd0JMZ1BRUWpXNkRKdktRd1NBYnctMA\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"timestamp\":1619651146},\r\n{\"email\":\"invalid@gmail.com\",\"event\":\"bounce\",\"ip\":\"167.89.101.76\",\"reason\":\"552 5.2.2 The email account that you tried to reach is over quota and inactive. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm c17si1130468pgv.34 - gsmtp\",\"sg_event_id\":\"Ym91bmNlLTAtMTk5NDIxMTItcU53QkxnUFFRalc2REp2S1F3U0Fidy0w\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"status\":\"5.2.2\",\"timestamp\":1619651147,\"tls\":1,\"type\":\"blocked\"}]\r\n";
        let request = sdk_request(
            body,
            "MEYCIQC/I4o6vCgqRYrTljjoVWB/GRWNtxeePlLMHr3x9ETeRQIhAIpV+03nREPTTHWSW0wIOA0EoMPdcNgXa70yCaqDJlu5",
            "1619651159",
        );
        let key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ4LIFtWztlsF7skFqOncjD1lun4H5w8XOhyOArHW9RcIx/FfEzx6cikC/yPfUvwaX/JScE7Fc9CJD2afQ9Ok3Q==";
        assert_eq!(
            Sendgrid.check_signature(&request, &ring(key), at(1_619_651_159), WINDOW),
            Ok(())
        );
        assert_eq!(
            Sendgrid.describe(&request).unwrap(),
            Delivery::event(None, MIXED_BATCH)
        );
    }

    #[test]
    fn rejects_the_sdks_invalid_key_case() {
        assert_eq!(
            Sendgrid.check_signature(&sdk_vector(), &ring(SDK_OTHER_KEY), at(SDK_TS), WINDOW),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_the_sdks_bad_signature_case() {
        let request = sdk_request(SDK_BODY, SDK_OTHER_SIGNATURE, &SDK_TS.to_string());
        assert_eq!(
            check_at(&request, SDK_TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_the_sdks_bad_payload_case() {
        let request = sdk_request("payload", SDK_SIGNATURE, &SDK_TS.to_string());
        assert_eq!(
            check_at(&request, SDK_TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_the_sdks_bad_timestamp_case_as_malformed() {
        let request = sdk_request(SDK_BODY, SDK_SIGNATURE, "timestamp");
        assert!(matches!(
            check_at(&request, SDK_TS),
            Err(AuthFailure::MalformedTimestamp { .. })
        ));
    }

    #[test]
    fn rejects_a_body_without_its_final_crlf() {
        let request = sdk_request(SDK_BODY.trim_end(), SDK_SIGNATURE, &SDK_TS.to_string());
        assert_eq!(
            check_at(&request, SDK_TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_missing_signature() {
        let mut request = sdk_vector();
        request.headers.remove(SIGNATURE);
        assert_eq!(
            check_at(&request, SDK_TS),
            Err(AuthFailure::MissingSignature {
                header: SIGNATURE.into()
            })
        );
    }

    #[test]
    fn rejects_a_signature_that_is_not_base64_of_a_der_signature() {
        let too_long = encode_base64(&[0x30; MAX_SIGNATURE_LEN + 1]);
        for malformed in ["", "not base64!", &too_long] {
            let request = sdk_request(SDK_BODY, malformed, &SDK_TS.to_string());
            assert_eq!(
                check_at(&request, SDK_TS),
                Err(AuthFailure::MalformedSignature {
                    header: SIGNATURE.into()
                }),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn rejects_a_missing_timestamp() {
        let mut request = sdk_vector();
        request.headers.remove(TIMESTAMP);
        assert!(matches!(
            check_at(&request, SDK_TS),
            Err(AuthFailure::MissingTimestamp { .. })
        ));
    }

    #[test]
    fn rejects_a_stale_timestamp() {
        assert_eq!(
            check_at(&sdk_vector(), SDK_TS + 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
    }

    #[test]
    fn rejects_a_future_timestamp() {
        assert_eq!(
            check_at(&sdk_vector(), SDK_TS - 301),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
    }

    #[test]
    fn rejects_a_signature_made_for_another_timestamp() {
        let request = sdk_request(SDK_BODY, SDK_SIGNATURE, &(SDK_TS + 1).to_string());
        assert_eq!(
            check_at(&request, SDK_TS),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn the_previous_key_still_verifies_during_a_rotation() {
        let keys =
            KeyRing::from_secrets(SDK_OTHER_KEY, Some(SDK_KEY), KeyEncoding::P256PublicBase64)
                .unwrap();
        assert_eq!(
            Sendgrid.check_signature(&sdk_vector(), &keys, at(SDK_TS), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn a_signed_delivery_verifies_until_it_is_stale_or_tampered_with() {
        let key = SigningKey::parse(PRIVATE_KEY, KeyEncoding::P256PrivateBase64).unwrap();
        let body = r#"[{"email":"a@example.com","event":"open","sg_event_id":"b3Blbi0x","timestamp":1700000000}]"#;
        let request = request_with(body, &Sendgrid.sign(&outgoing(body, 1_000), &key));
        let check_at = |request: &InboundRequest, now| {
            Sendgrid.check_signature(request, &ring(PUBLIC_KEY), at(now), WINDOW)
        };
        assert_eq!(check_at(&request, 1_000), Ok(()));
        assert!(matches!(
            check_at(&request, 1_301),
            Err(AuthFailure::TimestampOutsideWindow { .. })
        ));
        assert_eq!(
            check_at(&with_one_byte_changed(request.clone()), 1_000),
            Err(AuthFailure::SignatureMismatch)
        );
        assert_eq!(
            Sendgrid.check_signature(&request, &ring(SDK_KEY), at(1_000), WINDOW),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn a_public_key_signs_nothing() {
        let public = SigningKey::parse(PUBLIC_KEY, KeyEncoding::P256PublicBase64).unwrap();
        assert_eq!(Sendgrid.sign(&outgoing("[]", 1_000), &public), []);
    }

    #[test]
    fn a_batch_of_one_type_is_typed_by_it_and_keyed_by_its_body() {
        assert_eq!(events(SDK_BODY).unwrap(), Delivery::event(None, "dropped"));
        assert_eq!(
            events(r#"[{"event":"open"},{"event":"open","sg_event_id":"x"}]"#).unwrap(),
            Delivery::event(None, "open")
        );
    }

    #[test]
    fn a_batch_of_several_types_is_a_batch() {
        assert_eq!(
            events(r#"[{"event":"delivered"},{"event":"open"}]"#)
                .unwrap()
                .event_type,
            MIXED_BATCH
        );
    }

    #[test]
    fn an_empty_batch_or_an_event_without_its_type_is_malformed() {
        for body in [
            "[]",
            r#"[{"email":"a@example.com"}]"#,
            r#"[{"event":"open"},{}]"#,
        ] {
            assert_eq!(
                events(body),
                Err(MalformedRequest::MissingField("event".into())),
                "{body}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_an_array_of_events_is_malformed() {
        for body in [r#"{"event":"open"}"#, "event=open", r#"["open"]"#] {
            assert!(
                matches!(events(body), Err(MalformedRequest::BodyNotJson(_))),
                "{body}"
            );
        }
    }
}
