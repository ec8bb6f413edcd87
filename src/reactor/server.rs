//! The embedded server: a library type that runs the reactor on a background thread. The `flo`
//! binary is a thin wrapper around it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::Waker;

use super::Reactor;
use crate::auth_file::AuthTable;
use crate::config::{Config, StorageConfig};
use crate::engine::{Engine, EngineConfig};
use crate::storage::groups::{FileGroupStore, GroupStore};
use crate::storage::{FileLog, Log, RecoveryMode, RecoveryReport, StorageError};

/// Why a server could not start, or stopped with an error.
#[derive(Debug)]
pub enum ServerError {
    /// A limit in the [`Config`] is out of range or does not fit with another; the message
    /// names it.
    InvalidConfig(String),
    /// The listening socket could not be bound.
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The log could not be opened (locked, damaged, unreadable).
    Storage(StorageError),
    /// Setting up the listener or the event loop failed, or the event loop failed.
    Io(std::io::Error),
    /// The reactor thread panicked: a bug.
    Panicked,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::InvalidConfig(message) => write!(f, "invalid configuration: {message}"),
            ServerError::Bind { addr, source } => {
                write!(f, "could not listen on {addr}: {source}")?;
                // The usual first-run mistake: a second server on the default port.
                match source.kind() {
                    std::io::ErrorKind::AddrInUse => write!(
                        f,
                        " (another program, perhaps another flo, listens there: stop it or choose another port with -p)"
                    ),
                    _ => Ok(()),
                }
            }
            ServerError::Storage(error) => write!(f, "could not open the event log: {error}"),
            ServerError::Io(error) => write!(f, "server I/O error: {error}"),
            ServerError::Panicked => write!(f, "the server thread panicked"),
        }
    }
}

impl std::error::Error for ServerError {}

/// A running server. Dropping it shuts the server down and waits for it.
pub struct Server {
    local_addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    waker: Arc<Waker>,
    auth_reload: AuthSlot,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    recovered_events: u64,
    metrics_addr: Option<SocketAddr>,
}

/// A cloneable way to ask a running server to stop, for example from a signal handler thread.
#[derive(Clone)]
pub struct ShutdownTrigger {
    shutdown: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownTrigger {
    /// Asks the server to stop as [`Server::shutdown`] does, without waiting for it.
    pub fn trigger(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Err(error) = self.waker.wake() {
            log::error!("could not wake the server to shut it down: {error}");
        }
    }
}

/// A new auth table waiting for the reactor to take it (at most one: a newer one replaces it).
pub(crate) type AuthSlot = Arc<Mutex<Option<Arc<AuthTable>>>>;

/// A cloneable way to give a running server a new auth table (`flo` does on SIGHUP).
#[derive(Clone)]
pub struct AuthReloader {
    slot: AuthSlot,
    waker: Arc<Waker>,
}

impl AuthReloader {
    /// Hands `table` to the server, which applies it at its next turn: new handshakes use it,
    /// and open connections whose principal is gone or has a new token are closed with
    /// AuthFailed; the others get the principal's new permissions.
    pub fn reload(&self, table: AuthTable) {
        // A poisoned lock only means another reloader panicked mid-store; the slot is an
        // Option, valid in every state.
        let mut slot = self
            .slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(Arc::new(table));
        drop(slot);
        if let Err(error) = self.waker.wake() {
            log::error!("could not wake the server to reload the auth file: {error}");
        }
    }
}

impl Server {
    /// Opens the log in `config.storage.data_dir`, binds `config.bind` and starts serving on a
    /// background thread.
    pub fn start(config: Config) -> Result<Server, ServerError> {
        Server::open_and_serve(config, FileLog::open, RecoveryMode::Refuse, bind)
    }

    /// Opens the log in `config.storage.data_dir` and starts serving on `listener`, a socket
    /// the caller bound (to port 0 in tests, or one handed over by a service manager);
    /// `config.bind` is not used.
    pub fn start_with_listener(
        config: Config,
        listener: std::net::TcpListener,
    ) -> Result<Server, ServerError> {
        Server::open_and_serve(config, FileLog::open, RecoveryMode::Refuse, |_| {
            Ok(listener)
        })
    }

    /// `flo --repair`: opens the log in `config.storage` repairing what start-up would refuse
    /// (docs/storage.md), logs the repair report, opens the group journal as [`Server::start`]
    /// does, and serves.
    pub fn start_repairing(config: Config) -> Result<Server, ServerError> {
        Server::open_and_serve(config, FileLog::open_repairing, RecoveryMode::Repair, bind)
    }

    /// The start-up every file-log server shares: validate, open the log with `open` (logging
    /// its recovery report), open the group journal, take the listener from `listener` (after
    /// the log, so a locked or damaged directory is reported before the port), and serve.
    fn open_and_serve(
        config: Config,
        open: impl FnOnce(&StorageConfig) -> Result<(FileLog, RecoveryReport), StorageError>,
        journal_recovery: RecoveryMode,
        listener: impl FnOnce(&Config) -> Result<std::net::TcpListener, ServerError>,
    ) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::InvalidConfig)?;
        let (log, report) = open(&config.storage).map_err(ServerError::Storage)?;
        log::info!("{report}");
        let groups = open_group_store(&config, journal_recovery)?;
        let std_listener = listener(&config)?;
        Server::serve(config, std_listener, log, report.event_count, Some(groups))
    }

    /// Starts a server on a log the caller opened (tests use the memory log), binding
    /// `config.bind`. `recovered_events` is what [`Server::recovered_events`] reports.
    pub fn start_with_log<L: Log + Send + 'static>(
        config: Config,
        log: L,
        recovered_events: u64,
    ) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::InvalidConfig)?;
        let std_listener = bind(&config)?;
        Server::serve(config, std_listener, log, recovered_events, None)
    }

    /// Runs the reactor on `std_listener` and `log` on a new thread.
    fn serve<L: Log + Send + 'static>(
        config: Config,
        std_listener: std::net::TcpListener,
        log: L,
        recovered_events: u64,
        groups: Option<Box<dyn GroupStore>>,
    ) -> Result<Server, ServerError> {
        let tls_config = match &config.tls {
            Some(pem) => Some(super::tls::server_config(pem).map_err(ServerError::InvalidConfig)?),
            None => None,
        };
        // A clustered node with a TLS port dials its peers with TLS too (they listen on the
        // same kind of port).
        let clustered = !config.cluster.peer_addrs.is_empty() || config.cluster.secret.is_some();
        let peer_tls_config = match &config.tls {
            Some(pem) if clustered => Some(
                super::tls::peer_client_config(pem, config.cluster.peer_ca_pem.as_deref())
                    .map_err(ServerError::InvalidConfig)?,
            ),
            _ => None,
        };
        std_listener
            .set_nonblocking(true)
            .map_err(ServerError::Io)?;
        let local_addr = std_listener.local_addr().map_err(ServerError::Io)?;
        let listener = TcpListener::from_std(std_listener);
        let metrics_listener = bind_metrics(&config)?;
        let metrics_addr = match &metrics_listener {
            Some(listener) => Some(listener.local_addr().map_err(ServerError::Io)?),
            None => None,
        };
        let mut engine_config = EngineConfig::from_config(&config);
        engine_config.advertised_addr = Some(config.cluster.advertise_addr.unwrap_or(local_addr));
        // Reconnect jitter only needs to differ between nodes and runs; the engine itself
        // never reads the clock, so the seed is taken here.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        engine_config.seed ^= nanos;
        // The peer handshake's nonces must be unpredictable, so their key comes from the
        // operating system's random source (the engine reads none itself).
        use ring::rand::SecureRandom;
        ring::rand::SystemRandom::new()
            .fill(&mut engine_config.nonce_key)
            .map_err(|_| {
                ServerError::Io(std::io::Error::other("the system random source failed"))
            })?;
        let mut engine = Engine::new(engine_config, log);
        if let Some(groups) = groups {
            engine.load_groups(groups).map_err(ServerError::Storage)?;
        }
        let shutdown = Arc::new(AtomicBool::new(false));
        let auth_reload = AuthSlot::default();
        let (reactor, waker) =
            Reactor::new(&config, listener, engine, shutdown.clone(), tls_config)
                .map_err(ServerError::Io)?;
        let mut reactor = reactor
            .with_auth_reload(auth_reload.clone())
            .with_peer_tls(peer_tls_config);
        if let Some(listener) = metrics_listener {
            reactor = reactor.with_metrics(listener).map_err(ServerError::Io)?;
        }
        let thread = std::thread::Builder::new()
            .name("flo-reactor".into())
            .spawn(move || reactor.run())
            .map_err(ServerError::Io)?;
        Ok(Server {
            local_addr,
            shutdown,
            waker,
            auth_reload,
            thread: Some(thread),
            recovered_events,
            metrics_addr,
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics endpoint (`Config::metrics`), when it has one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Events found in the log at start-up.
    pub fn recovered_events(&self) -> u64 {
        self.recovered_events
    }

    /// A handle that stops this server from another thread.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger {
            shutdown: self.shutdown.clone(),
            waker: self.waker.clone(),
        }
    }

    /// A handle that gives this server a new auth table from another thread.
    pub fn auth_reloader(&self) -> AuthReloader {
        AuthReloader {
            slot: self.auth_reload.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Asks the server to stop and waits until it has: appended events made durable, last
    /// acks sent, connections closed.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.shutdown_trigger().trigger();
        self.join()
    }

    /// Waits until the server stops (after a shutdown trigger, or an I/O error of the poll).
    pub fn wait(mut self) -> Result<(), ServerError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), ServerError> {
        match self.thread.take() {
            None => Ok(()),
            Some(thread) => match thread.join() {
                Ok(result) => result.map_err(ServerError::Io),
                Err(_) => Err(ServerError::Panicked),
            },
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown_trigger().trigger();
            let _ = self.join();
        }
    }
}

/// The group journal in the data directory (docs/consumers.md), opened after the log, which
/// created and locked the directory.
/// Binds `config.bind`.
fn bind(config: &Config) -> Result<std::net::TcpListener, ServerError> {
    std::net::TcpListener::bind(config.bind).map_err(|source| ServerError::Bind {
        addr: config.bind,
        source,
    })
}

/// Binds the metrics endpoint's listener, when one is configured.
fn bind_metrics(config: &Config) -> Result<Option<TcpListener>, ServerError> {
    let Some(addr) = config.metrics.addr else {
        return Ok(None);
    };
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(ServerError::Io)?;
    Ok(Some(TcpListener::from_std(listener)))
}

fn open_group_store(
    config: &Config,
    recovery: RecoveryMode,
) -> Result<Box<dyn GroupStore>, ServerError> {
    let store = FileGroupStore::open_with(&config.storage.data_dir, config.storage.fsync, recovery)
        .map_err(ServerError::Storage)?
        .with_ack_sync_interval(config.groups.ack_sync_interval);
    Ok(Box::new(store))
}
