//! The metrics endpoint (`--metrics-addr`): a second listener that speaks just enough HTTP/1.1
//! to answer `GET /metrics` with the Prometheus text format. Anything else gets 404 (another
//! path), 405 (another method on /metrics), 400 (not HTTP) or 431 (a request head over
//! `metrics.request_size_max`). Every answer closes the connection (`Connection: close`), so a
//! connection carries one request and no body is ever read.
//!
//! Its connections are bounded like client connections, and cost the reactor nothing while
//! idle: at most `metrics.connections_max` at once (more are closed as soon as they are
//! accepted), at most `request_size_max` bytes of request each, and one deadline
//! (`request_timeout`) for the request to arrive and another for the response to be taken, past
//! which the connection is dropped (a slow or silent client, slowloris). They never reach the
//! engine, which only provides the figures.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::config::MetricsConfig;

/// The metrics listener's token.
pub(super) const HTTP_LISTENER: Token = Token(usize::MAX - 3);
/// HTTP connections use tokens from here up (client sockets use their slab keys, far below).
pub(super) const HTTP_TOKEN_BASE: usize = usize::MAX / 2;
/// What one readiness event of a connection that is being drained after its response may read
/// (discarded); the rest waits for the deadline.
const DRAIN_BYTES_MAX: usize = 64 * 1024;
/// Connections accepted per turn at most; the rest are accepted next turn (`accept_pending`),
/// so a flood of connections cannot keep the reactor from its other work.
const ACCEPTS_PER_TURN_MAX: usize = 1024;

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Request {
    /// Not all of the head has arrived.
    Incomplete,
    /// `GET /metrics` (a query string is ignored).
    Metrics,
    /// Another path.
    NotFound,
    /// Another method on /metrics.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line.
    NotHttp,
    /// No end of the head within the size limit.
    TooLarge,
}

/// Reads a request head (request line and headers, up to the empty line). Headers are not
/// interpreted: the answer does not depend on them.
pub(super) fn parse_request(received: &[u8], size_max: usize) -> Request {
    let head_end = find(received, b"\r\n\r\n").or_else(|| find(received, b"\n\n"));
    if head_end.is_none_or(|end| end > size_max) {
        // A request line that cannot be HTTP is refused at once, without waiting for more.
        let line_end = find(received, b"\n").unwrap_or(received.len());
        if !looks_like_http(&received[..line_end], line_end < received.len()) {
            return Request::NotHttp;
        }
        return if received.len() >= size_max {
            Request::TooLarge
        } else {
            Request::Incomplete
        };
    }
    let line_end = find(received, b"\n").unwrap_or(received.len());
    let line = received[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&received[..line_end]);
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::NotHttp;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::NotHttp;
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" || method.is_empty() {
        return Request::NotHttp;
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET", "/metrics") => Request::Metrics,
        (_, "/metrics") => Request::MethodNotAllowed,
        _ => Request::NotFound,
    }
}

/// Whether what arrived of the request line can still become `METHOD TARGET HTTP/1.x`: a token
/// of letters first, no control characters (`complete`: the whole line is there).
fn looks_like_http(line: &[u8], complete: bool) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let method_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let method_ok = line[..method_end].iter().all(u8::is_ascii_uppercase);
    let printable = line.iter().all(|&b| (0x20..0x7f).contains(&b));
    let has_target = method_end < line.len() || !complete;
    method_ok && printable && has_target && (method_end > 0 || line.is_empty())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The whole response for `request` (not `Incomplete`); `body` renders the metrics.
pub(super) fn response(request: Request, body: impl FnOnce() -> String) -> Vec<u8> {
    let (status, content_type, body, extra) = match request {
        Request::Metrics => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            body(),
            "",
        ),
        Request::NotFound => (
            "404 Not Found",
            "text/plain",
            "not found: flo serves GET /metrics\n".into(),
            "",
        ),
        Request::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "/metrics answers GET only\n".into(),
            "Allow: GET\r\n",
        ),
        Request::NotHttp | Request::Incomplete => (
            "400 Bad Request",
            "text/plain",
            "not an HTTP/1.1 request\n".into(),
            "",
        ),
        Request::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain",
            "the request head is over the size limit\n".into(),
            "",
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

enum HttpState {
    /// Waiting for the request head.
    Reading { received: Vec<u8> },
    /// Sending the response.
    Writing { response: Vec<u8>, sent: usize },
    /// The response is sent and the write side shut; what the client still sends is read and
    /// discarded until it closes (closing with unread input would reset the connection and
    /// could destroy the response in flight).
    Draining,
}

struct HttpConn {
    stream: TcpStream,
    state: HttpState,
    deadline_ms: u64,
}

/// The endpoint's own figures, shown with the others.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct EndpointFigures {
    pub connections: u64,
    pub refused: u64,
    pub timed_out: u64,
}

/// The listener and its connections.
pub(super) struct HttpEndpoint {
    listener: TcpListener,
    conns: Slab<HttpConn>,
    config: MetricsConfig,
    /// Connections closed at once because `connections_max` were open.
    refused_count: u64,
    /// Connections dropped at a deadline.
    timed_out_count: u64,
    /// Accepting stopped at `ACCEPTS_PER_TURN_MAX` with more waiting: go on next turn without
    /// waiting for readiness (edge-triggered readiness is not repeated).
    pub accept_pending: bool,
}

impl HttpEndpoint {
    pub fn new(
        registry: &Registry,
        mut listener: TcpListener,
        config: &MetricsConfig,
    ) -> std::io::Result<HttpEndpoint> {
        registry.register(&mut listener, HTTP_LISTENER, Interest::READABLE)?;
        Ok(HttpEndpoint {
            listener,
            conns: Slab::new(),
            config: config.clone(),
            refused_count: 0,
            timed_out_count: 0,
            accept_pending: false,
        })
    }

    /// Whether `token` is the listener's or one of its connections'.
    pub fn owns(token: Token) -> bool {
        token == HTTP_LISTENER || (HTTP_TOKEN_BASE..usize::MAX - 16).contains(&token.0)
    }

    fn figures(&self) -> EndpointFigures {
        EndpointFigures {
            connections: self.conns.len() as u64,
            refused: self.refused_count,
            timed_out: self.timed_out_count,
        }
    }

    fn timeout_ms(&self) -> u64 {
        self.config.request_timeout.as_millis() as u64
    }

    /// Accepts until `WouldBlock` (or `ACCEPTS_PER_TURN_MAX`, then `accept_pending`); a
    /// connection past the limit is closed at once (dropping it costs nothing, and accepting it
    /// keeps the backlog from holding it).
    pub fn accept(&mut self, registry: &Registry, now_ms: u64) {
        self.accept_pending = true;
        for _ in 0..ACCEPTS_PER_TURN_MAX {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= self.config.connections_max {
                        self.refused_count += 1;
                        log::debug!("metrics connection refused: at the limit");
                        continue;
                    }
                    let deadline_ms = now_ms + self.timeout_ms();
                    let entry = self.conns.vacant_entry();
                    let token = Token(HTTP_TOKEN_BASE + entry.key());
                    if let Err(error) = registry.register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("could not register a metrics connection: {error}");
                        continue;
                    }
                    entry.insert(HttpConn {
                        stream,
                        state: HttpState::Reading {
                            received: Vec::new(),
                        },
                        deadline_ms,
                    });
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    // EMFILE and the like: logged; the next readiness event tries again (not
                    // every turn, which would spin while descriptors stay exhausted).
                    log::warn!("metrics accept failed: {error}");
                    self.accept_pending = false;
                    return;
                }
            }
        }
    }

    /// A readiness event on connection `token`: read the request, answer it (`render` gives
    /// the metrics text), write the answer, drain.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        now_ms: u64,
        render: &mut dyn FnMut(EndpointFigures) -> String,
    ) {
        let figures = self.figures();
        let timeout_ms = self.timeout_ms();
        let key = token.0 - HTTP_TOKEN_BASE;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let size_max = self.config.request_size_max;
        let keep = match &mut conn.state {
            HttpState::Reading { received } => {
                match read_request(&mut conn.stream, received, size_max) {
                    None => false,
                    Some(Request::Incomplete) => true,
                    Some(request) => {
                        let response = response(request, || render(figures));
                        conn.state = HttpState::Writing { response, sent: 0 };
                        conn.deadline_ms = now_ms + timeout_ms;
                        write_response(conn)
                    }
                }
            }
            HttpState::Writing { .. } => write_response(conn),
            HttpState::Draining => drain(&mut conn.stream),
        };
        if !keep {
            self.remove(registry, key);
        }
    }

    /// Drops the connections past their deadline.
    pub fn expire(&mut self, registry: &Registry, now_ms: u64) {
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| now_ms >= conn.deadline_ms)
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            if !matches!(self.conns[key].state, HttpState::Draining) {
                self.timed_out_count += 1;
                log::debug!("metrics connection dropped at its deadline");
            }
            self.remove(registry, key);
        }
    }

    /// Drops every connection and the listener (shutdown).
    pub fn close(&mut self, registry: &Registry) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.remove(registry, key);
        }
        let _ = registry.deregister(&mut self.listener);
    }

    fn remove(&mut self, registry: &Registry, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut conn.stream);
        }
    }
}

/// Reads until `WouldBlock` or the head is complete, never past `size_max` bytes. `None`: the
/// connection is gone (closed by the client before its request was complete, or failed).
fn read_request(
    stream: &mut TcpStream,
    received: &mut Vec<u8>,
    size_max: usize,
) -> Option<Request> {
    let mut chunk = [0u8; 4096];
    loop {
        let room = size_max.saturating_sub(received.len()).min(chunk.len());
        if room == 0 {
            return Some(parse_request(received, size_max));
        }
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return None,
            Ok(count) => {
                received.extend_from_slice(&chunk[..count]);
                let request = parse_request(received, size_max);
                if request != Request::Incomplete {
                    return Some(request);
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                return Some(Request::Incomplete)
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Writes what is left of the response; once it is all written, shuts the write side and
/// starts draining. False: the connection is finished or failed.
fn write_response(conn: &mut HttpConn) -> bool {
    let HttpState::Writing { response, sent } = &mut conn.state else {
        return true;
    };
    while *sent < response.len() {
        match conn.stream.write(&response[*sent..]) {
            Ok(0) => return false,
            Ok(count) => *sent += count,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Write);
    conn.state = HttpState::Draining;
    drain(&mut conn.stream)
}

/// Reads and discards what the client still sends. False once it has closed (or failed).
fn drain(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 4096];
    let mut read = 0;
    while read < DRAIN_BYTES_MAX {
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(count) => read += count,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    // More than a client has any reason to send after its request: it waits for the deadline.
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_recognised() {
        let size_max = 1024;
        let parse = |text: &str| parse_request(text.as_bytes(), size_max);
        assert_eq!(
            parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(parse("GET /metrics?x=1 HTTP/1.0\n\n"), Request::Metrics);
        assert_eq!(parse("GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(
            parse("POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        assert_eq!(parse("GET /metrics HTTP/2\r\n\r\n"), Request::NotHttp);
        assert_eq!(parse("GET /metrics\r\n\r\n"), Request::NotHttp);
        assert_eq!(parse("GET /metr"), Request::Incomplete);
        assert_eq!(parse(""), Request::Incomplete);
        assert_eq!(parse("GET /metrics HTTP/1.1\r\nHost"), Request::Incomplete);
        // A flo Hello (binary) on the metrics port is refused at once.
        assert_eq!(
            parse_request(&[0, 0, 0, 12, 1, 0], size_max),
            Request::NotHttp
        );
        let long = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(2000));
        assert_eq!(parse(&long[..size_max]), Request::TooLarge);
    }

    #[test]
    fn every_answer_closes_and_has_a_length() {
        let text = String::from_utf8(response(Request::Metrics, || "a 1\n".into())).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 4\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\na 1\n"));
        let text = String::from_utf8(response(Request::MethodNotAllowed, String::new)).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 ") && text.contains("Allow: GET\r\n"));
        let text = String::from_utf8(response(Request::TooLarge, String::new)).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "));
    }
}
