//! The README's "Event sourcing with flo" in Rust: load an aggregate (one namespace), append
//! with an expectation on its newest event (optimistic concurrency), and produce exactly once
//! across reconnects with an idempotent producer.
//!
//! Run against a server on localhost:3000:
//!     cargo run --example event_sourcing [ADDRESS]

use flo::client::{Client, ClientOptions, Expectation, IdempotentProducer, NewEvent};
use flo::event::StartPosition;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:3000".to_string());
    run(&addr)
}

/// The example against the server at `addr` (tests/readme_walkthrough.rs runs it).
pub fn run(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = Client::connect(addr, ClientOptions::default())?;
    // Load the aggregate: every event of its namespace, and the newest id.
    let mut last = None;
    let events = client
        .consume()
        .glob("/accounts/42")
        .start(StartPosition::Beginning)
        .subscribe()?;
    for event in events {
        let event = event?;
        last = Some(event.id); // ...and apply the event to the aggregate's state
    }
    let event = NewEvent {
        namespace: "/accounts/42".into(),
        parent_id: last,
        data: b"withdrew 5".to_vec(),
    };
    let expect = last.map_or(Expectation::NoEvents, Expectation::LastIs);
    match client.produce_if(expect, &[event]) {
        Ok(ack) => println!("appended as {}", ack.first_id),
        Err(error) => match error.actual_last_id() {
            Some(actual) => println!("someone appended first (newest: {actual:?}): reload, retry"),
            None => return Err(error.into()),
        },
    }

    // Exactly-once produce across reconnects: a producer id, kept if the process restarts.
    let id = IdempotentProducer::random_id();
    let mut producer = IdempotentProducer::connect(addr, ClientOptions::default(), id, 64)?;
    let ack = producer.produce(NewEvent {
        namespace: "/orders".into(),
        parent_id: None,
        data: b"order 1".to_vec(),
    })?;
    println!("stored once as {}", ack.first_id);
    Ok(())
}
