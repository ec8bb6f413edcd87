//! N workers sharing the work of one stream through a consumer group (docs/consumers.md):
//! each job goes to one worker, which acknowledges it when done. A job a worker does not
//! acknowledge (it crashed, or took longer than the ack time-out) goes to another worker.
//!
//! Run against a server on localhost:3000:
//!     cargo run --example worker_group [ADDRESS [WORKERS [JOBS]]]
//! It produces JOBS jobs (default 30) to /jobs/<n>, then starts WORKERS threads (default 3),
//! each with its own connection, in the group `worker-example`. A worker stops when the group
//! has handed out every stored job. Run it again: the group carries on with the new jobs only.

use std::time::Duration;

use flo::client::{Client, ClientOptions, GroupDelivery, NewEvent};
use flo::event::StartPosition;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "localhost:3000".to_string());
    let workers: usize = args.next().map_or(Ok(3), |n| n.parse())?;
    let jobs: usize = args.next().map_or(Ok(30), |n| n.parse())?;
    for (worker, done) in run(&addr, workers, jobs)?.into_iter().enumerate() {
        match done {
            Ok(done) => println!("worker {worker}: {done} jobs"),
            Err(error) => println!("worker {worker} failed: {error}"),
        }
    }
    Ok(())
}

/// Produces `jobs` jobs and runs `workers` workers on them; returns what each worker did: how
/// many jobs, or its error (tests/readme_walkthrough.rs runs it).
pub fn run(
    addr: &str,
    workers: usize,
    jobs: usize,
) -> Result<Vec<Result<u64, String>>, Box<dyn std::error::Error>> {
    let mut producer = Client::connect(addr, ClientOptions::default())?;
    let events: Vec<NewEvent> = (0..jobs)
        .map(|n| NewEvent {
            namespace: format!("/jobs/{n}"),
            parent_id: None,
            data: format!("job {n}").into_bytes(),
        })
        .collect();
    if !events.is_empty() {
        let ack = producer.produce_batch(&events)?;
        println!("produced {} jobs from {}", ack.count, ack.first_id);
    }

    let threads: Vec<_> = (0..workers)
        .map(|worker| {
            let addr = addr.to_string();
            std::thread::spawn(move || work(worker, &addr))
        })
        .collect();
    Ok(threads
        .into_iter()
        .map(|thread| match thread.join() {
            Ok(done) => done.map_err(|error| error.to_string()),
            Err(_) => Err("panicked".to_string()),
        })
        .collect())
}

/// One worker: joins the group, does each job it is given and acknowledges it; returns how
/// many it did once the group has handed out every stored job.
fn work(worker: usize, addr: &str) -> Result<u64, flo::client::ClientError> {
    let client = Client::connect(addr, ClientOptions::default())?;
    let mut group = client
        .into_join_group("worker-example")
        .glob("/jobs/**")
        // Where the group starts when this join creates it; later joins carry on.
        .start(StartPosition::Beginning)
        // A job not acknowledged within 10 s goes to another worker.
        .ack_timeout(Duration::from_secs(10))
        // At most 4 jobs in hand at a time, so that the others get their share.
        .credit(4)
        .max_in_flight(4)
        .join()?;
    let mut done = 0;
    while let Some(delivery) = group.next_delivery()? {
        match delivery {
            GroupDelivery::Event(event) => {
                // The work: here, printing the job and pretending it takes a moment.
                println!(
                    "worker {worker} does {} ({})",
                    String::from_utf8_lossy(&event.data),
                    event.id
                );
                std::thread::sleep(Duration::from_millis(10));
                // Pipelined: queued and sent in batches, nothing waits for an answer.
                group.ack(event.id)?;
                done += 1;
            }
            GroupDelivery::CaughtUp => break,
            GroupDelivery::End(_) => break,
        }
    }
    // Sends the queued acks and leaves; jobs still in hand go to the other workers.
    group.leave()?;
    Ok(done)
}
