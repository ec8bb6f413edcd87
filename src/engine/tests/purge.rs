//! Purges and per-namespace retention in the engine (docs/operations.md, "Purge"): a Purge is
//! answered only after the log recorded it, hides what it names from subscriptions, groups
//! and peers, travels to peers as a PeerPurge tombstone (at once, and to a peer that connects
//! later), applies to events that arrive after it with ids below its bound, and is bounded
//! by `purge_rules_max`. A retention rule hides by age with the same check.

use super::*;
use crate::config::NamespaceRetention;
use crate::event::{PurgeBefore, PurgeRule};
use crate::protocol::{JoinGroup, Purged};

fn purge(glob: &str, before: PurgeBefore) -> ClientFrame {
    ClientFrame::Purge(PurgeRule {
        glob: glob.into(),
        before,
    })
}

/// Everything a fresh non-tail subscription from the beginning delivers, as namespaces and
/// data.
fn read_all(harness: &mut Harness, glob: &str) -> Vec<(String, Vec<u8>)> {
    let conn = harness.client();
    harness.send(
        conn,
        subscribe(1, glob, StartPosition::Beginning, false, 1000),
    );
    harness.turn();
    events_of(&harness.received(conn), 1)
        .into_iter()
        .map(|event| (event.namespace, event.data))
        .collect()
}

fn produce_all(harness: &mut Harness, conn: ConnId, events: &[(&str, &[u8])]) -> Vec<EventId> {
    for (op, (namespace, data)) in events.iter().enumerate() {
        harness.produce(conn, op as u64 + 1, namespace, data);
    }
    harness.turn();
    ack_ids(&harness.received(conn))
}

fn pair(namespace: &str, data: &[u8]) -> (String, Vec<u8>) {
    (namespace.to_string(), data.to_vec())
}

#[test]
fn a_purge_is_answered_after_it_is_recorded_and_hides_what_it_names() {
    let mut harness = Harness::new();
    let client = harness.client();
    let ids = produce_all(
        &mut harness,
        client,
        &[("/m/a", b"1"), ("/n", b"2"), ("/m/b", b"3"), ("/m/a", b"4")],
    );
    harness.send(client, purge("/m/**", PurgeBefore::Id(ids[3])));
    // Before the turn's sync nothing is recorded and nothing is answered.
    assert!(harness.engine.log().hide_rules().purges().is_empty());
    assert!(harness.received(client).is_empty());
    harness.turn();
    let frames = harness.received(client);
    let rule = PurgeRule {
        glob: "/m/**".into(),
        before: PurgeBefore::Id(ids[3]),
    };
    assert_eq!(
        frames,
        vec![ServerFrame::Purged(Purged {
            rule: rule.clone(),
            changed: true
        })]
    );
    assert_eq!(harness.engine.log().hide_rules().purges(), vec![rule]);
    assert_eq!(
        read_all(&mut harness, "/**"),
        vec![pair("/n", b"2"), pair("/m/a", b"4")]
    );
    // The same purge again changes nothing and says so.
    harness.send(client, purge("/m/**", PurgeBefore::Id(ids[1])));
    harness.turn();
    assert!(matches!(
        harness.received(client).as_slice(),
        [ServerFrame::Purged(Purged { changed: false, .. })]
    ));
    // A purge by time: every event so far has the harness's wall time.
    let after = harness.now.wall.0 + 1;
    harness.send(client, purge("/n", PurgeBefore::Time(after)));
    harness.turn();
    harness.received(client);
    assert_eq!(read_all(&mut harness, "/**"), vec![pair("/m/a", b"4")]);
}

#[test]
fn a_group_is_not_handed_purged_events() {
    let mut harness = Harness::new();
    let client = harness.client();
    let ids = produce_all(&mut harness, client, &[("/g", b"1"), ("/g", b"2")]);
    harness.send(client, purge("/g", PurgeBefore::Id(ids[1])));
    harness.turn();
    harness.received(client);
    let member = harness.client();
    harness.send(
        member,
        ClientFrame::JoinGroup(JoinGroup {
            subscription_id: 1,
            group: "workers".into(),
            glob: "/**".into(),
            start: StartPosition::Beginning,
            credit: 10,
            ack_timeout_ms: 1000,
            max_deliveries: 3,
            max_in_flight: 100,
        }),
    );
    harness.turn();
    let data: Vec<Vec<u8>> = events_of(&harness.received(member), 1)
        .into_iter()
        .map(|event| event.data)
        .collect();
    assert_eq!(data, vec![b"2".to_vec()]);
}

#[test]
fn purges_past_the_limit_are_refused_and_raising_a_bound_is_not() {
    let mut harness = Harness::with_config(|c| c.storage.purge_rules_max = 1);
    let client = harness.client();
    harness.send(client, purge("/a", PurgeBefore::Time(10)));
    harness.send(client, purge("/b", PurgeBefore::Time(10)));
    harness.send(client, purge("/a", PurgeBefore::Time(20)));
    harness.send(client, purge("not a glob", PurgeBefore::Time(20)));
    harness.turn();
    let frames = harness.received(client);
    let summary: Vec<String> = frames
        .iter()
        .map(|frame| match frame {
            ServerFrame::Purged(purged) => format!("purged {}", purged.rule.glob),
            ServerFrame::Error(error) => format!("{:?}", error.code),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec!["InvalidGlob", "purged /a", "PurgeRulesFull", "purged /a"],
        "the bad glob is refused on arrival, the rest in order at the sync"
    );
    assert!(harness.engine.is_open(client));
    let purges = harness.engine.log().hide_rules().purges();
    assert_eq!(purges.len(), 1);
    assert_eq!(purges[0].before, PurgeBefore::Time(20));
}

#[test]
fn a_purge_bound_ahead_of_the_server_is_refused_in_order_but_a_peers_is_not() {
    let mut harness = Harness::new();
    let client = harness.client();
    let ids = produce_all(&mut harness, client, &[("/o/1", b"1"), ("/o/2", b"2")]);
    let next = EventId::new(ids[1].counter + 1, ids[1].actor.0);
    let wall = harness.now.wall.0;
    // Attack round 3, F7: a careless bound in the future hid every later event for good.
    harness.send(client, purge("/o/**", PurgeBefore::Time(wall + 1)));
    harness.send(client, purge("/o/**", PurgeBefore::Time(wall + 2)));
    harness.send(client, purge("/o/**", PurgeBefore::Id(next)));
    // Attack round 4: the next counter with a larger actor is past the next id too (it
    // swallowed the next acknowledged event when only counters were compared).
    harness.send(
        client,
        purge(
            "/o/**",
            PurgeBefore::Id(EventId::new(next.counter, u16::MAX)),
        ),
    );
    harness.send(
        client,
        purge("/o/**", PurgeBefore::Id(EventId::new(next.counter + 1, 1))),
    );
    harness.send(
        client,
        purge(
            "/o/**",
            PurgeBefore::Id(EventId::new(EventId::COUNTER_MAX, 1)),
        ),
    );
    harness.turn();
    let summary: Vec<String> = harness
        .received(client)
        .iter()
        .map(|frame| match frame {
            ServerFrame::Purged(purged) => format!("purged {:?}", purged.rule.before),
            ServerFrame::Error(error) => format!("{:?}", error.code),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            format!("purged {:?}", PurgeBefore::Time(wall + 1)),
            "PurgeBoundAhead".to_string(),
            format!("purged {:?}", PurgeBefore::Id(next)),
            "PurgeBoundAhead".to_string(),
            "PurgeBoundAhead".to_string(),
            "PurgeBoundAhead".to_string(),
        ],
        "bounds up to the clock and the next id are taken, later ones refused, in order"
    );
    assert!(harness.engine.is_open(client));
    // The next event (a millisecond later: a bound of now + 1 takes this millisecond) is
    // written and delivered.
    harness.now.wall.0 += 1;
    let later = produce_all(&mut harness, client, &[("/o/3", b"3")]);
    assert_eq!(later[0], next);
    assert_eq!(read_all(&mut harness, "/**"), vec![pair("/o/3", b"3")]);
    // A peer's tombstone is taken even when its bound is ahead of this node (its ids are).
    let (peer_conn, _) = peer(&mut harness, 2, VersionVector::new());
    let ahead = PurgeRule {
        glob: "/p/**".into(),
        before: PurgeBefore::Id(EventId::new(next.counter + 1000, 2)),
    };
    harness.send(peer_conn, PeerFrame::PeerPurge(ahead.clone()));
    harness.turn();
    assert!(harness.engine.log().hide_rules().purges().contains(&ahead));
}

#[test]
fn a_purge_goes_to_peers_and_a_peer_connecting_later_is_sent_every_purge() {
    let mut harness = Harness::new();
    let (early, _) = peer(&mut harness, 2, VersionVector::new());
    let client = harness.client();
    harness.send(client, purge("/x/**", PurgeBefore::Time(99)));
    harness.turn();
    let rule = PurgeRule {
        glob: "/x/**".into(),
        before: PurgeBefore::Time(99),
    };
    let tombstone = PeerFrame::PeerPurge(rule.clone());
    assert!(harness.received_peer(early).contains(&tombstone));
    let (_, frames) = peer(&mut harness, 3, VersionVector::new());
    assert!(frames.contains(&tombstone), "{frames:?}");
    // A tombstone that changes nothing is not sent on again.
    harness.send(early, tombstone.clone());
    harness.turn();
    assert!(!harness.received_peer(early).contains(&tombstone));
}

#[test]
fn a_peers_tombstone_hides_events_stored_before_and_after_it() {
    let mut harness = Harness::new();
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    harness.send(conn, PeerFrame::PeerEvent(stored(1, 2, b"before")));
    harness.turn();
    let bound = EventId::new(10, 2);
    let tombstone = PurgeRule {
        glob: "/replicated".into(),
        before: PurgeBefore::Id(bound),
    };
    harness.send(conn, PeerFrame::PeerPurge(tombstone.clone()));
    harness.turn();
    assert_eq!(harness.engine.log().hide_rules().purges(), vec![tombstone]);
    // Arrives after the tombstone with an id below its bound: hidden too; above it: delivered.
    harness.send(conn, PeerFrame::PeerEvent(stored(5, 2, b"late")));
    harness.send(conn, PeerFrame::PeerEvent(stored(11, 2, b"after")));
    harness.turn();
    assert_eq!(
        read_all(&mut harness, "/**"),
        vec![pair("/replicated", b"after")]
    );
}

#[test]
fn a_retention_rule_hides_events_older_than_it_keeps() {
    let mut log = MemoryLog::new();
    log.set_namespace_retention(&[NamespaceRetention {
        glob: "/metrics/**".into(),
        keep_ms: 60_000,
    }]);
    let mut harness = Harness::with_log(log, |_| {});
    let client = harness.client();
    produce_all(
        &mut harness,
        client,
        &[("/metrics/cpu", b"old"), ("/orders/1", b"o")],
    );
    harness.now.wall.0 += 30_000;
    produce_all(&mut harness, client, &[("/metrics/cpu", b"new")]);
    // Past the first event's keep, not the second's; housekeeping moves the cutoff.
    harness.now.wall.0 += 40_000;
    harness.now.monotonic.0 += 60_000;
    harness.turn();
    assert_eq!(
        read_all(&mut harness, "/**"),
        vec![pair("/orders/1", b"o"), pair("/metrics/cpu", b"new")]
    );
}

/// Purge rules with long globs over long namespaces (attack round 3, F1): every record a
/// catch-up reads is checked against every rule whose bound covers it, and that matching is
/// charged to the turn's `match_steps_per_turn_max` with the subscription's own, so every
/// turn's matching (counted in the matcher's steps) stays within the budget plus one record's
/// worth, the catch-up spreads over turns, and it still delivers every event (no rule
/// matches: each ends in a set of letters no namespace ends with, so no literal suffix
/// refuses the names cheaply).
#[test]
fn purge_rules_are_matched_within_the_turn_budget() {
    const BUDGET: u64 = 1_000_000;
    const RULES: usize = 16;
    let mut harness = Harness::with_config(|c| c.match_steps_per_turn_max = BUDGET);
    let client = harness.client();
    let names: Vec<String> = (0..40)
        .map(|i| format!("/{}{i:03}", "a".repeat(400)))
        .collect();
    for (op, name) in names.iter().enumerate() {
        harness.produce(client, op as u64 + 1, name, b"");
    }
    harness.produce(client, 99, "/marker", b"");
    harness.turn();
    let marker = *ack_ids(&harness.received(client)).last().expect("acks");
    for rule in 0..RULES {
        let letter = char::from(b'A' + rule as u8);
        let glob = format!("/{}*[Z{letter}]", "*a".repeat(150));
        harness.send(client, purge(&glob, PurgeBefore::Id(marker)));
    }
    harness.turn();
    harness.received(client);
    assert_eq!(harness.engine.log().hide_rules().purges().len(), RULES);
    let reader = harness.client();
    harness.send(
        reader,
        subscribe(1, "/**", StartPosition::Beginning, false, 1000),
    );
    // One record's worth: a match of each rule's glob (303 pieces, 5 words; 7 passes and
    // the closure per character of 404) and of `/**`.
    let one_record_max = (RULES as u64 + 1) * 405 * (7 * 5 + 1);
    let mut delivered = Vec::new();
    let mut turns = 0;
    loop {
        let before = crate::protocol::glob::steps_taken();
        harness.turn();
        let steps = crate::protocol::glob::steps_taken() - before;
        assert!(
            steps <= BUDGET + one_record_max,
            "turn {turns}: {steps} matching steps, over {}",
            BUDGET + one_record_max
        );
        turns += 1;
        let frames = harness.received(reader);
        delivered.extend(events_of(&frames, 1).into_iter().map(|e| e.namespace));
        let ended = frames
            .iter()
            .any(|frame| matches!(frame, ServerFrame::End { .. }));
        if ended {
            break;
        }
        assert!(turns < 1000, "the catch-up does not finish");
    }
    let mut expected = names.clone();
    expected.push("/marker".to_string());
    assert_eq!(delivered, expected);
    assert!(turns > 2, "caught up in {turns} turns");
    assert!(harness.engine.stats().match_steps_charged > BUDGET);
}
