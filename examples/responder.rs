//! A responder: it tails `/orders/placed/**` and answers every order with an event in
//! `/orders/confirmed`, whose parent id is the order's id (set by `Client::respond`), so
//! anyone reading the stream can see which event caused which.
//!
//! It uses two connections: one consumes while the other produces the responses.
//!
//! Run against a server on localhost:3000, then place orders from another terminal:
//!     cargo run --example responder [ADDRESS]
//!     flo-client produce -n /orders/placed/42 -d "two coffees"
//!     flo-client consume -n "/orders/**" --format json    # shows the parent_id links
//! Stop it with Ctrl-C.

use flo::client::{Client, ClientError, ClientOptions};
use flo::event::StartPosition;

fn main() -> Result<(), ClientError> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:3000".to_string());
    let mut consumer = Client::connect(&addr, ClientOptions::default())?;
    let mut producer = Client::connect(&addr, ClientOptions::default())?;

    // Only orders placed from now on; a real service would resume from a saved cursor (see
    // the consumer_resume example) so that no order goes unanswered across restarts.
    let orders = consumer
        .consume()
        .glob("/orders/placed/**")
        .start(StartPosition::End)
        .tail(true)
        .subscribe()?;
    println!("waiting for orders in /orders/placed/**");
    for order in orders {
        let order = order?;
        let text = String::from_utf8_lossy(&order.data);
        let response = format!("confirmed: {text}");
        let ack = producer.respond(&order, "/orders/confirmed", response.as_bytes())?;
        println!("order {} -> confirmation {}", order.id, ack.first_id);
    }
    Ok(())
}
