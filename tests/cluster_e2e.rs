//! Three real `flo` processes on loopback, clustered as the README shows (`--actor-id`, one
//! `--peer-addr` per other node, a data directory each). Proves that events produced on every
//! node reach every node with the same ids; that a node killed with SIGKILL catches up after a
//! restart (with `--fsync interval`, after its catch-up hold); that nodes converge after every peer link is cut (through TCP proxies inside the
//! test) and healed; and that a consumer moving between nodes with its version-vector cursor
//! sees every event exactly once; and that id-order consumers on the three nodes print the same
//! sequence while all three take produces; that events acked with replicas 3 survive two
//! nodes losing their data directories; and that a new node joins through one member. Every
//! wait is a bounded poll of a condition.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_until, FloProcess};
use flo::client::{Client, ClientError, ClientOptions, ErrorCode};
use flo::event::{EventId, StartPosition};
use flo::protocol::MemberState;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("address").port()
}

/// Waits (at most 30 s) for a log line of `process` that contains `needle` (lines before the
/// start-up line included).
fn logged(process: &FloProcess, needle: &str) -> bool {
    if process.early_lines.iter().any(|line| line.contains(needle)) {
        return true;
    }
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(line) = process.log_lines.recv_timeout(Duration::from_millis(100)) {
            if line.contains(needle) {
                return true;
            }
        }
    }
    false
}

fn client(port: u16) -> Client {
    Client::connect(&format!("127.0.0.1:{port}"), ClientOptions::default()).expect("connect")
}

/// Produces `count` events on the node at `port`; returns their ids and data. A new node
/// refuses produces (NotReady) until it has met its peers: retried, for at most 30 s.
fn produce(port: u16, count: usize, tag: &str) -> BTreeMap<EventId, Vec<u8>> {
    let mut client = client(port);
    (0..count)
        .map(|i| {
            let data = format!("{tag} {i}").into_bytes();
            let mut ack = None;
            wait_until("the node takes the produce", || {
                match client.produce("/cluster/test", &data) {
                    Ok(done) => ack = Some(done),
                    Err(ClientError::Server {
                        code: ErrorCode::NotReady,
                        ..
                    }) => {}
                    Err(error) => panic!("produce: {error}"),
                }
                ack.is_some()
            });
            (ack.expect("acknowledged").first_id, data)
        })
        .collect()
}

/// Every event stored on the node at `port`, read from the beginning.
fn events_on(port: u16) -> BTreeMap<EventId, Vec<u8>> {
    let Ok(mut client) = Client::connect(&format!("127.0.0.1:{port}"), ClientOptions::default())
    else {
        return BTreeMap::new();
    };
    let subscription = client
        .consume()
        .start(StartPosition::Beginning)
        .subscribe()
        .expect("subscribe");
    subscription
        .map(|event| event.expect("event"))
        .map(|event| (event.id, event.data))
        .collect()
}

struct Node {
    dir: tempfile::TempDir,
    port: u16,
    process: Option<FloProcess>,
    args: Vec<String>,
}

impl Node {
    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.process = Some(FloProcess::start_on_port(self.dir.path(), self.port, &args));
    }
}

/// Three nodes as in the README: node i (actor i + 1) has a `--peer-addr` for each other node.
fn three_nodes() -> Vec<Node> {
    let ports = [free_port(), free_port(), free_port()];
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let mut args = vec!["--actor-id".to_string(), (i + 1).to_string()];
            for (j, peer_port) in ports.iter().enumerate() {
                if j != i {
                    args.push("--peer-addr".into());
                    args.push(format!("127.0.0.1:{peer_port}"));
                }
            }
            Node {
                dir: tempfile::tempdir().expect("temporary directory"),
                port: ports[i],
                process: None,
                args,
            }
        })
        .collect();
    for node in &mut nodes {
        node.start();
    }
    nodes
}

fn wait_for_convergence(nodes: &[Node], expected: &BTreeMap<EventId, Vec<u8>>) {
    for node in nodes {
        wait_until(
            &format!(
                "node on port {} holds all {} events",
                node.port,
                expected.len()
            ),
            || events_on(node.port) == *expected,
        );
    }
}

fn connected_members(port: u16) -> usize {
    let Ok(mut client) = Client::connect(&format!("127.0.0.1:{port}"), ClientOptions::default())
    else {
        return 0;
    };
    let Ok(status) = client.status() else {
        return 0;
    };
    status
        .members
        .iter()
        .filter(|m| m.state == MemberState::Connected)
        .count()
}

#[test]
fn events_from_every_node_reach_every_node_and_a_killed_node_catches_up() {
    let mut nodes = three_nodes();
    // New nodes (no counter lease yet) hold produces until they have met their peers.
    wait_until("every node is connected to both others", || {
        nodes.iter().all(|n| connected_members(n.port) == 2)
    });
    let mut expected = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        expected.extend(produce(node.port, 5, &format!("node {i}")));
    }
    assert_eq!(expected.len(), 15, "15 distinct ids");
    wait_for_convergence(&nodes, &expected);
    wait_until("node 1 reports both peers connected", || {
        connected_members(nodes[0].port) == 2
    });
    // The same through the CLI.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &nodes[0].port.to_string(),
            "status",
        ])
        .output()
        .expect("run flo-client status");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("actor:       1"), "{text}");
    for peer in [2, 3] {
        let line = format!(
            "actor {peer} at 127.0.0.1:{}: connected",
            nodes[peer - 1].port
        );
        assert!(text.contains(&line), "{text}");
    }

    // SIGKILL node 3, produce elsewhere, restart it on the same directory and port.
    nodes[2].process.take().expect("running").kill9();
    expected.extend(produce(nodes[0].port, 5, "while 3 was down, node 0"));
    expected.extend(produce(nodes[1].port, 5, "while 3 was down, node 1"));
    wait_for_convergence(&nodes[..2], &expected);
    // Restart it with `--fsync interval`: it refuses produces (NotReady) until it has caught
    // up with both peers. Which way the hold ended is in its log: by catching up, not by the
    // 30 s catch-up time-out (that logs another line, and "caught up" is then never logged).
    // The loop's bound only guards a hang: past the time-out the node accepts anyway.
    nodes[2]
        .args
        .extend(["--fsync".to_string(), "interval:50".to_string()]);
    nodes[2].start();
    let restarted = Instant::now();
    let mut client3 = client(nodes[2].port);
    let first = loop {
        match client3.produce("/cluster/test", b"node 2 after restart 0") {
            Ok(ack) => break ack,
            Err(ClientError::Server {
                code: ErrorCode::NotReady,
                ..
            }) => {
                assert!(restarted.elapsed() < 2 * WAIT, "still NotReady");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("produce after restart: {error}"),
        }
    };
    expected.insert(first.first_id, b"node 2 after restart 0".to_vec());
    let process = nodes[2].process.as_ref().expect("running");
    assert!(logged(process, "refusing produces (NotReady)"));
    assert!(logged(process, "caught up with every known peer"));
    expected.extend(produce(nodes[2].port, 2, "node 2 after restart"));
    wait_for_convergence(&nodes, &expected);
    // Ids of one actor only grow: the restarted node did not reuse its old counters.
    let actor3: Vec<u64> = expected
        .keys()
        .filter(|id| id.actor.0 == 3)
        .map(|id| id.counter)
        .collect();
    assert_eq!(actor3.len(), 8);
}

/// A TCP forwarder whose connections can all be cut at once; while cut, it accepts and
/// immediately closes new connections.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, stop2, streams2) = (cut.clone(), stop.clone(), streams.clone());
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = incoming else { continue };
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let mut list = streams2.lock().expect("lock");
                for stream in [&client, &server] {
                    if let Ok(clone) = stream.try_clone() {
                        list.push(clone);
                    }
                }
                drop(list);
                forward(&client, &server);
                forward(&server, &client);
            }
        });
        Proxy {
            port,
            cut,
            stop,
            streams,
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for stream in self.streams.lock().expect("lock").drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.set_cut(true);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies bytes from `from` to `to` on a thread until either side closes.
fn forward(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    if to.write_all(&buffer[..count]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

#[test]
fn nodes_converge_after_their_links_are_cut_and_healed() {
    // Peers reach each node only through its proxy (each node advertises its proxy), so
    // cutting the proxies cuts every peer link while clients still reach the nodes directly.
    let ports = [free_port(), free_port(), free_port()];
    let proxies: Vec<Proxy> = ports.iter().map(|p| Proxy::start(*p)).collect();
    let proxy_ports = [proxies[0].port, proxies[1].port, proxies[2].port];
    let mut nodes: Vec<Node> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let mut args = vec!["--actor-id".to_string(), (i + 1).to_string()];
        for (j, proxy_port) in proxy_ports.iter().enumerate() {
            if j != i {
                args.push("--peer-addr".into());
                args.push(format!("127.0.0.1:{proxy_port}"));
            }
        }
        args.push("--advertise-addr".into());
        args.push(format!("127.0.0.1:{}", proxy_ports[i]));
        let mut node = Node {
            dir: tempfile::tempdir().expect("temporary directory"),
            port: *port,
            process: None,
            args,
        };
        node.start();
        nodes.push(node);
    }
    let mut expected = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        expected.extend(produce(node.port, 3, &format!("before the cut, node {i}")));
    }
    wait_for_convergence(&nodes, &expected);

    for proxy in &proxies {
        proxy.set_cut(true);
    }
    for node in &nodes {
        wait_until("every peer link is down", || {
            connected_members(node.port) == 0
        });
    }
    let mut during = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let produced = produce(node.port, 4, &format!("during the cut, node {i}"));
        // Each node is alone: only its own new events are there.
        let held: BTreeSet<EventId> = events_on(node.port).keys().copied().collect();
        for id in produced.keys() {
            assert!(held.contains(id));
        }
        during.extend(produced);
    }
    let alone: BTreeSet<EventId> = events_on(nodes[0].port).keys().copied().collect();
    assert_eq!(
        alone.len(),
        expected.len() + 4,
        "node 1 saw nothing during the cut"
    );
    expected.extend(during);

    for proxy in &proxies {
        proxy.set_cut(false);
    }
    wait_for_convergence(&nodes, &expected);
}

#[test]
fn a_consumer_moves_between_nodes_with_its_cursor_and_sees_every_event_once() {
    let nodes = three_nodes();
    let mut expected = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        expected.extend(produce(node.port, 10, &format!("node {i}")));
    }
    wait_for_convergence(&nodes, &expected);

    let mut seen: Vec<EventId> = Vec::new();
    let mut client1 = client(nodes[0].port);
    let mut first = client1
        .consume()
        .start(StartPosition::Beginning)
        .limit(12)
        .subscribe()
        .expect("subscribe on node 1");
    for event in first.by_ref() {
        seen.push(event.expect("event").id);
    }
    let cursor = first.cursor().clone();
    drop(first);
    assert_eq!(seen.len(), 12);

    // Node 2's log is in a different order, but the cursor says exactly what was seen.
    let mut client2 = client(nodes[1].port);
    let second = client2
        .consume()
        .start(StartPosition::Cursor(cursor))
        .subscribe()
        .expect("subscribe on node 2");
    for event in second {
        seen.push(event.expect("event").id);
    }
    let unique: BTreeSet<EventId> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no event delivered twice");
    assert_eq!(
        unique,
        expected.keys().copied().collect::<BTreeSet<_>>(),
        "every event delivered"
    );
}

#[test]
fn a_node_refuses_a_peer_with_its_own_actor_id_and_a_wrong_secret() {
    let dir1 = tempfile::tempdir().expect("temporary directory");
    let dir2 = tempfile::tempdir().expect("temporary directory");
    let port1 = free_port();
    let peer1 = format!("127.0.0.1:{port1}");
    // A server accepts peers only when configured for clustering: node 1 has a
    // `--peer-addr` (where nothing listens).
    let nowhere = format!("127.0.0.1:{}", free_port());
    let one = FloProcess::start_on_port(
        dir1.path(),
        port1,
        &["--actor-id", "1", "--peer-addr", &nowhere],
    );
    // Same actor id as node 1.
    let two = FloProcess::start(dir2.path(), &["--actor-id", "1", "--peer-addr", &peer1]);
    assert!(logged(&one, "own"), "the acceptor logs why it refused");
    assert!(
        logged(&two, "refused"),
        "the dialer logs why it was refused"
    );
    drop(two);

    let dir3 = tempfile::tempdir().expect("temporary directory");
    let three = FloProcess::start(
        dir3.path(),
        &[
            "--actor-id",
            "3",
            "--peer-addr",
            &peer1,
            "--cluster-secret",
            "x",
        ],
    );
    assert!(logged(&three, "secret"), "a wrong secret is refused");
    assert_eq!(connected_members(one.addr.port()), 0);
}

#[test]
fn a_peer_behind_the_retained_range_starts_at_the_oldest_event_and_the_gap_is_logged() {
    let dir1 = tempfile::tempdir().expect("temporary directory");
    let dir2 = tempfile::tempdir().expect("temporary directory");
    let port2 = free_port();
    let peer2 = format!("127.0.0.1:{port2}");
    let one = FloProcess::start(
        dir1.path(),
        &[
            "--actor-id",
            "1",
            "--peer-addr",
            &peer2,
            "--segment-size",
            "4096",
            "--max-events",
            "50",
            // A new node waits for its peers before it takes produces; node 2 starts later,
            // so the operator lets it take produces after a time-out.
            "--empty-dir-catch-up-timeout",
            "1s",
        ],
    );
    produce(
        one.addr.port(),
        300,
        "a fairly long payload so that segments fill up quickly",
    );
    wait_until("retention deleted old segments", || {
        events_on(one.addr.port()).len() < 300
    });
    let retained = events_on(one.addr.port());
    let peer = format!("127.0.0.1:{}", one.addr.port());
    let two = FloProcess::start_on_port(
        dir2.path(),
        port2,
        &["--actor-id", "2", "--peer-addr", &peer],
    );
    wait_until("node 2 holds what node 1 retained", || {
        events_on(two.addr.port()) == retained
    });
    let warned = logged(&one, "may have a gap");
    assert!(warned, "node 1 warns that peer 2 has a gap");
}

/// Runs `flo-client -p PORT produce -n /replicated -d DATA --replicas N`.
fn produce_with_replicas(port: u16, data: &str, replicas: u8) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string(), "produce"])
        .args(["-n", "/replicated", "-d", data, "--replicas"])
        .arg(replicas.to_string())
        .output()
        .expect("run flo-client produce")
}

#[test]
fn a_replicas_2_produce_is_acked_once_both_nodes_hold_it_and_times_out_without_the_second() {
    let ports = [free_port(), free_port()];
    let mut nodes: Vec<Node> = (0..2)
        .map(|i| Node {
            dir: tempfile::tempdir().expect("temporary directory"),
            port: ports[i],
            process: None,
            args: [
                "--actor-id".to_string(),
                (i + 1).to_string(),
                "--peer-addr".to_string(),
                format!("127.0.0.1:{}", ports[1 - i]),
                "--replication-timeout".to_string(),
                "1s".to_string(),
            ]
            .to_vec(),
        })
        .collect();
    for node in &mut nodes {
        node.start();
    }
    wait_until("node 1 reports node 2 connected", || {
        connected_members(nodes[0].port) == 1
    });
    let output = produce_with_replicas(nodes[0].port, "on two nodes", 2);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {:?}", output.stderr);
    // Acked means node 2 already holds it: read at once, no wait.
    let on_second: Vec<Vec<u8>> = events_on(nodes[1].port).into_values().collect();
    assert_eq!(on_second, vec![b"on two nodes".to_vec()]);

    nodes[1].process.take().expect("running").terminate();
    wait_until("node 1 sees node 2 gone", || {
        connected_members(nodes[0].port) == 0
    });
    let output = produce_with_replicas(nodes[0].port, "on one node", 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "must fail without the second node"
    );
    assert!(stderr.contains("reached 1 of 2 replicas"), "{stderr}");
    // The event stays appended on node 1, and replicas 1 still works there.
    assert_eq!(events_on(nodes[0].port).len(), 2);
    let output = produce_with_replicas(nodes[0].port, "one is enough", 1);
    assert!(output.status.success(), "{:?}", output.stderr);
}

/// Three id-order consumers, one per node, started before three producers write to all three
/// nodes at once: each prints exactly the same sequence, every event in id order.
#[test]
fn id_order_consumers_on_three_nodes_see_the_same_sequence() {
    let nodes = three_nodes();
    wait_until("every node is connected to both others", || {
        nodes.iter().all(|n| connected_members(n.port) == 2)
    });
    const PER_NODE: usize = 40;
    let total = (PER_NODE * nodes.len()) as u64;
    let consumers: Vec<_> = nodes
        .iter()
        .map(|node| {
            let port = node.port;
            std::thread::spawn(move || {
                let subscription = client(port)
                    .into_consume()
                    .order(flo::event::Order::Id)
                    .tail(true)
                    .limit(total)
                    .subscribe()
                    .expect("subscribe in id order");
                subscription
                    .map(|event| event.expect("event").id)
                    .collect::<Vec<EventId>>()
            })
        })
        .collect();
    let producers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let port = node.port;
            std::thread::spawn(move || produce(port, PER_NODE, &format!("node {i}")))
        })
        .collect();
    let mut expected: Vec<EventId> = Vec::new();
    for producer in producers {
        expected.extend(producer.join().expect("producer").into_keys());
    }
    expected.sort();
    for (i, consumer) in consumers.into_iter().enumerate() {
        let sequence = consumer.join().expect("consumer");
        assert_eq!(sequence, expected, "node {i}'s id-order sequence");
    }
}

fn flo_client(port: u16, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run flo-client");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "flo-client {args:?}: {stdout} {stderr}"
    );
    stdout
}

/// `flo-client cluster members` lists actor `actor` in `state`.
fn member_state_is(port: u16, actor: u16, state: &str) -> bool {
    let listing = flo_client(port, &["cluster", "members"]);
    listing.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.first() == Some(&actor.to_string().as_str()) && line.contains(state)
    })
}

/// A member that is gone for good is removed on one node: every node learns it, id order no
/// longer waits for it, the removal survives a restart, the removed node is refused when it
/// comes back, and it is let in again once added back.
#[test]
fn a_removed_member_stops_holding_id_order_is_refused_and_can_be_added_back() {
    let mut nodes = three_nodes();
    wait_until("every node is connected to both others", || {
        nodes.iter().all(|n| connected_members(n.port) == 2)
    });
    nodes[2].process.take().expect("running").kill9();
    let removed = flo_client(nodes[0].port, &["cluster", "remove", "3"]);
    assert!(removed.contains("member 3 removed"), "{removed}");
    assert!(member_state_is(nodes[0].port, 3, "removed"), "{removed}");
    wait_until("node 2 learns of the removal", || {
        member_state_is(nodes[1].port, 3, "removed")
    });
    // Id order on nodes 1 and 2 no longer waits for member 3's clock.
    let mut expected: Vec<EventId> = produce(nodes[0].port, 1, "after removal")
        .into_keys()
        .chain(produce(nodes[1].port, 1, "after removal").into_keys())
        .collect();
    expected.sort();
    for node in &nodes[..2] {
        let sequence: Vec<EventId> = client(node.port)
            .into_consume()
            .order(flo::event::Order::Id)
            .tail(true)
            .limit(2)
            .subscribe()
            .expect("subscribe in id order")
            .map(|event| event.expect("event").id)
            .collect();
        assert_eq!(sequence, expected, "id order on port {}", node.port);
    }
    // The removal is in node 2's data directory: it survives a restart.
    nodes[1].process.take().expect("running").terminate();
    nodes[1].start();
    assert!(member_state_is(nodes[1].port, 3, "removed"));
    // Node 3 comes back on its old directory: refused.
    nodes[2].start();
    let process = nodes[2].process.as_ref().expect("running");
    assert!(logged(process, "was removed from the cluster"));
    assert_eq!(connected_members(nodes[2].port), 0);
    // Added back on node 2: every node lets it in again.
    let added = flo_client(nodes[1].port, &["cluster", "add", "3"]);
    assert!(added.contains("member 3 added back"), "{added}");
    // Adding a member that was never removed is a no-op, and the CLI says so.
    let again = flo_client(nodes[1].port, &["cluster", "add", "1"]);
    assert!(
        again.contains("member 1 was not removed: nothing changed"),
        "{again}"
    );
    wait_until("node 3 is connected to both others again", || {
        connected_members(nodes[2].port) == 2
    });
    assert!(member_state_is(nodes[0].port, 3, "connected"));
}

/// Issue 16: a purge on one node reaches the others as a tombstone, and a node that was down
/// when it was made applies it when it connects again (docs/operations.md, "Purges in a
/// cluster"): none of the three nodes delivers a purged event afterwards.
#[test]
fn a_purge_reaches_every_node_including_one_that_was_down() {
    let mut nodes = three_nodes();
    let expected = produce(nodes[0].port, 10, "p");
    wait_for_convergence(&nodes, &expected);
    nodes[2].process.take().expect("running").kill9();
    let bound = *expected.keys().nth(6).expect("ten events");
    let purged = client(nodes[0].port)
        .purge("/cluster/**", flo::event::PurgeBefore::Id(bound))
        .expect("purge");
    assert!(purged.changed);
    let kept: BTreeMap<EventId, Vec<u8>> = expected
        .range(bound..)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(kept.len(), 4);
    assert_eq!(
        events_on(nodes[0].port),
        kept,
        "the purging node hides them at once"
    );
    wait_until("node 2 applied the tombstone", || {
        events_on(nodes[1].port) == kept
    });
    nodes[2].start();
    wait_until("node 3 applied the tombstone after its restart", || {
        events_on(nodes[2].port) == kept
    });
    let purges = client(nodes[2].port).purges().expect("purges");
    assert_eq!(purges.purges.len(), 1, "{purges:?}");
}

/// Issue 17: on three nodes with `--fsync always` (the default), every event acknowledged with
/// replicas 3 survives the loss of two nodes' data directories: both are killed, their
/// directories deleted, and they restart empty on their old ports; they catch up from the
/// third, after which every acknowledged event is readable on every node with its id and
/// data, and the events they take afterwards reuse none of the lost ids.
#[test]
fn replicas_3_events_survive_two_nodes_losing_their_data_directories() {
    let mut nodes = three_nodes();
    wait_until("every node is connected to both others", || {
        nodes.iter().all(|n| connected_members(n.port) == 2)
    });
    let mut acked = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut client = client(node.port);
        client.set_replicas(3).expect("SetReplicas 3");
        for k in 0..10 {
            let data = format!("node {i} replicas 3 event {k}").into_bytes();
            let ack = client
                .produce("/cluster/r3", &data)
                .expect("replicas 3 ack");
            acked.insert(ack.first_id, data);
        }
    }
    assert_eq!(acked.len(), 30);
    // Acknowledged with replicas 3: every node holds every event already.
    for node in &nodes {
        assert_eq!(events_on(node.port), acked, "node on port {}", node.port);
    }
    for node in &mut nodes[1..] {
        node.process.take().expect("running").kill9();
        let dir = node.dir.path().to_path_buf();
        std::fs::remove_dir_all(&dir).expect("delete the data directory");
        std::fs::create_dir(&dir).expect("an empty data directory");
    }
    for node in &mut nodes[1..] {
        node.start();
    }
    wait_for_convergence(&nodes, &acked);
    // The restarted nodes take produces again once caught up, with ids above their old ones.
    let mut expected = acked.clone();
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let new = produce(node.port, 3, &format!("node {i} after the loss"));
        for id in new.keys() {
            assert!(!acked.contains_key(id), "id {id} handed out again");
            let old_max = acked.keys().filter(|a| a.actor == id.actor).max();
            assert!(Some(id) > old_max, "{id} is not above {old_max:?}");
        }
        expected.extend(new);
    }
    wait_for_convergence(&nodes, &expected);
}

/// Issue 17: a new node joins a running cluster by being pointed at one member (a new actor
/// id, an empty data directory, one `--peer-addr`): it learns the other members from that
/// member's list and connects to all of them, every member lists it as connected, it receives
/// every event, and its own events reach every member.
#[test]
fn a_new_node_joins_a_running_cluster_through_one_member() {
    let nodes = three_nodes();
    wait_until("every node is connected to both others", || {
        nodes.iter().all(|n| connected_members(n.port) == 2)
    });
    let mut expected = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        expected.extend(produce(node.port, 3, &format!("node {i}")));
    }
    wait_for_convergence(&nodes, &expected);
    let mut joining = Node {
        dir: tempfile::tempdir().expect("temporary directory"),
        port: free_port(),
        process: None,
        args: ["--actor-id", "4", "--peer-addr"]
            .map(String::from)
            .into_iter()
            .chain([format!("127.0.0.1:{}", nodes[1].port)])
            .collect(),
    };
    joining.start();
    wait_until("the new node is connected to all three members", || {
        connected_members(joining.port) == 3
    });
    for node in &nodes {
        wait_until("every member lists member 4 as connected", || {
            member_state_is(node.port, 4, "connected")
        });
    }
    wait_for_convergence(std::slice::from_ref(&joining), &expected);
    expected.extend(produce(joining.port, 3, "node 4"));
    let all: Vec<&Node> = nodes.iter().chain([&joining]).collect();
    for node in all {
        wait_until("every node holds the new node's events", || {
            events_on(node.port) == expected
        });
    }
}

/// Issue 17: a stopped member stalls id order, and `flo-client status` on another node says
/// so before any time-out: which member, for how long, how many events wait; removing the
/// member (the documented option) ends the stall.
#[test]
fn status_names_a_stopped_member_that_stalls_id_order() {
    let mut nodes = three_nodes();
    wait_until("every node is connected to both others", || {
        nodes.iter().all(|n| connected_members(n.port) == 2)
    });
    let order_of = |port: u16| client(port).status().expect("status").order;
    nodes[2].process.take().expect("running").kill9();
    // An id-order consumer on node 1 waits for member 3's clock.
    let mut consumer = client(nodes[0].port)
        .into_consume()
        .order(flo::event::Order::Id)
        .tail(true)
        .limit(3)
        .subscribe()
        .expect("subscribe in id order");
    let produced = produce(nodes[0].port, 3, "stalled");
    wait_until(
        "node 1's status names member 3, held for a second, 3 events",
        || {
            let order = order_of(nodes[0].port);
            order
                .held_by
                .as_ref()
                .is_some_and(|h| h.actor_id == 3 && h.held_ms >= 1000)
                && order.waiting_subscriptions == 1
                && order.waiting_events == 3
        },
    );
    let text = flo_client(nodes[0].port, &["status"]);
    let addr = format!("127.0.0.1:{} (not connected)", nodes[2].port);
    assert!(
        text.contains("id order:    held back for")
            && text.contains(&format!("by actor 3 at {addr}"))
            && text.contains("1 id-order subscriptions hold 3 events waiting"),
        "{text}"
    );
    let json = flo_client(nodes[0].port, &["status", "--format", "json"]);
    assert!(json.contains("\"held_by\":{\"actor_id\":3,"), "{json}");
    // Member 3 is gone for good: removed on node 2, the stall ends on node 1 too.
    let removed = flo_client(nodes[1].port, &["cluster", "remove", "3"]);
    assert!(removed.contains("member 3 removed"), "{removed}");
    let delivered: Vec<EventId> = (0..3)
        .map(|_| consumer.next().expect("an event").expect("event").id)
        .collect();
    assert_eq!(delivered, produced.into_keys().collect::<Vec<_>>());
    wait_until("node 1's status names no holder", || {
        let order = order_of(nodes[0].port);
        order.held_by.is_none() && order.waiting_events == 0
    });
    let text = flo_client(nodes[0].port, &["status"]);
    assert!(text.contains("held back by no member"), "{text}");
}

/// Issue 12 (docs/consumers.md, "Cluster"): groups are node-local, so a group consumer whose
/// node dies joins the group of the same name on another node with the cursor of the events
/// it acknowledged. Across the two nodes every event is delivered at least once: the ones
/// acknowledged on the dead node, and the rest (also those it had received and not yet
/// acknowledged) on the new one.
#[test]
fn a_group_consumer_fails_over_to_another_node_with_its_acked_cursor_and_loses_nothing() {
    let mut nodes = three_nodes();
    wait_until("every node is connected to both others", || {
        nodes.iter().all(|n| connected_members(n.port) == 2)
    });
    // Events written to the node that will die (acked by all three) and to another node.
    let mut writer = client(nodes[0].port);
    writer.set_replicas(3).expect("SetReplicas");
    let mut produced: BTreeSet<EventId> = BTreeSet::new();
    for i in 0..20 {
        let mut ack = None;
        wait_until("node 1 takes the produce", || {
            match writer.produce("/cluster/test", format!("a {i}").as_bytes()) {
                Ok(done) => ack = Some(done),
                Err(ClientError::Server {
                    code: ErrorCode::NotReady,
                    ..
                }) => {}
                Err(error) => panic!("produce: {error}"),
            }
            ack.is_some()
        });
        produced.insert(ack.expect("acknowledged").first_id);
    }
    produced.extend(produce(nodes[2].port, 20, "c").into_keys());
    wait_until("node 1 holds all 40 events", || {
        events_on(nodes[0].port).len() == 40
    });
    // A group consumer on node 1 acknowledges 15 events, keeping the cursor of what it
    // acknowledged, and receives 5 more that it has not acknowledged when node 1 dies.
    let mut acked = flo::event::Cursor::default();
    let mut delivered_on_1 = Vec::new();
    {
        let mut member = client(nodes[0].port)
            .into_join_group("workers")
            .glob("/cluster/**")
            .start(StartPosition::Beginning)
            .join()
            .expect("join on node 1");
        while delivered_on_1.len() < 20 {
            match member.next_delivery().expect("a delivery") {
                Some(flo::client::GroupDelivery::Event(event)) => {
                    if delivered_on_1.len() < 15 {
                        member.ack(event.id).expect("ack");
                        acked.observe(event.id);
                    }
                    delivered_on_1.push(event.id);
                }
                Some(_) => {}
                None => panic!("the membership ended"),
            }
        }
        member.flush().expect("send the acks");
        nodes[0].process.take().expect("running").kill9();
    }
    let acked_ids: BTreeSet<EventId> = delivered_on_1[..15].iter().copied().collect();
    // The documented failover: the same group name on node 2, from the acknowledged cursor.
    let mut member = client(nodes[1].port)
        .into_join_group("workers")
        .glob("/cluster/**")
        .start(StartPosition::Cursor(acked.clone()))
        .join()
        .expect("join on node 2");
    let mut delivered_on_2 = BTreeSet::new();
    loop {
        match member.next_delivery().expect("a delivery") {
            Some(flo::client::GroupDelivery::Event(event)) => {
                member.ack(event.id).expect("ack");
                delivered_on_2.insert(event.id);
            }
            Some(flo::client::GroupDelivery::CaughtUp) => break,
            Some(flo::client::GroupDelivery::End(reason)) => panic!("ended: {reason:?}"),
            None => panic!("the membership ended"),
        }
    }
    let lost: Vec<&EventId> = produced
        .iter()
        .filter(|id| !acked_ids.contains(id) && !delivered_on_2.contains(id))
        .collect();
    assert!(lost.is_empty(), "never delivered: {lost:?}");
    for id in &delivered_on_1[15..] {
        assert!(
            delivered_on_2.contains(id),
            "{id} was received on node 1 but not acknowledged: node 2 must deliver it"
        );
    }
    assert_eq!(
        delivered_on_2.len(),
        produced.len() - acked_ids.len(),
        "node 2 delivers exactly what the cursor does not cover"
    );
}

/// Issue 17, session 9: a node that lost its data directory while the only member holding
/// some of its events was down waits for that member, whatever `--catch-up-timeout` says, so
/// it never gives those events' ids to new ones. Node 2's events 3..5 reach only node 3 (node 1
/// is down); node 3 stops; node 2 loses its directory and restarts, meets node 1 (which lacks
/// 3..5) and must keep refusing produces until node 3 is back. Before session 9 its hold ended
/// after `--catch-up-timeout` (1 s here), its new events reused the counters of 3..5, node 3
/// dropped them as duplicates and the cluster never converged (the simulation's seed 661).
#[test]
fn a_node_that_lost_its_directory_waits_for_the_member_holding_its_events() {
    let mut nodes = three_nodes();
    // For the restarts below: a catch-up time-out that does not apply to an empty directory.
    for node in &mut nodes {
        node.args
            .extend(["--catch-up-timeout", "1s"].map(String::from));
    }
    wait_until("every node is connected to both others", || {
        nodes.iter().all(|n| connected_members(n.port) == 2)
    });
    let mut expected = produce(nodes[1].port, 2, "node 2 before");
    wait_for_convergence(&nodes, &expected);
    nodes[0].process.take().expect("running").kill9();
    let only_on_three = produce(nodes[1].port, 3, "node 2 while node 1 is down");
    expected.extend(only_on_three.clone());
    wait_until("node 3 holds node 2's events", || {
        events_on(nodes[2].port) == expected
    });
    nodes[2].process.take().expect("running").kill9();
    // Node 2 stops before node 1 restarts: alive, it would hand node 1 the events 3..5 that
    // this test needs node 1 to lack (session 16: 1 run in 36 failed that way).
    nodes[1].process.take().expect("running").kill9();
    nodes[0].start();
    let dir = nodes[1].dir.path().to_path_buf();
    std::fs::remove_dir_all(&dir).expect("delete the data directory");
    std::fs::create_dir(&dir).expect("an empty data directory");
    nodes[1].start();
    let before: BTreeMap<EventId, Vec<u8>> = expected
        .iter()
        .filter(|(id, _)| !only_on_three.contains_key(id))
        .map(|(id, data)| (*id, data.clone()))
        .collect();
    wait_until("node 2 got its first events back from node 1", || {
        events_on(nodes[1].port) == before
    });
    // Three times its --catch-up-timeout: it still refuses (there is no condition to await
    // here, only the absence of a time-out).
    let mut refusing = client(nodes[1].port);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        match refusing.produce("/cluster/test", b"too early") {
            Err(ClientError::Server {
                code: ErrorCode::NotReady,
                message,
                ..
            }) => assert!(message.contains("empty data directory"), "{message}"),
            other => panic!("node 2 took a produce before meeting node 3: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    nodes[2].start();
    let new = produce(nodes[1].port, 3, "node 2 after the loss");
    let old_max = expected.keys().filter(|id| id.actor.0 == 2).max().copied();
    for id in new.keys() {
        assert!(Some(*id) > old_max, "{id} is not above {old_max:?}");
    }
    expected.extend(new);
    wait_for_convergence(&nodes, &expected);
}
