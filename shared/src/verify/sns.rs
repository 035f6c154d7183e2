//! Amazon SNS HTTP/HTTPS subscriptions: an RSA signature in the body, over fields of the
//! message, checked with the certificate SNS serves at the URL the message names.
//!
//! SNS POSTs a JSON document (`Content-Type: text/plain; charset=UTF-8`) whose `Type` is
//! `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`. `Signature` is
//! base64 of an RSA PKCS#1 v1.5 signature, SHA-1 for `SignatureVersion` `1` (a topic's
//! default) and SHA-256 for `2`, of a string to sign made of `Name\nvalue\n` for these
//! fields, in this order, each only where the type has it:
//!
//! - `Notification`: `Message`, `MessageId`, `Subject` (only if present), `Timestamp`,
//!   `TopicArn`, `Type`;
//! - the two confirmations: `Message`, `MessageId`, `SubscribeURL`, `Timestamp`, `Token`,
//!   `TopicArn`, `Type`.
//!
//! Values are the JSON strings decoded. (AWS's "Verifying the signatures of Amazon SNS
//! messages"; the same lists in aws-sdk-java-v2's `sns-message-manager` `SignatureValidator`
//! and aws-php-sns-message-validator's `getStringToSign`. aws-js-sns-message-validator signs
//! an `UnsubscribeConfirmation` with the notification's list, leaving `Token` out: that is
//! its bug, SNS's own unsubscribe confirmation in the tests below has the `Token`.)
//!
//! **The certificate.** `SigningCertURL` must be `https://sns.<region>.amazonaws.com/….pem`,
//! or `https://sns.cn-<region>.amazonaws.com.cn/….pem` in the China partition: lowercase,
//! no user, no port, no query, a path of plain characters ending `.pem`. `<region>` must be
//! shaped as AWS's are (`us-east-1`, `us-gov-west-1`: letters, then a number, joined by
//! hyphens), which also refuses the AWS hosts anyone can get a name under (`sns.s3-website-
//! us-east-1.amazonaws.com`, `sns.s3.amazonaws.com`). That is the official validators'
//! `^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$` (JavaScript, PHP, Ruby), made strict.
//! The certificate is fetched over HTTPS with the trust of the SDK's own clients
//! ([`crate::https`]: Amazon's roots, and `HOOKGATE_CA_FILE`'s), at most 16 KiB, as PEM, and
//! kept per URL (32 URLs at most, the oldest forgotten first; SNS's certificates last about a
//! year, and a new one comes at a new URL). What proves it is SNS's is where it came from: a
//! TLS connection to an SNS host. Its own chain is not
//! built (the PEM holds the leaf alone), nor are its dates checked: the official
//! validators check neither (PHP's tests verify real messages with a certificate expired in
//! 2022). aws-sdk-java-v2's newer message manager also matches the certificate's name
//! against a table of names per region; a table to keep in step with every new region,
//! and no proof beyond the TLS fetch, so it is not copied here.
//!
//! **Why rustls-webpki.** The certificate is parsed by rustls-webpki, the X.509 parser every
//! receiver already links under rustls, and its key checked by ring (RSA PKCS#1 2048–8192
//! bits, SHA-1 or SHA-256) through a [`SignatureVerificationAlgorithm`] of our own: webpki
//! finds the key (and refuses a key that is not RSA), ring verifies. A DER walk by hand would
//! be a parser of our own to get right; a crate such as `x509-parser` would be a second
//! parser in every receiver.
//!
//! **Topics.** The receiver's secret is the list of topic ARNs it accepts, comma-separated
//! (during a rotation, either list's). A message from any other topic is refused (401)
//! before anything is fetched: SNS's documentation asks endpoints to refuse unexpected
//! topics, and a receiver's URL is no secret.
//!
//! **What is done with each type.** A `Notification` is queued: its stable id is
//! `MessageId` (kept across SNS's retries, and signed), its type the topic's name (the ARN's
//! last part), which is what an agent team routes SNS on: a topic is SNS's unit of
//! routing, while `Subject` is optional free text and message attributes are there only
//! when a publisher sets them (both reach the agent in the body). A
//! `SubscriptionConfirmation` is a handshake: it is confirmed by a GET of its
//! `SubscribeURL` (itself required to be an SNS host's `/?Action=ConfirmSubscription…`),
//! answered 200 and not queued; SNS sends no notification before it. An
//! `UnsubscribeConfirmation` is answered 200 and neither queued nor acted on: visiting its
//! `SubscribeURL` would undo an unsubscription someone with rights on the topic chose, and
//! agents have nothing to do with it.
//!
//! **No replay window.** `Timestamp` is signed, but SNS retries a message with the same
//! body and `Timestamp` for up to an hour under a custom delivery policy (3,600 s is its
//! cap), and AWS's validators and documentation check no age. A replay is instead one
//! `MessageId` twice, which the processor's idempotency record stops.
//!
//! **Answers.** SNS retries 5xx and 429 answers only. A certificate fetch or a confirmation
//! that may succeed later (no answer, 5xx, 429) is answered 503, and SNS tries again; what
//! is refused (an unknown topic, a URL not SNS's, a certificate SNS does not serve, a bad
//! signature) is 401, which it does not retry.
//!
//! Surprises: `SignatureVersion`, `SigningCertURL`, `UnsubscribeURL` and
//! `MessageAttributes` are outside the signature (SNS's design); a signed field given twice
//! is refused, lest the agent's JSON parser read the other copy than the one verified here.
//! Raw message delivery sends the published message bare, unsigned: it cannot be verified
//! and is refused.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::{
    alg_id, AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm,
};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    encode_base64, AuthFailure, Delivery, Handshake, MalformedRequest, OutgoingDelivery,
    ProviderCall, ProviderUnavailable, SignatureScheme,
};
use crate::https::{HttpsError, HttpsGet};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyEncoding, KeyKind, KeyRing, SigningKey};

/// The largest certificate accepted: SNS's are under 2.5 KB as PEM.
const CERTIFICATE_LIMIT: usize = 16 * 1024;
/// How much of a confirmation's answer is read: SNS's is a few hundred bytes of XML.
const CONFIRMATION_LIMIT: usize = 64 * 1024;
/// How many fetched certificates are kept.
const CACHE_CAPACITY: usize = 32;
/// The longest URL looked at: SNS's, a subscription's token included, are under 400 bytes.
const URL_LIMIT: usize = 2048;

const SIGNATURE: &str = "Signature";
const SIGNATURE_VERSION: &str = "SignatureVersion";
const SIGNING_CERT_URL: &str = "SigningCertURL";
const SUBSCRIBE_URL: &str = "SubscribeURL";

/// The Amazon SNS scheme, with the HTTPS client it fetches certificates and confirms
/// subscriptions with, and the certificates it has.
#[derive(Debug)]
pub struct Sns {
    https: Arc<dyn HttpsGet>,
    certificates: Certificates,
}

impl super::sealed::Sealed for Sns {}

/// The scheme the provider table names for sns: certificates fetched by the process's HTTPS
/// client ([`crate::https::default_client`]).
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Sns::new(crate::https::default_client()?)))
}

impl Sns {
    /// Fetches certificates, and confirms subscriptions, with `https`.
    pub fn new(https: Arc<dyn HttpsGet>) -> Self {
        Self {
            https,
            certificates: Certificates::default(),
        }
    }

    /// Takes `pem` for the certificate at `url` without fetching it, and keeps it for good.
    /// For the samples and `hookgate dev`, whose messages are signed with a public test key
    /// at a URL SNS does not serve: a receiver of real SNS messages has no use for it.
    pub fn with_certificate(mut self, url: &str, pem: &str) -> Result<Self, InvalidCertificate> {
        if !is_certificate_url(url) {
            return Err(InvalidCertificate(format!(
                "{url} is not an SNS certificate URL"
            )));
        }
        let certificate = certificate_of(pem.as_bytes()).ok_or_else(|| {
            InvalidCertificate(format!("no X.509 certificate in the PEM for {url}"))
        })?;
        self.certificates
            .pinned
            .push((url.to_owned(), Arc::new(certificate)));
        Ok(self)
    }
}

/// A certificate given to [`Sns::with_certificate`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidCertificate(String);

/// Certificates by URL: those given, then those fetched, the oldest forgotten first.
#[derive(Debug, Default)]
struct Certificates {
    pinned: Vec<(String, Arc<CertificateDer<'static>>)>,
    fetched: Mutex<VecDeque<(String, Arc<CertificateDer<'static>>)>>,
}

impl Certificates {
    fn get(&self, url: &str) -> Option<Arc<CertificateDer<'static>>> {
        let pinned = self.pinned.iter().find(|(known, _)| known == url);
        if let Some((_, certificate)) = pinned {
            return Some(Arc::clone(certificate));
        }
        let fetched = self.lock();
        let found = fetched.iter().find(|(known, _)| known == url);
        found.map(|(_, certificate)| Arc::clone(certificate))
    }

    fn insert(&self, url: &str, certificate: CertificateDer<'static>) {
        let mut fetched = self.lock();
        if fetched.iter().any(|(known, _)| known == url) {
            return;
        }
        if fetched.len() == CACHE_CAPACITY {
            fetched.pop_front();
        }
        fetched.push_back((url.to_owned(), Arc::new(certificate)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, Arc<CertificateDer<'static>>)>> {
        // Each change is one push or pop: a panic elsewhere leaves the list whole.
        self.fetched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The first certificate of a PEM document, if webpki can read it.
fn certificate_of(pem: &[u8]) -> Option<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    let certificate = CertificateDer::from_pem_slice(pem).ok()?;
    webpki::EndEntityCert::try_from(&certificate).ok()?;
    Some(certificate)
}

/// The fields of an SNS message this scheme reads. A field given twice is an error (serde's
/// derive refuses it), so the copy checked is the only one.
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
    #[serde(rename = "TopicArn")]
    topic_arn: Option<String>,
    #[serde(rename = "Subject")]
    subject: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "Timestamp")]
    timestamp: Option<String>,
    #[serde(rename = "SignatureVersion")]
    signature_version: Option<String>,
    #[serde(rename = "Signature")]
    signature: Option<String>,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: Option<String>,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
    #[serde(rename = "Token")]
    token: Option<String>,
}

/// The body as an SNS message: a JSON object (serde would also read an array as the
/// struct's fields in order, which no SNS message is).
fn parse(body: &[u8]) -> Result<Message, String> {
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the body is not a JSON object".to_owned());
    }
    serde_json::from_slice(body).map_err(|error| error.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

impl Message {
    fn kind(&self) -> Option<Kind> {
        match self.kind.as_deref()? {
            "Notification" => Some(Kind::Notification),
            "SubscriptionConfirmation" => Some(Kind::SubscriptionConfirmation),
            "UnsubscribeConfirmation" => Some(Kind::UnsubscribeConfirmation),
            _ => None,
        }
    }

    /// The string to sign for the message's type; a field the type requires and the
    /// message lacks is named.
    fn string_to_sign(&self, kind: Kind) -> Result<String, &'static str> {
        let type_name = self.kind.as_ref();
        let fields: &[(&'static str, Option<&String>, bool)] = match kind {
            Kind::Notification => &[
                ("Message", self.message.as_ref(), true),
                ("MessageId", self.message_id.as_ref(), true),
                ("Subject", self.subject.as_ref(), false),
                ("Timestamp", self.timestamp.as_ref(), true),
                ("TopicArn", self.topic_arn.as_ref(), true),
                ("Type", type_name, true),
            ],
            Kind::SubscriptionConfirmation | Kind::UnsubscribeConfirmation => &[
                ("Message", self.message.as_ref(), true),
                ("MessageId", self.message_id.as_ref(), true),
                ("SubscribeURL", self.subscribe_url.as_ref(), true),
                ("Timestamp", self.timestamp.as_ref(), true),
                ("Token", self.token.as_ref(), true),
                ("TopicArn", self.topic_arn.as_ref(), true),
                ("Type", type_name, true),
            ],
        };
        let mut content = String::new();
        for (name, value, required) in fields {
            match value {
                Some(value) => {
                    for part in [*name, "\n", value.as_str(), "\n"] {
                        content.push_str(part);
                    }
                }
                None if *required => return Err(name),
                None => {}
            }
        }
        Ok(content)
    }
}

/// Whether `topic` is in the list of topic ARNs of any key of the ring.
fn accepts_topic(keys: &KeyRing, topic: &str) -> bool {
    keys.keys()
        .filter(|key| key.kind() == KeyKind::Hmac)
        .filter_map(|key| std::str::from_utf8(key.as_bytes()).ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .any(|accepted| !accepted.is_empty() && accepted == topic)
}

/// A region's name as AWS shapes them: lowercase words, then a number, joined by hyphens
/// (`us-east-1`, `us-gov-west-1`, `ap-southeast-7`).
fn is_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()))
        && !number.is_empty()
        && number.len() <= 3
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// An SNS endpoint's host: `sns.<region>.amazonaws.com`, or `sns.cn-<region>.amazonaws.com.cn`.
fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    if let Some(region) = rest.strip_suffix(".amazonaws.com.cn") {
        return region.starts_with("cn-") && is_region(region);
    }
    rest.strip_suffix(".amazonaws.com").is_some_and(is_region)
}

/// The path and query of `url` when it is `https://` then an SNS host, exactly (no user,
/// no port), then `/`; visible ASCII only, no fragment.
fn on_sns_host(url: &str) -> Option<&str> {
    if url.len() > URL_LIMIT || !url.bytes().all(|b| b.is_ascii_graphic()) || url.contains('#') {
        return None;
    }
    let rest = url.strip_prefix("https://")?;
    let path_at = rest.find('/')?;
    let (host, path) = rest.split_at(path_at);
    is_sns_host(host).then_some(path)
}

/// Whether `url` is where SNS serves a signing certificate: an SNS host, and a plain path
/// ending `.pem`.
fn is_certificate_url(url: &str) -> bool {
    on_sns_host(url).is_some_and(|path| {
        path.ends_with(".pem")
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
            && !path.split('/').any(|segment| segment == "..")
    })
}

/// Whether `url` is an SNS host's `/?Action=ConfirmSubscription…`, and that action alone.
fn is_confirmation_url(url: &str) -> bool {
    let Some(query) = on_sns_host(url).and_then(|path| path.strip_prefix("/?")) else {
        return false;
    };
    let mut actions = form_urlencoded::parse(query.as_bytes()).filter(|(name, _)| name == "Action");
    matches!(
        (actions.next(), actions.next()),
        (Some((_, action)), None) if action == "ConfirmSubscription"
    )
}

/// RSA PKCS#1 v1.5 with SHA-1 or SHA-256, over ring, as webpki's
/// [`SignatureVerificationAlgorithm`]: webpki finds the certificate's key, ring checks.
#[derive(Debug)]
struct RsaPkcs1 {
    signature_alg_id: AlgorithmIdentifier,
    ring: &'static ring::signature::RsaParameters,
}

/// `SignatureVersion` 1. SHA-1 is what SNS signs with unless a topic is set to version 2;
/// ring keeps it for such legacy uses, and webpki has no SHA-1 of its own.
static RSA_PKCS1_SHA1: RsaPkcs1 = RsaPkcs1 {
    // sha1WithRSAEncryption (1.2.840.113549.1.1.5), NULL parameters: the DER of the
    // AlgorithmIdentifier's contents, as `alg_id` writes them.
    signature_alg_id: AlgorithmIdentifier::from_slice(&[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
    ]),
    ring: &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
};

/// `SignatureVersion` 2.
static RSA_PKCS1_SHA256: RsaPkcs1 = RsaPkcs1 {
    signature_alg_id: alg_id::RSA_PKCS1_SHA256,
    ring: &ring::signature::RSA_PKCS1_2048_8192_SHA256,
};

impl SignatureVerificationAlgorithm for RsaPkcs1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(self.ring, public_key)
            .verify(message, signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature_alg_id
    }
}

/// Whether `signature` is `certificate`'s key's signature of `content` with `algorithm`.
fn signature_holds(
    certificate: &CertificateDer<'_>,
    algorithm: &RsaPkcs1,
    content: &[u8],
    signature: &[u8],
) -> bool {
    webpki::EndEntityCert::try_from(certificate)
        .and_then(|certificate| certificate.verify_signature(algorithm, content, signature))
        .is_ok()
}

fn malformed(field: &str) -> AuthFailure {
    AuthFailure::MalformedSignature {
        header: field.to_owned(),
    }
}

impl SignatureScheme for Sns {
    fn provider(&self) -> Provider {
        Provider::Sns
    }

    /// The receiver's secret is its list of topic ARNs, taken as it is written.
    fn key_encoding(&self) -> KeyEncoding {
        KeyEncoding::Raw
    }

    /// What signs, for the samples and `hookgate send`: an RSA private key.
    fn signing_key_encoding(&self) -> KeyEncoding {
        KeyEncoding::RsaPrivatePem
    }

    /// No window: see the module's documentation.
    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        _now: OffsetDateTime,
        _tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        let message = parse(&request.body).map_err(|_| malformed(SIGNATURE))?;
        let signature =
            message
                .signature
                .as_deref()
                .ok_or_else(|| AuthFailure::MissingSignature {
                    header: SIGNATURE.to_owned(),
                })?;
        let algorithm = match message.signature_version.as_deref() {
            Some("1") => &RSA_PKCS1_SHA1,
            Some("2") => &RSA_PKCS1_SHA256,
            _ => return Err(malformed(SIGNATURE_VERSION)),
        };
        let signature = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(signature)
                .map_err(|_| malformed(SIGNATURE))?
        };
        let kind = message.kind().ok_or_else(|| malformed("Type"))?;
        let content =
            message
                .string_to_sign(kind)
                .map_err(|field| AuthFailure::MissingSignedHeader {
                    header: field.to_owned(),
                })?;
        // Unexpected topics are refused before anything is asked of SNS.
        let topic = message.topic_arn.as_deref().unwrap_or_default();
        if !accepts_topic(keys, topic) {
            return Err(AuthFailure::SignatureMismatch);
        }
        if kind != Kind::Notification
            && !message
                .subscribe_url
                .as_deref()
                .is_some_and(is_confirmation_url)
        {
            return Err(malformed(SUBSCRIBE_URL));
        }
        let url = message
            .signing_cert_url
            .as_deref()
            .filter(|url| is_certificate_url(url))
            .ok_or_else(|| malformed(SIGNING_CERT_URL))?;
        // [`prepare`](SignatureScheme::prepare) fetched it, unless it could not be had.
        let certificate = self
            .certificates
            .get(url)
            .ok_or(AuthFailure::SignatureMismatch)?;
        if signature_holds(&certificate, algorithm, content.as_bytes(), &signature) {
            Ok(())
        } else {
            Err(AuthFailure::SignatureMismatch)
        }
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        let message = parse(&request.body).map_err(MalformedRequest::BodyNotJson)?;
        let field = |value: Option<String>, name: &str| {
            value.ok_or_else(|| MalformedRequest::MissingField(name.to_owned()))
        };
        let kind = message
            .kind()
            .ok_or_else(|| MalformedRequest::MissingField("Type".to_owned()))?;
        let topic = field(message.topic_arn, "TopicArn")?;
        let acknowledgement = |status: &str| Handshake {
            content_type: "application/json",
            body: serde_json::json!({ "status": status, "topic_arn": topic }).to_string(),
        };
        Ok(match kind {
            Kind::Notification => {
                let id = field(message.message_id, "MessageId")?;
                let name = topic.rsplit(':').next().unwrap_or(&topic).to_owned();
                Delivery::event(Some(id), name)
            }
            Kind::SubscriptionConfirmation => Delivery::handshake(
                "SubscriptionConfirmation",
                acknowledgement("subscription confirmed"),
            ),
            Kind::UnsubscribeConfirmation => Delivery::handshake(
                "UnsubscribeConfirmation",
                acknowledgement("unsubscription noted"),
            ),
        })
    }

    fn forwarded_headers(&self) -> Vec<String> {
        [
            "x-amz-sns-message-type",
            "x-amz-sns-message-id",
            "x-amz-sns-topic-arn",
            "x-amz-sns-subscription-arn",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// SNS's signature travels in the body ([`sign_body`](SignatureScheme::sign_body)):
    /// no header carries one.
    fn sign(&self, _delivery: &OutgoingDelivery<'_>, _key: &SigningKey) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The body with `SignatureVersion` `2` and its `Signature` by an RSA private key (ring
    /// signs no SHA-1, and SNS topics may sign version 2). A body that is no SNS message, or
    /// a key that is not RSA, gives the body back unsigned, as other schemes give no headers.
    fn sign_body(&self, delivery: &OutgoingDelivery<'_>, key: &SigningKey) -> Option<Vec<u8>> {
        Some(signed_body(delivery.body, key).unwrap_or_else(|| delivery.body.to_vec()))
    }

    /// Fetches the message's certificate when its topic is accepted, its URL is SNS's and it
    /// is not known yet. A certificate that cannot be had for good (an answer other than
    /// 2xx, 429 or 5xx; a body that is no certificate) is not kept, and the check refuses.
    fn prepare<'a>(&'a self, request: &'a InboundRequest, keys: &'a KeyRing) -> ProviderCall<'a> {
        Box::pin(async move {
            let Ok(message) = parse(&request.body) else {
                return Ok(());
            };
            let topic = message.topic_arn.as_deref().unwrap_or_default();
            let Some(url) = message
                .signing_cert_url
                .as_deref()
                .filter(|url| accepts_topic(keys, topic) && is_certificate_url(url))
            else {
                return Ok(());
            };
            if self.certificates.get(url).is_some() {
                return Ok(());
            }
            match self.https.get(url, CERTIFICATE_LIMIT).await {
                Ok(pem) => {
                    if let Some(certificate) = certificate_of(&pem) {
                        self.certificates.insert(url, certificate);
                    }
                    Ok(())
                }
                Err(error) if error.is_transient() => Err(ProviderUnavailable(format!(
                    "SNS's signing certificate could not be fetched: {error}"
                ))),
                Err(_) => Ok(()),
            }
        })
    }

    /// A `SubscriptionConfirmation` is confirmed with a GET of its `SubscribeURL`, which the
    /// check found to be SNS's; any failure is answered 503, and SNS sends it again.
    fn complete_handshake<'a>(&'a self, request: &'a InboundRequest) -> ProviderCall<'a> {
        Box::pin(async move {
            let message = parse(&request.body).map_err(ProviderUnavailable)?;
            if message.kind() != Some(Kind::SubscriptionConfirmation) {
                return Ok(());
            }
            let topic = message.topic_arn.as_deref().unwrap_or_default();
            let url = message
                .subscribe_url
                .as_deref()
                .filter(|url| is_confirmation_url(url))
                .ok_or_else(|| ProviderUnavailable("no SNS SubscribeURL to confirm".to_owned()))?;
            self.https
                .get(url, CONFIRMATION_LIMIT)
                .await
                .map(|_| ())
                .map_err(|error: HttpsError| {
                    ProviderUnavailable(format!(
                        "the subscription to {topic} could not be confirmed: {error}"
                    ))
                })
        })
    }
}

/// `body` with `SignatureVersion` `2` and its `Signature` by `key`.
fn signed_body(body: &[u8], key: &SigningKey) -> Option<Vec<u8>> {
    if key.kind() != KeyKind::RsaPrivate {
        return None;
    }
    let body = with_string_field(std::str::from_utf8(body).ok()?, SIGNATURE_VERSION, "2")?;
    let message = parse(body.as_bytes()).ok()?;
    let content = message.string_to_sign(message.kind()?).ok()?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(key.as_bytes()).ok()?;
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        content.as_bytes(),
        &mut signature,
    )
    .ok()?;
    with_string_field(&body, SIGNATURE, &encode_base64(&signature)).map(String::into_bytes)
}

/// `body` with the string value of its field `name` replaced by `value`, in place, the
/// rest byte for byte as it was; or the field added at the end where there is none.
fn with_string_field(body: &str, name: &str, value: &str) -> Option<String> {
    let key = format!("\"{name}\"");
    let value = serde_json::to_string(value).ok()?;
    let mut from = 0;
    while let Some(found) = body[from..].find(&key) {
        let after_key = from + found + key.len();
        let literal = body[after_key..]
            .trim_start()
            .strip_prefix(':')
            .map(str::trim_start)
            .filter(|rest| rest.starts_with('"'));
        if let Some(literal) = literal {
            let start = body.len() - literal.len();
            let end = start + string_literal_len(literal)?;
            return Some(format!("{}{value}{}", &body[..start], &body[end..]));
        }
        from = after_key;
    }
    let close = body.rfind('}')?;
    let before = body[..close].trim_end();
    let separator = if before.ends_with('{') { "" } else { "," };
    Some(format!(
        "{before}{separator}{key}:{value}{}",
        &body[close..]
    ))
}

/// The length of the JSON string literal `text` starts with, quotes included.
fn string_literal_len(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (at, byte) in text.bytes().enumerate().skip(1) {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(at + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests;
