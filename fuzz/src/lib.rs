//! What the fuzz targets share: turning fuzz input into requests for one scheme, and the
//! three questions each target asks of it.
//!
//! Each scheme's target reads its input as one of three cases:
//!
//! - the scheme's own signature header (and timestamp) set to fuzzed bytes, beside a fixed
//!   body: its header parser;
//! - any headers and any body: its verifier, end to end (`verify`, the id and type
//!   reading included);
//! - a fuzzed body signed as the provider signs it, then one fuzzed bit of it flipped: the
//!   signed body must verify and the changed one must not.
//!
//! A panic, or a failed assertion, is a finding.

use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use hookgate::request::InboundRequest;
use hookgate::secret::{KeyRing, SigningKey};
use hookgate::verify::{verify, OutgoingDelivery, SignatureScheme};
use http::{HeaderMap, HeaderName, HeaderValue};
use time::OffsetDateTime;

pub const WINDOW: Duration = Duration::from_secs(300);
pub const NOW: i64 = 1_800_000_000;

/// Header names any scheme reads, and some no scheme does.
const NAMES: [&str; 21] = [
    "x-hub-signature-256",
    "x-github-delivery",
    "x-github-event",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-shopify-topic",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-signature",
    "x-timestamp",
    "x-id",
    "x-event",
    "content-type",
];

/// One fuzz input.
#[derive(Debug, Arbitrary)]
pub enum Case {
    /// The scheme's signature header (and, where it has one, its timestamp header) set to
    /// these bytes.
    Header {
        signature: Vec<u8>,
        timestamp: Vec<u8>,
    },
    /// Any headers (by index into the names every scheme reads) and any body.
    Request {
        headers: Vec<(u8, Vec<u8>)>,
        body: Vec<u8>,
        now_offset: i16,
    },
    /// A body signed as the provider signs it, then the bit `flip` of it changed.
    Signed { body: Vec<u8>, flip: u32 },
}

/// A scheme to fuzz, with the secret its requests are checked with and the names of its
/// signature and timestamp headers.
pub struct Target<'a> {
    pub scheme: &'a dyn SignatureScheme,
    pub secret: &'a str,
    pub signature_header: &'static str,
    pub timestamp_header: Option<&'static str>,
}

impl Target<'_> {
    fn keys(&self) -> KeyRing {
        KeyRing::from_secrets(self.secret, None, self.scheme.key_encoding())
            .expect("the target's secret is usable")
    }

    /// Asks the case's question of the scheme.
    pub fn run(&self, case: Case) {
        let now = OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time");
        match case {
            Case::Header {
                signature,
                timestamp,
            } => {
                let mut headers = vec![(self.signature_header, signature)];
                if let Some(name) = self.timestamp_header {
                    headers.push((name, timestamp));
                }
                let request = request(
                    &headers,
                    br#"{"id":"evt_1","type":"t","action":"a"}"#.to_vec(),
                    now,
                );
                let _ = self
                    .scheme
                    .check_signature(&request, &self.keys(), now, WINDOW);
            }
            Case::Request {
                headers,
                body,
                now_offset,
            } => {
                let named: Vec<(&'static str, Vec<u8>)> = headers
                    .into_iter()
                    .map(|(index, value)| (NAMES[usize::from(index) % NAMES.len()], value))
                    .collect();
                let now = now + time::Duration::seconds(i64::from(now_offset));
                let _ = verify(
                    self.scheme,
                    &request(&named, body, now),
                    &self.keys(),
                    now,
                    WINDOW,
                );
            }
            Case::Signed { body, flip } => {
                let key = SigningKey::parse(self.secret, self.scheme.key_encoding())
                    .expect("the target's secret is usable");
                let signature = self.scheme.sign(
                    &OutgoingDelivery {
                        body: &body,
                        signed_at: now,
                        id: "msg_fuzz",
                        url: "https://hooks.example.com/webhooks/fuzz",
                    },
                    &key,
                );
                let mut signed = signature.iter().fold(
                    InboundRequest::post(Bytes::from(body.clone())),
                    |request, (name, value)| request.with_header(name, value),
                );
                assert_eq!(
                    self.scheme
                        .check_signature(&signed, &self.keys(), now, WINDOW),
                    Ok(()),
                    "a body signed as the provider signs it did not verify"
                );
                if body.is_empty() {
                    return;
                }
                let mut changed = body;
                let bit = flip as usize % (changed.len() * 8);
                changed[bit / 8] ^= 1 << (bit % 8);
                signed.body = Bytes::from(changed);
                assert!(
                    self.scheme
                        .check_signature(&signed, &self.keys(), now, WINDOW)
                        .is_err(),
                    "a body with one bit changed verified"
                );
            }
        }
    }
}

/// A request with these headers (values HTTP cannot carry are left out, as a server would
/// refuse them) and body.
fn request(
    headers: &[(&'static str, Vec<u8>)],
    body: Vec<u8>,
    now: OffsetDateTime,
) -> InboundRequest {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(HeaderName::from_static(name), value);
        }
    }
    let mut request = InboundRequest::post(Bytes::from(body));
    request.headers = map;
    request.received_at = now;
    request
}
