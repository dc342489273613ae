//! HTTPS with rustls: a client that trusts the test CA is served; the certificate and
//! key are checked when the server starts.

use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use super::load::{fast_catalog, http};
use super::*;

fn tls_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

fn client() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls_file("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_a_client_that_trusts_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(
        Service::open(fast_catalog(dir.path()), &dir.path().join("ledger.sqlite"))
            .await
            .unwrap(),
    );
    let config = load_tls(&tls_file("cert.pem"), &tls_file("key.pem")).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap();
    let server = Server::new(Arc::clone(&service), quiet());
    let serving = tokio::spawn(server.serve(
        TlsListener::new(tcp, config).unwrap(),
        std::future::pending(),
    ));
    let token = service
        .issue_token("analyst", Duration::from_secs(60))
        .await
        .unwrap()
        .secret;

    // A client that sends nothing does not hold up the others.
    let _silent = tokio::net::TcpStream::connect(address).await.unwrap();

    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let tls = client().connect(name, stream).await.unwrap();
    let answer = http(tls, "GET", "/api/v1/budget", Some(&token), None).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .json()
            .as_array()
            .is_some_and(|lines| !lines.is_empty())
    );

    // Plain HTTP on the TLS port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let _ = plain.read_to_end(&mut bytes).await;
    assert!(!String::from_utf8_lossy(&bytes).contains("200 OK"));
    serving.abort();
}

#[test]
fn a_bad_certificate_or_key_is_refused_at_start() {
    let missing = load_tls(&tls_file("nowhere.pem"), &tls_file("key.pem"));
    assert!(
        matches!(
            missing,
            Err(TlsError::Read {
                what: "certificate",
                ..
            })
        ),
        "{missing:?}"
    );
    // A key file given as the certificate: no certificate in it.
    let swapped = load_tls(&tls_file("key.pem"), &tls_file("key.pem"));
    assert!(
        matches!(swapped, Err(TlsError::NoCertificate(_))),
        "{swapped:?}"
    );
    // The CA's certificate with the server's key: they do not belong together.
    let mismatched = load_tls(&tls_file("ca.pem"), &tls_file("key.pem"));
    assert!(
        mismatched.is_err(),
        "a certificate with another's key was accepted"
    );
}
