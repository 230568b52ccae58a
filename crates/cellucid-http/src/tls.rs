//! HTTPS: the certificate and key from PEM files, checked against each other
//! at startup, and the TLS handshake of each connection (SECURITY.md,
//! "HTTPS").
//!
//! rustls with the `ring` provider (no cmake or NASM at build time, unlike
//! `aws-lc-rs`). ALPN offers `h2` then `http/1.1`: the client picks, so a
//! browser gets HTTP/2 for its parallel Range reads and may still open the
//! viewer channel's WebSocket over an HTTP/1.1 connection.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Duration;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::ServerConfig as RustlsConfig;
use tokio_rustls::rustls::{self, InconsistentKeys};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The ALPN protocol id of HTTP/2.
const H2: &[u8] = b"h2";
/// The ALPN protocol id of HTTP/1.1.
const HTTP11: &[u8] = b"http/1.1";

/// Why the certificate or key cannot be used. Each message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the {what} file {}: {source}", path.display())]
    Read {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file is not PEM, or holds no block of the kind needed.
    #[error("{} holds no PEM {what} ({reason})", path.display())]
    BadPem {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM reader found.
        reason: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate or key (an unsupported key type, a
    /// certificate that does not parse).
    #[error("{} / {}: {source}", cert.display(), key.display())]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

/// A server certificate and key, ready to accept TLS connections.
/// Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
    cert_path: PathBuf,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("TlsConfig")
            .field("cert", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Loads a PEM certificate chain (leaf first) and its PEM private key
    /// (PKCS#8, PKCS#1 or SEC1), and checks that the key belongs to the
    /// certificate.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that is missing, not PEM, or mismatched.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert, "certificate")?;
        let key_pem = read(key, "private key")?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| bad_pem(cert, "certificate", &err))?;
        if chain.is_empty() {
            return Err(TlsError::BadPem {
                what: "certificate",
                path: cert.to_owned(),
                reason: "no CERTIFICATE block".to_owned(),
            });
        }
        if contains(&key_pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(TlsError::BadPem {
                what: "private key",
                path: key.to_owned(),
                reason: "the key is encrypted with a passphrase".to_owned(),
            });
        }
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|err| bad_pem(key, "private key", &err))?;
        let provider = Arc::new(ring::default_provider());
        let rejected = |source: rustls::Error| match source {
            rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            source => TlsError::Rejected {
                cert: cert.to_owned(),
                key: key.to_owned(),
                source,
            },
        };
        // One certificate whatever name the client asks for (SNI): the
        // server is reached by IP as often as by name. rustls checks the
        // key's public half against the certificate's.
        let mut config = RustlsConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(rejected)?;
        config.alpn_protocols = vec![H2.to_vec(), HTTP11.to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert_path: cert.to_owned(),
        })
    }

    /// Runs the server side of the TLS handshake on `stream`. A client
    /// that speaks plain HTTP instead (someone typed `http://`) is told, in
    /// plain HTTP, to use `https://`, and gets an error here.
    pub(crate) async fn accept(&self, mut stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 1 && first[0].is_ascii_uppercase() {
            // A TLS record starts with 0x16; a request line with a method.
            // One write into an empty socket buffer, then close.
            let _ = stream.try_write(PLAIN_HTTP_ANSWER);
            // Closing with the request unread would reset the connection,
            // which can discard the answer before the client reads it: end
            // our side, then drain what the client sent, briefly.
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(1..) = stream.read(&mut sink).await {}
            })
            .await;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "plain HTTP sent to the HTTPS port",
            ));
        }
        self.acceptor.accept(stream).await
    }
}

/// How long a plain-HTTP client is read after its answer (see
/// [`TlsConfig::accept`]).
const LINGER: Duration = Duration::from_secs(1);

/// The answer to a plain-HTTP request on the HTTPS port, with the headers
/// the origin layer would add.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    Connection: close\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    X-Content-Type-Options: nosniff\r\n\
    Referrer-Policy: no-referrer\r\n\
    Content-Length: 47\r\n\
    \r\n\
    This server speaks HTTPS: use an https:// URL.\n";

/// Marks a request that arrived over this server's TLS (a request
/// extension): the viewer channel's own-origin rule then expects `https`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Https;

/// Whether the client chose HTTP/2 by ALPN.
pub(crate) fn negotiated_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(H2)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn bad_pem(path: &Path, what: &'static str, err: &pem::Error) -> TlsError {
    let reason = match err {
        pem::Error::NoItemsFound => format!("no {} block", what.to_ascii_uppercase()),
        other => other.to_string(),
    };
    TlsError::BadPem {
        what,
        path: path.to_owned(),
        reason,
    }
}
