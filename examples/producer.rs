//! Producing events three ways: one at a time (waiting for each ack), as an atomic batch (one
//! ack for all), and pipelined through a window that keeps many produces in flight.
//!
//! Run against a server on localhost:3000 (start one with `cargo run --bin flo`):
//!     cargo run --example producer [ADDRESS]

use std::time::Instant;

use flo::client::{Client, ClientError, ClientOptions, NewEvent};

fn main() -> Result<(), ClientError> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:3000".to_string());
    let mut client = Client::connect(&addr, ClientOptions::default())?;

    // One event; produce() returns once the server has made it durable.
    let ack = client.produce("/food/breakfast/eggs", b"I made some eggs")?;
    println!("single event: {}", ack.first_id);

    // A batch is appended all or nothing; its events get consecutive ids.
    let batch: Vec<NewEvent> = ["toast", "jam", "coffee"]
        .iter()
        .map(|item| NewEvent {
            namespace: format!("/food/breakfast/{item}"),
            parent_id: None,
            data: format!("some {item}").into_bytes(),
        })
        .collect();
    let ack = client.produce_batch(&batch)?;
    println!("batch of {} starting at {}", ack.count, ack.first_id);

    // Pipelined: up to 256 produces in flight, acks handed back in send order.
    let count = 10_000;
    let started = Instant::now();
    let mut producer = client.producer(256);
    let mut last = None;
    for index in 0..count {
        if producer.is_full() {
            last = producer.recv_ack()?.map(|ack| ack.first_id);
        }
        producer.send(NewEvent {
            namespace: "/metrics/ticks".to_string(),
            parent_id: None,
            data: format!("tick {index}").into_bytes(),
        })?;
    }
    while let Some(ack) = producer.recv_ack()? {
        last = Some(ack.first_id);
    }
    let elapsed = started.elapsed();
    if let Some(last) = last {
        println!("{count} pipelined events in {elapsed:?}; the last is {last}");
    }
    Ok(())
}
