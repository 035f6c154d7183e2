//! TLS for every outbound connection: the AWS SDK's clients, agent actions, GitHub's API.
//!
//! rustls on ring, with trust anchors compiled in. Loading the platform's roots (a 216 KB
//! bundle, then a scan of `/etc/ssl/certs`) cost about 4 ms of CPU at every cold start, and
//! the SDK and the HTTP client for actions each loaded them; anchors compiled in cost
//! microseconds. ring rather than aws-lc makes every binary 0.7 MB smaller and the first
//! build 50 s shorter, and has every algorithm TLS to AWS and to agents uses.
//!
//! What is trusted:
//!
//! - AWS endpoints: Amazon Trust Services' roots (Amazon Root CA 1 to 4 and Starfield
//!   Services Root CA G2, the set AWS documents for trust stores of one's own), compiled in
//!   from `tls/aws-roots.pem`;
//! - agents and GitHub's API: Mozilla's roots, as `webpki-roots` compiles them in;
//! - both: the certificates in the PEM file [`CA_FILE_VARIABLE`] names, if it is set. A
//!   private agent's CA, a TLS-inspecting proxy, an emulator served over HTTPS. The file is
//!   read and checked once, at init: one that cannot be read, or holds no certificate or a
//!   malformed one, fails the init naming it.
//!
//! The `hookgate` tool runs on developers' machines, where a proxy's or a company's CA is
//! installed in the system's store: it trusts the platform's roots instead
//! ([`use_platform_roots`]), and pays their load once per command.

use std::sync::{Arc, OnceLock};

use aws_smithy_http_client::tls::{self as smithy_tls, rustls_provider::CryptoMode};
use aws_smithy_http_client::tls::{TlsContext, TrustStore};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::{ConfigError, Env, ProcessEnv};

/// A PEM file of CA certificates trusted besides the compiled-in roots.
pub const CA_FILE_VARIABLE: &str = "HOOKGATE_CA_FILE";

/// Amazon Trust Services' root certificates.
const AWS_ROOTS_PEM: &[u8] = include_bytes!("tls/aws-roots.pem");

/// Which roots a process trusts, besides [`CA_FILE_VARIABLE`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// Amazon's for AWS, Mozilla's for everything else, compiled in: the functions.
    CompiledIn,
    /// The machine's own store: the `hookgate` tool.
    Platform,
}

/// What this process trusts; built once, shared by every client.
#[derive(Debug, Clone)]
pub struct Trust {
    roots: Roots,
    /// [`CA_FILE_VARIABLE`]'s file, as read, and its certificates, checked.
    extra_pem: Option<Vec<u8>>,
    extra: Vec<CertificateDer<'static>>,
    /// Built at the first ask and shared by every SDK client after it.
    aws_http_client: OnceLock<aws_sdk_sqs::config::SharedHttpClient>,
}

impl Trust {
    /// `roots`, and the certificates of the file `HOOKGATE_CA_FILE` names in `env`, if any.
    pub fn from_env(env: &dyn Env, roots: Roots) -> Result<Self, ConfigError> {
        let Some(path) = env
            .get(CA_FILE_VARIABLE)
            .filter(|path| !path.trim().is_empty())
        else {
            return Ok(Self {
                roots,
                extra_pem: None,
                extra: Vec::new(),
                aws_http_client: OnceLock::new(),
            });
        };
        let invalid = |reason: String| ConfigError::invalid(CA_FILE_VARIABLE, reason);
        let pem =
            std::fs::read(path.trim()).map_err(|error| invalid(format!("{path}: {error}")))?;
        let extra = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| invalid(format!("{path}: not PEM certificates: {error}")))?;
        if extra.is_empty() {
            return Err(invalid(format!("{path} holds no PEM certificate")));
        }
        let mut store = rustls::RootCertStore::empty();
        for certificate in &extra {
            store
                .add(certificate.clone())
                .map_err(|error| invalid(format!("{path}: a certificate is unusable: {error}")))?;
        }
        Ok(Self {
            roots,
            extra_pem: Some(pem),
            extra,
            aws_http_client: OnceLock::new(),
        })
    }

    /// The HTTP client for the AWS SDK's clients (`SdkConfig::http_client`): one for every
    /// client of the process, so that its connections (pooled per endpoint) and its
    /// connectors (one per pair of timeouts, each parsing the roots once) are shared.
    pub fn aws_http_client(&self) -> aws_sdk_sqs::config::SharedHttpClient {
        self.aws_http_client
            .get_or_init(|| self.build_aws_http_client())
            .clone()
    }

    fn build_aws_http_client(&self) -> aws_sdk_sqs::config::SharedHttpClient {
        aws_smithy_http_client::Builder::new()
            .tls_provider(smithy_tls::Provider::rustls(CryptoMode::Ring))
            .tls_context(self.aws_tls_context())
            .build_https()
    }

    /// The TLS context of the SDK's clients: Amazon's roots (or the platform's) and the CA
    /// file's. SNS's signing certificates are fetched from AWS endpoints on it too
    /// ([`crate::https::TlsHttps`]).
    pub(crate) fn aws_tls_context(&self) -> TlsContext {
        let mut store = match self.roots {
            Roots::CompiledIn => TrustStore::empty().with_pem_certificate(AWS_ROOTS_PEM),
            Roots::Platform => TrustStore::default(),
        };
        if let Some(pem) = &self.extra_pem {
            store = store.with_pem_certificate(pem.clone());
        }
        TlsContext::builder()
            .with_trust_store(store)
            .build()
            // It only fails for checks it does not make (1.5: none).
            .expect("a TLS context of a trust store builds")
    }

    /// The rustls configuration for HTTP clients of our own (`reqwest`'s
    /// `tls_backend_preconfigured`): HTTP/1.1, TLS 1.2 and 1.3.
    pub fn rustls_config(&self) -> rustls::ClientConfig {
        let mut store = rustls::RootCertStore::empty();
        match self.roots {
            Roots::CompiledIn => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Roots::Platform => {
                // Unreadable or unparsable entries of the platform's store are skipped, as
                // every other client on the machine skips them.
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
            }
        }
        // Checked when the file was read.
        store.add_parsable_certificates(self.extra.iter().cloned());
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
        .with_root_certificates(store)
        .with_no_client_auth()
    }
}

static PROCESS_ROOTS: OnceLock<Roots> = OnceLock::new();
static PROCESS_TRUST: OnceLock<Result<Trust, ConfigError>> = OnceLock::new();

/// Makes this process trust the machine's roots rather than compiled-in ones; for the
/// `hookgate` tool, called before any client is built.
pub fn use_platform_roots() {
    let _ = PROCESS_ROOTS.set(Roots::Platform);
}

/// What this process trusts: its roots and `HOOKGATE_CA_FILE`'s certificates, read from
/// the process's environment the first time it is asked for, and kept.
pub fn process_trust() -> Result<&'static Trust, ConfigError> {
    PROCESS_TRUST
        .get_or_init(|| {
            let roots = *PROCESS_ROOTS.get_or_init(|| Roots::CompiledIn);
            Trust::from_env(&ProcessEnv, roots)
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn scratch(name: &str, contents: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hookgate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn trust_with_file(path: &std::path::Path) -> Result<Trust, ConfigError> {
        let env = HashMap::from([(CA_FILE_VARIABLE, path.to_str().unwrap())]);
        Trust::from_env(&env, Roots::CompiledIn)
    }

    #[test]
    fn the_compiled_in_aws_roots_are_amazons_five() {
        let certificates: Vec<_> = CertificateDer::pem_slice_iter(AWS_ROOTS_PEM)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(certificates.len(), 5);
        let mut store = rustls::RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(certificates);
        assert_eq!((added, ignored), (5, 0));
    }

    #[test]
    fn without_a_ca_file_only_the_compiled_in_roots_are_trusted() {
        let trust = Trust::from_env(&HashMap::<&str, &str>::new(), Roots::CompiledIn).unwrap();
        assert!(trust.extra.is_empty());
        let config = trust.rustls_config();
        assert!(config.alpn_protocols.is_empty(), "HTTP/1.1 only");
    }

    #[test]
    fn a_ca_file_adds_its_certificates() {
        let path = scratch("one.pem", AWS_ROOTS_PEM);
        let trust = trust_with_file(&path).unwrap();
        assert_eq!(trust.extra.len(), 5);
        assert!(trust.extra_pem.is_some());
    }

    #[test]
    fn a_ca_file_that_is_missing_empty_or_not_pem_fails_naming_the_variable() {
        let missing = std::env::temp_dir().join("hookgate-tls-no-such-file.pem");
        let empty = scratch("empty.pem", b"");
        let garbage = scratch(
            "garbage.pem",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        for path in [missing, empty, garbage] {
            let error = trust_with_file(&path).unwrap_err().to_string();
            assert!(
                error.starts_with("HOOKGATE_CA_FILE is invalid:")
                    && error.contains(path.to_str().unwrap()),
                "{error}"
            );
        }
    }
}
