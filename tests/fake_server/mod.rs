//! A scripted fake flo server for client tests: a thread with a listener on 127.0.0.1:0 that
//! decodes the client's frames with the real codec and answers with scripted frames.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use flo::config::WireLimits;
use flo::protocol::{self, ClientFrame, ServerFrame, Welcome, PROTOCOL_VERSION};

/// One accepted connection, seen from the fake server.
pub struct FakeConn {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl FakeConn {
    pub fn receive(&mut self) -> ClientFrame {
        loop {
            let decoded = protocol::decode_client(&self.buffer, &WireLimits::default())
                .expect("the client sent a valid frame");
            if let Some((frame, used)) = decoded {
                self.buffer.drain(..used);
                return frame;
            }
            let mut chunk = [0u8; 4096];
            let count = self.stream.read(&mut chunk).expect("fake server read");
            assert!(count > 0, "the client closed the connection early");
            self.buffer.extend_from_slice(&chunk[..count]);
        }
    }

    pub fn send<F: protocol::Encode>(&mut self, frame: F) {
        let mut bytes = Vec::new();
        protocol::encode(&frame, &mut bytes);
        self.stream.write_all(&bytes).expect("fake server write");
    }

    /// Answers the Hello with a Welcome carrying these data and frame limits.
    pub fn handshake(&mut self, event_data_size_max: u32) {
        match self.receive() {
            ClientFrame::Hello(hello) => assert_eq!(hello.protocol_version, PROTOCOL_VERSION),
            other => panic!("expected Hello, got {other:?}"),
        }
        self.send(ServerFrame::Welcome(welcome(event_data_size_max)));
    }

    /// Answers as a server older than frame kind `kind` does: a connection-scoped
    /// MalformedFrame error naming the kind it does not know.
    pub fn refuse_unknown_frame(&mut self, kind: u8) {
        self.send(ServerFrame::Error(protocol::ErrorFrame {
            scope: protocol::ErrorScope::Connection,
            code: protocol::ErrorCode::MalformedFrame,
            message: format!("unknown frame kind 0x{kind:02x}"),
        }));
    }

    /// Takes the GroupsDetailRequest that `consume --group` sends first to learn the group's
    /// ack time-out, and answers that the group does not exist (the join creates it).
    pub fn answer_group_detail_no_such_group(&mut self) {
        match self.receive() {
            ClientFrame::GroupsDetailRequest(_) => {}
            other => panic!("expected GroupsDetailRequest, got {other:?}"),
        }
        self.send(no_such_group());
    }

    /// Takes the GroupProgress without ids that flo-client sends before a JoinGroup to learn
    /// whether the server knows that frame, and answers as a server that does: UnknownGroup
    /// (the id is not a membership yet).
    pub fn answer_progress_probe(&mut self) {
        let id = match self.receive() {
            ClientFrame::GroupProgress(probe) if probe.ids.is_empty() => probe.subscription_id,
            other => panic!("expected the GroupProgress probe, got {other:?}"),
        };
        self.send(ServerFrame::Error(protocol::ErrorFrame {
            scope: protocol::ErrorScope::Subscription(id),
            code: protocol::ErrorCode::UnknownGroup,
            message: "GroupProgress for an id that is not a group membership".into(),
        }));
    }

    /// Answers the Hello with the given Welcome.
    pub fn handshake_with(&mut self, welcome: Welcome) {
        assert!(matches!(self.receive(), ClientFrame::Hello(_)));
        self.send(ServerFrame::Welcome(welcome));
    }
}

/// The answer to a GroupsDetailRequest naming a group that does not exist.
pub fn no_such_group() -> ServerFrame {
    ServerFrame::Error(protocol::ErrorFrame {
        scope: protocol::ErrorScope::Connection,
        code: protocol::ErrorCode::NoSuchGroup,
        message: "no such group".into(),
    })
}

pub fn welcome(event_data_size_max: u32) -> Welcome {
    Welcome {
        protocol_version: PROTOCOL_VERSION,
        server_version: "fake 0".into(),
        actor_id: 1,
        frame_size_max: event_data_size_max + 4096,
        namespace_length_max: 64,
        event_data_size_max,
        subscriptions_max: 4,
        idle_timeout_ms: 0,
    }
}

/// Starts a fake server that runs `script` on its first connection; returns its address.
pub fn fake_server(script: impl FnOnce(FakeConn) + Send + 'static) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr").to_string();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        script(FakeConn {
            stream,
            buffer: Vec::new(),
        });
    });
    (addr, handle)
}

/// A fake server's listener, for scripts that take more than one connection (a client that
/// reconnects).
pub struct FakeListener(TcpListener);

impl FakeListener {
    pub fn accept(&self) -> FakeConn {
        let (stream, _) = self.0.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        FakeConn {
            stream,
            buffer: Vec::new(),
        }
    }
}

/// Starts a fake server that runs `script` with its listener; returns its address and the
/// thread, which returns what the script returns.
pub fn fake_listener<T: Send + 'static>(
    script: impl FnOnce(FakeListener) -> T + Send + 'static,
) -> (String, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr").to_string();
    let handle = std::thread::spawn(move || script(FakeListener(listener)));
    (addr, handle)
}
