//! The typed layer with the JSON codec: values of your own type go in and come out, and the
//! codec does the serialization. Events that are not valid JSON for the type come out as
//! `ClientError::Codec` without ending the subscription.
//!
//! Needs the `json` feature. Run against a server on localhost:3000:
//!     cargo run --example typed_json --features json [ADDRESS]

use flo::client::{Client, ClientError, ClientOptions, JsonCodec};
use flo::event::StartPosition;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
}

fn main() -> Result<(), ClientError> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:3000".to_string());
    let mut client = Client::connect(&addr, ClientOptions::default())?;
    let codec = JsonCodec::<Reading>::new();

    let mut first = None;
    for (sensor, celsius) in [("kitchen", 21.5), ("cellar", 12.25), ("attic", 30.0)] {
        let reading = Reading {
            sensor: sensor.to_string(),
            celsius,
        };
        let ack = client.produce_typed(&codec, "/sensors/temperature", &reading)?;
        first.get_or_insert(ack.first_id);
        println!("produced {reading:?} as {}", ack.first_id);
    }

    // Read back the three readings: start just before the first one, stop after three.
    let Some(first) = first else {
        return Ok(());
    };
    let before_first = flo::event::EventId {
        counter: first.counter.saturating_sub(1),
        actor: first.actor,
    };
    let readings = client
        .consume()
        .glob("/sensors/temperature")
        .start(StartPosition::AfterId(before_first))
        .limit(3)
        .subscribe()?
        .typed(codec);
    for reading in readings {
        let reading = reading?;
        println!(
            "{} at {} ms: {} is {} °C",
            reading.id, reading.timestamp_ms, reading.value.sensor, reading.value.celsius
        );
    }
    Ok(())
}
