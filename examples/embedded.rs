//! An embedded flo server: the server runs inside this program on a background thread, and a
//! client in the same process produces to it and reads the events back. This is how to use flo
//! as a library (tests, single-binary deployments) rather than as a separate `flo` process.
//!
//! Run: cargo run --example embedded
//! It needs no running server: it starts its own on a free port with a temporary data directory.

use flo::client::{Client, ClientOptions};
use flo::event::StartPosition;
use flo::{Config, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = tempfile::tempdir()?;
    // Port 0: the operating system picks a free port; local_addr() says which.
    let config = Config::new("127.0.0.1:0".parse()?, data_dir.path().to_path_buf());
    let server = Server::start(config)?;
    let addr = server.local_addr().to_string();
    println!("embedded flo server listening on {addr}");

    let mut client = Client::connect(&addr, ClientOptions::default())?;
    for meal in ["eggs", "toast", "coffee"] {
        let ack = client.produce(&format!("/food/breakfast/{meal}"), meal.as_bytes())?;
        println!("produced {meal} as {}", ack.first_id);
    }

    let subscription = client
        .consume()
        .glob("/food/**")
        .start(StartPosition::Beginning)
        .subscribe()?;
    for event in subscription {
        let event = event?;
        println!(
            "read {} {} {:?}",
            event.id,
            event.namespace,
            String::from_utf8_lossy(&event.data)
        );
    }
    drop(client);

    // Makes everything durable, closes connections and joins the server thread.
    server.shutdown()?;
    println!("server shut down");
    Ok(())
}
