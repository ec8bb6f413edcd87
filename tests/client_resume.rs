//! Where a consumer resumes (protocol.md section 9, "A subscription that has delivered nothing
//! yet"): a subscription started at `End` or at a timestamp has the empty cursor until its
//! first event, and resuming from that cursor delivers every retained event (walk9 found the
//! trap only documented). `Subscription::resume_position` is the start itself until then, and
//! the cursor after. Against an embedded server on 127.0.0.1:0.

use flo::client::{Client, ClientOptions, Delivery};
use flo::event::StartPosition;
use flo::{Config, Server};

/// The data of every event a subscription at `start` delivers from what is stored now.
fn stored_from(client: &mut Client, start: StartPosition) -> Vec<Vec<u8>> {
    (client.consume().start(start).subscribe().unwrap())
        .map(|event| event.unwrap().data)
        .collect()
}

#[test]
fn a_subscription_at_end_resumes_at_end_until_its_first_event_then_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::start_with_listener(Config::new(addr, dir.path().into()), listener)
        .expect("start an embedded server");
    let addr = addr.to_string();
    let mut producer = Client::connect(&addr, ClientOptions::default()).unwrap();
    for data in ["old 1", "old 2", "old 3"] {
        producer.produce("/a", data.as_bytes()).unwrap();
    }
    let mut client = Client::connect(&addr, ClientOptions::default()).unwrap();

    // Nothing delivered yet: the cursor is empty, and resuming from it would deliver the
    // three old events this subscription never meant to deliver; the resume position is End.
    let (resume, empty_cursor) = {
        let subscription = (client.consume())
            .start(StartPosition::End)
            .tail(true)
            .subscribe()
            .unwrap();
        (
            subscription.resume_position(),
            subscription.cursor().clone(),
        )
    };
    assert_eq!(resume, StartPosition::End);
    assert_eq!(
        stored_from(&mut client, StartPosition::Cursor(empty_cursor)).len(),
        3,
        "the trap: the empty cursor of a subscription at end covers nothing"
    );

    // After its first event, the resume position is the cursor: nothing old, nothing seen.
    let mut subscription = (client.consume())
        .start(resume)
        .tail(true)
        .limit(1)
        .subscribe()
        .unwrap();
    // Its CaughtUp says the server has started it, so "new 1" comes after its start.
    assert_eq!(
        subscription.next_delivery().unwrap(),
        Some(Delivery::CaughtUp)
    );
    producer.produce("/a", b"new 1").unwrap();
    let event = subscription.next().expect("an event").unwrap();
    assert_eq!(event.data, b"new 1");
    let resume = subscription.resume_position();
    assert!(
        matches!(&resume, StartPosition::Cursor(c) if c.covers(event.id)),
        "{resume:?}"
    );
    drop(subscription);
    producer.produce("/a", b"new 2").unwrap();
    assert_eq!(stored_from(&mut client, resume), vec![b"new 2".to_vec()]);

    // A timestamp start that found nothing resumes at the same time.
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 3_600_000;
    let later = (client.consume())
        .start(StartPosition::Timestamp(in_an_hour))
        .tail(true)
        .subscribe()
        .unwrap();
    assert_eq!(
        later.resume_position(),
        StartPosition::Timestamp(in_an_hour)
    );
    drop(later);
    drop((client, producer));
    server.shutdown().unwrap();
}
