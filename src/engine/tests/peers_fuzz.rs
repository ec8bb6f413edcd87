//! Issue 15: the peer handshake fuzz. Seeded random and mutated peer conversations, each on a
//! new connection, go through the engine's peer state machine from both sides:
//!
//! - as the acceptor: PeerHello (valid, mutated, from this node's own actor, of another
//!   version), then proofs made with a wrong secret, replayed from an earlier handshake (the
//!   secret's proof for an old nonce), reflected (the acceptor's role), for another actor, or
//!   with the right secret over another TLS session; valid frames of every kind in the wrong
//!   phase (PeerEvent, PeerClock, PeerCredit, PeerMembers, PeerAccept, a second PeerHello...);
//!   bit flips, random bytes, truncations, length fields at 0, at the limit, over it and at
//!   `u32::MAX`;
//! - as the dialer: the same against the engine's PeerHello (PeerWelcome and PeerAccept
//!   variants);
//! - after a valid handshake (the fuzzer then holds the secret): established-phase frames with
//!   random fields, handshake frames out of turn and mutated bytes.
//!
//! Each input is delivered in random chunks, a turn after each frame. Checked for every input:
//! nothing panics; the work is bounded (the actions the engine returns and the bytes it writes
//! are counted against a fixed bound); the connection's memory stays within what was sent plus
//! a fixed bound; a well-formed frame that is not the one the phase expects gets a
//! connection-scope Error and the connection closes; a connection the engine closes ends with
//! such an Error (unless the peer itself sent an Error); and until a proof made with the
//! secret checks, no peer is connected and nothing is stored (the log does not grow). The
//! engine's invariants are checked after every input.

use super::*;
use crate::protocol::{ChannelBinding, Member, PeerHandshake, PeerProof, PeerRole, PeerTranscript};
use crate::random::SeededRng;

const SECRET: &[u8] = b"fuzz-cluster-secret-0123456789abcdef";
/// The address the engine dials in the dialer scenarios.
const DIALED: &str = "10.0.0.2:3000";
/// The handshake frame size limit the fuzz runs with (the default).
const HANDSHAKE_FRAME_MAX: u32 = 256 * 1024;
/// Bounds per input in the handshake: actions polled and bytes the engine wrote for the
/// connection. An established peer may also make the engine dial up to `members_max`
/// members it names and be sent what the log holds (a fresh engine every 256 inputs keeps
/// that small).
const ACTIONS_MAX: usize = 32;
const OUTPUT_BYTES_MAX: usize = 16 * 1024;
const ESTABLISHED_OUTPUT_BYTES_MAX: usize = 1024 * 1024;
/// What a connection may hold beyond the bytes the fuzzer sent it.
const MEMORY_SLACK: usize = 64 * 1024;

fn new_engine(seed: u64) -> Engine<MemoryLog> {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "/nonexistent".into());
    config.actor_id = ActorId(7);
    config.cluster.secret = Some(String::from_utf8(SECRET.to_vec()).unwrap());
    config.cluster.peer_addrs = vec![DIALED.parse().unwrap()];
    config.cluster.peer_proof_failures_max = 50;
    assert_eq!(config.peer_hello_frame_size_max, HANDSHAKE_FRAME_MAX);
    let mut engine_config = EngineConfig::from_config(&config);
    engine_config.seed = seed;
    Engine::new(engine_config, MemoryLog::new())
}

/// Which side of the handshake the fuzzer plays, or an established connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The engine accepted the connection; the fuzzer dials.
    Dialer,
    /// The engine dialed; the fuzzer accepts.
    Acceptor,
    /// The fuzzer completes a valid handshake as the dialer, then fuzzes the established phase.
    Established,
}

/// What the fuzzer's proof is made of.
#[derive(Debug, Clone, Copy)]
enum ProofKind {
    WrongSecret,
    /// The right secret over an earlier handshake's nonce: a recorded proof replayed.
    Replayed,
    /// The right secret in the other side's role.
    Reflected,
    /// The right secret for another actor than the one the handshake named.
    OtherActor,
    /// The right secret over another TLS session's channel binding.
    OtherSession,
    /// The right proof (only in `Role::Established`).
    Valid,
}

struct Fuzz {
    rng: SeededRng,
    seed: u64,
    now: Now,
    next_generation: u32,
    /// The nonces the engine sent in earlier handshakes, for replays.
    old_nonce: [u8; 32],
    /// Inputs closed with each outcome, to show the generator reaches them all.
    refused_in_handshake: u64,
    wrong_phase_closes: u64,
    established: u64,
    open_at_end: u64,
}

/// One input's running account.
struct Input {
    conn: ConnId,
    role: Role,
    sent_bytes: usize,
    actions: usize,
    dials: usize,
    output_bytes: usize,
    /// The engine's closing frames, once it closed the connection.
    closed: Option<Vec<PeerFrame>>,
    /// The fuzzer sent an Error frame (the engine may then close without one).
    sent_error: bool,
    /// The nonce of the engine's PeerHello or PeerWelcome.
    engine_nonce: Option<[u8; 32]>,
    established: bool,
    /// What was sent (size, kind byte) and the frame the phase expected: printed when a
    /// check fails.
    trace: Vec<(usize, Option<u8>, Option<&'static str>)>,
}

impl Fuzz {
    fn bytes(&mut self, length_max: u64) -> Vec<u8> {
        let length = self.rng.below(length_max + 1);
        (0..length).map(|_| self.rng.next_u64() as u8).collect()
    }

    fn nonce(&mut self) -> [u8; 32] {
        let mut nonce = [0u8; 32];
        nonce
            .iter_mut()
            .for_each(|b| *b = self.rng.next_u64() as u8);
        nonce
    }

    fn handshake(&mut self, actor: u16) -> PeerHandshake {
        let rng = &mut self.rng;
        PeerHandshake {
            protocol_version: if rng.chance(950) {
                PROTOCOL_VERSION
            } else {
                rng.below(4) as u16
            },
            // Mostly the actor of the script; sometimes this node's own (7), 0, or another.
            actor_id: match rng.below(20) {
                0 => 7,
                1 => 0,
                2 => rng.next_u64() as u16,
                _ => actor,
            },
            advertised_addr: if rng.chance(950) {
                format!("10.0.0.{actor}:3000")
            } else {
                "not an address".into()
            },
            nonce: self.nonce(),
        }
    }

    fn vector(&mut self) -> VersionVector {
        let entries = if self.rng.chance(4) { 1100 } else { 3 };
        (0..self.rng.below(entries))
            .map(|_| {
                let actor = ActorId(self.rng.below(12) as u16 + (self.rng.below(2000) as u16));
                (actor, self.rng.next_u64() >> self.rng.below(64))
            })
            .collect()
    }

    fn members(&mut self) -> Vec<Member> {
        let count = if self.rng.chance(4) { 200 } else { 3 };
        (0..self.rng.below(count))
            .map(|_| Member {
                actor_id: self.rng.below(100) as u16,
                addr: format!("10.0.1.{}:{}", self.rng.below(256), self.rng.below(65536)),
            })
            .collect()
    }

    /// A well-formed peer frame of a random kind other than the proofs (those need the
    /// handshake's nonces; see `proof`).
    fn other_frame(&mut self, actor: u16) -> PeerFrame {
        match self.rng.below(8) {
            0 => PeerFrame::PeerHello(self.handshake(actor)),
            1 => PeerFrame::PeerWelcome(self.handshake(actor)),
            2 => PeerFrame::PeerEvent(Event {
                id: EventId::new(
                    1 + (self.rng.next_u64() >> self.rng.below(64)).min(u64::MAX - 2),
                    match self.rng.below(4) {
                        0 => 7,
                        1 => 99,
                        _ => actor,
                    },
                ),
                parent_id: None,
                namespace: "/fuzz/peer".into(),
                timestamp_ms: self.rng.next_u64(),
                data: self.bytes(32),
            }),
            3 => PeerFrame::PeerCredit {
                count: self.rng.next_u64() as u32,
            },
            4 => PeerFrame::PeerMembers(self.members()),
            5 => PeerFrame::PeerClock {
                counter: self.rng.next_u64() >> self.rng.below(64),
            },
            6 => PeerFrame::PeerAccept(PeerProof {
                proof: self.nonce(),
                vector: self.vector(),
                members: self.members(),
            }),
            _ => PeerFrame::PeerProof(PeerProof {
                proof: self.nonce(),
                vector: self.vector(),
                members: self.members(),
            }),
        }
    }

    /// A proof of `kind` for the handshake between `dialer_nonce` and `acceptor_nonce`, made
    /// by the fuzzer in `role`.
    fn proof(
        &mut self,
        kind: ProofKind,
        role: PeerRole,
        transcript: PeerTranscript,
        binding: Option<ChannelBinding>,
    ) -> PeerProof {
        let other_role = match role {
            PeerRole::Dialer => PeerRole::Acceptor,
            PeerRole::Acceptor => PeerRole::Dialer,
        };
        let transcript = PeerTranscript {
            channel_binding: binding,
            ..transcript
        };
        let proof = match kind {
            ProofKind::WrongSecret => transcript.proof(b"guess", role),
            ProofKind::Replayed => {
                let replayed = match role {
                    PeerRole::Dialer => PeerTranscript {
                        acceptor_nonce: self.old_nonce,
                        ..transcript
                    },
                    PeerRole::Acceptor => PeerTranscript {
                        dialer_nonce: self.old_nonce,
                        ..transcript
                    },
                };
                replayed.proof(SECRET, role)
            }
            ProofKind::Reflected => transcript.proof(SECRET, other_role),
            ProofKind::OtherActor => PeerTranscript {
                dialer_actor: transcript.dialer_actor.wrapping_add(1),
                ..transcript
            }
            .proof(SECRET, role),
            ProofKind::OtherSession => PeerTranscript {
                channel_binding: Some([0xee; 32]),
                ..transcript
            }
            .proof(SECRET, role),
            ProofKind::Valid => transcript.proof(SECRET, role),
        };
        PeerProof {
            proof,
            vector: if matches!(kind, ProofKind::Valid) {
                VersionVector::new()
            } else {
                self.vector()
            },
            members: Vec::new(),
        }
    }

    fn wrong_proof_kind(&mut self) -> ProofKind {
        match self.rng.below(5) {
            0 => ProofKind::WrongSecret,
            1 => ProofKind::Replayed,
            2 => ProofKind::Reflected,
            3 => ProofKind::OtherActor,
            _ => ProofKind::OtherSession,
        }
    }

    /// Mutates encoded frames: bit flips, a random byte, a truncation, the length field at
    /// 0 / the limit / over it / `u32::MAX`, or appended garbage.
    fn mutate(&mut self, bytes: &mut Vec<u8>) {
        match self.rng.below(6) {
            0 => {
                for _ in 0..1 + self.rng.below(4) {
                    let index = self.rng.index(bytes.len());
                    bytes[index] ^= 1 << self.rng.below(8);
                }
            }
            1 => {
                let index = self.rng.index(bytes.len());
                bytes[index] = self.rng.next_u64() as u8;
            }
            2 => bytes.truncate(self.rng.index(bytes.len())),
            3 => {
                let length = match self.rng.below(4) {
                    0 => 0,
                    1 => HANDSHAKE_FRAME_MAX - 4,
                    2 => HANDSHAKE_FRAME_MAX - 3,
                    _ => u32::MAX,
                };
                bytes[..4].copy_from_slice(&length.to_be_bytes());
            }
            4 => bytes[4] = 0x40 + self.rng.below(0x20) as u8,
            _ => {
                let garbage = self.bytes(24);
                bytes.extend_from_slice(&garbage);
            }
        }
    }
}

/// The frame the phase expects next, or `None` when any established-phase frame is fine.
fn expected_kind(phase: &Phase) -> Option<&'static str> {
    match phase {
        Phase::AwaitingHello { .. } => Some("PeerHello"),
        Phase::PeerAwaitingWelcome { .. } => Some("PeerWelcome"),
        Phase::PeerAwaitingAccept { .. } => Some("PeerAccept"),
        Phase::PeerAwaitingProof { .. } => Some("PeerProof"),
        Phase::Peer(_) => None,
        Phase::Client(_) | Phase::Closing { .. } => Some("nothing"),
    }
}

fn kind_name(frame: &PeerFrame) -> &'static str {
    match frame {
        PeerFrame::PeerHello(_) => "PeerHello",
        PeerFrame::PeerWelcome(_) => "PeerWelcome",
        PeerFrame::PeerProof(_) => "PeerProof",
        PeerFrame::PeerAccept(_) => "PeerAccept",
        PeerFrame::PeerEvent(_) => "PeerEvent",
        PeerFrame::PeerCredit { .. } => "PeerCredit",
        PeerFrame::PeerMembers(_) => "PeerMembers",
        PeerFrame::PeerClock { .. } => "PeerClock",
        PeerFrame::PeerMembership(_) => "PeerMembership",
        PeerFrame::PeerPurge(_) => "PeerPurge",
        PeerFrame::Error(_) => "Error",
    }
}

/// Delivers `bytes` in random chunks, ends the turn, and collects what the engine did.
fn deliver(fuzz: &mut Fuzz, engine: &mut Engine<MemoryLog>, input: &mut Input, bytes: &[u8]) {
    let phase = engine.conn(input.conn).map(|c| expected_kind(&c.phase));
    input
        .trace
        .push((bytes.len(), bytes.get(4).copied(), phase.flatten()));
    input.sent_bytes += bytes.len();
    let mut rest = bytes;
    while !rest.is_empty() && engine.is_open(input.conn) {
        let chunk = 1 + fuzz.rng.index(rest.len());
        engine.handle_input(fuzz.now, input.conn, &rest[..chunk]);
        rest = &rest[chunk..];
    }
    engine.handle_turn_end(fuzz.now);
    collect(engine, input);
    if let Some(connection) = engine.conn(input.conn) {
        assert!(
            connection.memory_bytes() <= input.sent_bytes + MEMORY_SLACK,
            "seed {:#x}: a connection holds {} bytes after {} sent",
            fuzz.seed,
            connection.memory_bytes(),
            input.sent_bytes
        );
    }
}

/// Polls the engine's actions and takes the connection's output, counting both.
fn collect(engine: &mut Engine<MemoryLog>, input: &mut Input) {
    while let Some(action) = engine.poll_action() {
        input.actions += 1;
        input.dials += usize::from(matches!(action, Action::Dial { .. }));
        if let Action::Close { conn, final_output } = action {
            if conn == input.conn {
                input.output_bytes += final_output.len();
                input.closed = Some(decode_all(&final_output));
            }
        }
    }
    let output = engine.output(input.conn).to_vec();
    engine.handle_sent(input.conn, output.len());
    input.output_bytes += output.len();
    for frame in decode_all::<PeerFrame>(&output) {
        match frame {
            PeerFrame::PeerHello(hello) | PeerFrame::PeerWelcome(hello) => {
                input.engine_nonce = Some(hello.nonce)
            }
            PeerFrame::PeerAccept(_) if input.role == Role::Established => input.established = true,
            _ => {}
        }
    }
}

/// Sends one whole, well-formed frame; if the phase expected another kind, the connection
/// must now be closed with a connection-scope Error.
fn send_frame(
    fuzz: &mut Fuzz,
    engine: &mut Engine<MemoryLog>,
    input: &mut Input,
    frame: &PeerFrame,
) {
    let Some(connection) = engine.conn(input.conn) else {
        return;
    };
    let phase = connection.phase.clone();
    // After a mutated frame whose length is still to come, this one is part of its body.
    let at_frame_start = connection.input.is_empty();
    let expected = expected_kind(&phase);
    let kind = kind_name(frame);
    input.sent_error |= matches!(frame, PeerFrame::Error(_));
    let mut bytes = Vec::new();
    encode(frame, &mut bytes);
    deliver(fuzz, engine, input, &bytes);
    let wrong_phase = match expected {
        Some(expected) => expected != kind && kind != "Error",
        None => matches!(
            frame,
            PeerFrame::PeerHello(_)
                | PeerFrame::PeerWelcome(_)
                | PeerFrame::PeerProof(_)
                | PeerFrame::PeerAccept(_)
        ),
    };
    if wrong_phase && at_frame_start {
        fuzz.wrong_phase_closes += 1;
        assert!(
            !engine.is_open(input.conn),
            "seed {:#x}: {kind} in phase {phase:?} left the connection open ({:?}, output {:?})",
            fuzz.seed,
            input.trace,
            engine.output(input.conn),
        );
        assert_closed_with_error(fuzz, input);
    }
}

fn assert_closed_with_error(fuzz: &Fuzz, input: &Input) {
    let frames = input.closed.as_ref().unwrap_or_else(|| {
        panic!(
            "seed {:#x}: the connection is closed without a Close action",
            fuzz.seed
        )
    });
    match frames.last() {
        Some(PeerFrame::Error(ErrorFrame {
            scope: ErrorScope::Connection,
            code,
            ..
        })) => assert!(code.closes_connection(), "seed {:#x}: {code}", fuzz.seed),
        None if input.sent_error => {}
        other => panic!(
            "seed {:#x}: closed without an Error frame: {other:?}",
            fuzz.seed
        ),
    }
}

/// One conversation on a new connection.
fn run_input(fuzz: &mut Fuzz, engine: &mut Engine<MemoryLog>, role: Role) {
    let generation = fuzz.next_generation;
    fuzz.next_generation += 1;
    let conn = ConnId {
        slot: 3,
        generation,
    };
    let mut input = Input {
        conn,
        role,
        sent_bytes: 0,
        actions: 0,
        dials: 0,
        output_bytes: 0,
        closed: None,
        sent_error: false,
        engine_nonce: None,
        established: false,
        trace: Vec::new(),
    };
    fuzz.now.monotonic.0 += 10;
    let binding = fuzz.rng.chance(300).then(|| fuzz.nonce());
    let actor = 1 + fuzz.rng.below(6) as u16;
    match role {
        Role::Acceptor => {
            engine.handle_dialed(fuzz.now, conn, DIALED.parse().unwrap());
        }
        Role::Dialer | Role::Established => {
            engine.handle_connect(fuzz.now, conn);
            if fuzz.rng.chance(500) {
                let ip = [192, 0, 2, fuzz.rng.below(256) as u8];
                let port = fuzz.rng.below(65536) as u16;
                engine.handle_peer_addr(conn, std::net::SocketAddr::from((ip, port)));
            }
        }
    }
    if let Some(binding) = binding {
        engine.handle_channel_binding(conn, binding);
    }
    collect(engine, &mut input);
    // The authenticated engine holds what earlier established inputs replicated.
    let stored_before = engine.log().durable_end().0;
    let steps = 1 + fuzz.rng.below(5);
    let mut my_nonce = fuzz.nonce();
    for step in 0..steps {
        if !engine.is_open(conn) {
            break;
        }
        // The frame the handshake wants now, made right or wrong.
        let phase = engine.conn(conn).map(|c| c.phase.clone());
        let in_turn: Option<PeerFrame> = match phase {
            Some(Phase::AwaitingHello { .. }) => {
                let mut hello = fuzz.handshake(actor);
                if role == Role::Established {
                    hello.protocol_version = PROTOCOL_VERSION;
                    hello.actor_id = actor;
                    hello.advertised_addr = format!("10.0.0.{actor}:3000");
                }
                my_nonce = hello.nonce;
                Some(PeerFrame::PeerHello(hello))
            }
            Some(Phase::PeerAwaitingWelcome { .. }) => {
                let welcome = fuzz.handshake(2);
                my_nonce = welcome.nonce;
                Some(PeerFrame::PeerWelcome(welcome))
            }
            Some(Phase::PeerAwaitingProof { ref pending, .. }) => {
                let kind = if role == Role::Established {
                    ProofKind::Valid
                } else {
                    fuzz.wrong_proof_kind()
                };
                let transcript = PeerTranscript {
                    dialer_nonce: my_nonce,
                    acceptor_nonce: input.engine_nonce.unwrap_or([0; 32]),
                    dialer_actor: pending.actor.0,
                    acceptor_actor: 7,
                    channel_binding: None,
                };
                let proof = fuzz.proof(kind, PeerRole::Dialer, transcript, binding);
                Some(PeerFrame::PeerProof(proof))
            }
            Some(Phase::PeerAwaitingAccept { ref pending, .. }) => {
                let kind = fuzz.wrong_proof_kind();
                let transcript = PeerTranscript {
                    dialer_nonce: input.engine_nonce.unwrap_or([0; 32]),
                    acceptor_nonce: my_nonce,
                    dialer_actor: 7,
                    acceptor_actor: pending.actor.0,
                    channel_binding: None,
                };
                let proof = fuzz.proof(kind, PeerRole::Acceptor, transcript, binding);
                Some(PeerFrame::PeerAccept(proof))
            }
            _ => None,
        };
        // The handshake of an established-phase input is never mutated.
        let handshake_done = input.established || role != Role::Established;
        let choice = if handshake_done {
            fuzz.rng.below(10)
        } else {
            0
        };
        match (choice, in_turn) {
            (0..=4, Some(frame)) => send_frame(fuzz, engine, &mut input, &frame),
            (5..=6, Some(frame)) => {
                let mut bytes = Vec::new();
                encode(&frame, &mut bytes);
                fuzz.mutate(&mut bytes);
                deliver(fuzz, engine, &mut input, &bytes);
            }
            (7, _) if step > 0 => {
                let error = PeerFrame::Error(ErrorFrame {
                    scope: ErrorScope::Connection,
                    code: ErrorCode::AuthFailed,
                    message: "fuzz".into(),
                });
                send_frame(fuzz, engine, &mut input, &error);
            }
            (8, _) => {
                let frame = fuzz.other_frame(actor);
                let mut bytes = Vec::new();
                encode(&frame, &mut bytes);
                fuzz.mutate(&mut bytes);
                deliver(fuzz, engine, &mut input, &bytes);
            }
            _ => {
                let frame = fuzz.other_frame(actor);
                send_frame(fuzz, engine, &mut input, &frame);
            }
        }
        if !input.established {
            assert!(
                engine.connected_peers().is_empty(),
                "seed {:#x}: a peer was connected without the secret",
                fuzz.seed
            );
            assert_eq!(
                engine.log().durable_end().0,
                stored_before,
                "seed {:#x}: something was stored from an unauthenticated peer ({role:?}: {:?})",
                fuzz.seed,
                input.trace
            );
        }
    }
    if let Some(nonce) = input.engine_nonce {
        fuzz.old_nonce = nonce;
    }
    finish(fuzz, engine, &mut input);
}

/// Ends an input: a connection still open is cut (the socket closed) or left to the
/// handshake time-out, which must close it with an Error.
fn finish(fuzz: &mut Fuzz, engine: &mut Engine<MemoryLog>, input: &mut Input) {
    let conn = input.conn;
    if input.established {
        fuzz.established += 1;
    }
    if engine.is_open(conn) {
        fuzz.open_at_end += 1;
        let in_handshake = !matches!(engine.conn(conn).map(|c| &c.phase), Some(Phase::Peer(_)));
        if in_handshake && fuzz.rng.chance(100) {
            fuzz.now.monotonic.0 += millis(engine.config.handshake_timeout) + 1;
            engine.handle_turn_end(fuzz.now);
            collect(engine, input);
            assert!(
                !engine.is_open(conn),
                "seed {:#x}: a handshake outlived its time-out",
                fuzz.seed
            );
            assert_closed_with_error(fuzz, input);
        } else {
            engine.handle_closed(conn);
            engine.handle_turn_end(fuzz.now);
            collect(engine, input);
        }
    } else {
        if !input.established {
            fuzz.refused_in_handshake += 1;
        }
        assert_closed_with_error(fuzz, input);
    }
    let (actions_max, output_max) = match input.role {
        Role::Established => (
            ACTIONS_MAX + engine.config.cluster.members_max,
            ESTABLISHED_OUTPUT_BYTES_MAX,
        ),
        Role::Dialer | Role::Acceptor => (ACTIONS_MAX, OUTPUT_BYTES_MAX),
    };
    assert!(
        input.actions <= actions_max && input.output_bytes <= output_max,
        "seed {:#x}: one input cost {} actions ({} dials) and {} bytes of output ({:?}: {:?})",
        fuzz.seed,
        input.actions,
        input.dials,
        input.output_bytes,
        input.role,
        input.trace
    );
}

#[test]
fn a_million_peer_handshake_inputs_never_connect_without_the_secret_or_panic() {
    let seed = 0x0015_FEE2;
    let count: u32 = if cfg!(debug_assertions) {
        20_000
    } else {
        1_000_000
    };
    let mut fuzz = Fuzz {
        rng: SeededRng::new(seed),
        seed,
        now: Now::default(),
        next_generation: 0,
        old_nonce: [0; 32],
        refused_in_handshake: 0,
        wrong_phase_closes: 0,
        established: 0,
        open_at_end: 0,
    };
    let mut unauthenticated = new_engine(seed);
    let mut authenticated = new_engine(seed ^ 1);
    for index in 0..count {
        let role = match fuzz.rng.below(16) {
            0..=8 => Role::Dialer,
            9..=13 => Role::Acceptor,
            _ => Role::Established,
        };
        if role == Role::Established {
            // A fresh engine now and then, so the replicated events stay few.
            if index % 256 == 0 {
                authenticated = new_engine(seed ^ u64::from(index));
            }
            run_input(&mut fuzz, &mut authenticated, role);
            authenticated.check_invariants();
        } else {
            run_input(&mut fuzz, &mut unauthenticated, role);
            if index % 64 == 0 {
                unauthenticated.check_invariants();
            }
        }
    }
    unauthenticated.check_invariants();
    assert_eq!(unauthenticated.connection_count(), 0);
    let Fuzz {
        refused_in_handshake,
        wrong_phase_closes,
        established,
        open_at_end,
        ..
    } = fuzz;
    let outcomes = [
        ("refused in the handshake", refused_in_handshake),
        ("closed for a wrong-phase frame", wrong_phase_closes),
        ("established", established),
        ("open at the end", open_at_end),
    ];
    for (what, seen) in outcomes {
        assert!(
            seen > u64::from(count) / 100,
            "seed {seed:#x}: only {seen} inputs {what} of {count}: {outcomes:?}"
        );
    }
}
