//! What a new user of `flo-client` still missed after session 15's walkthrough, each against
//! the real server (`flo` on 127.0.0.1, port 0, killed when dropped; every `flo-client` run to
//! its end or stopped by its PID):
//!
//! - every error is one line that starts with `flo-client: `, with a non-zero exit (a list of
//!   bad invocations, one per kind of failure);
//! - `produce --data-file FILE` (and `-` for standard input) stores the bytes as one event;
//! - a piped `produce` that reconnects after a server restart says so on standard error, once,
//!   and stores every line once;
//! - `get ID` prints one event as `consume` does, and names a missing id in one line;
//! - `groups parked` shows each parked event's namespace and time, and with `--data` its data;
//! - `consume --group --exec CMD` acknowledges an event when CMD exits 0 and refuses it (nack)
//!   otherwise, so that the group delivers it again and parks it after `max_deliveries`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

use common::{client, success_stdout as stdout, wait_until, FloProcess, RawConn};
use flo::client::format::format_rfc3339_ms;
use flo::client::GroupDelivery;
use flo::event::EventId;

/// `flo-client -H ADDR`, without the environment's FLO_ADDR and FLO_TOKEN.
fn flo_client_command(addr: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flo-client"));
    command
        .args(["-H", addr])
        .env_remove("FLO_ADDR")
        .env_remove("FLO_TOKEN");
    command
}

fn flo_client_with(addr: &str, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = flo_client_command(addr)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flo-client");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    if let Some(input) = input {
        // A command that does not read its input closes the pipe: not a failure of the test.
        let _ = stdin.write_all(input);
    }
    drop(stdin);
    child.wait_with_output().expect("wait for flo-client")
}

fn flo_client(server: &FloProcess, args: &[&str]) -> Output {
    flo_client_with(&server.addr.to_string(), args, None)
}

/// The one line of standard error of a failed run, checked to be prefixed and alone.
fn one_error_line(output: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{what}: exit 0, stderr {stderr:?}"
    );
    assert!(
        stderr.starts_with("flo-client: "),
        "{what}: no prefix: {stderr:?}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{what}: not one line: {stderr:?}"
    );
    assert!(stderr.ends_with('\n'), "{what}: {stderr:?}");
    stderr
}

/// Session 15: `--from garbage` printed its error without the `flo-client:` prefix, and so did
/// every error found after argument parsing (a refused connection, a server's error, a bad id).
#[test]
fn every_cli_error_is_one_prefixed_line_with_a_nonzero_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    stdout(&flo_client(&server, &["produce", "-n", "/a", "-d", "x"]));
    let bad: &[&[&str]] = &[
        &["consume", "--from", "garbage"],
        &["consume", "--from", "-0"],
        &["consume", "--namepsace", "/a"],
        &["consume", "--group", "g", "--order", "id"],
        &["consume", "--group", "g", "--from", "-3"],
        &["trace", "12x"],
        &["trace", "0000000000000000000000001"],
        &["trace", "0000000000000000099900001"],
        &["produce", "-n", "/a", "-d", "x", "--parent", "nope"],
        &["produce", "-n", "/a", "-d", "x", "--expect-last", "nope"],
        &["produce", "-n", "/a", "-d", "x", "--expect-last", "none"],
        &["produce", "-n", "no slash", "-d", "x"],
        &["purge", "-n", "/a/**", "--before", "end"],
        &["groups", "info", "nosuchgroup"],
        &["groups", "update", "g"],
        &["groups", "reset", "g", "--to", "-5"],
        &["groups", "parked", "nosuchgroup"],
        &["get", "0000000000000000099900001"],
        &["get", "x"],
        &[
            "produce",
            "-n",
            "/a",
            "--data-file",
            "/nonexistent/flo-test-file",
        ],
    ];
    for args in bad {
        let output = flo_client(&server, args);
        one_error_line(&output, &format!("{args:?}"));
    }
    // No server there, and a malformed FLO_ADDR.
    let refused = flo_client_with("127.0.0.1:1", &["info"], None);
    one_error_line(&refused, "connection refused");
    let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .arg("info")
        .env("FLO_ADDR", "nonsense")
        .env_remove("FLO_TOKEN")
        .output()
        .expect("run flo-client");
    one_error_line(&output, "FLO_ADDR=nonsense");
}

/// Attack round 17: a group name, glob or token over 65535 bytes (the most a frame's `u16`
/// length can say) made `flo-client` panic in the frame encoder (exit 101 and a Rust panic
/// message; a NamespacesRequest's glob was cut to 65535 bytes instead); and an id with counter
/// 0 given to `--parent`, `--expect-last`, `groups replay` or `purge --before` was sent, so the
/// server closed the connection with MalformedFrame (`--parent 0.0` stored an event without a
/// parent). Each is now one prefixed line before anything is sent, and nothing is stored.
#[test]
fn overlong_fields_and_counter_zero_ids_are_refused_before_sending() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let long = "g".repeat(70_000);
    let long_glob = format!("/{long}");
    let bad: &[&[&str]] = &[
        &["groups", "info", &long],
        &["groups", "parked", &long],
        &["groups", "create", "g", "-n", &long_glob],
        &["consume", "--group", &long, "-n", "/a/**"],
        &["consume", "-n", &long_glob],
        &["namespaces", &long_glob],
        &["--token", &long, "status"],
        &["produce", "-n", "/a", "-d", "x", "--parent", "0.1"],
        &["produce", "-n", "/a", "-d", "x", "--parent", "0.0"],
        &["produce", "-n", "/a", "-d", "x", "--expect-last", "0.0"],
        &["groups", "replay", "g", "--from", "0.3"],
        &["groups", "replay", "g", "--id", "0.3"],
        &["purge", "-n", "/a/**", "--before", "0.2"],
    ];
    for args in bad {
        let output = flo_client(&server, args);
        let shown: Vec<&str> = args.iter().map(|arg| &arg[..arg.len().min(24)]).collect();
        let what = format!("{shown:?}");
        let line = one_error_line(&output, &what);
        assert!(
            !line.contains("panicked") && !line.contains("MalformedFrame"),
            "{what}: {line}"
        );
    }
    assert_eq!(stored(&server), Vec::new(), "an event was stored");
}

/// Every event of the server's log, read with a bare connection.
fn stored(server: &FloProcess) -> Vec<flo::event::Event> {
    RawConn::hello(server.addr).read_all()
}

#[test]
fn produce_data_file_stores_the_files_bytes_as_one_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let bytes: &[u8] = b"line one\nline two\r\n\0\xff\xfe not UTF-8\n";
    let path = dir.path().join("blob.bin");
    std::fs::write(&path, bytes).expect("write blob");
    let path = path.to_str().expect("a UTF-8 path");
    let text = stdout(&flo_client(
        &server,
        &["produce", "-n", "/blobs/1", "--data-file", path],
    ));
    assert_eq!(text.lines().count(), 2, "one id and the summary: {text}");
    let text = stdout(&flo_client_with(
        &server.addr.to_string(),
        &["produce", "-n", "/blobs/2", "--data-file", "-"],
        Some(bytes),
    ));
    assert_eq!(text.lines().count(), 2, "one id and the summary: {text}");
    let events = stored(&server);
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert_eq!(event.data, bytes, "{}", event.namespace);
    }
    // -d and --data-file are one or the other.
    let both = flo_client(
        &server,
        &["produce", "-n", "/blobs/3", "-d", "x", "--data-file", path],
    );
    one_error_line(&both, "-d with --data-file");
    // A file over the server's event size limit (8 MiB) is refused before anything is sent.
    let large = dir.path().join("large.bin");
    std::fs::write(&large, vec![b'x'; 8 * 1024 * 1024 + 1]).expect("write large");
    let output = flo_client(
        &server,
        &[
            "produce",
            "-n",
            "/blobs/4",
            "--data-file",
            large.to_str().expect("UTF-8"),
        ],
    );
    let error = one_error_line(&output, "a file over the limit");
    assert!(error.contains("8388608"), "{error}");
    assert_eq!(stored(&server).len(), 2);
}

/// A piped produce reconnected after a server restart without a word (session 15): it says so
/// once per reconnect on standard error, and every line is stored once.
#[test]
fn a_piped_produce_says_on_stderr_when_it_reconnects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let addr = server.addr;
    let mut producer = flo_client_command(&addr.to_string())
        .args(["produce", "-n", "/lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo-client");
    let mut input = producer.stdin.take().expect("stdin is piped");
    let mut ids = BufReader::new(producer.stdout.take().expect("stdout is piped"));
    input.write_all(b"one\n").expect("write a line");
    let mut first = String::new();
    ids.read_line(&mut first).expect("the first id");
    assert_eq!(first.trim().len(), 25, "{first:?}");
    // The server goes away and comes back on the same port; then the next lines come.
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let server = FloProcess::start_on_port(dir.path(), addr.port(), &[]);
    input.write_all(b"two\nthree\n").expect("write lines");
    drop(input);
    let output = producer.wait_with_output().expect("wait for flo-client");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line per reconnect: {stderr:?}");
    assert!(lines[0].starts_with("flo-client: "), "{stderr:?}");
    assert!(lines[0].contains("reconnected"), "{stderr:?}");
    let data: Vec<Vec<u8>> = stored(&server).into_iter().map(|e| e.data).collect();
    assert_eq!(data, [&b"one"[..], b"two", b"three"], "each line once");
}

#[test]
fn get_prints_one_event_by_id_as_consume_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let mut producer = client(&server);
    producer
        .produce("/food/eggs", b"scrambled")
        .expect("produce");
    let ack = producer
        .produce_event(flo::client::NewEvent {
            namespace: "/food/toast".into(),
            parent_id: Some(EventId::new(1, 1)),
            data: b"butter\nand jam".to_vec(),
        })
        .expect("produce");
    producer.produce("/food/toast", b"later").expect("produce");
    let id = ack.first_id.to_string();
    // Human: the block `consume` prints for the event; JSON: consume's line.
    let consumed = stdout(&flo_client(
        &server,
        &["consume", "-n", "/food/toast", "--limit", "1"],
    ));
    assert_eq!(stdout(&flo_client(&server, &["get", &id])), consumed);
    let json = stdout(&flo_client(&server, &["consume", "--format", "json"]));
    let line = json
        .lines()
        .find(|line| line.contains(&id))
        .expect("the event in consume's JSON");
    let got = stdout(&flo_client(&server, &["get", &id, "--format", "json"]));
    assert_eq!(got, format!("{line}\n"));
    // COUNTER.ACTOR works as everywhere else.
    let short = format!("{}.{}", ack.first_id.counter, ack.first_id.actor);
    assert_eq!(stdout(&flo_client(&server, &["get", &short])), consumed);
    // No such event: one line naming the id, exit 1.
    let missing = flo_client(&server, &["get", "0000000000000000099900001"]);
    let error = one_error_line(&missing, "a missing id");
    assert!(error.contains("0000000000000000099900001"), "{error}");
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty());
}

/// Parks the events of `/orders/**` whose data is `refuse` in group `name` (one delivery each).
fn park(server: &FloProcess, name: &str, refuse: &[u8]) {
    let mut member = client(server);
    let mut consumer = member
        .join_group(name)
        .glob("/orders/**")
        .max_deliveries(1)
        .join()
        .expect("join");
    loop {
        let delivery = consumer
            .next_delivery()
            .expect("delivery")
            .expect("not ended");
        match delivery {
            GroupDelivery::Event(event) if event.data == refuse => consumer
                .nack(&[event.id], std::time::Duration::ZERO)
                .expect("nack"),
            GroupDelivery::Event(event) => consumer.ack(event.id).expect("ack"),
            GroupDelivery::CaughtUp | GroupDelivery::End(_) => break,
        }
    }
    consumer.leave().expect("leave");
    let mut admin = client(server);
    wait_until("the event is parked", || {
        let info = admin.group_info(name).expect("group info");
        info.parked == 1 && info.pending == 0
    });
}

/// `groups parked` showed only "ID offset N" (session 15): an operator deciding on a replay
/// needs the namespace, the time and the data.
#[test]
fn groups_parked_shows_namespace_time_and_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let mut producer = client(&server);
    producer.produce("/orders/1", b"fine").expect("produce");
    let poison = producer
        .produce("/orders/2", b"poison \xff pill")
        .expect("produce");
    producer.produce("/orders/3", b"fine").expect("produce");
    park(&server, "orders", b"poison \xff pill");
    let id = poison.first_id.to_string();
    let time = format_rfc3339_ms(poison.timestamp_ms);

    let output = flo_client(&server, &["groups", "parked", "orders"]);
    let text = stdout(&output);
    // One event, not "1 parked events".
    let count = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(count, "1 parked event in group orders\n");
    let line = text.lines().next().expect("a parked line");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(line.starts_with(&format!("{id} offset ")), "{line}");
    assert!(line.contains(" /orders/2 "), "{line}");
    assert!(line.ends_with(&time), "{line}");

    let text = stdout(&flo_client(
        &server,
        &["groups", "parked", "orders", "--data"],
    ));
    let event = stdout(&flo_client(&server, &["get", &id]));
    assert!(text.starts_with(line), "{text}");
    assert!(text.ends_with(&event), "the event as get prints it: {text}");
    assert!(text.contains("poison \\xff pill"), "{text}");

    let json = stdout(&flo_client(
        &server,
        &["groups", "parked", "orders", "--format", "json"],
    ));
    assert!(json.contains("\"namespace\":\"/orders/2\""), "{json}");
    assert!(
        json.contains(&format!("\"timestamp\":{}", poison.timestamp_ms)),
        "{json}"
    );
    assert!(!json.contains("\"data\""), "{json}");
    let json = stdout(&flo_client(
        &server,
        &["groups", "parked", "orders", "--format", "json", "--data"],
    ));
    assert!(json.contains(&format!("\"id\":\"{id}\"")), "{json}");
    assert!(json.contains("\"offset\":"), "{json}");
    assert!(json.contains("\"data_encoding\":\"base64\""), "{json}");
}

/// `consume --group` acknowledged every event it printed: a shell pipeline could not refuse
/// one (session 15). With `--exec CMD`, CMD gets each event (data on standard input, id and
/// namespace in the environment); exit 0 acknowledges it, anything else refuses it.
/// With `-t` the member keeps tailing until Ctrl-C; without it, it works off what is there
/// (the refused event retried until parked) and exits 0 by itself.
#[test]
fn consume_group_exec_acks_on_exit_0_and_refuses_otherwise() {
    exec_acks_on_exit_0_and_refuses_otherwise(true);
    exec_acks_on_exit_0_and_refuses_otherwise(false);
}

fn exec_acks_on_exit_0_and_refuses_otherwise(tail: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let log = dir.path().join("exec.log");
    let create = [
        "groups",
        "create",
        "work",
        "-n",
        "/work/**",
        "--max-deliveries",
        "2",
    ];
    stdout(&flo_client(&server, &create));
    let mut producer = client(&server);
    producer.produce("/work/1", b"ok").expect("produce");
    let bad = producer.produce("/work/2", b"bad").expect("produce");
    producer.produce("/work/3", b"ok").expect("produce");
    let script = format!(
        "data=$(cat); echo \"$FLO_EVENT_ID $FLO_NAMESPACE $data\" >> '{}'; [ \"$data\" = ok ]",
        log.display()
    );
    let mut member = flo_client_command(&server.addr.to_string())
        .args(["consume", "--group", "work"])
        .args(["-n", "/work/**", "--exec", &script])
        .args(if tail { &["-t"][..] } else { &[][..] })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo-client");
    let mut admin = client(&server);
    wait_until("every event is acknowledged or parked", || {
        if !tail {
            return member.try_wait().expect("try_wait").is_some();
        }
        if let Some(status) = member.try_wait().expect("try_wait") {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(
                member.stderr.as_mut().expect("stderr is piped"),
                &mut stderr,
            );
            panic!("the member exited ({status}): {stderr}");
        }
        let info = admin.group_info("work").expect("group info");
        info.parked == 1 && info.pending == 0 && info.lag == 0
    });
    if tail {
        let pid = member.id().to_string();
        let killed = Command::new("kill").args(["-INT", &pid]).status();
        assert!(killed.expect("run kill").success());
    }
    let output = member.wait_with_output().expect("wait for flo-client");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let info = admin.group_info("work").expect("group info");
    assert_eq!(
        (info.parked, info.pending, info.lag),
        (1, 0, 0),
        "tail {tail}"
    );
    let runs = std::fs::read_to_string(&log).expect("the exec log");
    let bad_id = bad.first_id.to_string();
    let count = |needle: &str| runs.lines().filter(|line| line.contains(needle)).count();
    assert_eq!(count(" /work/1 ok"), 1, "{runs}");
    assert_eq!(count(&format!("{bad_id} /work/2 bad")), 2, "{runs}");
    assert_eq!(count(" /work/3 ok"), 1, "{runs}");
    // Each refusal is said once on standard error, naming the event.
    let refusals = stderr.lines().filter(|line| line.contains(&bad_id)).count();
    assert_eq!(refusals, 2, "{stderr}");
    let parked = stdout(&flo_client(&server, &["groups", "parked", "work"]));
    assert!(parked.starts_with(&bad_id), "{parked}");
}

/// Attack round 16: a Ctrl-C while the `--exec` command ran ended `flo-client` at once (exit 0),
/// leaving the command running on its own. The command then finished its work, but nobody
/// acknowledged the event: the group delivered it again, so its effect happened twice, which
/// the ack sent "at once, not batched" was meant to prevent. The first Ctrl-C now lets the
/// running command finish, acknowledges (or refuses) its event, leaves the group and exits 0.
#[test]
fn a_ctrl_c_while_the_exec_command_runs_waits_for_it_and_acks_its_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    stdout(&flo_client(
        &server,
        &["groups", "create", "slow", "-n", "/slow/**"],
    ));
    let mut producer = client(&server);
    producer.produce("/slow/1", b"work").expect("produce");
    let started = dir.path().join("started");
    let go = dir.path().join("go");
    let log = dir.path().join("exec.log");
    let made = Command::new("mkfifo").arg(&go).status();
    assert!(made.expect("run mkfifo").success());
    // The command says it started, then waits for the test (reading the FIFO), then records
    // that its work is done.
    let script = format!(
        "cat > /dev/null; touch '{}'; read line < '{}'; echo \"done $FLO_EVENT_ID\" >> '{}'",
        started.display(),
        go.display(),
        log.display()
    );
    let stderr_path = dir.path().join("member.stderr");
    let stderr_file = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut member = flo_client_command(&server.addr.to_string())
        .args(["consume", "--group", "slow"])
        .args(["-n", "/slow/**", "-t", "--exec", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file)
        .spawn()
        .expect("start flo-client");
    wait_until("the --exec command started", || started.exists());
    // Ctrl-C to flo-client alone (as `kill -INT` or a supervisor sends it).
    let pid = member.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status();
    assert!(killed.expect("run kill").success());
    let read_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let mut exited = None;
    wait_until("flo-client exits or says it waits for the command", || {
        exited = member.try_wait().expect("try_wait");
        exited.is_some() || read_stderr().contains("Ctrl-C")
    });
    assert_eq!(
        exited,
        None,
        "flo-client ended at the Ctrl-C while its --exec command still ran: {}",
        read_stderr()
    );
    // The command's work ends now.
    std::fs::write(&go, b"go\n").expect("write the FIFO");
    let status = member.wait().expect("wait for flo-client");
    let stderr = read_stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let runs = std::fs::read_to_string(&log).expect("the exec log");
    assert_eq!(runs.lines().count(), 1, "{runs}");
    let info = client(&server).group_info("slow").expect("group info");
    assert_eq!(
        (info.pending, info.lag, info.members),
        (0, 0, 0),
        "the event whose command finished is acknowledged: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("flo-client: "), "{stderr}");
}

/// A `consume --group long -n '/long/**' --exec` member whose command has read the event
/// `/long/1` (produced here) and waits on a FIFO until `finish_once` lets it end.
struct ExecMember {
    child: std::process::Child,
    go: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl ExecMember {
    fn start_blocked(server: &FloProcess, dir: &std::path::Path) -> ExecMember {
        client(server).produce("/long/1", b"work").expect("produce");
        let started = dir.join("started");
        let go = dir.join("go");
        let log = dir.join("exec.log");
        let made = Command::new("mkfifo").arg(&go).status();
        assert!(made.expect("run mkfifo").success());
        let script = format!(
            "cat > /dev/null; touch '{}'; read line < '{}'; echo \"done $FLO_EVENT_ID\" >> '{}'",
            started.display(),
            go.display(),
            log.display()
        );
        let child = flo_client_command(&server.addr.to_string())
            .args([
                "consume", "--group", "long", "-n", "/long/**", "--exec", &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flo-client");
        wait_until("the --exec command started", || started.exists());
        ExecMember { child, go, log }
    }

    /// Lets the command end; asserts that flo-client succeeded and the command ran once.
    /// Returns flo-client's standard error.
    fn finish_once(self) -> String {
        std::fs::write(&self.go, b"go\n").expect("write the FIFO");
        let output = self.child.wait_with_output().expect("wait for flo-client");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let runs = std::fs::read_to_string(&self.log).expect("the exec log");
        assert_eq!(runs.lines().count(), 1, "{runs}");
        stderr
    }
}

/// The group `long` has nothing pending and nothing left to deliver: its event was
/// acknowledged (`stderr`, flo-client's, for the failure message).
fn assert_long_group_acknowledged(server: &FloProcess, stderr: &str) {
    let info = client(server).group_info("long").expect("group info");
    assert_eq!(
        (info.pending, info.lag),
        (0, 0),
        "the event is acknowledged: {stderr}"
    );
}

/// Attack round 17: a member read nothing while its `--exec` command ran, so a command that ran
/// longer than the server's `--idle-timeout` (5 min by default) had the connection closed as
/// idle: its work was done, but its event was not acknowledged, `flo-client` exited 1 ("server
/// error Timeout") and the group delivered the event again. The member now pings while the
/// command runs. Here the command waits (on a FIFO) through two idle time-outs of 1 s, awaited
/// on the test's own connections, and its event is acknowledged.
#[test]
fn an_exec_command_outlasting_the_idle_timeout_still_gets_its_event_acked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &["--idle-timeout", "1s"]);
    stdout(&flo_client(
        &server,
        &["groups", "create", "long", "-n", "/long/**"],
    ));
    let member = ExecMember::start_blocked(&server, dir.path());
    for _ in 0..2 {
        let mut idle = RawConn::hello(server.addr);
        while idle.recv().is_some() {}
    }
    let stderr = member.finish_once();
    assert_long_group_acknowledged(&server, &stderr);
}

/// prog17 (issue 12 follow-up): a `--exec` command that ran longer than the group's ack
/// time-out had its event delivered to another member while it still ran (the work done
/// twice). The member now sends GroupProgress for the event every second while the command
/// runs. Here the group's ack time-out is 2 s; the command waits (on a FIFO) while a second
/// member of the group waits 5 s for a delivery (a wait for something that must not come can
/// only end by time); nothing comes to it, and the event is acknowledged once.
#[test]
fn an_exec_command_outlasting_the_ack_timeout_keeps_its_event() {
    exec_member_keeps_its_event("2s", 5);
}

/// A group "long" with this ack time-out; a member runs an `--exec` command that waits (on a
/// FIFO) while a second member waits `seconds` for a delivery (a wait for something that must
/// not come can only end by time); nothing comes to it, and the event is acknowledged once.
fn exec_member_keeps_its_event(ack_timeout: &str, seconds: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    stdout(&flo_client(
        &server,
        &[
            "groups",
            "create",
            "long",
            "-n",
            "/long/**",
            "--ack-timeout",
            ack_timeout,
        ],
    ));
    let member = ExecMember::start_blocked(&server, dir.path());
    let mut other_client = client(&server);
    let mut other = (other_client.join_group("long").glob("/long/**").credit(1))
        .join()
        .expect("join");
    assert_nothing_delivered_for(&mut other, seconds, "while the command ran");
    let stderr = member.finish_once();
    other.leave().expect("leave");
    assert_long_group_acknowledged(&server, &stderr);
}

/// Attack round 16: `produce --data-file -` (or a FIFO, `<(cmd)`) opened its connection first
/// and then waited for the input; a command slower than the server's `--idle-timeout` (5 min by
/// default) made the server close that connection, and the produce failed with Timeout,
/// nothing stored. The input is now read before the connection that sends it is opened (the
/// server's event data limit, which bounds the read, is asked on a connection of its own).
#[test]
fn produce_data_file_from_a_slow_pipe_outlasting_the_idle_timeout_is_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &["--idle-timeout", "1s"]);
    let mut producer = flo_client_command(&server.addr.to_string())
        .args(["produce", "-n", "/slow/input", "--data-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo-client");
    // Two idle time-outs in a row, awaited on connections of the test's own: flo-client,
    // started before them, connected within the first one, so a connection of its held open
    // while it waited for its input is closed as idle by the end of the second.
    for _ in 0..2 {
        let mut idle = RawConn::hello(server.addr);
        while idle.recv().is_some() {}
    }
    let mut stdin = producer.stdin.take().expect("stdin is piped");
    stdin.write_all(b"slow data").expect("write the input");
    drop(stdin);
    let output = producer.wait_with_output().expect("wait for flo-client");
    let text = stdout(&output);
    let id: EventId = text.lines().next().expect("an id").parse().expect("an id");
    let events = stored(&server);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].id, &events[0].data[..]), (id, &b"slow data"[..]));
}

/// A line of standard input longer than the server's event data limit ends a piped produce
/// (plain, and the atomic batch of `--expect-last`) with one prefixed line, nothing stored,
/// after reading at most that limit: `flo-client produce < /dev/zero` (no newline, ever) used
/// to read until memory ran out (attack round 16).
#[test]
fn a_line_longer_than_the_event_limit_ends_a_piped_produce_after_a_bounded_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let addr = server.addr.to_string();
    let limit = 8 << 20;
    let mut long = vec![b'x'; limit + 1];
    long.push(b'\n');
    for args in [
        &["produce", "-n", "/long"][..],
        &["produce", "-n", "/long", "--expect-last", "none"][..],
    ] {
        let output = flo_client_with(&addr, args, Some(&long));
        let line = one_error_line(&output, "a line over the limit");
        assert!(
            line.contains("longer than the server's event data limit of 8388608 bytes"),
            "{args:?}: {line}"
        );
        // Endless input without a newline: the read stops at the limit.
        let mut child = flo_client_command(&addr)
            .args(args)
            .stdin(std::fs::File::open("/dev/zero").expect("/dev/zero"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run flo-client");
        // A hang guard, not a timing bound: a flo-client still reading after 30 s is stopped
        // by its PID (its memory grows as it reads) and fails the test.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().expect("try_wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?}: flo-client was still reading /dev/zero after 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("wait for flo-client");
        let line = one_error_line(&output, "endless input");
        assert!(
            line.contains("longer than the server's event data limit"),
            "{line}"
        );
    }
    assert!(stored(&server).is_empty(), "nothing is stored");
}

/// Session 18 (left18): plain `consume --group` whose standard output does not drain (a pipe
/// into `less`, a slow reader) for longer than the group's ack time-out had the events it held
/// delivered to another member while it was still writing them: blocked in the write, it sent
/// nothing. The writes now go through a thread of their own and the member sends
/// GroupProgress for its held events meanwhile (also those delivered behind the blocked
/// write, which it reads ahead). Here the group's ack time-out is 2 s; the member is given 40
/// events of 4 KiB (more than a pipe's buffer) while the test does not read its output, a
/// second member waits 5 s for a delivery (a wait for something that must not come can only
/// end by time), nothing comes to it, and then the output is read: every event once.
#[test]
fn a_group_member_whose_stdout_is_blocked_keeps_its_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    stdout(&flo_client(
        &server,
        &[
            "groups",
            "create",
            "slow",
            "-n",
            "/slow/**",
            "--ack-timeout",
            "2s",
        ],
    ));
    let mut producer = client(&server);
    for index in 0..40 {
        let data = format!("{index:04} {}", "x".repeat(4096));
        producer
            .produce("/slow/out", data.as_bytes())
            .expect("produce");
    }
    let mut member = flo_client_command(&server.addr.to_string())
        .args(["consume", "--group", "slow", "-n", "/slow/**"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo-client");
    // All 40 delivered to it (the only member), and some still held: those behind the
    // output that fills the pipe's buffer.
    wait_until("the member has all 40 events and holds some", || {
        let info = producer.group_info("slow").expect("group info");
        info.next == 40 && info.in_flight > 0
    });
    let mut other_client = client(&server);
    let mut other = (other_client.join_group("slow").glob("/slow/**").credit(1))
        .join()
        .expect("join");
    assert_nothing_delivered_for(&mut other, 5, "while stdout was blocked");
    let mut printed = String::new();
    let mut out = member.stdout.take().expect("stdout is piped");
    std::io::Read::read_to_string(&mut out, &mut printed).expect("read the output");
    let output = member.wait_with_output().expect("wait for flo-client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for index in 0..40 {
        assert_eq!(
            printed.matches(&format!("{index:04} x")).count(),
            1,
            "event {index}: {stderr}"
        );
    }
    other.leave().expect("leave");
    let info = producer.group_info("slow").expect("group info");
    assert_eq!((info.pending, info.lag), (0, 0), "{stderr}");
}

/// Waits `seconds` for a delivery to `member` that must not come (a wait for something that
/// must not come can only end by time); CaughtUp is not a delivery.
fn assert_nothing_delivered_for(
    member: &mut flo::client::GroupConsumer<'_>,
    seconds: u64,
    what: &str,
) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !member.wait_for_delivery(left).expect("wait") {
            return;
        }
        match member.next_delivery().expect("delivery") {
            Some(GroupDelivery::CaughtUp) => {}
            Some(GroupDelivery::Event(event)) => {
                panic!("the second member got event {} {what}", event.id)
            }
            delivery => panic!("the second member got {delivery:?} {what}"),
        }
    }
}

/// Session 18 (left18): a member sent GroupProgress every second at most, whatever the
/// group's ack time-out, so a group whose ack time-out is 1 s or less gave a long `--exec`
/// command's event to another member meanwhile. The member now asks the group's ack time-out
/// (GroupsDetailRequest) before it joins and sends GroupProgress every third of it (100 ms at
/// least). Here the group's ack time-out is 600 ms; the command waits (on a FIFO) while a
/// second member waits 3 s for a delivery; nothing comes to it, and the event is acknowledged
/// once.
#[test]
fn an_exec_command_in_a_group_with_a_short_ack_timeout_keeps_its_event() {
    exec_member_keeps_its_event("600ms", 3);
}
