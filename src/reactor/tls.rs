//! TLS for client connections, driven by the reactor with rustls's buffer-in/buffer-out
//! connection API: the reactor reads ciphertext from the socket into the `ServerConnection`,
//! hands the plaintext it yields to the engine, and moves the engine's output through it back to
//! the socket. The engine never learns that a connection is encrypted. No async runtime, no
//! thread.
//!
//! Memory per TLS connection is bounded by rustls and by the limits set here: received
//! plaintext waits in rustls only up to 16 KiB (rustls's fixed limit: it refuses to read more
//! ciphertext until the reactor takes the plaintext, and the reactor takes it only while the
//! engine wants input), a partly received record at most one TLS record (about 16 KiB plus
//! overhead; handshake messages at most 64 KiB), and output waits in rustls only up to
//! [`TLS_SEND_BUFFER_MAX`] (the engine's output stays in the engine, under its own high-water
//! mark, until rustls has room). The handshake must finish within the engine's handshake
//! time-out, which runs from the accept: the engine closes a connection that has not sent
//! Hello by then, whatever the reason.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::NoServerSessionStorage;
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

use crate::config::TlsPem;
use crate::protocol::peer_auth::{ChannelBinding, CHANNEL_BINDING_SIZE, TLS_EXPORTER_LABEL};

/// The most bytes of output (encrypted or, during the handshake, waiting to be) that rustls
/// holds for one connection; the rest stays in the engine's output buffer.
pub(super) const TLS_SEND_BUFFER_MAX: usize = 64 * 1024;

/// The first byte of every TLS connection: the content type of a handshake record. A flo frame
/// starts with its length, whose first byte is 0 for any frame allowed before the handshake.
const TLS_HANDSHAKE_CONTENT_TYPE: u8 = 0x16;

/// Parses the PEM identity and builds the rustls server configuration: TLS 1.3 only, no client
/// certificates, no session resumption (so no per-client state outlives a connection).
pub(crate) fn server_config(pem: &TlsPem) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem.cert_chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|error| format!("the TLS certificate file is not valid PEM: {error}"))?;
    if certs.is_empty() {
        return Err("the TLS certificate file holds no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&pem.key_pem)
        .map_err(|error| format!("the TLS key file holds no usable private key: {error}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| format!("TLS set-up failed: {error}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| format!("the TLS certificate and key do not fit: {error}"))?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The configuration for dialing peers with TLS: TLS 1.3, trusting the certificates of
/// `peer_ca_pem` (`--peer-ca`), or without it those of the node's own `--tls-cert` file (one
/// certificate shared by every node, or a chain that carries the cluster's CA). A peer's
/// certificate must name the IP address it is dialed at. No client certificate: the peer
/// handshake's proofs authenticate the dialer.
pub(crate) fn peer_client_config(
    pem: &TlsPem,
    peer_ca_pem: Option<&[u8]>,
) -> Result<Arc<ClientConfig>, String> {
    let (source, what) = match peer_ca_pem {
        Some(ca) => (ca, "the peer CA file"),
        None => (pem.cert_chain_pem.as_slice(), "the TLS certificate file"),
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(source) {
        let cert = cert.map_err(|error| format!("{what} is not valid PEM: {error}"))?;
        roots
            .add(cert)
            .map_err(|error| format!("{what} holds a certificate rustls cannot use: {error}"))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "{what} holds no CERTIFICATE block to trust peers with"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| format!("TLS set-up failed: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What reading ciphertext from the socket came to.
pub(super) enum TlsRead {
    /// This many bytes were read and processed (0 at the end of the stream, after which the
    /// plaintext reader reports the close).
    Read(usize),
    /// The socket has nothing more now.
    WouldBlock,
    /// The first byte is not a TLS handshake record: a plaintext client on the TLS port.
    NotTls,
    /// The TLS layer failed (a bad handshake, a bad record). `alert` is what rustls wants the
    /// peer told, ready to write as the connection's last bytes.
    Failed { alert: Vec<u8>, reason: String },
    /// The socket failed.
    Lost(io::Error),
}

/// What taking received plaintext came to.
pub(super) enum Plaintext {
    /// This many bytes were copied into the buffer.
    Bytes(usize),
    /// Nothing is waiting.
    Empty,
    /// The peer ended the TLS session or the stream (and everything before was taken).
    Closed,
}

/// The TLS state of one connection: accepted on the TLS port, or dialed to a peer.
pub(super) struct TlsSession {
    connection: Connection,
    /// The first byte was seen to start a TLS record.
    first_byte_checked: bool,
    /// The channel binding was handed to the engine (`take_channel_binding`).
    channel_binding_taken: bool,
}

impl TlsSession {
    pub(super) fn new(config: &Arc<ServerConfig>) -> Result<TlsSession, rustls::Error> {
        let mut connection = ServerConnection::new(config.clone())?;
        connection.set_buffer_limit(Some(TLS_SEND_BUFFER_MAX));
        Ok(TlsSession {
            connection: Connection::Server(connection),
            first_byte_checked: false,
            channel_binding_taken: false,
        })
    }

    /// A session for a connection this node dialed to the peer at `ip`, whose certificate
    /// must name that address. What the engine writes before the TLS handshake is done waits
    /// in rustls (bounded like any output) and goes out encrypted after it.
    pub(super) fn client(
        config: &Arc<ClientConfig>,
        ip: std::net::IpAddr,
    ) -> Result<TlsSession, rustls::Error> {
        let name = rustls::pki_types::ServerName::IpAddress(ip.into());
        let mut connection = ClientConnection::new(config.clone(), name)?;
        connection.set_buffer_limit(Some(TLS_SEND_BUFFER_MAX));
        Ok(TlsSession {
            connection: Connection::Client(connection),
            // The acceptor speaks first only in TLS; there is no plaintext client to detect.
            first_byte_checked: true,
            channel_binding_taken: false,
        })
    }

    /// True for a connection this node dialed.
    pub(super) fn is_client(&self) -> bool {
        matches!(self.connection, Connection::Client(_))
    }

    /// The session's channel binding (protocol.md section 15), once: the first call after the
    /// TLS handshake returns it, every other call `None`. Application data flows only after
    /// the handshake, so a caller that asks before handing on the first plaintext always
    /// gives the engine the binding before the first frame.
    pub(super) fn take_channel_binding(&mut self) -> Option<ChannelBinding> {
        if self.channel_binding_taken || self.connection.is_handshaking() {
            return None;
        }
        self.channel_binding_taken = true;
        let binding = [0u8; CHANNEL_BINDING_SIZE];
        // After the handshake a TLS 1.3 session always has an exporter secret; a failure
        // would mean no binding, which the other end's proof then refuses.
        self.connection
            .export_keying_material(binding, TLS_EXPORTER_LABEL, None)
            .ok()
    }

    /// Copies received plaintext into `buffer`.
    pub(super) fn read_plaintext(&mut self, buffer: &mut [u8]) -> Plaintext {
        match self.connection.reader().read(buffer) {
            Ok(0) => Plaintext::Closed,
            Ok(count) => Plaintext::Bytes(count),
            Err(error) if error.kind() == ErrorKind::WouldBlock => Plaintext::Empty,
            Err(_) => Plaintext::Closed,
        }
    }

    /// Reads one chunk of ciphertext from the socket and decrypts it.
    pub(super) fn read_ciphertext(&mut self, stream: &mut TcpStream) -> TlsRead {
        if !self.first_byte_checked {
            match self.check_first_byte(stream) {
                Ok(true) => self.first_byte_checked = true,
                Ok(false) => return TlsRead::NotTls,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return TlsRead::WouldBlock,
                Err(error) => return TlsRead::Lost(error),
            }
        }
        let count = loop {
            match self.connection.read_tls(stream) {
                Ok(count) => break count,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return TlsRead::WouldBlock,
                Err(error) => return TlsRead::Lost(error),
            }
        };
        match self.connection.process_new_packets() {
            Ok(_) => TlsRead::Read(count),
            Err(error) => TlsRead::Failed {
                alert: self.take_ciphertext(),
                reason: error.to_string(),
            },
        }
    }

    /// Peeks at the first byte: true when it starts a TLS handshake record. The end of the
    /// stream counts as TLS, so that `read_tls` sees it and the connection closes as usual.
    fn check_first_byte(&self, stream: &mut TcpStream) -> io::Result<bool> {
        let mut first = [0u8; 1];
        loop {
            match stream.peek(&mut first) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(first[0] == TLS_HANDSHAKE_CONTENT_TYPE),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// True while rustls holds ciphertext for the socket.
    pub(super) fn wants_write(&self) -> bool {
        self.connection.wants_write()
    }

    /// Writes held ciphertext to the socket once; the caller loops while `wants_write`.
    pub(super) fn write_ciphertext(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        self.connection.write_tls(stream)
    }

    /// Encrypts as much of `plaintext` as rustls has room for; returns how much it took.
    pub(super) fn write_plaintext(&mut self, plaintext: &[u8]) -> usize {
        // The writer never fails: it only buffers, up to the limit.
        self.connection.writer().write(plaintext).unwrap_or(0)
    }

    /// The connection's last bytes: `final_output` encrypted (if the handshake got that far)
    /// and the close_notify alert, after whatever ciphertext rustls still held. The engine
    /// bounds `final_output`, so the buffer limit is lifted for it.
    pub(super) fn close(mut self, final_output: &[u8]) -> Vec<u8> {
        self.connection.set_buffer_limit(None);
        if !final_output.is_empty() {
            // Unbounded now, so the writer takes everything (or buffers it until a handshake
            // that will never finish, and it is dropped with the session).
            let _ = self.connection.writer().write_all(final_output);
        }
        self.connection.send_close_notify();
        self.take_ciphertext()
    }

    /// Everything rustls holds for the socket, as bytes.
    fn take_ciphertext(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        while self.connection.wants_write() {
            // Writing into a Vec cannot fail.
            if self.connection.write_tls(&mut bytes).unwrap_or(0) == 0 {
                break;
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_pem() -> TlsPem {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        TlsPem {
            cert_chain_pem: certified.cert.pem().into_bytes(),
            key_pem: certified.key_pair.serialize_pem().into_bytes(),
        }
    }

    /// Moves the ciphertext each side holds to the other until neither has any.
    fn pump(client: &mut TlsSession, server: &mut TlsSession) {
        for _ in 0..16 {
            let to_server = client.take_ciphertext();
            let to_client = server.take_ciphertext();
            if to_server.is_empty() && to_client.is_empty() {
                return;
            }
            for (bytes, session) in [(to_server, &mut *server), (to_client, &mut *client)] {
                let mut rest = bytes.as_slice();
                while !rest.is_empty() {
                    session.connection.read_tls(&mut rest).expect("read_tls");
                    session.connection.process_new_packets().expect("TLS");
                }
            }
        }
        panic!("the TLS handshake did not settle");
    }

    /// Channel binding (issue 15): after the handshake both ends of a session export the same
    /// value, once, and another session exports another.
    #[test]
    fn both_ends_of_a_session_share_its_channel_binding_and_sessions_differ() {
        let names = vec!["127.0.0.1".to_string()];
        let certified = rcgen::generate_simple_self_signed(names).expect("cert");
        let pem = TlsPem {
            cert_chain_pem: certified.cert.pem().into_bytes(),
            key_pem: certified.key_pair.serialize_pem().into_bytes(),
        };
        let server_config = server_config(&pem).expect("server configuration");
        let client_config = peer_client_config(&pem, None).expect("client configuration");
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let mut bindings = Vec::new();
        for _ in 0..2 {
            let mut client = TlsSession::client(&client_config, ip).expect("client session");
            let mut server = TlsSession::new(&server_config).expect("server session");
            assert_eq!(client.take_channel_binding(), None, "before the handshake");
            // The dialer's first bytes wait for the handshake, as PeerHello does.
            assert!(client.write_plaintext(b"hello") > 0);
            pump(&mut client, &mut server);
            let dialer = client.take_channel_binding().expect("the dialer's binding");
            let acceptor = server
                .take_channel_binding()
                .expect("the acceptor's binding");
            assert_eq!(dialer, acceptor, "both ends of one session");
            assert_eq!(client.take_channel_binding(), None, "given once");
            bindings.push(dialer);
        }
        assert_ne!(bindings[0], bindings[1], "two sessions share a binding");
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let good = test_pem();
        let other = test_pem();
        let mismatched = TlsPem {
            cert_chain_pem: good.cert_chain_pem.clone(),
            key_pem: other.key_pem,
        };
        let error = server_config(&mismatched).expect_err("a key of another certificate");
        assert!(error.contains("do not fit"), "{error}");
        let no_cert = TlsPem {
            cert_chain_pem: b"nothing here".to_vec(),
            key_pem: good.key_pem.clone(),
        };
        let error = server_config(&no_cert).expect_err("no certificate");
        assert!(error.contains("no CERTIFICATE block"), "{error}");
        let no_key = TlsPem {
            cert_chain_pem: good.cert_chain_pem,
            key_pem: b"nothing here".to_vec(),
        };
        let error = server_config(&no_key).expect_err("no key");
        assert!(error.contains("no usable private key"), "{error}");
    }

    #[test]
    fn a_session_starts_with_nothing_to_send_and_a_bounded_buffer() {
        let config = server_config(&test_pem()).expect("a server configuration");
        let mut session = TlsSession::new(&config).expect("a session");
        assert!(!session.wants_write());
        // Before the handshake the writer buffers plaintext, up to the limit and no further.
        let big = vec![0u8; TLS_SEND_BUFFER_MAX * 2];
        let taken = session.write_plaintext(&big);
        assert!(taken <= TLS_SEND_BUFFER_MAX, "took {taken} bytes");
        assert_eq!(session.write_plaintext(&big), 0);
    }
}
