//! Hostile and careless input against the real `flo` binary (issue 10).
//!
//! Each case starts the server on 127.0.0.1 port 0 in a temporary directory, does what an
//! attacker or an unlucky operator would do, and then checks the same three things with
//! [`assert_survived`]: the process is still running, another client can still produce and
//! consume within a second, and the server's resident memory stayed under the case's bound.
//! Cases are grouped by area in `tests/hostile/*.rs`.

mod common;

#[path = "hostile/support.rs"]
mod support;

#[path = "hostile/auth.rs"]
mod auth;
#[path = "hostile/bounds.rs"]
mod bounds;
#[path = "hostile/cli.rs"]
mod cli;
#[path = "hostile/globs.rs"]
mod globs;
#[path = "hostile/groups.rs"]
mod groups;
#[path = "hostile/metrics.rs"]
mod metrics;
#[path = "hostile/peers.rs"]
mod peers;
#[path = "hostile/purge.rs"]
mod purge;
#[path = "hostile/shutdown.rs"]
mod shutdown;
#[path = "hostile/storage.rs"]
mod storage;
#[path = "hostile/streams.rs"]
mod streams;
