//! Signing secrets: parsed once, held as key bytes, never printed.
//!
//! A receiver accepts a signature made with the current secret or, during a rotation, the
//! previous one. Secrets come from the environment (`WEBHOOK_SECRET`,
//! `WEBHOOK_SECRET_PREVIOUS`) or from AWS Secrets Manager, whose value is either the plain
//! secret or JSON `{"current": "...", "previous": "..."}`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use serde::Deserialize;

pub mod refreshing;

/// How a provider turns the secret it shows its users into key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// The secret's UTF-8 bytes, as they are (GitHub, Stripe's whole `whsec_…`, Shopify,
    /// Slack, generic senders).
    Raw,
    /// Standard Webhooks: `whsec_` (or no prefix) then base64 of an HMAC key; `whpk_` then
    /// base64 of an Ed25519 public key (`v1a` signatures); `whsk_` then base64 of an Ed25519
    /// secret key, which only signs (samples, `hookgate send`). Padding is optional, as the
    /// reference libraries accept.
    StandardWebhooks,
    /// An Ed25519 public key in hex, 64 characters (Discord's application public key).
    Ed25519PublicHex,
    /// An Ed25519 private key's 32-byte seed in hex, 64 characters: signs only.
    Ed25519SeedHex,
    /// An ECDSA P-256 public key as base64 of its DER `SubjectPublicKeyInfo` (SendGrid's
    /// verification key).
    P256PublicBase64,
    /// An ECDSA P-256 private key as base64 of its PKCS#8 DER: signs only.
    P256PrivateBase64,
    /// An RSA private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`): signs only (the
    /// Amazon SNS samples; SNS's receivers hold no key, they fetch SNS's certificate).
    RsaPrivatePem,
}

/// What kind of key a [`SigningKey`] holds, which decides the signatures it can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// An HMAC key: signs and checks.
    Hmac,
    /// An Ed25519 public key (32 bytes): checks.
    Ed25519Public,
    /// An Ed25519 seed (32 bytes): signs.
    Ed25519Seed,
    /// An uncompressed P-256 point (65 bytes): checks.
    P256Public,
    /// A P-256 private key, PKCS#8 DER: signs.
    P256Private,
    /// An RSA private key, PKCS#8 DER: signs.
    RsaPrivate,
}

/// The DER that precedes the 65-byte point in every P-256 `SubjectPublicKeyInfo`
/// (id-ecPublicKey, prime256v1, then the BIT STRING header): such a key has one encoding,
/// so matching it replaces an ASN.1 parser.
pub(crate) const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Base64 as the Standard Webhooks reference libraries read secrets: padding optional, and
/// stray bits in the last symbol ignored (Python's decoder accepts them, so real secrets
/// may have them).
const LENIENT_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Key bytes and their kind. `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    bytes: Vec<u8>,
    kind: KeyKind,
}

impl SigningKey {
    pub fn parse(secret: &str, encoding: KeyEncoding) -> Result<Self, SecretError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = |kind, bytes: Vec<u8>| Ok(Self { bytes, kind });
        match encoding {
            KeyEncoding::Raw => key(KeyKind::Hmac, secret.as_bytes().to_vec()),
            KeyEncoding::StandardWebhooks => {
                let (kind, encoded) = if let Some(public) = secret.strip_prefix("whpk_") {
                    (KeyKind::Ed25519Public, public)
                } else if let Some(private) = secret.strip_prefix("whsk_") {
                    (KeyKind::Ed25519Seed, private)
                } else {
                    (
                        KeyKind::Hmac,
                        secret.strip_prefix("whsec_").unwrap_or(secret),
                    )
                };
                let bytes = LENIENT_BASE64
                    .decode(encoded)
                    .map_err(|_| SecretError::NotStandardWebhooks)?;
                match kind {
                    KeyKind::Hmac if bytes.is_empty() => Err(SecretError::Empty),
                    KeyKind::Ed25519Public if bytes.len() != 32 => {
                        Err(SecretError::NotStandardWebhooks)
                    }
                    // A secret key is the seed, or the seed followed by its public key.
                    KeyKind::Ed25519Seed if bytes.len() == 32 || bytes.len() == 64 => {
                        key(kind, bytes[..32].to_vec())
                    }
                    KeyKind::Ed25519Seed => Err(SecretError::NotStandardWebhooks),
                    _ => key(kind, bytes),
                }
            }
            KeyEncoding::Ed25519PublicHex | KeyEncoding::Ed25519SeedHex => {
                let bytes = hex::decode(secret)
                    .ok()
                    .filter(|bytes| bytes.len() == 32)
                    .ok_or(SecretError::NotEd25519Hex)?;
                let kind = if encoding == KeyEncoding::Ed25519PublicHex {
                    KeyKind::Ed25519Public
                } else {
                    KeyKind::Ed25519Seed
                };
                key(kind, bytes)
            }
            KeyEncoding::P256PublicBase64 => {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(secret)
                    .map_err(|_| SecretError::NotP256PublicKey)?;
                let point = der
                    .strip_prefix(P256_SPKI_PREFIX.as_slice())
                    .filter(|point| point.len() == 65 && point[0] == 0x04)
                    .ok_or(SecretError::NotP256PublicKey)?;
                key(KeyKind::P256Public, point.to_vec())
            }
            KeyEncoding::P256PrivateBase64 => {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(secret)
                    .map_err(|_| SecretError::NotP256PrivateKey)?;
                // Read once here, so that a bad key is refused with its reason rather than
                // signing nothing later.
                ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &der,
                    &ring::rand::SystemRandom::new(),
                )
                .map_err(|_| SecretError::NotP256PrivateKey)?;
                key(KeyKind::P256Private, der)
            }
            KeyEncoding::RsaPrivatePem => {
                use rustls_pki_types::pem::PemObject;
                let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(secret.as_bytes())
                    .map_err(|_| SecretError::NotRsaPrivateKey)?;
                ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
                    .map_err(|_| SecretError::NotRsaPrivateKey)?;
                key(KeyKind::RsaPrivate, der.secret_pkcs8_der().to_vec())
            }
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// The keys a signature may be made with: the current one first, then the previous one
/// while a rotation is under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRing {
    current: SigningKey,
    previous: Option<SigningKey>,
}

impl KeyRing {
    pub fn new(current: SigningKey, previous: Option<SigningKey>) -> Self {
        Self { current, previous }
    }

    /// Parses the current and, when given, the previous secret.
    pub fn from_secrets(
        current: &str,
        previous: Option<&str>,
        encoding: KeyEncoding,
    ) -> Result<Self, SecretError> {
        let current = SigningKey::parse(current, encoding).map_err(|e| e.in_field("current"))?;
        let previous = previous
            .filter(|secret| !secret.trim().is_empty())
            .map(|secret| SigningKey::parse(secret, encoding))
            .transpose()
            .map_err(|e| e.in_field("previous"))?;
        Ok(Self::new(current, previous))
    }

    /// Parses a Secrets Manager value: the plain secret, or
    /// `{"current": "...", "previous": "..."}`.
    pub fn from_secret_value(value: &str, encoding: KeyEncoding) -> Result<Self, SecretError> {
        let (current, previous) = rotating_parts(value)?;
        Self::from_secrets(&current, previous.as_deref(), encoding)
    }

    /// The keys to try, current first.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }
}

/// The current and, while rotating, the previous secret of a stored value: the plain
/// secret, or JSON `{"current": "…", "previous": "…"}`.
pub fn rotating_parts(value: &str) -> Result<(String, Option<String>), SecretError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rotating {
        current: String,
        previous: Option<String>,
    }
    if !value.trim_start().starts_with('{') {
        return Ok((value.to_owned(), None));
    }
    let rotating: Rotating =
        serde_json::from_str(value).map_err(|error| SecretError::InvalidJson(error.to_string()))?;
    Ok((rotating.current, rotating.previous))
}

/// A secret cannot be read or used. Messages never include the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret is not a Standard Webhooks key (`whsec_` followed by base64, or `whpk_` followed by base64 of a 32-byte Ed25519 public key)")]
    NotStandardWebhooks,
    #[error("the key is not an Ed25519 key in hex (64 hexadecimal characters)")]
    NotEd25519Hex,
    #[error("the key is not a P-256 public key (base64 of its DER SubjectPublicKeyInfo, as SendGrid shows it)")]
    NotP256PublicKey,
    #[error("the key is not a P-256 private key (base64 of its PKCS#8 DER)")]
    NotP256PrivateKey,
    #[error("the key is not an RSA private key (PKCS#8 PEM, -----BEGIN PRIVATE KEY-----)")]
    NotRsaPrivateKey,
    #[error(
        "the secret looks like JSON but is not {{\"current\": \"...\", \"previous\": \"...\"}}: {0}"
    )]
    InvalidJson(String),
    #[error("the {field} secret: {source}")]
    InField {
        field: &'static str,
        #[source]
        source: Box<SecretError>,
    },
    #[error("the secret store could not be read: {0}")]
    Unavailable(String),
}

impl SecretError {
    fn in_field(self, field: &'static str) -> Self {
        SecretError::InField {
            field,
            source: Box::new(self),
        }
    }
}

/// Port: where a receiver gets the keys that signatures are checked against.
///
/// Implementations cache: this is called once per request.
#[async_trait]
pub trait SecretSource: Send + Sync + fmt::Debug {
    async fn key_ring(&self) -> Result<Arc<KeyRing>, SecretError>;
}

/// Keys fixed at start, from the environment.
#[derive(Debug, Clone)]
pub struct StaticSecrets(Arc<KeyRing>);

impl StaticSecrets {
    pub fn new(keys: KeyRing) -> Self {
        Self(Arc::new(keys))
    }
}

#[async_trait]
impl SecretSource for StaticSecrets {
    async fn key_ring(&self) -> Result<Arc<KeyRing>, SecretError> {
        Ok(Arc::clone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_key() {
        let keys = KeyRing::from_secrets("hunter2", Some("hunter1"), KeyEncoding::Raw).unwrap();
        let printed = format!("{keys:?}");
        assert!(!printed.contains("hunter"), "{printed}");
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn a_standard_webhooks_secret_is_base64_decoded_with_or_without_prefix_and_padding() {
        let padded = SigningKey::parse(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            KeyEncoding::StandardWebhooks,
        )
        .unwrap();
        let bare = SigningKey::parse(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            KeyEncoding::StandardWebhooks,
        )
        .unwrap();
        assert_eq!(padded, bare);
        assert_eq!(padded.as_bytes().len(), 24);
        for unpadded in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
        ] {
            assert!(
                SigningKey::parse(unpadded, KeyEncoding::StandardWebhooks).is_ok(),
                "{unpadded}"
            );
        }
    }

    #[test]
    fn a_standard_webhooks_secret_that_is_not_base64_is_refused() {
        assert_eq!(
            SigningKey::parse("whsec_not base64!", KeyEncoding::StandardWebhooks),
            Err(SecretError::NotStandardWebhooks)
        );
    }

    #[test]
    fn a_standard_webhooks_key_is_hmac_public_or_private_by_its_prefix() {
        // RFC 8032 TEST 1's public key, base64.
        let public = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
        let key = SigningKey::parse(public, KeyEncoding::StandardWebhooks).unwrap();
        assert_eq!(key.kind(), KeyKind::Ed25519Public);
        assert_eq!(key.as_bytes().len(), 32);
        let seed = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
        let key = SigningKey::parse(seed, KeyEncoding::StandardWebhooks).unwrap();
        assert_eq!(key.kind(), KeyKind::Ed25519Seed);
        let secret = SigningKey::parse(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            KeyEncoding::StandardWebhooks,
        )
        .unwrap();
        assert_eq!(secret.kind(), KeyKind::Hmac);
    }

    #[test]
    fn a_standard_webhooks_public_key_of_another_length_is_refused() {
        assert_eq!(
            SigningKey::parse("whpk_AAAA", KeyEncoding::StandardWebhooks),
            Err(SecretError::NotStandardWebhooks)
        );
        assert_eq!(
            SigningKey::parse("whsk_AAAA", KeyEncoding::StandardWebhooks),
            Err(SecretError::NotStandardWebhooks)
        );
    }

    #[test]
    fn an_ed25519_key_in_hex_is_32_bytes_of_the_kind_asked_for() {
        let hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let public = SigningKey::parse(hex, KeyEncoding::Ed25519PublicHex).unwrap();
        assert_eq!(public.kind(), KeyKind::Ed25519Public);
        let seed = SigningKey::parse(hex, KeyEncoding::Ed25519SeedHex).unwrap();
        assert_eq!(seed.kind(), KeyKind::Ed25519Seed);
        for bad in [&hex[..62], "zz", "d75a98 0182"] {
            assert_eq!(
                SigningKey::parse(bad, KeyEncoding::Ed25519PublicHex),
                Err(SecretError::NotEd25519Hex),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_p256_public_key_is_read_from_its_subject_public_key_info() {
        // A P-256 key as `openssl ec -pubout -outform DER | base64` writes it.
        let spki = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElMrIlONNckg9UhWfs+RYKXY/01rtyLRXTV6DhOp9O896+pmQzXZK+Uzve+YNtW+nNGMNGG57FjlfYxjGrZvLdA==";
        let key = SigningKey::parse(spki, KeyEncoding::P256PublicBase64).unwrap();
        assert_eq!(key.kind(), KeyKind::P256Public);
        assert_eq!(key.as_bytes().len(), 65);
        assert_eq!(key.as_bytes()[0], 0x04);
    }

    #[test]
    fn a_p256_private_key_that_ring_cannot_read_is_refused_when_parsed() {
        // Base64, but of no PKCS#8 key; and the public key where the private one belongs.
        for bad in [
            "aG9va2dhdGU=",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElMrIlONNckg9UhWfs+RYKXY/01rtyLRXTV6DhOp9O896+pmQzXZK+Uzve+YNtW+nNGMNGG57FjlfYxjGrZvLdA==",
        ] {
            assert_eq!(
                SigningKey::parse(bad, KeyEncoding::P256PrivateBase64),
                Err(SecretError::NotP256PrivateKey),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_key_that_is_not_p256_is_refused() {
        // An Ed25519 SubjectPublicKeyInfo, and text that is not base64.
        for bad in [
            "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
            "not base64!",
        ] {
            assert_eq!(
                SigningKey::parse(bad, KeyEncoding::P256PublicBase64),
                Err(SecretError::NotP256PublicKey),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_rsa_private_key_is_read_from_its_pkcs8_pem_and_anything_else_refused() {
        // Generated with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`.
        let pem = include_str!("../samples/sns-test/signing-key.pem");
        let key = SigningKey::parse(pem, KeyEncoding::RsaPrivatePem).unwrap();
        assert_eq!(key.kind(), KeyKind::RsaPrivate);
        assert!(key.as_bytes().starts_with(&[0x30, 0x82]), "PKCS#8 DER");
        // A P-256 key, PKCS#8 too, made with openssl: a key, but not RSA.
        let p256 = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgWbWKhndJv5yMgaPn\nB0x5jDdWBotN1394md7rXn/U6vGhRANCAASKKJNraTTFvGpsoyCt7bEYChCvYYjY\nIqi27+1pSlok4Y6RnwMsBeDIqT1z90mJaQgblS5h6Va7pbLrLgaTdECJ\n-----END PRIVATE KEY-----\n";
        for not_rsa in ["not a key", p256, &pem.replace("MII", "XII")] {
            assert_eq!(
                SigningKey::parse(not_rsa, KeyEncoding::RsaPrivatePem),
                Err(SecretError::NotRsaPrivateKey)
            );
        }
    }

    #[test]
    fn a_stripe_style_secret_is_used_as_its_literal_bytes() {
        let key = SigningKey::parse("whsec_test_secret", KeyEncoding::Raw).unwrap();
        assert_eq!(key.as_bytes(), b"whsec_test_secret");
    }

    #[test]
    fn a_secret_value_may_be_plain_or_a_current_and_previous_pair() {
        let plain = KeyRing::from_secret_value("s3cret", KeyEncoding::Raw).unwrap();
        assert_eq!(plain.keys().count(), 1);
        let rotating = KeyRing::from_secret_value(
            r#"{"current": "new", "previous": "old"}"#,
            KeyEncoding::Raw,
        )
        .unwrap();
        let keys: Vec<_> = rotating.keys().map(SigningKey::as_bytes).collect();
        assert_eq!(keys, [b"new".as_slice(), b"old".as_slice()]);
    }

    #[test]
    fn a_json_secret_value_with_a_typo_is_refused_without_echoing_it() {
        let error =
            KeyRing::from_secret_value(r#"{"curent": "abc"}"#, KeyEncoding::Raw).unwrap_err();
        assert!(matches!(error, SecretError::InvalidJson(_)));
    }

    #[test]
    fn an_empty_secret_is_refused_naming_the_field() {
        let error = KeyRing::from_secrets("  ", None, KeyEncoding::Raw).unwrap_err();
        assert_eq!(error.to_string(), "the current secret: the secret is empty");
    }
}
