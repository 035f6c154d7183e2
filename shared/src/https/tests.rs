//! The port's contract, asked of each adapter: the in-memory one with its answers set, the
//! TLS one against a TLS server on this machine answering the same.

use super::*;

/// What the server (or the fake) answers, by path.
const ROUTES: [(&str, u16, &str); 5] = [
    ("/certificate.pem", 200, "-----BEGIN CERTIFICATE-----\n"),
    ("/confirm", 201, "<ConfirmSubscriptionResponse/>"),
    ("/missing.pem", 404, "<Error><Code>NotFound</Code></Error>"),
    ("/throttled", 429, "slow down"),
    ("/broken", 503, "try later"),
];

/// A body of 2,000 bytes at this path.
const LARGE: &str = "/large";

/// The contract, for a client whose server answers [`ROUTES`] and [`LARGE`] under `base`
/// (`https://host[:port]`), and for which `unreachable` has no server at all.
async fn keeps_the_contract(client: &dyn HttpsGet, base: &str, unreachable: &str) {
    let url = |path: &str| format!("{base}{path}");

    assert_eq!(
        client.get(&url("/certificate.pem"), 4096).await,
        Ok(Bytes::from_static(b"-----BEGIN CERTIFICATE-----\n"))
    );
    assert_eq!(
        client.get(&url("/confirm"), 4096).await,
        Ok(Bytes::from_static(b"<ConfirmSubscriptionResponse/>")),
        "any 2xx gives its body"
    );
    assert_eq!(
        client.get(&url(LARGE), 2_000).await.map(|body| body.len()),
        Ok(2_000),
        "a body of exactly the limit"
    );
    assert_eq!(
        client.get(&url(LARGE), 1_999).await,
        Err(HttpsError::TooLarge {
            url: url(LARGE),
            limit: 1_999
        })
    );
    for (path, status, _) in &ROUTES[2..] {
        let answer = client.get(&url(path), 4096).await;
        assert_eq!(
            answer,
            Err(HttpsError::Status {
                url: url(path),
                status: *status
            })
        );
    }
    let final_404 = client.get(&url("/missing.pem"), 4096).await.unwrap_err();
    assert!(!final_404.is_transient());
    for path in ["/throttled", "/broken"] {
        assert!(
            client
                .get(&url(path), 4096)
                .await
                .unwrap_err()
                .is_transient(),
            "{path}"
        );
    }

    let plain = url("/certificate.pem").replacen("https://", "http://", 1);
    assert_eq!(
        client.get(&plain, 4096).await,
        Err(HttpsError::NotHttps { url: plain.clone() })
    );
    for not_a_url in ["ftp://example.com/x.pem", "//example.com/x.pem", ""] {
        assert!(
            matches!(
                client.get(not_a_url, 4096).await,
                Err(HttpsError::NotHttps { .. })
            ),
            "{not_a_url:?}"
        );
    }

    let nobody = client.get(unreachable, 4096).await.unwrap_err();
    assert!(
        matches!(nobody, HttpsError::Unreachable { .. }) && nobody.is_transient(),
        "{nobody:?}"
    );
}

fn large_body() -> String {
    "x".repeat(2_000)
}

#[tokio::test]
async fn the_in_memory_adapter_keeps_the_contract() {
    let base = "https://sns.us-east-1.amazonaws.com";
    let mut fake = MemoryHttps::new().answer(&format!("{base}{LARGE}"), 200, large_body());
    for (path, status, body) in ROUTES {
        fake = fake.answer(&format!("{base}{path}"), status, body);
    }
    let unreachable = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem";
    let fake = fake.unreachable(unreachable);
    keeps_the_contract(&fake, base, unreachable).await;
}

#[tokio::test]
async fn the_in_memory_adapter_answers_404_to_what_it_was_not_given_and_records_every_call() {
    let fake = MemoryHttps::new();
    let url = "https://sns.us-east-1.amazonaws.com/other.pem";
    assert_eq!(
        fake.get(url, 10).await,
        Err(HttpsError::Status {
            url: url.to_owned(),
            status: 404
        })
    );
    let _ = fake.get("http://example.com/", 10).await;
    assert_eq!(fake.calls(), [url, "http://example.com/"]);
    assert_eq!(fake.clone().calls().len(), 2, "clones share the record");
}

#[cfg(feature = "aws")]
mod tls {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_smithy_http_client::tls::{TlsContext, TrustStore};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    /// A self-signed certificate for `localhost` and its key, made with openssl for this
    /// test only (`https/localhost-test-*.pem`).
    const CERTIFICATE: &[u8] = include_bytes!("localhost-test-certificate.pem");
    const KEY: &[u8] = include_bytes!("localhost-test-key.pem");

    /// A TLS server on 127.0.0.1 answering [`ROUTES`] and [`LARGE`], one request per
    /// connection; its port, and how many connections it has accepted.
    fn serve() -> (u16, Arc<AtomicUsize>) {
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(CERTIFICATE)
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let connection = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let _ = answer(&mut tls);
            }
        });
        (port, accepted)
    }

    fn answer<T: std::io::Read + Write>(tls: &mut T) -> std::io::Result<()> {
        let mut reader = BufReader::new(&mut *tls);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
        }
        drop(reader);
        let path = request_line.split(' ').nth(1).unwrap_or_default();
        let large = large_body();
        let (status, body) = ROUTES
            .iter()
            .find(|(route, _, _)| *route == path)
            .map(|(_, status, body)| (*status, *body))
            .unwrap_or(if path == LARGE {
                (200, large.as_str())
            } else {
                (404, "")
            });
        write!(
            tls,
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
        tls.flush()
    }

    fn client() -> TlsHttps {
        let trust = TrustStore::empty().with_pem_certificate(CERTIFICATE);
        TlsHttps::with_tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .unwrap(),
        )
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn the_tls_adapter_keeps_the_contract_with_a_local_tls_server() {
        let (port, accepted) = serve();
        let client = client();
        let base = format!("https://localhost:{port}");
        let unreachable = format!("https://localhost:{}/x.pem", closed_port());
        keeps_the_contract(&client, &base, &unreachable).await;

        let before = accepted.load(Ordering::SeqCst);
        let plain = format!("http://localhost:{port}/certificate.pem");
        assert!(matches!(
            client.get(&plain, 4096).await,
            Err(HttpsError::NotHttps { .. })
        ));
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            before,
            "a URL that is not https is refused without a connection"
        );
    }

    #[tokio::test]
    async fn the_tls_adapter_refuses_a_server_it_does_not_trust() {
        let (port, _) = serve();
        // Amazon's roots only, as a receiver has them: the local certificate is not trusted.
        let client = TlsHttps::new(
            &crate::tls::Trust::from_env(
                &HashMap::<&str, &str>::new(),
                crate::tls::Roots::CompiledIn,
            )
            .unwrap(),
        );
        let url = format!("https://localhost:{port}/certificate.pem");
        let refused = client.get(&url, 4096).await.unwrap_err();
        assert!(
            matches!(refused, HttpsError::Unreachable { .. }),
            "{refused:?}"
        );
    }
}
