//! The client's error type: every way a client call can fail, with a one-line `Display`.

use std::fmt;
use std::io;

use crate::event::{EventId, NamespaceError};
use crate::protocol::{ErrorCode, ErrorScope};

/// Why a client call failed.
#[derive(Debug)]
pub enum ClientError {
    /// No connection could be made to `addr`.
    Connect {
        /// The address as given.
        addr: String,
        /// Why the connection failed.
        error: io::Error,
    },
    /// TLS could not be set up: an unusable CA file, or a failed handshake (a certificate
    /// that does not verify, a server that does not speak TLS on the port).
    Tls(String),
    /// Reading from or writing to the connection failed.
    Io(io::Error),
    /// The server closed the connection (or it dropped) while an answer was awaited.
    ConnectionClosed,
    /// No answer from the server within the I/O time-out.
    Timeout,
    /// The server refused the request; `scope` says whether the connection, one produce or one
    /// subscription is affected.
    Server {
        /// What the error ends: the connection, one produce or one subscription.
        scope: ErrorScope,
        /// The error code (protocol.md lists them).
        code: ErrorCode,
        /// The server's explanation, for people.
        message: String,
    },
    /// The server sent bytes that are not a valid frame, or a frame that makes no sense here.
    Protocol {
        /// The code that describes the violation.
        code: ErrorCode,
        /// What was wrong.
        message: String,
    },
    /// The server speaks a protocol version this client does not.
    UnsupportedVersion {
        /// The server's version, when it said.
        server: Option<u16>,
        /// The server's explanation, or the client's.
        message: String,
    },
    /// Refused before sending: the event or frame is over the server's limit.
    TooLarge {
        /// What is too large (an event, a batch, a namespace).
        what: &'static str,
        /// Its size in bytes (or entries).
        size: usize,
        /// The server's limit.
        size_max: usize,
    },
    /// Refused before sending: the namespace is not valid.
    InvalidNamespace {
        /// The namespace as given.
        namespace: String,
        /// What is wrong with it.
        error: NamespaceError,
    },
    /// Refused before sending: the subscription glob is not valid.
    InvalidGlob {
        /// The glob as given.
        glob: String,
        /// What is wrong with it.
        message: String,
    },
    /// [`super::Producer::send`] was called with the window full; nothing was sent.
    WindowFull {
        /// The producer's window: how many produces may await their acks.
        window: usize,
    },
    /// A typed event's data could not be decoded by its codec.
    Codec {
        /// The event whose data did not decode.
        id: EventId,
        /// The codec's explanation.
        message: String,
    },
}

impl ClientError {
    /// True when the connection can no longer be used after this error.
    pub fn is_fatal(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Tls(_)
            | ClientError::Io(_)
            | ClientError::ConnectionClosed
            | ClientError::Timeout
            | ClientError::Protocol { .. }
            | ClientError::UnsupportedVersion { .. } => true,
            ClientError::Server { scope, code, .. } => {
                *scope == ErrorScope::Connection || code.closes_connection()
            }
            ClientError::TooLarge { .. }
            | ClientError::InvalidNamespace { .. }
            | ClientError::InvalidGlob { .. }
            | ClientError::WindowFull { .. }
            | ClientError::Codec { .. } => false,
        }
    }

    /// For an `ExpectationFailed` refusal of a conditional produce: the namespace's actual
    /// newest id (`Some(None)` when it has no events), read from the start of the message as
    /// protocol.md specifies. `None` for every other error.
    pub fn actual_last_id(&self) -> Option<Option<crate::event::EventId>> {
        let ClientError::Server {
            code: ErrorCode::ExpectationFailed,
            message,
            ..
        } = self
        else {
            return None;
        };
        let (head, _) = message.split_once(':')?;
        if head == "none" {
            return Some(None);
        }
        head.parse().ok().map(Some)
    }

    /// Maps a read or write failure: time-outs and resets get their own variants.
    pub(crate) fn from_io(error: io::Error) -> ClientError {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ClientError::ConnectionClosed,
            _ => ClientError::Io(error),
        }
    }
}

/// An I/O error as a short lower-case phrase: "connection refused" rather than
/// "Connection refused (os error 111)".
pub fn describe_io_error(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(index) if text.ends_with(')') => text[..index].to_string(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { addr, error } => {
                write!(f, "could not connect to {addr}: {}", describe_io_error(error))
            }
            ClientError::Tls(message) => write!(f, "{message}"),
            ClientError::Io(error) => write!(f, "connection error: {}", describe_io_error(error)),
            ClientError::ConnectionClosed => write!(f, "the server closed the connection"),
            ClientError::Timeout => write!(f, "timed out waiting for the server"),
            ClientError::Server {
                scope,
                code,
                message,
            } => {
                // A refusal of the connection's request (an admin command, a handshake) says
                // no more than the code: "for connection" only puzzled readers of the CLI.
                let scope = match scope {
                    ErrorScope::Connection => String::new(),
                    ErrorScope::Produce(op_id) => format!(" for produce {op_id}"),
                    ErrorScope::Subscription(id) => format!(" for subscription {id}"),
                };
                write!(f, "server error {code}{scope}: {message}")
            }
            ClientError::Protocol { code, message } => {
                write!(f, "protocol error {code}: {message}")
            }
            ClientError::UnsupportedVersion { server, message } => match server {
                Some(version) => write!(
                    f,
                    "unsupported protocol version: the server speaks {version}, this client {}: {message}",
                    crate::protocol::PROTOCOL_VERSION
                ),
                None => write!(f, "unsupported protocol version: {message}"),
            },
            ClientError::TooLarge {
                what,
                size,
                size_max,
            } => write!(
                f,
                "{what} is {size} bytes, over the server's limit of {size_max}"
            ),
            ClientError::InvalidNamespace { namespace, error } => {
                write!(f, "invalid namespace {namespace:?}: {error}")
            }
            ClientError::InvalidGlob { glob, message } => {
                write!(f, "invalid glob {glob:?}: {message}")
            }
            ClientError::WindowFull { window } => write!(
                f,
                "all {window} produces of the window are in flight; receive an ack first"
            ),
            ClientError::Codec { id, message } => {
                write!(f, "could not decode the data of event {id}: {message}")
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect { error, .. } | ClientError::Io(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_short_phrases() {
        let refused = io::Error::from_raw_os_error(111);
        let error = ClientError::Connect {
            addr: "localhost:3000".into(),
            error: refused,
        };
        assert_eq!(
            error.to_string(),
            "could not connect to localhost:3000: connection refused"
        );
        assert_eq!(
            describe_io_error(&io::Error::other("Plain text")),
            "plain text"
        );
    }

    #[test]
    fn fatal_errors_are_classified() {
        assert!(ClientError::ConnectionClosed.is_fatal());
        let per_produce = ClientError::Server {
            scope: ErrorScope::Produce(3),
            code: ErrorCode::InvalidNamespace,
            message: "bad".into(),
        };
        assert!(!per_produce.is_fatal());
        assert_eq!(
            per_produce.to_string(),
            "server error InvalidNamespace (6) for produce 3: bad"
        );
        let refused = ClientError::Server {
            scope: ErrorScope::Connection,
            code: ErrorCode::NoSuchGroup,
            message: "there is no group \"x\"".into(),
        };
        assert_eq!(
            refused.to_string(),
            "server error NoSuchGroup (31): there is no group \"x\""
        );
    }
}
