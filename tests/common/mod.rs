//! Shared helpers for the end-to-end tests: start the real `flo` binary on port 0 in a
//! temporary directory, and speak the protocol over a plain `TcpStream` with the codec.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flo::client::{Client, ClientOptions};
use flo::config::WireLimits;
use flo::event::{Event, StartPosition};
use flo::protocol::{
    decode, encode, ClientFrame, EndReason, Hello, NewEvent, PeerFrame, Produce, ServerFrame,
    Subscribe, PROTOCOL_VERSION,
};

/// A `flo` server process, killed when dropped.
pub struct FloProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Standard error lines after the start-up line, for tests that look at the log.
    pub log_lines: mpsc::Receiver<String>,
    /// Standard error lines up to and including the start-up line.
    pub early_lines: Vec<String>,
}

impl FloProcess {
    /// Starts `flo` with `-p 0` in `data_dir` plus `extra` arguments, and waits for its
    /// start-up line to learn the address.
    pub fn start(data_dir: &Path, extra: &[&str]) -> FloProcess {
        FloProcess::start_on_port(data_dir, 0, extra)
    }

    /// Starts `flo` on `port` (0: any free port) in `data_dir` plus `extra` arguments.
    pub fn start_on_port(data_dir: &Path, port: u16, extra: &[&str]) -> FloProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flo"));
        FloProcess::start_command(
            &mut command,
            data_dir,
            &[&["-p", &port.to_string()], extra].concat(),
        )
    }

    /// Starts `command` (which runs `flo` with the arguments it is given, as a wrapper such as
    /// `sh -c '...; exec flo "$@"'` does) with `-d data_dir` and `extra`, and waits for its
    /// start-up line. Without `-p` in `extra` the port is 0.
    pub fn start_command(command: &mut Command, data_dir: &Path, extra: &[&str]) -> FloProcess {
        FloProcess::start_command_within(command, data_dir, extra, Duration::from_secs(30))
    }

    /// [`FloProcess::start_command`] that waits at most `limit` for the start-up line; a
    /// server still starting then is killed (by its PID) and fails the test with its lines.
    pub fn start_command_within(
        command: &mut Command,
        data_dir: &Path,
        extra: &[&str],
        limit: Duration,
    ) -> FloProcess {
        let port = if extra.contains(&"-p") {
            &[][..]
        } else {
            &["-p", "0"][..]
        };
        let mut child = command
            .arg("-d")
            .arg(data_dir)
            .args(port)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flo");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, log_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + limit;
        let mut early_lines = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = log_lines.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("flo was not listening within {limit:?}; its lines: {early_lines:?}");
            };
            early_lines.push(line.clone());
            if let Some(rest) = line.split(" listening on ").nth(1) {
                let addr = rest.split(',').next().expect("address");
                break addr.parse().expect("a socket address");
            }
        };
        FloProcess {
            child,
            addr,
            log_lines,
            early_lines,
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success());
        let status = self.child.wait().expect("wait for flo");
        std::mem::forget(self);
        status
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    /// The resident set size of the server process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS line");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmRSS value");
        kib * 1024
    }
}

impl Drop for FloProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare protocol connection for tests.
pub struct RawConn {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buffer: Vec::new(),
        }
    }

    /// A connection on a stream the test connected itself (from a chosen source address).
    #[allow(dead_code)] // Not every test file that includes `common` connects its own stream.
    pub fn from_stream(stream: TcpStream) -> RawConn {
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Connects and does the handshake.
    pub fn hello(addr: SocketAddr) -> RawConn {
        let mut conn = RawConn::connect(addr);
        conn.send(&ClientFrame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: "e2e test".into(),
            auth_token: Vec::new(),
        }));
        match conn.recv() {
            Some(ServerFrame::Welcome(_)) => conn,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub fn send<F: flo::protocol::Encode>(&mut self, frame: &F) {
        let mut bytes = Vec::new();
        encode(frame, &mut bytes);
        self.stream.write_all(&bytes).expect("write frame");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write bytes");
    }

    /// The next frame, or None when the server closed the connection.
    pub fn recv(&mut self) -> Option<ServerFrame> {
        self.recv_as()
    }

    /// The next frame on a peer connection, or None when the server closed it.
    #[allow(dead_code)] // Not every test file that includes `common` dials as a peer.
    pub fn recv_peer(&mut self) -> Option<PeerFrame> {
        self.recv_as()
    }

    fn recv_as<F: flo::protocol::Decode>(&mut self) -> Option<F> {
        loop {
            if let Some((frame, length)) =
                decode(&self.buffer, &WireLimits::default()).expect("valid frame from server")
            {
                self.buffer.drain(..length);
                return Some(frame);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(count) => self.buffer.extend_from_slice(&chunk[..count]),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return None,
                // EINTR: a signal reached this test process, not a fault of the server; read again.
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }

    pub fn produce(&mut self, op_id: u64, namespace: &str, data: &[u8]) {
        self.send(&ClientFrame::Produce(Produce {
            op_id,
            event: NewEvent {
                namespace: namespace.into(),
                parent_id: None,
                data: data.to_vec(),
            },
        }));
    }

    pub fn subscribe(&mut self, subscribe: Subscribe) {
        self.send(&ClientFrame::Subscribe(subscribe));
    }

    /// Every stored event, from the beginning to the end of the log (subscription 1, no
    /// tail); any frame but an event or the end fails the test.
    pub fn read_all(&mut self) -> Vec<Event> {
        self.subscribe(Subscribe {
            subscription_id: 1,
            glob: "/**".into(),
            start: StartPosition::Beginning,
            limit: 0,
            tail: false,
            skip_damaged: false,
            order: Default::default(),
            credit: u32::MAX,
        });
        let mut events = Vec::new();
        loop {
            match self.recv() {
                Some(ServerFrame::Event { event, .. }) => events.push(event),
                Some(ServerFrame::End {
                    reason: EndReason::EndOfStream,
                    ..
                }) => return events,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// A library client of `server` whose reads and writes give up after 10 s (a hang fails the
/// test instead of stopping it).
pub fn client(server: &FloProcess) -> Client {
    try_client(server).expect("connect")
}

/// [`client`] for a server that a test may already have killed.
#[allow(dead_code)] // Not every test binary that includes this module kills servers.
pub fn try_client(server: &FloProcess) -> Result<Client, flo::client::ClientError> {
    let options = ClientOptions {
        io_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    Client::connect(&server.addr.to_string(), options)
}

/// Produces `/jobs/<n>` with data `job-<n>` for every n in `jobs`, in batches of 100.
pub fn produce_jobs(server: &FloProcess, jobs: std::ops::Range<usize>) {
    let mut producer = client(server);
    let numbers: Vec<usize> = jobs.collect();
    for chunk in numbers.chunks(100) {
        let events: Vec<NewEvent> = chunk
            .iter()
            .map(|n| NewEvent {
                namespace: format!("/jobs/{n}"),
                parent_id: None,
                data: format!("job-{n}").into_bytes(),
            })
            .collect();
        producer.produce_batch(&events).expect("produce");
    }
}

/// The project's one seeded generator, shared with the library by path (it is not public API),
/// so a failing randomized test names the seed that reproduces it.
#[path = "../../src/random.rs"]
mod random;
#[allow(unused_imports)] // Not every test file that includes `common` uses it.
pub use random::SeededRng;

/// Polls `condition` every 50 ms until it holds; panics naming `what` after 30 s.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The standard output of a command that must have succeeded (its standard error in the
/// failure message otherwise).
pub fn success_stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "flo-client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
