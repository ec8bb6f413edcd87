//! Hostile cases: storage. An operator's mistakes and a damaged disk against the real binary:
//! a second server started on a data directory in use (issue 10 item 5), and a consumer
//! reading a sealed segment with a damaged record (item 6).

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{FloProcess, RawConn};
use crate::support::assert_survived;
use flo::event::StartPosition;
use flo::protocol::{ErrorCode, ServerFrame, Subscribe};
use flo::storage::segment::read_header;

/// Runs `flo -d dir -p 0` to its exit (killing it after 20 s) and returns its status and
/// standard error.
fn run_to_exit(dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_flo"))
        .arg("-d")
        .arg(dir)
        .args(["-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo");
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(Duration::from_secs(20)) {
        Ok(output) => {
            let output = output.expect("wait for flo");
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (output.status, stderr)
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the second server on the same data directory did not exit");
        }
    }
}

#[test]
fn a_second_server_on_the_same_data_directory_exits_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = FloProcess::start(dir.path(), &[]);
    let (status, stderr) = run_to_exit(dir.path());
    assert!(!status.success(), "the second server exited with {status}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    assert!(
        lines[0].contains(&dir.path().display().to_string()),
        "{stderr}"
    );
    assert!(
        lines[0].contains(&format!("pid {}", first.child.id())),
        "{stderr}"
    );
    assert_survived(&mut first, 64 * 1024 * 1024);
}

#[test]
fn a_consumer_reading_a_damaged_sealed_segment_gets_an_error_naming_the_unreadable_offsets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &["--segment-size", "4096"]);
    let mut conn = RawConn::hello(server.addr);
    for op_id in 1..=200 {
        conn.produce(op_id, "/damaged/disk", &[7; 60]);
        match conn.recv() {
            Some(ServerFrame::Ack(ack)) => assert_eq!(ack.op_id, op_id),
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    drop(conn);
    assert!(server.terminate().success());
    // One flipped bit in the first record of the oldest (sealed) segment. Start-up does not
    // checksum sealed segments, so the server starts and a read meets the damage.
    let first_segment = dir.path().join(format!("{:020}.log", 0));
    let mut file = std::fs::File::open(&first_segment).expect("open segment");
    let header_size = read_header(&mut file).expect("read").expect("header").1;
    let original = std::fs::read(&first_segment).expect("read segment");
    let mut bytes = original.clone();
    bytes[header_size as usize + 20] ^= 0x10;
    std::fs::write(&first_segment, &bytes).expect("write segment");

    let mut server = FloProcess::start(dir.path(), &["--segment-size", "4096"]);
    let mut conn = RawConn::hello(server.addr);
    conn.subscribe(Subscribe {
        subscription_id: 9,
        glob: "/damaged/disk".into(),
        start: StartPosition::Beginning,
        limit: 0,
        tail: false,
        credit: 1000,
    });
    match conn.recv() {
        Some(ServerFrame::Error(error)) => {
            assert_eq!(error.code, ErrorCode::StorageFailure);
            assert!(error.message.contains("offsets 0.."), "{}", error.message);
            assert!(error.message.contains("unreadable"), "{}", error.message);
        }
        other => panic!("expected an error naming the unreadable offsets, got {other:?}"),
    }
    // The survival check reads from the beginning too, which would meet the same damage:
    // the disk is mended (as an operator restoring the file would) before it runs.
    std::fs::write(&first_segment, &original).expect("restore segment");
    assert_survived(&mut server, 64 * 1024 * 1024);
}
