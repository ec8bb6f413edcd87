//! Hostile cases: cli. Files named by flags (the auth file, re-read on SIGHUP, and the
//! `--config` file) replaced by something that is not a regular file: a FIFO (opening it
//! blocked until a writer came, freezing the signal thread and so shutdown) or a symlink to
//! `/dev/zero` (read until memory ran out). Each is refused with a clear error, the old auth
//! table stays in force, and the server still stops on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{FloProcess, RawConn};
use flo::auth_file::hash_token;
use flo::protocol::{ClientFrame, Hello, ServerFrame, PROTOCOL_VERSION};

const TOKEN: &str = "a-token-of-at-least-thirty-two-bytes-for-the-test";

fn make_fifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
}

fn signal(server: &FloProcess, name: &str) {
    let status = Command::new("kill")
        .args([name, &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn await_log_line(server: &FloProcess, parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            .log_lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {parts:?} within 10 s"));
        if parts.iter().all(|part| line.contains(part)) {
            return;
        }
    }
}

#[test]
fn sighup_with_the_auth_file_replaced_by_a_fifo_or_dev_zero_keeps_the_old_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth = dir.path().join("auth.toml");
    let text = format!(
        "[principals.writer]\ntoken = \"{}\"\nproduce = [\"/**\"]\nconsume = [\"/**\"]\n",
        hash_token(TOKEN.as_bytes())
    );
    std::fs::write(&auth, text).expect("write the auth file");
    let auth_arg = auth.to_str().expect("UTF-8 path");
    let server = FloProcess::start(&dir.path().join("data"), &["--auth-file", auth_arg]);
    std::fs::remove_file(&auth).expect("remove the auth file");
    make_fifo(&auth);
    signal(&server, "-HUP");
    await_log_line(&server, &["auth file not reloaded", "not a regular file"]);
    std::fs::remove_file(&auth).expect("remove the FIFO");
    std::os::unix::fs::symlink("/dev/zero", &auth).expect("symlink /dev/zero");
    signal(&server, "-HUP");
    await_log_line(&server, &["auth file not reloaded", "not a regular file"]);
    // The old table is still in force.
    let mut conn = RawConn::connect(server.addr);
    conn.send(&ClientFrame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: "hostile test".into(),
        auth_token: TOKEN.as_bytes().to_vec(),
    }));
    assert!(matches!(conn.recv(), Some(ServerFrame::Welcome(_))));
    conn.produce(1, "/still/allowed", b"x");
    assert!(matches!(conn.recv(), Some(ServerFrame::Ack(_))));
    assert!(
        server.rss_bytes() < 256 * 1024 * 1024,
        "reading the auth file grew the server"
    );
    // And the signal thread is free: SIGTERM stops the server.
    let status = server.terminate();
    assert!(status.success(), "flo exited with {status:?}");
}

#[test]
fn a_config_file_that_is_a_fifo_or_dev_zero_is_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("flo.toml");
    make_fifo(&fifo);
    let zero = dir.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink /dev/zero");
    for config in [&fifo, &zero] {
        let child = Command::new(env!("CARGO_BIN_EXE_flo"))
            .arg("--config")
            .arg(config)
            .args(["-d", dir.path().join("data").to_str().expect("UTF-8 path")])
            .args(["-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flo");
        let pid = child.id();
        let (sender, exited) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let output = child.wait_with_output().expect("wait for flo");
            let _ = sender.send(());
            output
        });
        if exited.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let _ = waiter.join();
            panic!("flo --config {} did not exit within 10 s", config.display());
        }
        let output = waiter.join().expect("the waiter thread");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "flo started with {}",
            config.display()
        );
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
}

/// Attack round 9: a time-out near `u64::MAX` ms (a careless "never") was accepted, and the
/// deadlines it made (the monotonic clock plus the time-out) wrapped into the past:
/// `--idle-timeout 18446744073709551615ms` closed every connection as idle within a second.
/// Every time-out flag above 365 days now stops the start with one line naming it; so does
/// a limit so large that the open file check (which adds limits up) would have failed first.
#[test]
fn absurd_time_outs_and_limits_stop_the_start_with_one_line_naming_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("UTF-8 path");
    for flag in [
        "--idle-timeout",
        "--frame-timeout",
        "--handshake-timeout",
        "--linger-timeout",
        "--shutdown-timeout",
        "--catch-up-timeout",
        "--replication-timeout",
        "--order-stall-timeout",
        "--connect-timeout",
        "--dial-backoff-max",
        "--metrics-timeout",
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_flo"))
            .args(["--check-config", "-d", data, flag, "18446744073709551615ms"])
            .stdin(Stdio::null())
            .output()
            .expect("run flo");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "flo accepted {flag} 18446744073709551615ms (exit {:?})",
            output.status.code()
        );
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("365 days") && !stderr.contains("panicked"),
            "{flag}: {stderr}"
        );
    }
    // An absurd limit is named even when fitting the open file limit would fail first.
    let output = Command::new(env!("CARGO_BIN_EXE_flo"))
        .args([
            "-d",
            data,
            "-p",
            "0",
            "--max-metrics-connections",
            "4294967295",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run flo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("metrics connection limit"),
        "{stderr}"
    );
    // 365 days is still accepted.
    let output = Command::new(env!("CARGO_BIN_EXE_flo"))
        .args(["--check-config", "-d", data, "--idle-timeout", "365d"])
        .stdin(Stdio::null())
        .output()
        .expect("run flo");
    assert!(output.status.success(), "{output:?}");
}
