//! Signature verification, one module per provider's scheme.
//!
//! Verification is the only way to obtain a [`VerifiedWebhook`], and the queue only takes
//! messages made from one: forgetting to verify does not compile.
//!
//! Every scheme verifies the raw body bytes, compares in constant time, accepts any of
//! several signatures in a header and any key of the [`KeyRing`] (rotation), and, where the
//! scheme signs a timestamp, refuses one outside a two-sided window.
//!
//! Every scheme can also sign a delivery the way its provider does
//! ([`SignatureScheme::sign`]), so that sample events and test deliveries are made by the
//! same code that checks them, and each scheme's tests prove the two agree.

pub mod calendly;
pub mod discord;
pub mod generic;
pub mod github;
pub mod gitlab;
pub mod hubspot;
pub mod intercom;
pub mod jira;
mod json_fields;
pub mod linear;
pub mod msgraph;
pub mod paddle;
pub mod pagerduty;
#[cfg(test)]
mod properties;
mod public_url;
pub mod sendgrid;
pub mod sentry;
pub mod shopify;
pub mod slack;
pub mod sns;
pub mod square;
pub mod standard;
pub mod stripe;
pub mod twilio;
pub mod zendesk;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::config::{ConfigError, Env};
use crate::idempotency::{IdempotencyKey, InvalidStableId};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyEncoding, KeyKind, KeyRing, SigningKey};

/// A provider's signature scheme and where it keeps an event's id and type.
///
/// The trait is sealed: only this crate's schemes implement it, so no outside code can mint a
/// [`VerifiedWebhook`] from a scheme that accepts everything.
pub trait SignatureScheme: sealed::Sealed + Send + Sync + fmt::Debug {
    fn provider(&self) -> Provider;

    /// How the provider's secret becomes key bytes.
    fn key_encoding(&self) -> KeyEncoding {
        KeyEncoding::Raw
    }

    /// How the key that [`sign`](SignatureScheme::sign) takes is written: the same as
    /// [`key_encoding`](SignatureScheme::key_encoding) for a shared secret, the private
    /// half for a scheme whose receivers hold a public key (Discord, SendGrid).
    fn signing_key_encoding(&self) -> KeyEncoding {
        self.key_encoding()
    }

    /// Checks the request's signature against every key, and its timestamp (where the scheme
    /// signs one) against `now` within `tolerance` either way.
    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<(), AuthFailure>;

    /// Reads the event's id and type from a request whose signature holds.
    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest>;

    /// Whether the signature covers the stable id [`describe`] reads: it is in the signed
    /// body (Stripe's, Slack's `event_id`) or in the signed content (Standard Webhooks'
    /// `webhook-id`). Where it is not (GitHub's `X-GitHub-Delivery`, Shopify's ids), a
    /// captured delivery can be sent again under a fresh id and still verify, so the
    /// processor also deduplicates such events by their body.
    ///
    /// [`describe`]: SignatureScheme::describe
    fn signs_stable_id(&self) -> bool {
        true
    }

    /// Lowercase names of the headers copied into the envelope, besides `content-type` and
    /// `user-agent`. Signature headers are never among them.
    fn forwarded_headers(&self) -> Vec<String>;

    /// Signs a delivery as the provider would, with one key.
    ///
    /// Returns the headers, lowercase names, that carry the signature and whatever else it
    /// covers: the timestamp, and the id where the scheme signs one. A request with these
    /// headers and `delivery.body` passes [`check_signature`] with a ring holding `key`
    /// whenever `delivery.signed_at` is within the window. Headers the provider sends
    /// beside the signature (the event type, a delivery id it does not sign) are the
    /// caller's to add.
    ///
    /// [`check_signature`]: SignatureScheme::check_signature
    fn sign(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Vec<(String, String)>;

    /// For a scheme whose signature travels in the body (SNS's `Signature` field): the
    /// body to send instead of `delivery.body`, signed with `key`; [`sign`] then gives the
    /// headers for that body. `None`, every other scheme's answer: the signature travels in
    /// the headers [`sign`] returns, and the body is sent as it is.
    ///
    /// [`sign`]: SignatureScheme::sign
    fn sign_body(&self, _delivery: &OutgoingDelivery<'_>, _key: &SigningKey) -> Option<Vec<u8>> {
        None
    }

    /// Fetches what [`check_signature`] needs besides the request and the keys, before it
    /// runs: SNS's signing certificate, from the URL the message names. What the fetch
    /// gives, or fails to give, [`check_signature`] then judges; an error is only a call that
    /// asking again later may mend (no answer, a server error), which the receiver answers
    /// 503 so that the provider retries. Schemes whose keys are all in the ring need nothing.
    ///
    /// [`check_signature`]: SignatureScheme::check_signature
    fn prepare<'a>(&'a self, _request: &'a InboundRequest, _keys: &'a KeyRing) -> ProviderCall<'a> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Completes a verified handshake ([`Delivery::handshake`]) that the provider expects
    /// completed by a call back to it, not by the answer alone: SNS's subscription
    /// confirmation, confirmed by a GET of its `SubscribeURL`. The receiver calls it once
    /// the request is verified and described, before it answers; an error is answered 503,
    /// so the provider sends the handshake again. Other schemes' handshakes are complete
    /// with their answer.
    fn complete_handshake<'a>(&'a self, _request: &'a InboundRequest) -> ProviderCall<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A call a scheme makes to its provider ([`SignatureScheme::prepare`],
/// [`SignatureScheme::complete_handshake`]), boxed: the trait stays object-safe.
pub type ProviderCall<'a> =
    Pin<Box<dyn Future<Output = Result<(), ProviderUnavailable>> + Send + 'a>>;

/// A call to the provider failed: answered 503, so that the provider retries the delivery.
/// Most such failures pass; one that does not (a subscription confirmation whose token has
/// expired) fails again on each retry, until the provider gives up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a call to the provider failed: {0}")]
pub struct ProviderUnavailable(pub String);

/// A delivery to be signed, as a provider has it just before sending.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingDelivery<'a> {
    /// The exact body bytes that will be sent.
    pub body: &'a [u8],
    /// When the provider signs it; schemes that sign no timestamp ignore it. Sub-second
    /// precision is dropped, as every scheme signs unix seconds.
    pub signed_at: OffsetDateTime,
    /// The provider's id for the delivery. Only schemes that sign an id (Standard Webhooks,
    /// a generic `{id}` template) use it; the others' providers send their id in a header
    /// of their own or in the body, which the caller provides.
    pub id: &'a str,
    /// The URL the delivery is sent to, as the provider was given it. Only schemes that
    /// sign it (Square, HubSpot, Twilio) use it.
    pub url: &'a str,
}

/// Only this crate's schemes can be one: each provider's module implements it for its own.
pub(crate) mod sealed {
    pub trait Sealed {}
    #[cfg(test)]
    impl Sealed for super::tests::AlwaysValid {}
}

/// The scheme for a provider, configured from the environment (only the generic scheme
/// reads settings of its own).
pub fn scheme_for(
    provider: Provider,
    env: &dyn Env,
) -> Result<Box<dyn SignatureScheme>, ConfigError> {
    provider.scheme(env)
}

/// The type of a delivery that batches events of several types (HubSpot, SendGrid,
/// Microsoft Graph); one whose events share a type has that type.
pub const MIXED_BATCH: &str = "batch";

/// What a scheme reads from a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The id the provider keeps across its retries; `None` falls back to the body's hash.
    pub stable_id: Option<String>,
    pub event_type: String,
    /// A handshake the provider expects answered directly, instead of being queued.
    pub handshake: Option<Handshake>,
    /// What the provider expects in the answer to an event once it is queued, where it
    /// expects more than a 2xx (Discord's deferred interaction response, answered 200).
    /// `None`: hookgate's own 202.
    pub acknowledgement: Option<Handshake>,
}

impl Delivery {
    pub fn event(stable_id: Option<String>, event_type: impl Into<String>) -> Self {
        Self {
            stable_id,
            event_type: event_type.into(),
            handshake: None,
            acknowledgement: None,
        }
    }

    /// A handshake to answer directly; nothing is queued.
    pub fn handshake(event_type: impl Into<String>, handshake: Handshake) -> Self {
        Self {
            handshake: Some(handshake),
            ..Self::event(None, event_type)
        }
    }
}

/// An answer a provider expects in a given form: a handshake answered 200 with `body` and
/// not queued (Slack's `url_verification`, Discord's `PING`), or the acknowledgement of a
/// queued event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub content_type: &'static str,
    pub body: String,
}

/// The outcome of a successful verification.
#[derive(Debug, Clone)]
pub enum Verified {
    Webhook(VerifiedWebhook),
    Handshake(Handshake),
}

/// A webhook whose signature holds, with the metadata needed to route and deduplicate it.
///
/// Only [`verify`] builds one; fields are read through methods so that none can be altered
/// after verification.
#[derive(Debug, Clone)]
pub struct VerifiedWebhook {
    provider: Provider,
    idempotency_key: IdempotencyKey,
    event_type: String,
    delivery_id: Option<String>,
    received_at: OffsetDateTime,
    source_ip: Option<IpAddr>,
    headers: BTreeMap<String, String>,
    body: Bytes,
    body_sha256: String,
    id_signed: bool,
    acknowledgement: Option<Handshake>,
}

impl VerifiedWebhook {
    /// What the provider expects in the answer once the event is queued, if it expects
    /// something of its own ([`Delivery::acknowledgement`]).
    pub fn acknowledgement(&self) -> Option<&Handshake> {
        self.acknowledgement.as_ref()
    }

    /// Whether the signature covers the stable id the key is made of (or the key is the
    /// body's hash, which it covers by definition). See [`SignatureScheme::signs_stable_id`].
    pub fn id_signed(&self) -> bool {
        self.id_signed
    }

    /// The raw body's SHA-256, lowercase hex.
    pub fn body_sha256(&self) -> &str {
        &self.body_sha256
    }
    pub fn provider(&self) -> Provider {
        self.provider
    }
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// The provider's own id for the delivery, when it sends one.
    pub fn delivery_id(&self) -> Option<&str> {
        self.delivery_id.as_deref()
    }
    pub fn received_at(&self) -> OffsetDateTime {
        self.received_at
    }
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }
    /// The allow-listed headers, lowercase names.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }
    /// The raw body, byte for byte as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// Why a request is not accepted as genuine. Each variant becomes the same 401 answer; the
/// detail is for the log only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("the signature header `{header}` is missing")]
    MissingSignature { header: String },
    #[error("the signature header `{header}` is malformed")]
    MalformedSignature { header: String },
    #[error("the signed header `{header}` is missing")]
    MissingSignedHeader { header: String },
    #[error("the timestamp header `{header}` is missing")]
    MissingTimestamp { header: String },
    #[error("the timestamp header `{header}` is not a unix time in seconds")]
    MalformedTimestamp { header: String },
    #[error("the signed timestamp is {skew_secs} s away from now, outside the window")]
    TimestampOutsideWindow { skew_secs: i64 },
    #[error("no signature matches the body with any configured secret")]
    SignatureMismatch,
}

impl AuthFailure {
    /// A short stable label, for metrics and structured logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::MissingSignature { .. } => "missing_signature",
            AuthFailure::MalformedSignature { .. } => "malformed_signature",
            AuthFailure::MissingSignedHeader { .. } => "missing_signed_header",
            AuthFailure::MissingTimestamp { .. } => "missing_timestamp",
            AuthFailure::MalformedTimestamp { .. } => "malformed_timestamp",
            AuthFailure::TimestampOutsideWindow { .. } => "timestamp_outside_window",
            AuthFailure::SignatureMismatch => "signature_mismatch",
        }
    }
}

/// A genuine request that lacks what is needed to route or deduplicate it: a 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedRequest {
    #[error("the header `{header}` is missing")]
    MissingHeader { header: String },
    #[error("the header `{header}` is not usable: {reason}")]
    InvalidHeader { header: String, reason: String },
    #[error("the body is not JSON: {0}")]
    BodyNotJson(String),
    #[error("the body has no string field `{0}`")]
    MissingField(String),
    #[error("the event type `{0}` is empty, longer than 256 bytes, or has control characters")]
    InvalidEventType(String),
    #[error("the event id cannot be used as a key: {0}")]
    InvalidStableId(#[from] InvalidStableId),
}

/// A request failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Unauthenticated(#[from] AuthFailure),
    #[error(transparent)]
    Malformed(#[from] MalformedRequest),
}

/// Verifies a request with a scheme and, if it is genuine, reads what routing and
/// deduplication need.
pub fn verify(
    scheme: &dyn SignatureScheme,
    request: &InboundRequest,
    keys: &KeyRing,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<Verified, Rejection> {
    scheme.check_signature(request, keys, now, tolerance)?;
    let delivery = scheme.describe(request)?;
    if let Some(handshake) = delivery.handshake {
        return Ok(Verified::Handshake(handshake));
    }
    let event_type = &delivery.event_type;
    // The type travels as an SQS message attribute and names metrics and routes.
    if event_type.is_empty()
        || event_type.len() > 256
        || event_type
            .chars()
            .any(crate::idempotency::is_unusable_text_char)
    {
        return Err(
            MalformedRequest::InvalidEventType(event_type.escape_debug().to_string()).into(),
        );
    }
    let provider = scheme.provider();
    let body_sha256 = crate::bodies::sha256_hex(&request.body);
    let (idempotency_key, id_signed) = match &delivery.stable_id {
        Some(id) => (
            IdempotencyKey::from_stable_id(provider, id).map_err(MalformedRequest::from)?,
            scheme.signs_stable_id(),
        ),
        None => (
            IdempotencyKey::from_body_sha256(provider, &body_sha256),
            true,
        ),
    };
    let mut forwarded = scheme.forwarded_headers();
    forwarded.extend(["content-type".to_owned(), "user-agent".to_owned()]);
    let headers = forwarded
        .into_iter()
        .filter_map(|name| {
            let value = request.header(&name)?.to_owned();
            Some((name, value))
        })
        .collect();
    Ok(Verified::Webhook(VerifiedWebhook {
        provider,
        idempotency_key,
        event_type: delivery.event_type,
        delivery_id: delivery.stable_id,
        received_at: request.received_at,
        source_ip: request.source_ip,
        headers,
        body: request.body.clone(),
        body_sha256,
        id_signed,
        acknowledgement: delivery.acknowledgement,
    }))
}

// ---- helpers the schemes share ----

/// Whether `signature` is an Ed25519 signature of `message` by any Ed25519 public key of the
/// ring. ring's verification is the one rustls already links for TLS.
pub(crate) fn any_ed25519_key_verifies(keys: &KeyRing, message: &[u8], signature: &[u8]) -> bool {
    keys.keys()
        .filter(|key| key.kind() == KeyKind::Ed25519Public)
        .any(|key| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.as_bytes())
                .verify(message, signature)
                .is_ok()
        })
}

/// Signs `message` with an Ed25519 seed; `None` for a key of another kind.
pub(crate) fn ed25519_sign(key: &SigningKey, message: &[u8]) -> Option<[u8; 64]> {
    if key.kind() != KeyKind::Ed25519Seed {
        return None;
    }
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(key.as_bytes()).ok()?;
    pair.sign(message).as_ref().try_into().ok()
}

/// Whether `signature` (ASN.1 DER, as SendGrid sends it) is an ECDSA P-256 SHA-256
/// signature of `message` by any P-256 public key of the ring.
pub(crate) fn any_p256_key_verifies(keys: &KeyRing, message: &[u8], signature: &[u8]) -> bool {
    keys.keys()
        .filter(|key| key.kind() == KeyKind::P256Public)
        .any(|key| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                key.as_bytes(),
            )
            .verify(message, signature)
            .is_ok()
        })
}

/// Signs `message` with a P-256 private key (PKCS#8), the signature in ASN.1 DER; `None`
/// for a key of another kind or one ring cannot read.
///
/// The signature is deterministic, so that a sample signed twice is the same file (the
/// samples and `hookgate samples --check` rely on it). ring draws ECDSA's nonce from
/// SHA-256 of a digest of its random input and the key, the random input again, and the
/// message's digest: with a fixed input the nonce stays a secret function of the key and
/// the message, as in RFC 6979's deterministic ECDSA. ring offers no other way than its
/// fixed-byte generator; hookgate only signs with test keys and keys of its users' own
/// (SendGrid keeps its private key), never as a provider.
pub(crate) fn p256_sign(key: &SigningKey, message: &[u8]) -> Option<Vec<u8>> {
    if key.kind() != KeyKind::P256Private {
        return None;
    }
    #[allow(deprecated)]
    let fixed = ring::test::rand::FixedByteRandom { byte: 0 };
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        key.as_bytes(),
        &fixed,
    )
    .ok()?;
    Some(pair.sign(&fixed, message).ok()?.as_ref().to_vec())
}

/// HMAC-SHA256 over the concatenation of `parts`, so signed content such as
/// `{t}.{body}` is never copied into one buffer.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA1 over the concatenation of `parts`, for the providers that still sign with it
/// (Intercom, Twilio): ring's legacy algorithm, which rustls already links.
pub(crate) fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut context = ring::hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    context
        .sign()
        .as_ref()
        .try_into()
        .expect("an HMAC-SHA1 tag is 20 bytes")
}

/// [`any_signature_matches`] with HMAC-SHA1.
pub(crate) fn any_sha1_signature_matches(
    keys: &KeyRing,
    candidates: &[Vec<u8>],
    parts: &[&[u8]],
) -> bool {
    keys.keys()
        .filter(|key| key.kind() == KeyKind::Hmac)
        .any(|key| {
            let expected = hmac_sha1(key.as_bytes(), parts);
            candidates
                .iter()
                .any(|candidate| bool::from(candidate.as_slice().ct_eq(expected.as_slice())))
        })
}

/// True when any candidate signature equals the HMAC of `parts` under any HMAC key of the
/// ring. Each comparison is constant-time in the signature's bytes. A public key is never
/// used as an HMAC key: anyone can read it, so an HMAC under it proves nothing.
pub(crate) fn any_signature_matches(
    keys: &KeyRing,
    candidates: &[Vec<u8>],
    parts: &[&[u8]],
) -> bool {
    keys.keys()
        .filter(|key| key.kind() == KeyKind::Hmac)
        .any(|key| {
            let expected = hmac_sha256(key.as_bytes(), parts);
            candidates
                .iter()
                .any(|candidate| bool::from(candidate.as_slice().ct_eq(expected.as_slice())))
        })
}

/// The signature header `name`'s value, or [`AuthFailure::MissingSignature`].
pub(crate) fn signature_header<'r>(
    request: &'r InboundRequest,
    name: &str,
) -> Result<&'r str, AuthFailure> {
    request
        .header(name)
        .ok_or_else(|| AuthFailure::MissingSignature {
            header: name.to_owned(),
        })
}

/// [`any_signature_matches`] as a check: `Ok`, or [`AuthFailure::SignatureMismatch`].
pub(crate) fn check_hmac(
    keys: &KeyRing,
    candidates: &[Vec<u8>],
    parts: &[&[u8]],
) -> Result<(), AuthFailure> {
    if any_signature_matches(keys, candidates, parts) {
        Ok(())
    } else {
        Err(AuthFailure::SignatureMismatch)
    }
}

/// A signature header of `key=value` items that carries one timestamp and any number of
/// hex signatures: Stripe's `t=…,v1=…`, Calendly's (the same), Paddle's `ts=…;h1=…`.
pub(crate) struct TimestampedSignatures<'h> {
    /// The timestamp as sent.
    pub text: &'h str,
    /// The timestamp, unix seconds.
    pub unix: i64,
    pub signatures: Vec<Vec<u8>>,
}

/// Reads exactly one `timestamp_key` and every `signature_key` of `value`'s items, split at
/// `separator`; other keys are ignored. A signature that is not 64 lowercase hex digits is
/// kept out of the candidates rather than spoiling the header: the providers' own libraries
/// compare each as text with the lowercase hex they compute, so such a value can never
/// match, and another beside it still may. No signature item at all, no single timestamp,
/// or an item that is not `key=value`, is malformed (`None`).
pub(crate) fn parse_timestamped_signatures<'h>(
    value: &'h str,
    separator: char,
    timestamp_key: &str,
    signature_key: &str,
) -> Option<TimestampedSignatures<'h>> {
    let mut timestamp = None;
    let mut any_signature = false;
    let mut signatures = Vec::new();
    for item in value.split(separator) {
        let (name, value) = item.trim().split_once('=')?;
        if name == timestamp_key {
            if timestamp.is_some() {
                return None;
            }
            timestamp = Some((value, parse_unix_seconds(value)?));
        } else if name == signature_key {
            any_signature = true;
            signatures.extend(decode_lowercase_hex(value));
        }
    }
    let (text, unix) = timestamp?;
    any_signature.then_some(TimestampedSignatures {
        text,
        unix,
        signatures,
    })
}

/// A signed unix timestamp in seconds, read from a header.
pub(crate) fn unix_timestamp(request: &InboundRequest, header: &str) -> Result<i64, AuthFailure> {
    let value = request
        .header(header)
        .ok_or_else(|| AuthFailure::MissingTimestamp {
            header: header.to_owned(),
        })?;
    parse_unix_seconds(value).ok_or_else(|| AuthFailure::MalformedTimestamp {
        header: header.to_owned(),
    })
}

/// The text of a timestamp header whose unix seconds are within `tolerance` of `now`: what
/// schemes that sign the header as sent (Discord, SendGrid) put before the body.
pub(crate) fn timestamp_in_window<'r>(
    request: &'r InboundRequest,
    header: &str,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<&'r str, AuthFailure> {
    check_window(unix_timestamp(request, header)?, now, tolerance)?;
    // `unix_timestamp` read it as plain digits, so the header is there.
    Ok(request.header(header).unwrap_or_default())
}

pub(crate) fn parse_unix_seconds(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Refuses a timestamp further than `tolerance` from `now`, in either direction: an old one
/// is a replay, a future one a forgery made to outlive the window.
pub(crate) fn check_window(
    signed_at: i64,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<(), AuthFailure> {
    let skew_secs = now.unix_timestamp().saturating_sub(signed_at);
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if skew_secs.unsigned_abs() > tolerance.unsigned_abs() {
        return Err(AuthFailure::TimestampOutsideWindow { skew_secs });
    }
    Ok(())
}

/// The strings at `paths` of the body, read as JSON in one pass ([`json_fields`]), for
/// schemes that read the id or type from it; a body that is not JSON is malformed.
pub(crate) fn json_body_strings<const N: usize>(
    request: &InboundRequest,
    paths: [&str; N],
) -> Result<[Option<String>; N], MalformedRequest> {
    json_fields::json_strings(&request.body, paths)
        .map_err(|error| MalformedRequest::BodyNotJson(error.to_string()))
}

pub(crate) use json_fields::json_strings;

/// A string at a dot-separated path (`event.type`) in a parsed JSON document: what the
/// one-pass reader ([`json_fields`]) is checked against.
#[cfg(test)]
pub(crate) fn json_str<'a>(document: &'a serde_json::Value, path: &str) -> Option<&'a str> {
    path.split('.')
        .try_fold(document, |node, field| node.get(field))
        .and_then(serde_json::Value::as_str)
}

/// One `(name, value)` pair of a signed delivery's headers.
pub(crate) fn header(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A 32-byte signature in hex of either case, for senders that do not say which they use
/// (the generic scheme).
pub(crate) fn decode_hex(value: &str) -> Option<Vec<u8>> {
    hex::decode(value).ok().filter(|bytes| bytes.len() == 32)
}

/// A 32-byte signature in lowercase hex only. GitHub, Stripe and Slack send lowercase, and
/// their own verifiers (`@octokit/webhooks-methods`, `stripe`, `slack_sdk`) compare the hex
/// text, so an uppercase signature is one they refuse: refusing it too keeps hookgate
/// exactly as strict as the provider.
pub(crate) fn decode_lowercase_hex(value: &str) -> Option<Vec<u8>> {
    if !value
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    decode_hex(value)
}

pub(crate) fn decode_base64(value: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .filter(|bytes| bytes.len() == 32)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Building signed requests and keys in the schemes' tests.

    use super::*;

    pub fn keys(secret: &str) -> KeyRing {
        KeyRing::from_secrets(secret, None, KeyEncoding::Raw).unwrap()
    }

    pub fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    pub const WINDOW: Duration = Duration::from_secs(300);

    pub fn hex_hmac(secret: &str, content: &[u8]) -> String {
        hex::encode(hmac_sha256(secret.as_bytes(), &[content]))
    }

    pub fn raw_key(secret: &str) -> SigningKey {
        SigningKey::parse(secret, KeyEncoding::Raw).unwrap()
    }

    /// A delivery to sign; the id is one no test relies on unless it sets its own.
    pub fn outgoing(body: &str, signed_at: i64) -> OutgoingDelivery<'_> {
        OutgoingDelivery {
            body: body.as_bytes(),
            signed_at: at(signed_at),
            id: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            url: "https://hooks.example.com/webhooks/test",
        }
    }

    /// The request a provider sends: `body` with the headers [`SignatureScheme::sign`]
    /// returned, plus any others.
    pub fn request_with(body: &str, headers: &[(String, String)]) -> InboundRequest {
        headers.iter().fold(
            InboundRequest::post(body.to_owned()),
            |request, (name, value)| request.with_header(name, value),
        )
    }

    /// A queue message for a GitHub `issues` delivery with this id, made the only way there
    /// is: signed, verified as a receiver verifies it, and wrapped. For the embedded
    /// queue's tests.
    #[cfg(feature = "sqlite")]
    pub fn verified_github_message(delivery_id: &str) -> crate::envelope::QueueMessage {
        let body = r#"{"action":"opened","issue":{"number":1347}}"#;
        let signed = github::Github.sign(&outgoing(body, 0), &raw_key("unit-test-secret"));
        let request = request_with(body, &signed)
            .with_header("x-github-delivery", delivery_id)
            .with_header("x-github-event", "issues");
        match verify(
            &github::Github,
            &request,
            &keys("unit-test-secret"),
            at(0),
            WINDOW,
        ) {
            Ok(Verified::Webhook(webhook)) => {
                crate::envelope::QueueMessage::from_verified(&webhook)
            }
            other => panic!("a correctly signed delivery must verify, got {other:?}"),
        }
    }

    /// The same request with the first ASCII digit of its body changed, keeping it JSON.
    pub fn with_one_byte_changed(mut request: InboundRequest) -> InboundRequest {
        let mut body = request.body.to_vec();
        let digit = body
            .iter_mut()
            .find(|byte| byte.is_ascii_digit())
            .expect("a body with a digit");
        *digit = if *digit == b'9' { b'0' } else { *digit + 1 };
        request.body = body.into();
        request
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn a_timestamp_inside_the_window_is_accepted_either_side() {
        assert!(check_window(1000, at(1300), WINDOW).is_ok());
        assert!(check_window(1300, at(1000), WINDOW).is_ok());
    }

    #[test]
    fn a_stale_or_future_timestamp_is_refused() {
        assert_eq!(
            check_window(1000, at(1301), WINDOW),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: 301 })
        );
        assert_eq!(
            check_window(1301, at(1000), WINDOW),
            Err(AuthFailure::TimestampOutsideWindow { skew_secs: -301 })
        );
    }

    #[test]
    fn a_timestamp_that_is_not_plain_digits_is_malformed() {
        for bad in [
            "",
            "-5",
            "+5",
            "1.5",
            "12 34",
            "0x10",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_unix_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_previous_key_still_verifies_during_a_rotation() {
        let ring = KeyRing::from_secrets("new", Some("old"), KeyEncoding::Raw).unwrap();
        let signature = hmac_sha256(b"old", &[b"body"]).to_vec();
        assert!(any_signature_matches(&ring, &[signature], &[b"body"]));
    }

    /// RFC 8032, 7.1, TEST 1: the empty message.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC8032_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    #[test]
    fn ed25519_signs_and_checks_rfc_8032s_first_vector() {
        let seed = SigningKey::parse(RFC8032_SEED, KeyEncoding::Ed25519SeedHex).unwrap();
        let signature = ed25519_sign(&seed, b"").unwrap();
        assert_eq!(hex::encode(signature), RFC8032_SIGNATURE);
        let public =
            KeyRing::from_secrets(RFC8032_PUBLIC, None, KeyEncoding::Ed25519PublicHex).unwrap();
        assert!(any_ed25519_key_verifies(&public, b"", &signature));
        assert!(!any_ed25519_key_verifies(&public, b"x", &signature));
    }

    #[test]
    fn a_key_of_another_kind_neither_signs_nor_checks_ed25519() {
        let hmac = SigningKey::parse(RFC8032_SEED, KeyEncoding::Raw).unwrap();
        assert_eq!(ed25519_sign(&hmac, b""), None);
        let signature = hex::decode(RFC8032_SIGNATURE).unwrap();
        assert!(!any_ed25519_key_verifies(
            &keys(RFC8032_PUBLIC),
            b"",
            &signature
        ));
    }

    #[test]
    fn p256_signs_with_a_pkcs8_key_and_checks_with_its_public_key() {
        let random = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &random,
        )
        .unwrap();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.as_ref(),
            &random,
        )
        .unwrap();
        use ring::signature::KeyPair;
        let spki = [
            crate::secret::P256_SPKI_PREFIX.as_slice(),
            pair.public_key().as_ref(),
        ]
        .concat();
        let private = SigningKey::parse(
            &encode_base64(pkcs8.as_ref()),
            KeyEncoding::P256PrivateBase64,
        )
        .unwrap();
        let public =
            KeyRing::from_secrets(&encode_base64(&spki), None, KeyEncoding::P256PublicBase64)
                .unwrap();
        let signature = p256_sign(&private, b"1700000000[]").unwrap();
        assert!(any_p256_key_verifies(&public, b"1700000000[]", &signature));
        assert!(!any_p256_key_verifies(&public, b"1700000001[]", &signature));
    }

    #[test]
    fn a_public_key_is_never_used_as_an_hmac_key() {
        // Anyone can read a public key: an HMAC made with its bytes must not pass.
        let ring =
            KeyRing::from_secrets(RFC8032_PUBLIC, None, KeyEncoding::Ed25519PublicHex).unwrap();
        let forged = hmac_sha256(&hex::decode(RFC8032_PUBLIC).unwrap(), &[b"body"]).to_vec();
        assert!(!any_signature_matches(&ring, &[forged], &[b"body"]));
    }

    #[test]
    fn a_signature_of_another_length_never_matches() {
        let signature = hmac_sha256(b"k", &[b"body"]);
        assert!(!any_signature_matches(
            &keys("k"),
            &[signature[..31].to_vec()],
            &[b"body"]
        ));
    }

    #[test]
    fn an_event_type_sqs_cannot_carry_is_a_malformed_request() {
        for event_type in ["", "push\u{0}", "push\u{FFFF}", &"x".repeat(257)] {
            let body = format!("{{\"type\":{}}}", serde_json::Value::from(event_type));
            let request = InboundRequest::post(body);
            let result = verify(&AlwaysValid, &request, &keys("s"), at(1000), WINDOW);
            assert!(
                matches!(
                    result,
                    Err(Rejection::Malformed(MalformedRequest::InvalidEventType(_)))
                ),
                "{event_type:?}: {result:?}"
            );
        }
    }

    /// A scheme whose signature always holds and whose type is the body's `type`, to test
    /// what `verify` checks after the signature.
    #[derive(Debug)]
    pub(super) struct AlwaysValid;

    impl SignatureScheme for AlwaysValid {
        fn provider(&self) -> Provider {
            Provider::Generic
        }
        fn check_signature(
            &self,
            _: &InboundRequest,
            _: &KeyRing,
            _: OffsetDateTime,
            _: Duration,
        ) -> Result<(), AuthFailure> {
            Ok(())
        }
        fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
            let [event_type] = json_body_strings(request, ["type"])?;
            Ok(Delivery::event(None, event_type.unwrap_or_default()))
        }
        fn forwarded_headers(&self) -> Vec<String> {
            Vec::new()
        }
        fn sign(
            &self,
            _: &OutgoingDelivery<'_>,
            _: &crate::secret::SigningKey,
        ) -> Vec<(String, String)> {
            Vec::new()
        }
    }

    #[test]
    fn json_paths_reach_nested_strings_only() {
        let document = serde_json::json!({"event": {"type": "app_mention", "n": 1}});
        assert_eq!(json_str(&document, "event.type"), Some("app_mention"));
        assert_eq!(json_str(&document, "event.n"), None);
        assert_eq!(json_str(&document, "missing.type"), None);
    }
}
