//! flo: a small, fast, durable event stream server.
//!
//! The layers, from the bytes on disk to the command line:
//! - [`event`]: the event model shared by every layer (ids, events, version vectors, cursors).
//! - [`config`]: every limit of the server, validated at start-up.
//! - [`time`]: the wall-clock and monotonic readings as distinct types.
//! - [`storage`]: the durable log; the only code that touches files.
//! - [`protocol`]: frames and the codec between frames and bytes; pure, no I/O.
//! - `engine`: all server state and decisions; takes inputs with `now`, returns actions; never
//!   touches a socket or reads the clock.
//! - `reactor`: the single-threaded mio event loop that drives the engine; the only code that
//!   imports mio.
//! - `client`: a blocking client library on `std::net`, reusing [`protocol`].
//! - `src/bin/`: argument parsing, logging set-up and exit codes for `flo` and `flo-client`.

pub mod client;
pub mod config;
pub mod engine;
pub mod event;
pub mod protocol;
// The seeded generator; its struct serves the unit tests and the integration tests (which include
// the file by path), so the library build alone does not use all of it.
#[allow(dead_code)]
pub(crate) mod random;
pub mod reactor;
pub mod storage;
pub mod time;
pub mod units;
