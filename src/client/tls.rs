//! TLS for the client: the byte stream under a [`super::connection::Connection`] is either the
//! TCP socket itself or rustls's blocking `StreamOwned` over it. The socket's read and write
//! time-outs apply to both, so a TLS server that goes quiet is a time-out like any other.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::error::ClientError;

/// How a client speaks TLS (for a server started with `--tls-cert`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM certificates to trust: the CA that signed the server's certificate, or a
    /// self-signed server certificate itself. Required: the system's trust store is not read.
    pub ca_pem: Vec<u8>,
    /// The name the server's certificate must carry (a DNS name or an IP address); by default
    /// the host part of the address connected to.
    pub server_name: Option<String>,
}

/// The stream a connection reads and writes.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Transport {
    /// The TCP socket underneath (for time-outs and options).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Tls(stream) => &stream.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.read(buffer),
            Transport::Tls(stream) => stream.read(buffer),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.write(bytes),
            Transport::Tls(stream) => stream.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(stream) => stream.flush(),
            Transport::Tls(stream) => stream.flush(),
        }
    }
}

/// The host part of "host:port", "[v6]:port" or a bare host.
fn host_of(addr: &str) -> &str {
    let host = match addr.rfind(':') {
        Some(index) if !addr[index + 1..].contains(']') => &addr[..index],
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Wraps a connected socket (with its time-outs set) in TLS and completes the handshake, so
/// that a wrong certificate or a plaintext server fails here with a clear message.
pub(crate) fn connect(
    stream: TcpStream,
    addr: &str,
    tls: &ClientTls,
) -> Result<Transport, ClientError> {
    let tls_error = |message: String| ClientError::Tls(message);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        let cert = cert.map_err(|error| tls_error(format!("the CA file is not PEM: {error}")))?;
        roots
            .add(cert)
            .map_err(|error| tls_error(format!("a CA certificate is not usable: {error}")))?;
    }
    if roots.is_empty() {
        return Err(tls_error("the CA file holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| tls_error(format!("TLS set-up failed: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = tls.server_name.as_deref().unwrap_or_else(|| host_of(addr));
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| tls_error(format!("{name:?} is not a valid TLS server name")))?;
    let connection = ClientConnection::new(Arc::new(config), server_name)
        .map_err(|error| tls_error(format!("TLS set-up failed: {error}")))?;
    let mut stream = StreamOwned::new(connection, stream);
    while stream.conn.is_handshaking() {
        if let Err(error) = stream.conn.complete_io(&mut stream.sock) {
            return Err(handshake_error(addr, error));
        }
    }
    Ok(Transport::Tls(Box::new(stream)))
}

fn handshake_error(addr: &str, error: io::Error) -> ClientError {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
        io::ErrorKind::InvalidData => {
            let certificate_refused = error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|inner| matches!(inner, rustls::Error::InvalidCertificate(_)));
            let hint = if certificate_refused {
                ""
            } else {
                " (does the server speak TLS on this port?)"
            };
            ClientError::Tls(format!("TLS handshake with {addr} failed: {error}{hint}"))
        }
        _ => ClientError::Tls(format!(
            "TLS handshake with {addr} failed: {}",
            super::error::describe_io_error(&error)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        assert_eq!(host_of("localhost:3000"), "localhost");
        assert_eq!(host_of("127.0.0.1:3000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:3000"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
    }
}
