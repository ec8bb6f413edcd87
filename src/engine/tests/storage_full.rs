//! A full disk fails every produce: the server logs it once every 10 s, the first line saying
//! what to do, the later ones how many failures were held back, and the first write that works
//! again says so (walk9 saw 16 ERROR lines a second; a pipelining producer makes hundreds).
//! The log lines of the test's own thread are captured by a logger installed once.

use super::*;
use std::cell::RefCell;

thread_local! {
    /// The lines logged on this thread while `captured` runs.
    static LINES: RefCell<Option<Vec<(log::Level, String)>>> = const { RefCell::new(None) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        LINES.with(|lines| {
            if let Some(lines) = lines.borrow_mut().as_mut() {
                lines.push((record.level(), record.args().to_string()));
            }
        });
    }

    fn flush(&self) {}
}

/// Runs `run` and returns the lines it logged at INFO or above on this thread.
fn captured(run: impl FnOnce()) -> Vec<(log::Level, String)> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // No other code of the library's tests installs a logger.
        log::set_logger(&Capture).expect("no logger installed before");
        log::set_max_level(log::LevelFilter::Info);
    });
    LINES.with(|lines| *lines.borrow_mut() = Some(Vec::new()));
    run();
    let lines = LINES
        .with(|lines| lines.borrow_mut().take())
        .unwrap_or_default();
    lines
        .into_iter()
        .filter(|(level, _)| *level <= log::Level::Info)
        .collect()
}

/// One produce in a turn whose write fails like a full disk, 50 ms after the previous one.
fn failed_produce(h: &mut Harness, conn: ConnId, op_id: u64) {
    h.produce(conn, op_id, "/a", b"x");
    h.engine.log_mut().fail_next_sync = true;
    h.turn();
    let frames = h.received(conn);
    assert!(
        matches!(
            frames.as_slice(),
            [ServerFrame::Error(ErrorFrame {
                code: ErrorCode::StorageFailure,
                ..
            })]
        ),
        "a produce on a full disk gets StorageFailure: {frames:?}"
    );
    h.now.monotonic.0 += 50;
}

#[test]
fn a_full_disk_is_logged_once_every_ten_seconds_with_what_to_do_first() {
    let mut h = Harness::new();
    let conn = h.client();
    // 300 failures over 15 s.
    let lines = captured(|| (0..300).for_each(|i| failed_produce(&mut h, conn, i)));
    let texts: Vec<&str> = lines.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(
        texts.len(),
        2,
        "300 failed writes in 15 s make one line at once and one 10 s later: {texts:#?}"
    );
    assert!(lines.iter().all(|(level, _)| *level == log::Level::Error));
    assert!(
        texts[0].contains("could not make appended events durable")
            && texts[0].contains("disk holding the data directory is full")
            && texts[0].contains("Free space on that disk")
            && texts[0].contains("without a restart"),
        "the first line says what failed and what to do: {}",
        texts[0]
    );
    assert!(
        texts[1].contains("writes have failed 201 times")
            && texts[1].contains("(199 more like it since the last such message)"),
        "the second line counts the failures held back: {}",
        texts[1]
    );

    // The disk has room again: one line says so, and the next failure gives the advice again.
    let lines = captured(|| {
        h.produce(conn, 1000, "/a", b"kept");
        h.turn();
        assert!(matches!(
            h.received(conn).as_slice(),
            [ServerFrame::Ack(Ack { op_id: 1000, .. })]
        ));
        failed_produce(&mut h, conn, 1001);
    });
    let texts: Vec<&str> = lines.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert_eq!(
        texts[0],
        "writes to the data directory work again, after 300 failed"
    );
    assert!(texts[1].contains("Free space on that disk"), "{}", texts[1]);
}
