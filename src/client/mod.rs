//! A blocking client library on `std::net`, reusing the server's protocol code for the bytes.
//!
//! ```no_run
//! use flo::client::{Client, ClientOptions};
//! use flo::event::StartPosition;
//!
//! let mut client = Client::connect("localhost:3000", ClientOptions::default())?;
//! let ack = client.produce("/food/breakfast/eggs", b"I made some eggs")?;
//! println!("produced {}", ack.first_id);
//! for event in client.consume().glob("/food/**").start(StartPosition::Beginning).subscribe()? {
//!     let event = event?;
//!     println!("{} {}", event.id, String::from_utf8_lossy(&event.data));
//! }
//! # Ok::<(), flo::client::ClientError>(())
//! ```
//!
//! One [`Client`] is one connection. Produces, a [`Producer`] window and a [`Subscription`]
//! each borrow the client mutably, so one connection does one thing at a time; a program that
//! consumes and produces at once (a responder) opens two clients. A producer or subscription
//! that must outlive the borrow (moved into a thread, boxed) takes the client over instead:
//! [`Client::into_producer`], [`Client::into_consume`].
//!
//! A consumer group shares the work of a stream between processes ([`Client::join_group`]):
//! each event goes to one member, which acknowledges it by id when it is done.

mod connection;
mod consume;
mod cursor_text;
mod error;
pub mod format;
mod group;
mod group_admin;
mod idempotent;
mod namespaces;
mod produce;
mod tls;
mod trace;
mod typed;

use std::time::{Duration, Instant};

use crate::config::WireLimits;
use crate::event::NamespaceError;
use crate::protocol::{ClientFrame, Hello, ServerFrame, Welcome, PROTOCOL_VERSION};

pub use crate::protocol::{
    Ack, EndReason, ErrorCode, ErrorScope, Expectation, GroupDetail, GroupInfo, GroupMemberInfo,
    GroupSettings, GroupsReply, Info, MemberEntry, MemberOp, MemberState, MemberStatus,
    MembershipState, NamespaceInfo, NamespacesReply, NewEvent, ParkedEvent, ParkedReply, Purged,
    PurgesReply, RetentionInfo, Status, TraceEntry,
};
pub use consume::{ConsumeBuilder, Delivery, Subscription};
pub use cursor_text::{format_cursor, load_cursor, parse_cursor, save_cursor, CursorParseError};
pub use error::{describe_io_error, ClientError};
pub use group::{
    GroupBuilder, GroupConsumer, GroupDelivery, ACK_BATCH_DEFAULT, PROGRESS_INTERVAL_MAX,
    PROGRESS_INTERVAL_MIN,
};
pub use group_admin::GROUPS_LISTED_MAX;
pub use idempotent::IdempotentProducer;
pub use produce::Producer;
pub use tls::ClientTls;
pub use trace::{Trace, TRACE_ENTRIES_MAX};
#[cfg(feature = "json")]
pub use typed::JsonCodec;
pub use typed::{CodecError, EventCodec, RawCodec, TypedEvent, TypedSubscription, Utf8Codec};

use connection::Connection;

/// The default of [`ClientOptions::frame_size_max`].
pub const FRAME_SIZE_MAX_DEFAULT: u32 = 64 * 1024 * 1024;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sent in the handshake, for the server's logs.
    pub client_name: String,
    /// How long to wait for the TCP connection to be accepted.
    pub connect_timeout: Duration,
    /// How long a read may wait before the client pings the server to see that it is alive
    /// (shortened to a third of the server's idle time-out if that is less). A wait fails with
    /// [`ClientError::Timeout`] only when that ping, too, goes unanswered for as long, so a
    /// quiet tailing subscription is not an error but a dead server is. A `Client` that makes
    /// no calls for longer than the server's idle time-out is closed by the server.
    pub io_timeout: Duration,
    /// Sent in the handshake when the server requires a token.
    pub auth_token: Option<Vec<u8>>,
    /// Speak TLS, for a server started with `--tls-cert` (protocol.md, "Transport security").
    pub tls: Option<ClientTls>,
    /// The largest frame this client receives (or sends), whatever the server's Welcome
    /// announces: the smaller of the two applies. A frame whose length is over it ends the
    /// connection with [`ClientError::Protocol`] `FrameTooLarge` as soon as its length
    /// arrives, so a hostile or broken server that announces 4 GiB cannot make the client
    /// buffer it (attack round 11: `flo-client consume` grew to 3.3 GB in 9 s). The default,
    /// 64 MiB, is eight times flo's own frame limit.
    pub frame_size_max: u32,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            client_name: format!("flo-client {}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            auth_token: None,
            tls: None,
            frame_size_max: FRAME_SIZE_MAX_DEFAULT,
        }
    }
}

/// A connection to a flo server, after a successful handshake.
pub struct Client {
    connection: Connection,
    welcome: Welcome,
    next_op_id: u64,
    next_subscription_id: u32,
    /// Where and how this client connected ([`Client::connect`]), so that a group member can
    /// reconnect to a server older than GroupAckRange; `None` for [`Client::from_stream`].
    reconnect: Option<(String, ClientOptions)>,
    /// The server refused a GroupAckRange (it is older than that frame): later memberships on
    /// this client acknowledge by id only.
    ack_ranges_refused: bool,
}

impl Client {
    /// Connects to `addr` (such as "localhost:3000") and performs the handshake.
    pub fn connect(addr: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let connection = Connection::open(
            addr,
            options.connect_timeout,
            options.io_timeout,
            options.tls.as_ref(),
        )?;
        let reconnect = Some((addr.to_string(), options.clone()));
        let mut client = Client::handshake(connection, options)?;
        client.reconnect = reconnect;
        Ok(client)
    }

    /// Performs the handshake on an already connected stream (for tests and embedding). With
    /// `options.tls`, its `server_name` must be set.
    pub fn from_stream(
        stream: std::net::TcpStream,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let addr = options
            .tls
            .as_ref()
            .and_then(|tls| tls.server_name.clone())
            .unwrap_or_default();
        let connection =
            Connection::from_stream(stream, options.io_timeout, &addr, options.tls.as_ref())?;
        Client::handshake(connection, options)
    }

    fn handshake(
        mut connection: Connection,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        connection.send(&ClientFrame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: options.client_name,
            auth_token: options.auth_token.unwrap_or_default(),
        }))?;
        let welcome = match connection.receive()? {
            ServerFrame::Welcome(welcome) => welcome,
            ServerFrame::Error(error) if error.code == ErrorCode::UnsupportedVersion => {
                return Err(ClientError::UnsupportedVersion {
                    server: None,
                    message: error.message,
                })
            }
            ServerFrame::Error(error) => return Err(server_error(error)),
            other => return Err(unexpected(&other, "Welcome")),
        };
        if welcome.protocol_version != PROTOCOL_VERSION {
            return Err(ClientError::UnsupportedVersion {
                server: Some(welcome.protocol_version),
                message: "the server answered with a different version".into(),
            });
        }
        connection.limits = WireLimits {
            frame_size_max: welcome.frame_size_max.min(options.frame_size_max),
            namespace_length_max: welcome.namespace_length_max,
            event_data_size_max: welcome.event_data_size_max,
            ..WireLimits::default()
        };
        if welcome.idle_timeout_ms > 0 {
            let keepalive = Duration::from_millis(u64::from(welcome.idle_timeout_ms) / 3);
            let read_timeout = options
                .io_timeout
                .min(keepalive)
                .max(Duration::from_millis(1));
            connection.set_read_timeout(read_timeout)?;
        }
        Ok(Client {
            connection,
            welcome,
            next_op_id: 1,
            next_subscription_id: 1,
            reconnect: None,
            ack_ranges_refused: false,
        })
    }

    /// What the server said in the handshake: its version, actor id and limits.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The limits this client checks before sending.
    pub fn limits(&self) -> WireLimits {
        self.connection.limits
    }

    /// Checks an event against the server's limits without sending it.
    pub fn check_event(&self, event: &NewEvent) -> Result<(), ClientError> {
        let limits = self.connection.limits;
        crate::event::validate_namespace(&event.namespace, limits.namespace_length_max as usize)
            .map_err(|error: NamespaceError| ClientError::InvalidNamespace {
                namespace: event.namespace.clone(),
                error,
            })?;
        let size_max = limits.event_data_size_max as usize;
        if event.data.len() > size_max {
            return Err(ClientError::TooLarge {
                what: "the event data",
                size: event.data.len(),
                size_max,
            });
        }
        Ok(())
    }

    /// Sends a ping and waits for its pong; returns the round-trip time.
    pub fn ping(&mut self) -> Result<Duration, ClientError> {
        let token = self.connection.take_ping_token();
        let started = Instant::now();
        self.connection.send(&ClientFrame::Ping { token })?;
        loop {
            match self.connection.receive()? {
                ServerFrame::Pong { token: answered } if answered == token => {
                    return Ok(started.elapsed())
                }
                frame => self.skip_stale(frame)?,
            }
        }
    }

    /// Asks the server for its cluster status: its actor id, counter, vector, each member's
    /// state and lag, id order, and (while it refuses produces after its start) whom that
    /// hold waits for. A server older than the hold's option (flo before session 11) closes
    /// the connection with `MalformedFrame` for this request; [`Client::status_basic`] asks
    /// such a server.
    pub fn status(&mut self) -> Result<crate::protocol::Status, ClientError> {
        self.ask_status(true)
    }

    /// [`Client::status`] without the hold fields (`hold` is `None`, unless the server is one
    /// that sent them unasked): the StatusRequest every version of the server takes.
    pub fn status_basic(&mut self) -> Result<crate::protocol::Status, ClientError> {
        self.ask_status(false)
    }

    fn ask_status(&mut self, hold: bool) -> Result<crate::protocol::Status, ClientError> {
        self.connection.send(&ClientFrame::StatusRequest { hold })?;
        loop {
            match self.connection.receive()? {
                ServerFrame::Status(status) => return Ok(status),
                frame => self.skip_stale(frame)?,
            }
        }
    }

    /// Asks the server what it is and holds (version, uptime, fsync policy, log size and
    /// counts, connections): `flo-client info`. Needs an admin principal on a server with
    /// authentication.
    pub fn info(&mut self) -> Result<crate::protocol::Info, ClientError> {
        self.connection.send(&ClientFrame::InfoRequest)?;
        loop {
            match self.connection.receive()? {
                ServerFrame::Info(info) => return Ok(info),
                frame => self.skip_stale(frame)?,
            }
        }
    }

    /// Lists this node, the members it knows (with their state) and the removed ones:
    /// `flo-client cluster members`. Needs an admin principal on a server with
    /// authentication.
    pub fn members(&mut self) -> Result<Vec<MemberEntry>, ClientError> {
        self.connection.send(&ClientFrame::MembersRequest)?;
        self.receive_members()
    }

    /// Removes member `actor_id` from the cluster (`flo-client cluster remove`), or adds a
    /// removed one back (`flo-client cluster add`), on this node, which tells every other
    /// member; returns the member list after the change. Needs an admin principal.
    pub fn change_member(
        &mut self,
        op: MemberOp,
        actor_id: u16,
    ) -> Result<Vec<MemberEntry>, ClientError> {
        let change = crate::protocol::ChangeMember { op, actor_id };
        self.connection.send(&ClientFrame::ChangeMember(change))?;
        self.receive_members()
    }

    fn receive_members(&mut self) -> Result<Vec<MemberEntry>, ClientError> {
        loop {
            match self.connection.receive()? {
                ServerFrame::Members(entries) => return Ok(entries),
                frame => self.skip_stale(frame)?,
            }
        }
    }

    /// Purges the namespaces `glob` matches below `before` (an id, or a time in milliseconds
    /// since the epoch): once this returns `Ok`, the purge is durable on the server and its
    /// events are never delivered again (docs/operations.md, "Purge"). Needs an admin
    /// principal on a server with authentication.
    pub fn purge(
        &mut self,
        glob: &str,
        before: crate::event::PurgeBefore,
    ) -> Result<Purged, ClientError> {
        let rule = crate::event::PurgeRule {
            glob: glob.to_string(),
            before,
        };
        self.connection.send(&ClientFrame::Purge(rule))?;
        loop {
            match self.connection.receive()? {
                ServerFrame::Purged(purged) => return Ok(purged),
                frame => self.skip_stale(frame)?,
            }
        }
    }

    /// The purges and per-namespace retention rules in force on the server (admin).
    pub fn purges(&mut self) -> Result<PurgesReply, ClientError> {
        self.connection.send(&ClientFrame::PurgesRequest)?;
        loop {
            match self.connection.receive()? {
                ServerFrame::Purges(reply) => return Ok(reply),
                frame => self.skip_stale(frame)?,
            }
        }
    }

    pub(crate) fn take_op_id(&mut self) -> u64 {
        let op_id = self.next_op_id;
        self.next_op_id += 1;
        op_id
    }

    /// Handles a frame that no current operation waits for: answers to operations that were
    /// abandoned (a dropped producer or subscription) are skipped; a connection error or a
    /// frame that a server never sends is an error.
    fn skip_stale(&mut self, frame: ServerFrame) -> Result<(), ClientError> {
        match frame {
            ServerFrame::Ack(_)
            | ServerFrame::Event { .. }
            | ServerFrame::CaughtUp { .. }
            | ServerFrame::Skipped { .. }
            | ServerFrame::End { .. }
            | ServerFrame::Pong { .. } => Ok(()),
            ServerFrame::Error(error) => match error.scope {
                ErrorScope::Connection => Err(server_error(error)),
                ErrorScope::Produce(_) | ErrorScope::Subscription(_) => Ok(()),
            },
            frame @ (ServerFrame::Welcome(_)
            | ServerFrame::Status(_)
            | ServerFrame::Groups(_)
            | ServerFrame::GroupsDetail(_)
            | ServerFrame::Parked(_)
            | ServerFrame::Namespaces(_)
            | ServerFrame::Trace(_)
            | ServerFrame::Info(_)
            | ServerFrame::Members(_)
            | ServerFrame::Purged(_)
            | ServerFrame::Purges(_)) => {
                Err(unexpected(&frame, "an answer to a pending operation"))
            }
        }
    }
}

/// The client a [`Producer`] or [`Subscription`] works on: borrowed from the caller, or owned
/// (from [`Client::into_producer`] and [`Client::into_consume`]) so that it can be moved freely.
enum ClientHandle<'a> {
    Borrowed(&'a mut Client),
    Owned(Box<Client>),
}

impl std::ops::Deref for ClientHandle<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        match self {
            ClientHandle::Borrowed(client) => client,
            ClientHandle::Owned(client) => client,
        }
    }
}

impl std::ops::DerefMut for ClientHandle<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        match self {
            ClientHandle::Borrowed(client) => client,
            ClientHandle::Owned(client) => client,
        }
    }
}

pub(crate) fn server_error(error: crate::protocol::ErrorFrame) -> ClientError {
    ClientError::Server {
        scope: error.scope,
        code: error.code,
        message: error.message,
    }
}

pub(crate) fn unexpected(frame: &ServerFrame, expected: &str) -> ClientError {
    let name = crate::protocol::kind_name(crate::protocol::frame_kind(frame));
    ClientError::Protocol {
        code: ErrorCode::UnexpectedFrame,
        message: format!("expected {expected}, got a {name} frame"),
    }
}
