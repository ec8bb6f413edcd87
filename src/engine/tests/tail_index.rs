//! Waking tail subscriptions through the tail index (attack finding F4): a turn's wake-up
//! work follows the subscriptions that can match its namespaces, not every subscription, and
//! wakes exactly what a pass over every subscription wakes, in the same order.

use super::*;

/// Frames for one connection, sent in one input (one invariant check, not one per frame).
fn send_all(h: &mut Harness, conn: ConnId, frames: &[ClientFrame]) {
    let mut bytes = Vec::new();
    for frame in frames {
        encode(frame, &mut bytes);
    }
    h.engine.handle_input(h.now, conn, &bytes);
}

/// `connections` idle connections of `per_connection` tail subscriptions each (the glob of
/// subscription `id` on connection `index` from `glob`), fed before the next connection's
/// (debug builds check every queued subscription against the ready queue after each input).
fn idle_subscriptions(
    h: &mut Harness,
    connections: u32,
    per_connection: u32,
    glob: impl Fn(u32, u32) -> String,
) -> Vec<ConnId> {
    let idle: Vec<ConnId> = (0..connections).map(|_| h.client()).collect();
    for (index, &conn) in idle.iter().enumerate() {
        let frames: Vec<ClientFrame> = (0..per_connection)
            .map(|id| subscribe(id, &glob(index as u32, id), StartPosition::End, true, 10))
            .collect();
        send_all(h, conn, &frames);
        h.turn();
        h.received(conn);
    }
    idle
}

/// One subscription on `/hot/**` and a producer; then five produces to `/hot/x`, each of which
/// must reach the hot subscription, visit only it, and charge at most `steps_max` matching
/// steps. Returns (hot, producer).
fn produce_beside_idle(h: &mut Harness, steps_max: u64, idle_count: u32) -> (ConnId, ConnId) {
    let hot = h.client();
    h.subscribe(hot, 1, "/hot/**", StartPosition::End, true, 100);
    let producer = h.client();
    h.turn();
    h.received(hot);
    for round in 0..5u64 {
        let steps_before = h.engine.stats().match_steps_charged;
        let visited_before = h.engine.stats().tail_subscriptions_visited;
        h.produce(producer, round, "/hot/x", b"");
        h.turn();
        let steps = h.engine.stats().match_steps_charged - steps_before;
        let visited = h.engine.stats().tail_subscriptions_visited - visited_before;
        assert_eq!(namespaces(&h.received(hot)), ["/hot/x"]);
        assert_eq!(visited, 1, "round {round}: only /hot/** is a candidate");
        assert!(
            steps <= steps_max,
            "round {round}: a produce to /hot/x took {steps} matching steps beside \
             {idle_count} idle subscriptions"
        );
    }
    (hot, producer)
}

/// 10,000 idle tail subscriptions on `/idle/<n>/**` (100 connections of 100) beside one on
/// `/hot/**`: a produce to `/hot/x` matches one glob and visits one subscription (114
/// matching steps charged, waking and feeding), where the pass over every subscription
/// matched 10,000 globs each turn (20,114 steps before the tail index; session 10: 22.4 ms per
/// produce with 100,000). An idle subscription skips the turns it sat out without reading
/// them, and wakes for its own namespace.
#[test]
fn idle_tail_subscriptions_cost_a_produce_nothing() {
    const CONNECTIONS: u32 = 100;
    const PER_CONNECTION: u32 = 100;
    let mut h = Harness::with_config(|c| c.subscriptions_per_connection_max = PER_CONNECTION);
    let idle = idle_subscriptions(&mut h, CONNECTIONS, PER_CONNECTION, |index, id| {
        format!("/idle/{}/**", index * PER_CONNECTION + id)
    });
    let (hot, producer) = produce_beside_idle(&mut h, 1_000, CONNECTIONS * PER_CONNECTION);
    // An idle subscription wakes for its own namespace, and reads from where the wakes it sat
    // out left it: the one new record, not the five /hot/x ones.
    let steps_before = h.engine.stats().match_steps_charged;
    h.produce(producer, 9, "/idle/4321/y", b"");
    h.turn();
    let steps = h.engine.stats().match_steps_charged - steps_before;
    let owner = idle[4321 / PER_CONNECTION as usize];
    let frames = h.received(owner);
    assert_eq!(
        events_of(&frames, 4321 % PER_CONNECTION).len(),
        1,
        "{frames:?}"
    );
    assert!(
        steps <= 1_000,
        "{steps} matching steps to wake and feed one subscription"
    );
    assert!(h.received(hot).is_empty());
}

/// Attack round 12: 10,000 idle tail subscriptions whose globs start with a wildcard (100
/// connections of 100: `/**/nomatch`, `/**/idle<n>` and `/*/idle<n>*`, the last 100 distinct
/// ones) beside one on `/hot/**`: a produce to `/hot/x` visits one subscription and matches
/// each distinct glob with wildcards at both ends once. Before, every such subscription was a
/// candidate in every turn (10,001 visits, 30,000 matching steps; with 100,000 on
/// `/**/nomatch` a bystander's produce->ack took 119 ms).
#[test]
fn idle_wildcard_first_subscriptions_cost_a_produce_little() {
    const CONNECTIONS: u32 = 100;
    const PER_CONNECTION: u32 = 100;
    let mut h = Harness::with_config(|c| c.subscriptions_per_connection_max = PER_CONNECTION);
    let idle = idle_subscriptions(&mut h, CONNECTIONS, PER_CONNECTION, |index, id| {
        match id % 3 {
            0 => "/**/nomatch".to_string(),
            1 => format!("/**/idle{}", index * PER_CONNECTION + id),
            _ => format!("/*/idle{index}*"),
        }
    });
    // 100 distinct globs with wildcards at both ends, each matched once a turn.
    let (_hot, producer) = produce_beside_idle(&mut h, 8_000, CONNECTIONS * PER_CONNECTION);
    // Each kind still wakes for what it matches, and only the subscriptions that match.
    h.produce(producer, 9, "/a/idle4321", b"");
    h.produce(producer, 10, "/b/idle77x", b"");
    h.produce(producer, 11, "/c/d/nomatch", b"");
    h.turn();
    let frames = h.received(idle[43]);
    assert_eq!(events_of(&frames, 21).len(), 1, "/**/idle4321: {frames:?}");
    let frames = h.received(idle[77]);
    let woken: Vec<u32> = (0..PER_CONNECTION)
        .filter(|&id| !events_of(&frames, id).is_empty())
        .collect();
    // `/**/nomatch` (ids 0, 3, ..) and `/*/idle77*` (ids 2, 5, ..).
    assert_eq!(woken.len(), 34 + 33, "{woken:?}");
    let frames = h.received(idle[5]);
    assert_eq!(
        (0..PER_CONNECTION)
            .filter(|&id| !events_of(&frames, id).is_empty())
            .count(),
        34,
        "/**/nomatch on every connection: {frames:?}"
    );
}

/// At `unindexed_globs_max` distinct globs with wildcards at both ends, a Subscribe with
/// another one is refused with TooManySubscriptions (the connection stays open); the globs
/// held, and globs with a literal first or last segment, are still accepted, and a glob
/// given up makes room.
#[test]
fn distinct_globs_with_wildcards_at_both_ends_are_bounded() {
    let mut h = Harness::with_config(|c| c.unindexed_globs_max = 2);
    let (first, second) = (h.client(), h.client());
    send_all(
        &mut h,
        first,
        &[
            subscribe(1, "/*/a*", StartPosition::End, true, 10),
            subscribe(2, "/**", StartPosition::End, true, 10),
            subscribe(3, "/*/c*", StartPosition::End, true, 10),
        ],
    );
    send_all(
        &mut h,
        second,
        &[
            subscribe(1, "/*/a*", StartPosition::End, true, 10),
            subscribe(2, "/**/c", StartPosition::End, true, 10),
            subscribe(3, "/app/*/c*", StartPosition::End, true, 10),
        ],
    );
    h.turn();
    let refused = |frames: &[ServerFrame]| -> Vec<u32> {
        frames
            .iter()
            .filter_map(|frame| match frame {
                ServerFrame::Error(ErrorFrame {
                    scope: ErrorScope::Subscription(id),
                    code: ErrorCode::TooManySubscriptions,
                    message,
                }) => {
                    assert!(message.contains("2 distinct globs"), "{message}");
                    Some(*id)
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(refused(&h.received(first)), [3]);
    assert!(refused(&h.received(second)).is_empty());
    assert!(h.engine.is_open(first));
    h.send(first, ClientFrame::Unsubscribe { subscription_id: 2 });
    h.subscribe(first, 3, "/*/c*", StartPosition::End, true, 10);
    h.turn();
    assert!(refused(&h.received(first)).is_empty());
}

/// Past `turn_namespaces_matched_max` distinct namespaces in a turn, every waiting
/// subscription is woken without matching, as before the index (each then reads the turn's
/// records under the feeding budget and finds nothing it wants).
#[test]
fn a_turn_of_many_namespaces_still_wakes_every_waiting_subscription() {
    let mut h = Harness::with_config(|c| c.turn_namespaces_matched_max = 4);
    let consumer = h.client();
    let frames: Vec<ClientFrame> = (0..20)
        .map(|id| subscribe(id, &format!("/idle/{id}/**"), StartPosition::End, true, 10))
        .collect();
    send_all(&mut h, consumer, &frames);
    let producer = h.client();
    h.turn();
    h.received(consumer);
    let visited_before = h.engine.stats().tail_subscriptions_visited;
    h.produce_namespaces(producer, &["/a", "/b", "/c", "/d", "/e"]);
    let visited = h.engine.stats().tail_subscriptions_visited - visited_before;
    assert_eq!(visited, 20);
    assert!(h.received(consumer).is_empty());
    let visited_before = h.engine.stats().tail_subscriptions_visited;
    h.produce_namespaces(producer, &["/a", "/b", "/c", "/d"]);
    let visited = h.engine.stats().tail_subscriptions_visited - visited_before;
    assert_eq!(visited, 0);
}

/// The same random scenario (subscriptions on literal, prefixed and wildcard-first globs,
/// with little credit, unsubscribes, closes, produces and batches of many namespaces) run
/// twice, waking through the index and by visiting every subscription: every connection
/// receives the same frames after every turn, and the engines count the same deliveries.
#[test]
fn waking_through_the_index_delivers_what_visiting_everyone_delivers() {
    for seed in 0..12 {
        let mut indexed = Harness::with_config(|c| c.turn_namespaces_matched_max = 6);
        let mut everyone = Harness::with_config(|c| c.turn_namespaces_matched_max = 6);
        everyone.engine.tail.visit_all = true;
        let mut random = crate::random::SeededRng::new(seed);
        let mut script = Script::default();
        let mut conns = Vec::new();
        for _ in 0..6 {
            conns.push((indexed.client(), everyone.client()));
        }
        for turn in 0..150 {
            for _ in 0..random.below(6) {
                let (conn_a, conn_b) = conns[random.index(conns.len())];
                let frame = script.frame(&mut random);
                indexed.send(conn_a, frame.clone());
                everyone.send(conn_b, frame);
            }
            if random.chance(20) {
                // A connection closes and another opens in its slot's stead.
                let index = random.index(conns.len());
                let (conn_a, conn_b) = conns[index];
                indexed.engine.handle_closed(conn_a);
                everyone.engine.handle_closed(conn_b);
                conns[index] = (indexed.client(), everyone.client());
            }
            indexed.turn();
            everyone.turn();
            for &(conn_a, conn_b) in &conns {
                let (frames_a, frames_b) = (indexed.received(conn_a), everyone.received(conn_b));
                assert_eq!(frames_a, frames_b, "seed {seed}, turn {turn}, {conn_a}");
            }
            let (state_a, state_b) = (positions(&indexed.engine), positions(&everyone.engine));
            assert_eq!(state_a, state_b, "seed {seed}, turn {turn}: positions");
            assert_eq!(
                indexed.engine.ready, everyone.engine.ready,
                "seed {seed}, turn {turn}"
            );
        }
        let (a, b) = (indexed.engine.stats(), everyone.engine.stats());
        assert_eq!(a.events_delivered, b.events_delivered, "seed {seed}");
        assert!(
            a.events_delivered > 100,
            "seed {seed}: too few deliveries to compare"
        );
        assert!(
            a.tail_subscriptions_visited < b.tail_subscriptions_visited,
            "seed {seed}: the index never left a subscription out"
        );
    }
}

/// Every subscription's next record and whether it is queued, as its readers see them.
fn positions(engine: &Engine<MemoryLog>) -> Vec<(ConnId, u32, crate::storage::Offset, bool)> {
    let clock = engine.tail.clock();
    let mut positions = Vec::new();
    for connection in engine.conns.iter().flatten() {
        for (id, subscription) in &connection.subscriptions {
            let position = &subscription.position;
            positions.push((
                connection.id,
                *id,
                position.next(clock),
                position.is_queued(),
            ));
        }
    }
    positions
}

/// Random client frames for [`waking_through_the_index_delivers_what_visiting_everyone_delivers`].
#[derive(Default)]
struct Script {
    op_id: u64,
}

impl Script {
    const GLOBS: [&'static str; 13] = [
        "/a/**", "/a/b", "/a/b/**", "/a/*/c", "/b/**", "/*/b", "/**", "/a", "/b/c/**", "/c?/**",
        "/**/c", "/*/*b*", "/**/[bx]",
    ];
    const NAMESPACES: [&'static str; 9] = [
        "/a", "/a/b", "/a/b/c", "/a/x/c", "/b", "/b/b", "/b/c/d", "/c1/x", "/d",
    ];

    fn frame(&mut self, random: &mut crate::random::SeededRng) -> ClientFrame {
        let id = random.below(6) as u32;
        match random.below(10) {
            0..=2 => {
                let glob = Self::GLOBS[random.index(Self::GLOBS.len())];
                let start = if random.chance(800) {
                    StartPosition::End
                } else {
                    StartPosition::Beginning
                };
                let credit = random.below(8) as u32;
                subscribe(id, glob, start, random.chance(900), credit)
            }
            3 => ClientFrame::Credit {
                subscription_id: id,
                count: 1 + random.below(3) as u32,
            },
            4 => ClientFrame::Unsubscribe {
                subscription_id: id,
            },
            5 => {
                // More distinct namespaces than the turn matches one by one.
                let events = Self::NAMESPACES
                    .iter()
                    .map(|namespace| NewEvent {
                        namespace: namespace.to_string(),
                        parent_id: None,
                        data: Vec::new(),
                    })
                    .collect();
                self.op_id += 1;
                ClientFrame::ProduceBatch(ProduceBatch {
                    op_id: self.op_id,
                    events,
                })
            }
            _ => {
                self.op_id += 1;
                let namespace = Self::NAMESPACES[random.index(Self::NAMESPACES.len())];
                produce(self.op_id, namespace, b"")
            }
        }
    }
}
