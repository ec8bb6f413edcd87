//! The embedded server API, through the crate root only: `Server::start_with_listener` on a
//! listener the test bound to port 0, a client in the same process, `shutdown()` making
//! everything durable, and a second server on the same directory seeing every event. Also
//! checks that a bad configuration is refused with a clear error, and that a `ShutdownTrigger`
//! from another thread stops a server that `wait`s.

use flo::client::{Client, ClientOptions};
use flo::event::StartPosition;
use flo::{Config, Server, ServerError, ShutdownTrigger};

fn start(dir: &std::path::Path) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::start_with_listener(Config::new(addr, dir.to_path_buf()), listener)
        .expect("start an embedded server");
    assert_eq!(server.local_addr(), addr);
    server
}

#[test]
fn an_embedded_server_serves_shuts_down_and_restarts_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.local_addr().to_string();
    let mut client = Client::connect(&addr, ClientOptions::default()).unwrap();
    for index in 0..10u8 {
        client.produce("/embedded", &[index]).unwrap();
    }
    drop(client);
    server.shutdown().unwrap();

    let server = start(dir.path());
    assert_eq!(server.recovered_events(), 10);
    let mut client =
        Client::connect(&server.local_addr().to_string(), ClientOptions::default()).unwrap();
    let data: Vec<u8> = client
        .consume()
        .start(StartPosition::Beginning)
        .subscribe()
        .unwrap()
        .map(|event| event.unwrap().data[0])
        .collect();
    assert_eq!(data, (0..10).collect::<Vec<u8>>());
}

#[test]
fn an_invalid_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.connections_max = 0;
    match Server::start(config) {
        Err(ServerError::InvalidConfig(message)) => assert!(message.contains("connections")),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a server with no connections allowed started"),
    }
}

#[test]
fn a_shutdown_trigger_stops_a_waiting_server_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.local_addr().to_string();
    let trigger: ShutdownTrigger = server.shutdown_trigger();
    let mut client = Client::connect(&addr, ClientOptions::default()).unwrap();
    client.produce("/embedded", b"before the trigger").unwrap();
    drop(client);
    let stopper = std::thread::spawn(move || trigger.trigger());
    server.wait().expect("the server stops cleanly");
    stopper.join().unwrap();
    assert!(Client::connect(&addr, ClientOptions::default()).is_err());
}
