//! Hostile cases: authentication (`--auth-file`). Failed handshakes are capped per source
//! address (`--max-auth-failures` a second from one IPv4 address or IPv6 /64), so a token
//! guesser from one address is held up and nobody else is. Both addresses are loopback:
//! the guesser's socket is bound to 127.0.0.2 before it connects, the bystander's comes from
//! 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{FloProcess, RawConn};
use crate::support::assert_survived_as;
use flo::auth_file::hash_token;
use flo::protocol::{ClientFrame, ErrorCode, Hello, ServerFrame, PROTOCOL_VERSION};

const RSS_MAX_BYTES: u64 = 64 * 1024 * 1024;
const TOKEN: &str = "writer-0123456789abcdef0123456789abcdef";

fn write_auth_file(dir: &Path) -> PathBuf {
    let path = dir.join("auth.toml");
    let text = format!(
        "[principals.writer]\ntoken = \"{}\"\nproduce = [\"/**\"]\nconsume = [\"/**\"]\n",
        hash_token(TOKEN.as_bytes())
    );
    std::fs::write(&path, text).expect("write the auth file");
    path
}

/// A TCP connection to `server` whose source address is `source` (bound before connecting,
/// which `std::net` cannot do).
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let to_sockaddr = |addr: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let SocketAddr::V4(server) = server else {
        panic!("the server listens on IPv4 loopback");
    };
    let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the addresses are
    // initialised `sockaddr_in`s of the length given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = to_sockaddr(SocketAddrV4::new(source, 0));
        let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), length);
        assert_eq!(
            bound,
            0,
            "bind {source}: {}",
            std::io::Error::last_os_error()
        );
        let remote = to_sockaddr(server);
        let connected = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), length);
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

/// Says Hello with `token` from `source`; returns the first reply.
fn hello_from(source: Ipv4Addr, server: SocketAddr, token: &str) -> Option<ServerFrame> {
    let stream = connect_from(source, server);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    let mut conn = RawConn::from_stream(stream);
    conn.send(&ClientFrame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: "auth hostile".into(),
        auth_token: token.as_bytes().to_vec(),
    }));
    conn.recv()
}

/// Issue 10 (closing note of session 3): 20 bad Hellos a second from anyone locked out
/// everyone. Now a guesser at 127.0.0.2, held over the cap for the whole case, is refused
/// unchecked, and the bystander at 127.0.0.1 is welcomed after every one of its guesses.
#[test]
fn failed_hellos_from_one_address_do_not_lock_out_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth = write_auth_file(dir.path());
    let mut server = FloProcess::start(
        &dir.path().join("data"),
        &[
            "--auth-file",
            auth.to_str().expect("UTF-8 path"),
            "--max-auth-failures",
            "3",
        ],
    );
    let guesser = Ipv4Addr::new(127, 0, 0, 2);
    let bystander = Ipv4Addr::LOCALHOST;
    let mut capped = false;
    for round in 0..50 {
        match hello_from(guesser, server.addr, "a-guess") {
            Some(ServerFrame::Error(error)) => {
                assert_eq!(error.code, ErrorCode::AuthFailed);
                capped |= error.message.contains("too many failed handshakes");
            }
            other => panic!("round {round}: expected AuthFailed for a guess, got {other:?}"),
        }
        match hello_from(bystander, server.addr, TOKEN) {
            Some(ServerFrame::Welcome(_)) => {}
            other => panic!(
                "round {round}: the bystander at 127.0.0.1 was refused after a guess from \
                 127.0.0.2: {other:?}"
            ),
        }
    }
    assert!(capped, "50 guesses from 127.0.0.2 were never capped");
    assert_survived_as(&mut server, RSS_MAX_BYTES, TOKEN.as_bytes());
}
