//! flo: a small, fast, durable event stream server for event-sourced services.
//!
//! A library user gets three things:
//! - **The embedded server**: [`Server`] runs flo on a background thread of your process, with
//!   every limit in one [`Config`]. [`Server::start`] binds `config.bind`;
//!   [`Server::start_with_listener`] takes a listener you bound yourself (port 0 in tests).
//!   [`ShutdownTrigger`] stops it from another thread (a signal handler).
//! - **The client**: [`client::Client`], a blocking client on `std::net` to produce events and
//!   subscribe to them, with cursors to resume from and typed events.
//! - **The event model** in [`event`]: [`event::EventId`], [`event::Event`],
//!   [`event::VersionVector`], [`event::Cursor`], [`event::StartPosition`].
//!
//! For those who embed the server on storage of their own choosing, [`storage`] has the [`Log`]
//! trait the server writes to and its two implementations, [`FileLog`] (segments on disk) and
//! [`MemoryLog`]; [`Server::start_with_log`] runs a server on one.
//!
//! ```no_run
//! use flo::client::{Client, ClientOptions};
//! use flo::event::StartPosition;
//! use flo::{Config, Server};
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let config = Config::new(listener.local_addr()?, "target/flo-data".into());
//! let server = Server::start_with_listener(config, listener)?;
//! let mut client = Client::connect(&server.local_addr().to_string(), ClientOptions::default())?;
//! client.produce("/orders/created", b"order 1")?;
//! for event in client.consume().start(StartPosition::Beginning).limit(1).subscribe()? {
//!     println!("{}", event?.id);
//! }
//! server.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Inside, the layers run from the bytes on disk to the command line (ARCHITECTURE.md has the
//! map): `storage` (the durable log; the only code that touches files), `protocol` (frames and
//! the codec; pure), `engine` (all server state and decisions; takes inputs with `now`, returns
//! actions; never touches a socket or reads the clock), `reactor` (the single-threaded mio event
//! loop that drives the engine; the only code that imports mio), `client` (on `std::net`,
//! reusing `protocol`), and `src/bin/` (argument parsing, logging set-up and exit codes). The
//! internals are public only with the `testing` feature, for the integration tests and the
//! simulator; they carry no stability promise.

#![warn(missing_docs)]

pub mod auth_file;
pub mod client;
pub mod config;
pub mod event;
pub mod storage;
pub mod time;
pub mod units;

// The internals: crate-private, except to the integration tests, examples and simulation, which
// enable the `testing` feature (through the crate's dev-dependency on itself). Without it, the
// items only those tests call (inspection methods such as `Engine::stats`) are unused: dead code
// is still found in the build with the feature, where every crate-private item is checked.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod engine;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
pub(crate) mod engine;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod protocol;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
pub(crate) mod protocol;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod reactor;
#[cfg(not(feature = "testing"))]
pub(crate) mod reactor;

// The seeded generator; its struct serves the unit tests and the integration tests (which include
// the file by path), so the library build alone does not use all of it.
#[allow(dead_code)]
pub(crate) mod random;

pub use config::{ClusterConfig, Config, FsyncPolicy, Retention, StorageConfig, WireLimits};
pub use reactor::{AuthReloader, Server, ServerError, ShutdownTrigger};
pub use storage::{FileLog, Log, MemoryLog};

/// README.md's Rust blocks, compiled (not run) by `cargo test --doc`, so that they keep to the
/// public API; the examples the README names run in tests/readme_walkthrough.rs.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
