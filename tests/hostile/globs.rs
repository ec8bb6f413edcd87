//! Hostile cases: globs.
//!
//! A glob is matched against every namespace a subscription reads, on the reactor thread, so
//! a pattern whose matching cost grows with the pattern (a backtracking matcher is exponential
//! in the number of `*`) freezes every client. These cases store events with maximal
//! namespaces built to defeat backtracking, subscribe with the worst patterns, and check that
//! the server still serves another client at once.

use flo::event::StartPosition;
use flo::protocol::{ErrorCode, ErrorScope, ServerFrame, Subscribe};

use crate::common::{FloProcess, RawConn};
use crate::support::assert_survived;

/// The longest namespace the default limits allow.
const NAMESPACE_LENGTH_MAX: usize = 1024;

/// A namespace of `a`s in one long segment followed by a short one: a backtracking `*`
/// tries every split of the `a`s, and the last segment makes every attempt fail late.
fn long_namespace(last: &str) -> String {
    let run = NAMESPACE_LENGTH_MAX - 2 - last.len();
    format!("/{}/{last}", "a".repeat(run))
}

/// The start of a glob, for assertion messages (the worst globs are long).
fn label(glob: &str) -> &str {
    &glob[..glob.len().min(40)]
}

fn subscribe(conn: &mut RawConn, subscription_id: u32, glob: &str) {
    conn.subscribe(Subscribe {
        subscription_id,
        glob: glob.to_string(),
        start: StartPosition::Beginning,
        limit: 0,
        tail: false,
        credit: 1000,
    });
}

/// Patterns with many stars against maximal namespaces: each subscription reads the stored
/// events and ends, and the server stays responsive throughout.
#[test]
fn exponential_glob_patterns_do_not_freeze_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::hello(server.addr);
    let namespaces = [long_namespace("x"), long_namespace("b"), long_namespace("")];
    for (index, namespace) in namespaces.iter().enumerate() {
        assert_eq!(namespace.len(), NAMESPACE_LENGTH_MAX);
        conn.produce(index as u64 + 1, namespace, b"bait");
        match conn.recv() {
            Some(ServerFrame::Ack(ack)) => assert_eq!(ack.op_id, index as u64 + 1),
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    // The 17-byte glob of the report, then longer ones up to many stars.
    let stars = |count: usize| format!("/{}b", "*a".repeat(count));
    let globs = [
        "/*a*a*a*a*a*a*a*b".to_string(),
        stars(40),
        format!("/**/{}", "*a".repeat(40)),
        format!("/{}*/x", "*a?".repeat(40)),
        format!("/**/{}/**/{}", "*a".repeat(30), "*[ab]".repeat(30)),
    ];
    for (index, glob) in globs.iter().enumerate() {
        subscribe(&mut conn, index as u32 + 1, glob);
        loop {
            match conn.recv() {
                Some(ServerFrame::Event { .. }) => {}
                Some(ServerFrame::End {
                    subscription_id, ..
                }) => {
                    assert_eq!(subscription_id, index as u32 + 1);
                    break;
                }
                other => panic!("{}: unexpected frame {other:?}", label(glob)),
            }
        }
        assert_survived(&mut server, 64 * 1024 * 1024);
    }
    assert_survived(&mut server, 64 * 1024 * 1024);
}

/// A glob over the length limit, and patterns that could never match what they seem to say,
/// are refused with InvalidGlob for that subscription; the connection stays usable.
#[test]
fn refused_globs_get_an_error_and_the_connection_stays_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::hello(server.addr);
    let too_long = format!("/{}", "*a".repeat(20_000));
    let refused = [too_long.as_str(), "/{a,b}", "/[z-a]", "/[/]x", "/[ab"];
    for (index, glob) in refused.iter().enumerate() {
        let id = index as u32 + 1;
        subscribe(&mut conn, id, glob);
        match conn.recv() {
            Some(ServerFrame::Error(error)) => {
                assert_eq!(error.code, ErrorCode::InvalidGlob, "{}", label(glob));
                assert_eq!(error.scope, ErrorScope::Subscription(id), "{}", label(glob));
            }
            other => panic!("{}: expected InvalidGlob, got {other:?}", label(glob)),
        }
    }
    subscribe(&mut conn, 100, "/**");
    match conn.recv() {
        Some(ServerFrame::End {
            subscription_id, ..
        }) => assert_eq!(subscription_id, 100),
        other => panic!("expected End for a valid glob, got {other:?}"),
    }
    assert_survived(&mut server, 64 * 1024 * 1024);
}
