//! The command line as a client of `carelens serve` (`--server URL`, the token from
//! `CARELENS_TOKEN`): analysts keep their SQL files on their own machine and never need
//! the extract or the ledger. Answers are rendered exactly as in local mode, from the
//! same data (a release's stored bytes, an explanation, budget lines), and errors keep
//! their exit codes: a refusal exits 1, anything else 2.
//!
//! One HTTP/1.1 call per connection (`Connection: close`), plain or over TLS (rustls,
//! trusting the PEM certificates in `CARELENS_CA_CERT`, as a secure environment's own CA
//! usually is).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use carelens_engine::Rejection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use crate::query::Refused;

/// The environment variable that holds the API token.
pub(crate) const TOKEN_ENV: &str = "CARELENS_TOKEN";
/// The environment variable naming the PEM file of CA certificates to trust for https.
const CA_ENV: &str = "CARELENS_CA_CERT";
/// How long to wait for the server to accept, and between bytes of its answer (a query
/// may run for the policy's time limit, 300 s by default, before its answer starts).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// A server and the token to call it with.
pub(crate) struct Client {
    host: String,
    port: u16,
    /// The path the API is under, without a final `/` (`/api/v1` by default).
    prefix: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    token: String,
    url: String,
}

/// An answer: its status, its headers (names in lower case) and its body.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name`.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("the server's answer is not JSON")
    }
}

impl Client {
    /// A client of `url` (`http://host:port` or `https://…`, optionally with the API's
    /// path; `/api/v1` if none), with the token in `CARELENS_TOKEN`.
    pub(crate) fn new(url: &str) -> anyhow::Result<Self> {
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty());
        let Some(token) = token else {
            bail!(
                "--server needs your API token in {TOKEN_ENV} (your administrator issues it \
                 with `carelens token issue --user NAME`)"
            );
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            bail!("--server {url:?}: give a URL starting with http:// or https://");
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                host,
                port.parse()
                    .with_context(|| format!("--server {url:?}: {port:?} is not a port"))?,
            ),
            _ => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            bail!("--server {url:?}: no host");
        }
        let path = path.trim_end_matches('/');
        let prefix = if path.is_empty() {
            "/api/v1".to_owned()
        } else {
            format!("/{path}")
        };
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            prefix,
            tls: tls.then(tls_config).transpose()?,
            token: token.trim().to_owned(),
            url: url.to_owned(),
        })
    }

    /// `method path` (under the API's prefix) with a JSON `body`.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        self.call_waiting(method, path, body, READ_TIMEOUT)
    }

    /// As [`Client::call`], waiting up to `wait` for the answer to start or go on (a batch
    /// answers when its last query has run).
    pub(crate) fn call_waiting(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        wait: Duration,
    ) -> anyhow::Result<Answer> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let request = format!(
            "{method} {}{path} HTTP/1.1\r\nhost: {host}:{}\r\nconnection: close\r\n\
             authorization: Bearer {}\r\naccept: application/json\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.prefix,
            self.port,
            self.token,
            body.len()
        );
        let bytes = self
            .exchange(request.as_bytes(), wait)
            .with_context(|| format!("could not reach the carelens server at {}", self.url))?;
        parse(&bytes).with_context(|| format!("the server at {} answered oddly", self.url))
    }

    fn exchange(&self, request: &[u8], wait: Duration) -> anyhow::Result<Vec<u8>> {
        use std::net::ToSocketAddrs;
        let address = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .context("the host has no address")?;
        let tcp = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
        tcp.set_read_timeout(Some(wait))?;
        let mut bytes = Vec::new();
        match &self.tls {
            None => {
                let mut tcp = tcp;
                tcp.write_all(request)?;
                tcp.read_to_end(&mut bytes)?;
            }
            Some(config) => {
                let name = ServerName::try_from(self.host.clone())?;
                let connection = rustls::ClientConnection::new(Arc::clone(config), name)?;
                let mut stream = rustls::StreamOwned::new(connection, tcp);
                stream.write_all(request)?;
                match stream.read_to_end(&mut bytes) {
                    Ok(_) => {}
                    // A server that closes without close_notify after a complete answer.
                    Err(e)
                        if e.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(bytes)
    }
}

/// The TLS configuration: rustls trusting the certificates in `CARELENS_CA_CERT`.
fn tls_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let Some(path) = std::env::var_os(CA_ENV) else {
        bail!(
            "an https server needs the certificate of the CA that signed its certificate: \
             set {CA_ENV} to its PEM file"
        );
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("could not read {CA_ENV}={}", path.to_string_lossy()))?;
    for cert in certs {
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP/1.1 answer read to its end.
fn parse(bytes: &[u8]) -> anyhow::Result<Answer> {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP head")?;
    let head = std::str::from_utf8(&bytes[..split]).context("an HTTP head that is not text")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        bail!("a chunked answer, which this client does not read");
    }
    Ok(Answer {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    })
}

/// An error answer as the command line says it in local mode: a refusal becomes
/// [`Refused`] (exit 1) — an analysis rejection rendered with its place in `source` —
/// and anything else an error (exit 2).
pub(crate) fn api_error(answer: &Answer, source: &str) -> anyhow::Error {
    let Ok(body) = answer.json() else {
        return anyhow::anyhow!(
            "the server answered {} without an error description",
            answer.status
        );
    };
    let error = &body["error"];
    let message = error["message"].as_str().unwrap_or("no message").to_owned();
    if let Ok(rejection) = serde_json::from_value::<Rejection>(error["rejection"].clone()) {
        return Refused(rejection.render(source)).into();
    }
    if error["refusal"].as_bool() == Some(true) {
        return match error["hint"].as_str() {
            Some(hint) => Refused(format!("error: {message}\nhint: {hint}")),
            None => Refused(format!("error: {message}")),
        }
        .into();
    }
    let code = error["code"].as_str().unwrap_or("");
    match code {
        "unauthenticated" => anyhow::anyhow!(
            "{message} (the token in {TOKEN_ENV} was not accepted: it may be wrong, \
             expired or revoked)"
        ),
        _ => anyhow::anyhow!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_with_their_headers() {
        let answer =
            parse(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nX: a:b\r\n\r\n{}")
                .unwrap();
        assert_eq!(answer.status, 403);
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.header("x"), Some("a:b"));
        assert_eq!(answer.body, b"{}");
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n").is_err());
        assert!(parse(b"garbage").is_err());
    }
}
