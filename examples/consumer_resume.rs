//! A consumer that saves its cursor to a file as it goes and resumes from it on the next
//! run, so each run prints only the events it has not seen yet. The cursor is a version vector
//! (plus a floor id), so it means the same on every node of a cluster.
//!
//! Run against a server on localhost:3000 (produce something first, e.g. with
//! `cargo run --example producer`), then run it again to see it resume:
//!     cargo run --example consumer_resume [ADDRESS [CURSOR_FILE]]
//! The cursor file defaults to flo-example-cursor.txt in the current directory.

use std::path::PathBuf;

use flo::client::{load_cursor, save_cursor, Client, ClientOptions};
use flo::event::StartPosition;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "localhost:3000".to_string());
    let cursor_path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "flo-example-cursor.txt".to_string()),
    );

    let start = match load_cursor(&cursor_path)? {
        Some(cursor) => {
            println!("resuming from {}", flo::client::format_cursor(&cursor));
            StartPosition::Cursor(cursor)
        }
        None => {
            println!("no saved cursor: starting from the beginning");
            StartPosition::Beginning
        }
    };

    let mut client = Client::connect(&addr, ClientOptions::default())?;
    let mut subscription = client.consume().glob("/**").start(start).subscribe()?;
    let mut count = 0;
    while let Some(event) = subscription.next() {
        let event = event?;
        println!(
            "{} {} {}",
            event.id,
            event.namespace,
            String::from_utf8_lossy(&event.data)
        );
        count += 1;
        // Save every 100 events: a crash between saves replays at most 100 events on the next
        // run (at-least-once). Saving after every event narrows that to the event in hand.
        if count % 100 == 0 {
            save_cursor(&cursor_path, subscription.cursor())?;
        }
    }
    save_cursor(&cursor_path, subscription.cursor())?;
    println!(
        "{count} new events; cursor saved to {}",
        cursor_path.display()
    );
    Ok(())
}
