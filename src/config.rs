//! Every limit of the server in one place, validated at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth_file::AuthTable;
use crate::event::ActorId;

/// When appended events are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// One fdatasync per reactor turn, before any acknowledgement (group commit). The default.
    Always,
    /// Written to the kernel every turn; fdatasync at most once per interval. A power loss can
    /// lose up to one interval of acknowledged events.
    IntervalMs(u64),
    /// Written to the kernel every turn, never fdatasync'd by flo. A power loss can lose any
    /// acknowledged event the kernel had not yet written back.
    Never,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => write!(f, "always"),
            FsyncPolicy::IntervalMs(ms) => write!(f, "interval:{ms}"),
            FsyncPolicy::Never => write!(f, "never"),
        }
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<FsyncPolicy, String> {
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => match text.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::IntervalMs(ms)),
                _ => Err(format!(
                    "invalid fsync policy {text:?}: expected always, never or interval:<ms> with ms > 0"
                )),
            },
        }
    }
}

/// What a node does with a purge a peer sends it (PeerPurge, `--peer-purges`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerPurges {
    /// Merge it like a client's Purge and pass it on: purges are cluster-wide. The default.
    #[default]
    Accept,
    /// Ignore it (logged, counted in `flo_peer_purges_refused_total`): only purges taken
    /// from this node's own clients apply here, and a member holding the cluster secret
    /// cannot hide this node's events.
    Refuse,
}

impl fmt::Display for PeerPurges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerPurges::Accept => write!(f, "accept"),
            PeerPurges::Refuse => write!(f, "refuse"),
        }
    }
}

impl std::str::FromStr for PeerPurges {
    type Err = String;

    fn from_str(text: &str) -> Result<PeerPurges, String> {
        match text {
            "accept" => Ok(PeerPurges::Accept),
            "refuse" => Ok(PeerPurges::Refuse),
            _ => Err(format!(
                "invalid peer purges setting {text:?}: expected accept or refuse"
            )),
        }
    }
}

/// Retention: the oldest whole segments are deleted once any limit is exceeded. `None` means
/// no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Events the log keeps at most.
    pub events_max: Option<u64>,
    /// Bytes of segment files the log keeps at most.
    pub bytes_max: Option<u64>,
    /// The oldest event's age, in wall-clock milliseconds, at most.
    pub age_max_ms: Option<u64>,
}

/// A per-namespace retention rule (`/metrics/** keep 7d`): events whose namespace the glob
/// matches are hidden from every reader once older than `keep_ms`, and their space is
/// reclaimed like a purge's (docs/operations.md, "Purge and per-namespace retention").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamespaceRetention {
    /// The namespaces it applies to.
    pub glob: String,
    /// How long their events are kept, in wall-clock milliseconds.
    pub keep_ms: u64,
}

impl std::str::FromStr for NamespaceRetention {
    type Err = String;

    /// Parses `GLOB keep DURATION` (`/metrics/** keep 7d`).
    fn from_str(text: &str) -> Result<NamespaceRetention, String> {
        let error = || {
            format!("invalid retention rule {text:?}: expected GLOB keep DURATION (/metrics/** keep 7d)")
        };
        let mut words = text.split_whitespace();
        let (Some(glob), Some("keep"), Some(duration), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(error());
        };
        let keep_ms = crate::units::parse_duration_ms(duration)
            .map_err(|message| format!("{}: {message}", error()))?;
        crate::protocol::NamespaceGlob::new(glob)
            .map_err(|message| format!("{}: {message}", error()))?;
        Ok(NamespaceRetention {
            glob: glob.to_string(),
            keep_ms,
        })
    }
}

impl fmt::Display for NamespaceRetention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keep {}",
            self.glob,
            crate::units::format_duration_ms(self.keep_ms)
        )
    }
}

/// The most per-namespace retention rules a server takes (each is checked against every event
/// handed out, like a purge).
pub const NAMESPACE_RETENTION_RULES_MAX: usize = 64;

/// What `Config::validate` says of an empty cluster secret (`--cluster-secret ""`, as a
/// script's unset variable gives it), which the engine takes for none.
pub const EMPTY_CLUSTER_SECRET: &str = "an empty --cluster-secret proves nothing: anyone can make its handshake proof (as without the option); give a long random one (`flo gen-token` makes one)";

/// The longest time-out or wait any setting may have (365 days). Deadlines are the monotonic
/// clock in milliseconds plus the time-out, so a time-out near `u64::MAX` ms wrapped them into
/// the past: attack round 9, `--idle-timeout 18446744073709551615ms` (a careless "never")
/// closed every connection as idle within a second. `0s` is how `--idle-timeout` says never.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The most `storage.open_files_max` may be: kept-open files take file descriptors, which the
/// connections need too.
pub const OPEN_FILES_MAX: usize = 65_536;

/// Limits of the wire protocol that a client must respect. The frame size, namespace length
/// and event data size are sent in the handshake (Welcome); the others are documented in
/// protocol.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// The largest frame, header included, either side may send.
    pub frame_size_max: u32,
    /// The longest namespace, in bytes.
    pub namespace_length_max: u32,
    /// The largest event data, in bytes.
    pub event_data_size_max: u32,
    /// The longest subscription glob, in bytes. A glob costs memory for as long as its
    /// subscription lives and time for every namespace it is matched against, both in
    /// proportion to its length.
    pub glob_length_max: u32,
}

impl Default for WireLimits {
    fn default() -> WireLimits {
        WireLimits {
            // Room for one maximal event plus its header and a generous namespace.
            frame_size_max: 8 * 1024 * 1024 + 64 * 1024,
            namespace_length_max: 1024,
            event_data_size_max: 8 * 1024 * 1024,
            // As long as the longest namespace, so that every namespace can be subscribed to
            // by its own name; longer globs only add cost.
            glob_length_max: 1024,
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// The directory of the segment files (created if missing; locked while open).
    pub data_dir: PathBuf,
    /// When appended records are fdatasynced (acks wait for it under `always`).
    pub fsync: FsyncPolicy,
    /// A segment is sealed and a new one started once it passes this size.
    pub segment_size_max: u64,
    /// When old segments are deleted.
    pub retention: Retention,
    /// The in-memory cache of the newest events, in bytes.
    pub cache_bytes_max: usize,
    /// Whether the namespace index is kept (docs/storage.md): the open segment's namespaces
    /// in memory (at most about the segment's size) and a `.nsx` file per sealed segment.
    /// Off, a subscription to one namespace reads the whole log.
    pub namespace_index: bool,
    /// Whether the trace indexes are kept (`.eix` and `.pix` per sealed segment, the open
    /// segment's keys in memory once a trace asked for them, about 64 bytes per record). Off,
    /// every step of a trace reads the whole log.
    pub trace_index: bool,
    /// One namespace index query reads the index of at most this many segments before it
    /// returns (the caller asks again from there), so one call costs bounded time.
    pub namespace_segments_per_query_max: usize,
    /// Bytes of the membership filters of sealed segments' namespaces kept in memory (2 to 4
    /// bytes per namespace of a segment, built when a conditional produce first asks the
    /// segment): a segment past it is asked through its `.nsx` file (a few reads), slower but
    /// the same answer.
    pub namespace_filter_bytes_max: usize,
    /// Bytes of the fences of sealed segments' `.nsx` files kept in memory (one name per 64
    /// namespaces of a segment, read by the segment's first lookup), with which a lookup reads
    /// three small pieces of the file instead of binary-searching it (about 2 * log2(names /
    /// 8) reads): a segment past it is binary-searched, slower but the same answer.
    pub namespace_fences_bytes_max: usize,
    /// The capacity the spill buffer keeps from one sync to the next. Only a turn whose
    /// records do not fit in the cache's ring (`cache_bytes_max`) uses it, and it grows to
    /// hold the whole turn: attack round 15's 60 produces of 8 MiB completed in one turn left
    /// a 512 MiB buffer (480 MiB resident) held for good. A buffer past this is given back
    /// after the write; one within it is kept, so that with a small cache, where every turn
    /// spills, turns of up to this size append without allocating. The default is the
    /// default read budget of a turn (`read_bytes_per_turn_total_max`, 4 MiB).
    pub spill_bytes_kept_max: usize,
    /// Sealed segments' `.log` and `.nsx` files kept open for index-driven reads (the least
    /// recently used closed first), so reading one namespace costs no `open` per segment.
    /// Each is one file descriptor besides the connections'. 0: every query opens its files.
    pub open_files_max: usize,
    /// Per-namespace retention rules (`--retention-rule '/metrics/** keep 7d'`), at most
    /// [`NAMESPACE_RETENTION_RULES_MAX`].
    pub namespace_retention: Vec<NamespaceRetention>,
    /// Purge rules kept at most (`--max-purge-rules`); a purge of a new glob past it is
    /// refused with PurgeRulesFull. Every rule costs a comparison per event handed out.
    pub purge_rules_max: usize,
    /// Bytes of glob all purge rules may have together (`--max-purge-glob-bytes`): every
    /// event handed out is checked against every rule, at a cost linear in each glob's length
    /// per namespace byte, so this bounds one event's check whatever the globs are.
    pub purge_glob_bytes_max: usize,
    /// Records of the oldest segment the reclaimer looks at per housekeeping call, to find
    /// out whether purges and retention rules hide all of it (`FileLog::reclaim`).
    pub reclaim_records_per_call_max: u64,
    /// Namespaces whose newest id the log remembers after deleting their purged events with
    /// their segment (`--max-purged-namespaces`), so a conditional produce never sees such a
    /// namespace's newest id go back. A segment whose deletion would pass it stays on disk.
    pub purged_namespaces_max: usize,
    /// Glob matching the reclaimer may do per housekeeping call, in the steps
    /// `NamespaceGlob::matches_with_cost` counts: each record it looks at is checked against
    /// every purge and retention rule, which with many long globs costs far more than the read.
    pub reclaim_match_steps_per_call_max: u64,
}

impl StorageConfig {
    /// The defaults, with the data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> StorageConfig {
        StorageConfig {
            data_dir,
            fsync: FsyncPolicy::Always,
            segment_size_max: 64 * 1024 * 1024,
            retention: Retention::default(),
            cache_bytes_max: 64 * 1024 * 1024,
            namespace_index: true,
            trace_index: true,
            namespace_segments_per_query_max: 64,
            namespace_filter_bytes_max: 64 * 1024 * 1024,
            namespace_fences_bytes_max: 64 * 1024 * 1024,
            spill_bytes_kept_max: 4 * 1024 * 1024,
            open_files_max: 256,
            namespace_retention: Vec::new(),
            purge_rules_max: 256,
            purge_glob_bytes_max: 16 * 1024,
            reclaim_records_per_call_max: 4096,
            purged_namespaces_max: 100_000,
            reclaim_match_steps_per_call_max: 8 * 1024 * 1024,
        }
    }
}

/// Cluster settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The members to dial at start-up (`--peer-addr`); the rest are learned from them.
    pub peer_addrs: Vec<SocketAddr>,
    /// Peers must prove this shared secret in their handshake when it is set.
    pub secret: Option<String>,
    /// PEM certificates a node trusts for the TLS of the peers it dials (`--peer-ca`), when
    /// it has a TLS identity (`Config::tls`); `None`: the certificates of its own
    /// `--tls-cert` file.
    pub peer_ca_pem: Option<Vec<u8>>,
    /// The address other members dial to reach this node; the bound address when `None`.
    pub advertise_addr: Option<SocketAddr>,
    /// After a start with a non-`always` fsync policy and peers configured, produces are
    /// refused (NotReady) until every known peer has been caught up with, or this time passed.
    pub catch_up_timeout: Duration,
    /// A node started on an empty data directory with peers refuses produces until it has
    /// met every member it knows, with no time-out when `None` (the default): it may have
    /// lost its directory, and a member it has not met may hold events whose ids it would
    /// give again. `Some`: it takes produces after this time anyway, at that risk
    /// (docs/clustering.md, "Losing a data directory").
    pub empty_dir_catch_up_timeout: Option<Duration>,
    /// The node stores events of at most this many distinct actors (itself included): a
    /// PeerEvent of a new actor beyond it, or a peer handshake whose vector lists more, is
    /// refused. Bounds every version vector this node holds, sends and reports.
    pub actors_max: usize,
    /// Members this node knows (and dials) at most; members a PeerMembers or handshake lists
    /// beyond it are ignored, and a handshake from a new actor beyond it is refused.
    pub members_max: usize,
    /// A PeerEvent's counter may be at most this far above this node's Lamport counter;
    /// one further ahead is refused, so a broken or hostile peer cannot use up the counter
    /// space (protocol.md, section 15).
    pub peer_counter_ahead_max: u64,
    /// A membership record from a peer (PeerMembership) may carry a version at most this far
    /// above the version this node holds for that member (0 for a member it has no record
    /// of); one further ahead is ignored (logged), so a peer cannot push a member's version
    /// to the end of the range where `cluster add` and `cluster remove` could no longer
    /// supersede it (attack round 3, F6).
    pub membership_version_ahead_max: u64,
    /// A member learned through discovery (not a `--peer-addr`) that has never answered is
    /// forgotten after this many failed dials in a row.
    pub discovery_attempts_max: u32,
    /// PeerEvent frames a replication stream may have in flight before the receiver returns
    /// credit: bounds what a receiving node buffers for one peer (at most this many frames
    /// of `wire.frame_size_max`).
    pub peer_credit_window: u32,
    /// The wait before redialing a member after its first failed dial; it doubles (with
    /// jitter) per failure up to `dial_backoff_max`.
    pub dial_backoff_initial: Duration,
    /// The longest wait between dials of a member that keeps failing.
    pub dial_backoff_max: Duration,
    /// An outbound peer connect that has not completed in this time counts as failed.
    pub connect_timeout: Duration,
    /// Every produce is acknowledged only once this many members (this node counts) hold
    /// its events durably; a connection may ask for more (SetReplicas). 1 to the number of
    /// members configured (1 + `peer_addrs`).
    pub min_replicas: u8,
    /// A produce waiting for replicas gets ReplicationTimeout after this time (its events
    /// stay appended and keep replicating).
    pub replication_timeout: Duration,
    /// An id-order subscription holds at most this many bytes of events that wait for the
    /// cluster's clocks to pass them (its reorder buffer); past it, the events with the
    /// largest ids are dropped from memory and read again from the log later.
    pub order_buffer_bytes_max: usize,
    /// An id-order subscription whose next event has waited this long for the cluster's
    /// clocks (a member is down or cut off) is ended with OrderStalled.
    pub order_stall_timeout: Duration,
    /// Failed PeerProofs from one IP address within `peer_proof_failure_window`: past it, a
    /// PeerHello from that address is refused (`AuthFailed`) without a nonce until the window
    /// ends (docs/security.md).
    pub peer_proof_failures_max: u32,
    /// The window of `peer_proof_failures_max`, from an address's first failed proof.
    pub peer_proof_failure_window: Duration,
    /// Addresses whose failed proofs are counted at once; a new one past it takes the place of
    /// the one whose window started first.
    pub peer_proof_failure_addresses_max: usize,
    /// Whether purges from peers (PeerPurge) are merged here (`--peer-purges`).
    pub peer_purges: PeerPurges,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            peer_addrs: Vec::new(),
            secret: None,
            peer_ca_pem: None,
            advertise_addr: None,
            catch_up_timeout: Duration::from_secs(30),
            empty_dir_catch_up_timeout: None,
            actors_max: 1024,
            members_max: 64,
            // 2^48 events is nine years at a million events a second, so no real cluster is
            // this far apart, and an absurd peer can push the counter at most 65,536 times
            // before produces are refused (they never wrap).
            peer_counter_ahead_max: 1 << 48,
            // Each `cluster remove` or `cluster add` raises a member's version by one, so a
            // node falls this far behind only if a member was removed and added back 65,536
            // times while it was away; a hostile peer needs 2^48 accepted records to reach
            // the end of the range.
            membership_version_ahead_max: 1 << 16,
            discovery_attempts_max: 10,
            peer_credit_window: 1024,
            dial_backoff_initial: Duration::from_millis(100),
            dial_backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            min_replicas: 1,
            replication_timeout: Duration::from_secs(5),
            order_buffer_bytes_max: 1024 * 1024,
            order_stall_timeout: Duration::from_secs(30),
            peer_proof_failures_max: 5,
            peer_proof_failure_window: Duration::from_secs(60),
            peer_proof_failure_addresses_max: 1024,
            peer_purges: PeerPurges::Accept,
        }
    }
}

/// Namespaces as streams (protocol.md section 6): conditional and idempotent produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLimits {
    /// Namespaces whose newest id the engine remembers for conditional produces (a check of
    /// one not remembered asks the namespace index); past it, the memory is emptied at the
    /// end of the turn.
    pub last_ids_max: usize,
    /// Idempotent producers whose recent acks are kept; past it, the one unused longest is
    /// forgotten (its retries would be stored again).
    pub producers_max: usize,
    /// Acks kept per idempotent producer: a retried produce at most this many produces old
    /// gets its original ack; an older one gets `SequenceUnknown`.
    pub producer_window: usize,
    /// Namespaces one `Namespaces` reply lists at most (`flo-client namespaces` pages through
    /// the rest); a listing keeps this many + 1 candidates in memory while it runs.
    pub namespaces_per_reply_max: usize,
    /// Events one trace lists at most (ancestors, the event, descendants); past it the trace
    /// ends marked truncated. Bounds a trace's memory (the ids seen and the level waiting).
    pub trace_events_max: usize,
    /// Generations a trace follows up (ancestors) and down (descendants).
    pub trace_depth_max: u16,
    /// Entries one Trace frame carries at most (a trace is sent in several frames).
    pub trace_events_per_reply_max: usize,
}

impl Default for StreamLimits {
    fn default() -> StreamLimits {
        StreamLimits {
            last_ids_max: 64 * 1024,
            producers_max: 1024,
            producer_window: 256,
            namespaces_per_reply_max: 100,
            trace_events_max: 10_000,
            trace_depth_max: 1_000,
            trace_events_per_reply_max: 1_000,
        }
    }
}

/// Consumer groups (docs/consumers.md): how many, how large, and the defaults a JoinGroup
/// gets when it leaves a setting at 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLimits {
    /// Groups the server keeps; a JoinGroup that would create one more is refused.
    pub groups_max: usize,
    /// With an auth file: groups one principal may have created (its own, as the group
    /// journal records them); a JoinGroup by that principal that would create one more is
    /// refused with GroupQuotaExceeded. Groups created without an auth file have no owner and
    /// count toward no principal.
    pub per_principal_max: usize,
    /// The longest group name, in bytes.
    pub name_length_max: u32,
    /// Ack time-out of a group whose creation does not set one.
    pub ack_timeout_default: Duration,
    /// The longest ack time-out a group may have (an explicit create or update asking for
    /// more is refused, a creating join's is lowered to it).
    pub ack_timeout_max: Duration,
    /// Deliveries before parking, for a join that does not set it.
    pub max_deliveries_default: u16,
    /// Unacknowledged events per member, for a join that does not set it.
    pub in_flight_default: u32,
    /// The most unacknowledged events one member may ask to hold.
    pub in_flight_max: u32,
    /// Acknowledged offsets a group keeps above its floor (the oldest event still pending):
    /// at this many the group delivers no new events until the floor moves (the old event is
    /// acknowledged, or parked after its redeliveries).
    pub ack_window_max: usize,
    /// The memory all groups together may hold in pending entries (about
    /// `GROUP_PENDING_ENTRY_BYTES` each) and acknowledged offsets above their floors (about
    /// `GROUP_ACKED_ENTRY_BYTES` each): at this many bytes no group delivers a new event until
    /// acknowledgements free memory (redeliveries go on).
    pub memory_max: u64,
    /// Parked events a group lists; past it the event is redelivered instead (logged).
    pub parked_max: usize,
    /// Parked events one Parked reply lists (a longer list is read a page at a time), and the
    /// ids one GroupAdmin replay of chosen parked events may name.
    pub parked_list_max: usize,
    /// The group journal is compacted (rewritten as a snapshot) when it passes this size and
    /// four times the size of the snapshot.
    pub journal_compact_bytes: u64,
    /// Entries of the snapshot a compaction writes per loop turn (a record each, an
    /// acknowledged offset each, a pending event looked at each): the compaction goes on over
    /// as many turns as it needs, so that no turn stalls on it (attack round 5 F2). At least 16.
    pub journal_compact_entries_per_turn: usize,
    /// Due timers (ack time-outs and ends of nack delays) handled per turn, over all groups:
    /// the rest wait for the next turns (the reactor keeps turning while any is due), so
    /// time-outs made to fall due together cannot stall a turn (attack round 9: 1.1 million
    /// of them, each parking its event and journaling a Park record, held a bystander's
    /// produce 2.6 s at load 9, 13 s at load 15). At least 1.
    pub expiries_per_turn_max: usize,
    /// Members one GroupsDetail reply lists for a group (a group may have more; its member
    /// count says how many).
    pub members_listed_max: usize,
    /// Under `--fsync always`: the journal's fdatasync of records no answer waits for (Ack,
    /// Floor, Deliveries) is asked for at most once in this time (the first at once, the
    /// rest with the next one due, started after the turn's log fdatasync), so that acks do
    /// not add a second device flush to every event beside the log's (issue 12, run P).
    /// Records an answer waits for (Create, Reset, Delete, Replay, Park) are synced at once.
    /// Zero: every turn's records are synced at once. At most 1 s.
    pub ack_sync_interval: Duration,
}

impl Default for GroupLimits {
    fn default() -> GroupLimits {
        GroupLimits {
            groups_max: 1024,
            per_principal_max: 64,
            name_length_max: 255,
            ack_timeout_default: Duration::from_secs(30),
            ack_timeout_max: Duration::from_secs(24 * 60 * 60),
            max_deliveries_default: 10,
            in_flight_default: 1000,
            in_flight_max: 100_000,
            ack_window_max: 1 << 18,
            memory_max: 256 * 1024 * 1024,
            parked_max: 100_000,
            parked_list_max: 1000,
            journal_compact_bytes: 64 * 1024 * 1024,
            journal_compact_entries_per_turn: 4096,
            expiries_per_turn_max: 4096,
            members_listed_max: 100,
            ack_sync_interval: Duration::from_millis(100),
        }
    }
}

/// The Prometheus endpoint (`--metrics-addr`): a second listener that answers `GET /metrics`
/// over HTTP/1.1 and nothing else. Its connections are bounded like client connections: a count,
/// a request size and one deadline for the whole exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where to listen; `None` (the default): no endpoint.
    pub addr: Option<SocketAddr>,
    /// HTTP connections open at once; more are closed as soon as they are accepted.
    pub connections_max: usize,
    /// The longest request head (request line and headers), in bytes; past it the answer is
    /// 431 and the connection closes.
    pub request_size_max: usize,
    /// A connection must send its whole request head within this time of being accepted, and
    /// take its whole response within this time of it being ready; else it is closed.
    pub request_timeout: Duration,
    /// The engine's figures (connections, subscriptions, the id-order block, groups, peers)
    /// are gathered at most once per this interval; scrapes in between get the same ones
    /// (the endpoint's own counters and the process figures are always current). Gathering
    /// visits every subscription: attack round 9 measured 33 ms a scrape beside 4000
    /// connections of 64 subscriptions, and 16 scrapers held a bystander's produce 2.4 s.
    /// 0: every scrape gathers them. At most 60 s.
    pub snapshot_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig {
            addr: None,
            connections_max: 16,
            request_size_max: 8 * 1024,
            request_timeout: Duration::from_secs(5),
            snapshot_interval: Duration::from_secs(1),
        }
    }
}

/// The server's TLS identity for client connections: a certificate chain and its private key,
/// both PEM, as read from `--tls-cert` and `--tls-key` (the reactor parses them at start-up).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPem {
    /// One or more `CERTIFICATE` blocks, the server's own first.
    pub cert_chain_pem: Vec<u8>,
    /// One PKCS#8, PKCS#1 or SEC1 private key block.
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for TlsPem {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPem")
            .field(
                "cert_chain_pem",
                &format_args!("{} bytes", self.cert_chain_pem.len()),
            )
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The address to listen on (unused by `Server::start_with_listener`).
    pub bind: SocketAddr,
    /// This node's actor id, unique in its cluster: the second part of every id it gives.
    pub actor_id: ActorId,
    /// The log.
    pub storage: StorageConfig,
    /// The protocol limits a client must respect.
    pub wire: WireLimits,
    /// Clustering.
    pub cluster: ClusterConfig,
    /// Connections open at once; at the limit new ones get a `ResourceLimit` error frame.
    pub connections_max: usize,
    /// A connection must finish its handshake within this time.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed (clients send pings); zero
    /// disables the idle time-out.
    pub idle_timeout: Duration,
    /// A connection the server closes keeps this long to deliver what it is owed (replies to
    /// the frames before the bad one, then the closing Error) and to see the client close; it
    /// still counts toward `connections_max` meanwhile, and what it is owed toward
    /// `connections_memory_max`.
    pub linger_timeout: Duration,
    /// What a connection the server closed may still send while it lingers: its input is
    /// read and discarded (closing a socket with unread input makes the kernel send a reset,
    /// and the peer can lose the replies it is owed), but past this many bytes it is closed at
    /// once, so a peer that keeps sending costs bounded reads, not `linger_timeout` of them.
    pub linger_discard_bytes_max: u64,
    /// On shutdown, one deadline for every connection to receive its last acks and the
    /// ShuttingDown error; connections still owed bytes at the deadline are cut.
    pub shutdown_timeout: Duration,
    /// A connection whose unsent output (with the replies held for the turn's sync) reaches
    /// this many bytes is not fed more events and its input is not read until the output
    /// drains below half of it.
    pub send_buffer_high_water: usize,
    /// A connection whose unsent output passes this many bytes is closed (`ResourceLimit`).
    /// A backstop behind the high-water mark, which normally keeps output far below it.
    pub output_bytes_hard_max: usize,
    /// A connection whose input buffer, unsent output, held replies and subscriptions' state
    /// together pass this many bytes is closed (`ResourceLimit`).
    pub connection_memory_max: usize,
    /// What all connections together may hold (input buffers, unsent output, held replies and
    /// subscriptions' state), as Redis's `maxmemory-clients`: an event is not fed to a
    /// consumer while it would take the total past this (it waits until output drains), and
    /// while the total is still over it the connection holding the most is closed
    /// (`ResourceLimit`), until it is under. The owed output of connections the server closed
    /// counts too while they linger (`linger_timeout`): over the limit, the reactor cuts the
    /// lingering ones holding the most first.
    pub connections_memory_max: usize,
    /// The largest frame accepted before the handshake, other than a PeerHello.
    pub hello_frame_size_max: u32,
    /// The largest peer handshake frame accepted (PeerHello, PeerWelcome, PeerProof,
    /// PeerAccept; the last two carry a version vector and a member list).
    pub peer_hello_frame_size_max: u32,
    /// A frame whose first byte arrived must be complete within this time.
    pub frame_timeout: Duration,
    /// The most version-vector entries a Subscribe's start cursor may have.
    pub cursor_entries_max: u32,
    /// At most this many bytes are read from one connection per reactor turn, so one busy
    /// client cannot starve the others.
    pub read_bytes_per_turn_max: usize,
    /// At most this many bytes are read from all connections together per reactor turn,
    /// shared fairly among the readable ones (rotating where the turn starts), so a turn's
    /// work does not grow with the number of busy clients and a bystander's request waits at
    /// most one bounded turn.
    pub read_bytes_per_turn_total_max: usize,
    /// At most this many frames are decoded from all connections together per reactor turn
    /// (a batch counts as its events), shared fairly among the readable ones like
    /// `read_bytes_per_turn_total_max`. Bytes alone do not bound a turn's work: 4 MiB of
    /// 13-byte Pings is 320,000 frames and as many replies. Frames past a connection's share
    /// wait in its input buffer, and its socket is not read until they are decoded.
    pub frames_per_turn_total_max: usize,
    /// Log records one reactor turn may look at while feeding consumers, over all of them.
    pub records_per_turn_max: u64,
    /// Bytes of log records (namespace and data) one reactor turn may look at while feeding
    /// consumers, over all of them; the rest waits for the next turn, so a catch-up reader on
    /// cold segments cannot hold up the turn's acknowledgements for long.
    pub feed_bytes_per_turn_max: u64,
    /// Glob matching one reactor turn may do, in the matcher's word operations as
    /// `NamespaceGlob::match_cost` counts them, for waking tail subscriptions and again for
    /// feeding consumers; the rest waits for the next turn.
    pub match_steps_per_turn_max: u64,
    /// Subscriptions one connection may hold at once.
    pub subscriptions_per_connection_max: u32,
    /// Events one batch produce may carry.
    pub batch_events_max: usize,
    /// With an identity, the listener speaks TLS from the first byte (protocol.md, "Transport
    /// security"); without, plaintext.
    pub tls: Option<TlsPem>,
    /// With a table (`--auth-file`), Hello must carry a principal's token and every produce,
    /// subscribe and status request is checked against its permissions; without, every client
    /// may do everything (docs/security.md).
    pub auth: Option<Arc<AuthTable>>,
    /// Failed handshakes (a token the auth table refuses) accepted per second from one source
    /// address; past it, every Hello from that address is refused with AuthFailed until its
    /// second ends, so a token guesser gets at most this many guesses a second per address.
    pub auth_failures_per_second_max: u32,
    /// Source addresses (IPv4 addresses, IPv6 /64s) whose failed handshakes are counted
    /// apart, so that `auth_failures_per_second_max` holds up only the address that failed;
    /// while this many addresses failed within the same second, the failures of any other
    /// share one count.
    pub auth_failure_sources_max: usize,
    /// A connection refused at `connections_max` keeps this long to deliver its error frame.
    pub refused_linger_timeout: Duration,
    /// Refused connections that may linger at once; past it the listener pauses until they
    /// are gone, so a connection flood costs bounded sockets.
    pub refused_lingering_max: usize,
    /// How often the engine checks time-outs and retention when nothing else happens (under
    /// `--fsync interval:<ms>`, at least that often, so a due fsync runs).
    pub housekeeping_interval: Duration,
    /// The shortest time between two checks of the connections' time-outs (idle, handshake,
    /// frame). Each check walks every connection and notes the earliest deadline left, and the
    /// next check comes at that deadline but never sooner than this after the last one: a
    /// time-out closes its connection between its deadline and this much later (protocol.md
    /// section 10), and clients that keep moving their deadlines cost at most one walk of the
    /// connections per interval.
    pub timeout_check_interval_min: Duration,
    /// The scheduler slice the reactor thread asks the kernel for (Linux 6.12 and later: see
    /// `reactor/sched.rs`; clamped by the kernel to 0.1-100 ms): a short one lets the thread run
    /// sooner after it wakes when other threads compete for the cores. Zero (the default): the
    /// kernel's default; on a quiet host a short slice makes the woken reactor preempt clients
    /// that share its cores (BENCHMARKS.md, issue 12 runs L and M).
    pub reactor_slice: Duration,
    /// After a turn that wrote to a socket, the reactor polls without sleeping for up to this
    /// long (never past the turn's own poll time-out) before it blocks in `epoll_wait`, so that
    /// a peer's quick answer (a group member's ack of the event just sent) finds it awake
    /// instead of paying a cross-CPU wake-up of it inside its send (reactor/spin.rs; issue 12,
    /// BENCHMARKS.md run U). Zero: never.
    pub reactor_spin: Duration,
    /// At most this much polling of `reactor_spin` per second of wall time, whatever the
    /// traffic: the CPU it may cost.
    pub reactor_spin_per_second_max: Duration,
    /// Past this many distinct namespaces appended in one turn, every waiting tail
    /// subscription is woken instead of each namespace being matched against its glob: the
    /// matching costs at most this many glob runs per subscription per turn.
    pub turn_namespaces_matched_max: usize,
    /// Distinct globs with a wildcard in their first and in their last segment (`/**`,
    /// `/*/x*`) that tail subscriptions may hold at once, server-wide: the tail index cannot
    /// file them by a literal segment, so every turn matches each of them (once, however many
    /// subscriptions share it) against its namespaces. A Subscribe with another one is refused
    /// with `TooManySubscriptions` (attack round 12).
    pub unindexed_globs_max: usize,
    /// Consumer groups.
    pub groups: GroupLimits,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Conditional and idempotent produce.
    pub streams: StreamLimits,
}

impl Config {
    /// The defaults, listening on `bind` with the data in `data_dir`.
    pub fn new(bind: SocketAddr, data_dir: PathBuf) -> Config {
        Config {
            bind,
            actor_id: ActorId(1),
            storage: StorageConfig::new(data_dir),
            wire: WireLimits::default(),
            cluster: ClusterConfig::default(),
            connections_max: 4096,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            linger_timeout: Duration::from_secs(5),
            linger_discard_bytes_max: 16 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(5),
            send_buffer_high_water: 1024 * 1024,
            output_bytes_hard_max: 16 * 1024 * 1024,
            connection_memory_max: 32 * 1024 * 1024,
            // 1 GiB: a fixed figure an operator can reason about (a fraction of RAM would
            // differ between a laptop and a container whose limit /proc does not show); it is
            // 32 connections at their own limit, and far more at what connections really hold.
            connections_memory_max: 1024 * 1024 * 1024,
            hello_frame_size_max: 4096,
            peer_hello_frame_size_max: 256 * 1024,
            frame_timeout: Duration::from_secs(10),
            cursor_entries_max: 1024,
            read_bytes_per_turn_max: 1024 * 1024,
            read_bytes_per_turn_total_max: 4 * 1024 * 1024,
            frames_per_turn_total_max: 16 * 1024,
            records_per_turn_max: 64 * 1024,
            feed_bytes_per_turn_max: 1024 * 1024,
            match_steps_per_turn_max: 8 * 1024 * 1024,
            subscriptions_per_connection_max: 64,
            batch_events_max: 10_000,
            tls: None,
            auth: None,
            auth_failures_per_second_max: 20,
            auth_failure_sources_max: 1024,
            refused_linger_timeout: Duration::from_secs(1),
            refused_lingering_max: 64,
            housekeeping_interval: Duration::from_secs(1),
            timeout_check_interval_min: Duration::from_millis(10),
            reactor_slice: Duration::ZERO,
            reactor_spin: Duration::from_micros(100),
            reactor_spin_per_second_max: Duration::from_millis(50),
            turn_namespaces_matched_max: 64,
            unindexed_globs_max: 1024,
            groups: GroupLimits::default(),
            metrics: MetricsConfig::default(),
            streams: StreamLimits::default(),
        }
    }

    /// Checks that the limits fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.actor_id.0 == 0 {
            return Err("actor id must be between 1 and 65535".into());
        }
        if self.connections_max == 0 {
            return Err("max connections must be at least 1".into());
        }
        if self.cluster.secret.as_deref() == Some("") {
            // The engine takes an empty secret for none: every dialer's proof would pass.
            return Err(EMPTY_CLUSTER_SECRET.into());
        }
        if self.cluster.peer_ca_pem.is_some() && self.tls.is_none() {
            // Peers dial the port with TLS only when this node speaks TLS itself.
            return Err("a peer CA (--peer-ca) needs a TLS identity (--tls-cert)".into());
        }
        if self.auth_failures_per_second_max == 0 {
            return Err("auth failures per second must be at least 1".into());
        }
        if self.auth_failure_sources_max == 0 {
            return Err("auth failure sources must be at least 1".into());
        }
        let wire = &self.wire;
        if wire.namespace_length_max == 0 || wire.namespace_length_max > u32::from(u16::MAX) {
            return Err(
                "namespace length limit must be between 1 and 65535 (a u16 on the wire)".into(),
            );
        }
        if wire.glob_length_max < wire.namespace_length_max
            || wire.glob_length_max > u32::from(u16::MAX)
        {
            return Err(format!(
                "glob length limit must be between the namespace length limit ({}) and 65535, \
                 so that every namespace can be named by a glob",
                wire.namespace_length_max
            ));
        }
        let event_frame_size_min =
            wire.event_data_size_max as u64 + wire.namespace_length_max as u64 + 128;
        if (wire.frame_size_max as u64) < event_frame_size_min {
            return Err(format!(
                "frame size limit {} cannot hold a maximal event ({} bytes)",
                wire.frame_size_max, event_frame_size_min
            ));
        }
        self.validate_timeouts()?;
        if self.handshake_timeout.is_zero() {
            return Err("the handshake time-out must be positive".into());
        }
        if self.shutdown_timeout.is_zero() {
            return Err("the shutdown time-out must be positive".into());
        }
        if self.storage.segment_size_max < 4096 {
            return Err("segment size must be at least 4096 bytes".into());
        }
        // A record takes at least 44 bytes, so a segment's relative offsets fit a u32 (the
        // namespace index stores them so) with this bound.
        if self.storage.segment_size_max > 1 << 37 {
            return Err("segment size must be at most 128 GiB".into());
        }
        if self.storage.open_files_max > OPEN_FILES_MAX {
            return Err(format!(
                "storage open files must be at most {OPEN_FILES_MAX}"
            ));
        }
        if !(1..=1_000_000).contains(&self.storage.namespace_segments_per_query_max) {
            return Err("namespace segments per query must be between 1 and 1000000".into());
        }
        self.validate_purge_bounds()?;
        if self.send_buffer_high_water == 0
            || self.read_bytes_per_turn_max == 0
            || self.read_bytes_per_turn_total_max == 0
            || self.frames_per_turn_total_max == 0
            || self.records_per_turn_max == 0
            || self.feed_bytes_per_turn_max == 0
            || self.match_steps_per_turn_max == 0
            || self.subscriptions_per_connection_max == 0
            || self.batch_events_max == 0
        {
            return Err("buffer limits must be positive".into());
        }
        let cluster = &self.cluster;
        if cluster.actors_max < 2 || cluster.actors_max > usize::from(u16::MAX) {
            return Err("the actor limit must be between 2 and 65535".into());
        }
        if cluster.members_max == 0 || cluster.members_max >= cluster.actors_max {
            return Err("the member limit must be at least 1 and below the actor limit".into());
        }
        if cluster.peer_counter_ahead_max == 0
            || cluster.discovery_attempts_max == 0
            || cluster.membership_version_ahead_max == 0
        {
            return Err("cluster limits must be positive".into());
        }
        if cluster.membership_version_ahead_max > 1 << 48 {
            return Err("cluster.membership_version_ahead_max must be at most 2^48".into());
        }
        let window_max = crate::protocol::PEER_CREDIT_WINDOW_MAX;
        if cluster.peer_credit_window == 0 || cluster.peer_credit_window > window_max {
            return Err(format!(
                "the peer credit window must be between 1 and {window_max} frames"
            ));
        }
        if cluster.dial_backoff_initial.is_zero()
            || cluster.dial_backoff_max < cluster.dial_backoff_initial
        {
            return Err(
                "the dial back-off must be positive and its maximum at least its initial wait"
                    .into(),
            );
        }
        if cluster.connect_timeout.is_zero() {
            return Err("the connect time-out must be positive".into());
        }
        let members = cluster.peer_addrs.len().saturating_add(1);
        if cluster.min_replicas == 0 || usize::from(cluster.min_replicas) > members {
            return Err(format!(
                "--min-replicas must be between 1 and the number of members configured ({members}: this node and its --peer-addr)"
            ));
        }
        if cluster.replication_timeout.is_zero() {
            return Err("the replication time-out must be positive".into());
        }
        if cluster.order_buffer_bytes_max == 0
            || cluster.order_buffer_bytes_max > self.connection_memory_max
        {
            return Err(
                "the order buffer size must be positive and at most the connection memory limit"
                    .into(),
            );
        }
        if cluster.order_stall_timeout.is_zero() {
            return Err("the order stall time-out must be positive".into());
        }
        if cluster.peer_proof_failures_max == 0
            || cluster.peer_proof_failure_window.is_zero()
            || !(1..=1 << 20).contains(&cluster.peer_proof_failure_addresses_max)
        {
            return Err(
                "the failed peer proof limit and its window must be positive, and the addresses \
                 counted between 1 and 1048576"
                    .into(),
            );
        }
        self.validate_turn_bounds()?;
        self.validate_connection_bounds()?;
        self.validate_metrics()
    }

    /// Checks the bounds of the metrics endpoint's connections.
    fn validate_purge_bounds(&self) -> Result<(), String> {
        let storage = &self.storage;
        if !(1..=65_535).contains(&storage.purge_rules_max) {
            return Err("max purge rules must be between 1 and 65535".into());
        }
        if !(1..=16 * 1024 * 1024).contains(&storage.purge_glob_bytes_max) {
            return Err("max purge glob bytes must be between 1 and 16777216".into());
        }
        if !(1..=100_000_000).contains(&storage.purged_namespaces_max) {
            return Err("max purged namespaces must be between 1 and 100000000".into());
        }
        if storage.reclaim_records_per_call_max == 0 {
            return Err("reclaim records per call must be positive".into());
        }
        if storage.reclaim_match_steps_per_call_max == 0 {
            return Err("reclaim match steps per call must be positive".into());
        }
        if storage.namespace_retention.len() > NAMESPACE_RETENTION_RULES_MAX {
            return Err(format!(
                "at most {NAMESPACE_RETENTION_RULES_MAX} retention rules (--retention-rule)"
            ));
        }
        let glob_max = self.wire.glob_length_max as usize;
        let reply_size_max = crate::protocol::PURGES_FRAME_EMPTY_SIZE
            + storage.purge_rules_max * (crate::protocol::PURGE_RULE_FIXED_SIZE + glob_max)
            + storage.namespace_retention.len()
                * (crate::protocol::RETENTION_INFO_FIXED_SIZE + glob_max);
        if reply_size_max > self.wire.frame_size_max as usize {
            return Err(format!(
                "max purge rules {} with globs up to {glob_max} bytes make a Purges reply larger than the frame size limit",
                storage.purge_rules_max
            ));
        }
        for rule in &storage.namespace_retention {
            if rule.glob.len() > self.wire.glob_length_max as usize {
                return Err(format!(
                    "retention rule {rule}: the glob is longer than the glob length limit"
                ));
            }
            crate::protocol::NamespaceGlob::new(&rule.glob)
                .map_err(|error| format!("retention rule {rule}: {error}"))?;
            if rule.keep_ms == 0 {
                return Err(format!("retention rule {rule}: keep must be positive"));
            }
        }
        Ok(())
    }

    fn validate_metrics(&self) -> Result<(), String> {
        let metrics = &self.metrics;
        if !(1..=1024).contains(&metrics.connections_max) {
            return Err("the metrics connection limit must be between 1 and 1024".into());
        }
        if !(256..=1024 * 1024).contains(&metrics.request_size_max) {
            return Err("the metrics request size limit must be between 256 bytes and 1M".into());
        }
        if metrics.request_timeout.is_zero() {
            return Err("the metrics request time-out must be positive".into());
        }
        if metrics.snapshot_interval > Duration::from_secs(60) {
            return Err("metrics.snapshot_interval must be at most 60 s".into());
        }
        if metrics
            .addr
            .is_some_and(|addr| addr == self.bind && addr.port() != 0)
        {
            return Err("the metrics address must differ from the client address".into());
        }
        Ok(())
    }

    /// Every time-out and wait is at most `TIMEOUT_MAX`.
    fn validate_timeouts(&self) -> Result<(), String> {
        let cluster = &self.cluster;
        let timeouts = [
            ("--frame-timeout", self.frame_timeout),
            ("--handshake-timeout", self.handshake_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--linger-timeout", self.linger_timeout),
            ("--shutdown-timeout", self.shutdown_timeout),
            ("refused_linger_timeout", self.refused_linger_timeout),
            ("--catch-up-timeout", cluster.catch_up_timeout),
            ("--dial-backoff-initial", cluster.dial_backoff_initial),
            ("--dial-backoff-max", cluster.dial_backoff_max),
            ("--connect-timeout", cluster.connect_timeout),
            ("--replication-timeout", cluster.replication_timeout),
            ("--order-stall-timeout", cluster.order_stall_timeout),
            (
                "cluster.peer_proof_failure_window",
                cluster.peer_proof_failure_window,
            ),
            ("--metrics-timeout", self.metrics.request_timeout),
        ];
        for (name, timeout) in timeouts {
            if timeout > TIMEOUT_MAX {
                return Err(format!(
                    "{name} {} is longer than the 365 days any time-out may be{}",
                    crate::units::format_duration_ms(crate::engine::millis(timeout)),
                    if name == "--idle-timeout" {
                        " (0s turns the idle time-out off)"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(())
    }

    /// Checks the reactor's and the engine's per-turn timings and budgets.
    fn validate_turn_bounds(&self) -> Result<(), String> {
        if self.refused_linger_timeout.is_zero() || self.refused_lingering_max == 0 {
            return Err(
                "the refused connections' linger time-out and count must be positive".into(),
            );
        }
        if self.housekeeping_interval.is_zero()
            || self.housekeeping_interval > Duration::from_secs(60)
        {
            return Err("the housekeeping interval must be between 1ms and 60s".into());
        }
        if self.timeout_check_interval_min.is_zero()
            || self.timeout_check_interval_min > Duration::from_secs(1)
        {
            return Err(
                "the shortest time between time-out checks must be between 1ms and 1s".into(),
            );
        }
        if self.reactor_slice > Duration::from_millis(100) {
            return Err("the reactor's scheduler slice may be at most 100ms (100000 us)".into());
        }
        if self.reactor_spin > Duration::from_millis(1) {
            return Err("the reactor's polling after a turn may be at most 1ms (1000 us)".into());
        }
        if self.reactor_spin_per_second_max > Duration::from_millis(500) {
            return Err("the reactor's polling per second may be at most 500ms".into());
        }
        if self.turn_namespaces_matched_max == 0 {
            return Err("the namespaces matched per turn must be at least 1".into());
        }
        if self.unindexed_globs_max == 0 {
            return Err("the distinct globs with wildcards at both ends must be at least 1".into());
        }
        let streams = &self.streams;
        if streams.last_ids_max == 0 || streams.producers_max == 0 || streams.producer_window == 0 {
            return Err(
                "the stream limits (last ids, producers, producer window) must be positive".into(),
            );
        }
        if !(1..=1_000_000).contains(&streams.trace_events_max)
            || !(1..=10_000).contains(&streams.trace_depth_max)
            || !(1..=10_000).contains(&streams.trace_events_per_reply_max)
        {
            return Err(
                "streams.trace_events_max must be 1..=1000000, trace_depth_max and \
                 trace_events_per_reply_max 1..=10000"
                    .into(),
            );
        }
        if !(1..=10_000).contains(&streams.namespaces_per_reply_max) {
            return Err("streams.namespaces_per_reply_max must be between 1 and 10000".into());
        }
        let groups = &self.groups;
        if groups.groups_max == 0
            || groups.per_principal_max == 0
            || groups.name_length_max == 0
            || groups.name_length_max > u32::from(u16::MAX)
            || groups.ack_timeout_default.is_zero()
            || groups.max_deliveries_default == 0
            || groups.in_flight_default == 0
            || groups.in_flight_max < groups.in_flight_default
            || groups.ack_timeout_max < groups.ack_timeout_default
            || groups.ack_timeout_max.as_millis() > u128::from(u32::MAX)
            || groups.ack_window_max == 0
            || groups.memory_max == 0
            || groups.expiries_per_turn_max == 0
            || groups.ack_sync_interval > Duration::from_secs(1)
        {
            return Err(
                "group limits must be positive (name length at most 65535, the in-flight and \
                 ack time-out maxima at least their defaults, the ack time-out maximum at most \
                 4294967295 ms, the ack sync interval at most 1 s)"
                    .into(),
            );
        }
        if groups.groups_max > 100_000 {
            // The client's listing keeps at most this many (`client::GROUPS_LISTED_MAX`).
            return Err("groups.groups_max must be at most 100000".into());
        }
        if groups.journal_compact_entries_per_turn < 16 {
            return Err(format!(
                "groups.journal_compact_entries_per_turn must be at least 16 (a group's \
                 Create, Settings and Floor must fit a turn's share), not {}",
                groups.journal_compact_entries_per_turn
            ));
        }
        // A Parked reply of `parked_list_max` events, and a Groups reply of one group with the
        // longest name and glob, fit one frame.
        let frame_size_max = self.wire.frame_size_max as usize;
        let parked_reply_max = crate::protocol::PARKED_FRAME_EMPTY_SIZE
            + groups.name_length_max as usize
            + groups.parked_list_max * crate::protocol::PARKED_ENTRY_SIZE;
        if groups.parked_list_max == 0
            || groups.parked_list_max > usize::from(u16::MAX)
            || parked_reply_max > frame_size_max
        {
            return Err(format!(
                "the parked events per reply must be between 1 and 65535 and fit a frame \
                 ({parked_reply_max} bytes for {}; the frame size limit is {frame_size_max})",
                groups.parked_list_max
            ));
        }
        let group_info_max = crate::protocol::GROUPS_FRAME_EMPTY_SIZE
            + crate::protocol::GROUP_INFO_FIXED_SIZE
            + groups.name_length_max as usize
            + self.wire.glob_length_max as usize;
        if group_info_max > frame_size_max {
            return Err(format!(
                "a Groups reply of one group ({group_info_max} bytes with the longest name and \
                 glob) must fit the frame size limit {frame_size_max}"
            ));
        }
        // A GroupsDetail reply of one group with the longest name and glob and
        // `members_listed_max` members with the longest connection text fits one frame.
        let detail_max = group_info_max
            + crate::protocol::GROUP_DETAIL_EXTRA_SIZE
            + groups.members_listed_max
                * (crate::protocol::GROUP_MEMBER_FIXED_SIZE
                    + crate::protocol::GROUP_MEMBER_CONNECTION_TEXT_MAX);
        if groups.members_listed_max == 0
            || groups.members_listed_max > 10_000
            || detail_max > frame_size_max
        {
            return Err(format!(
                "groups.members_listed_max must be between 1 and 10000 and a GroupsDetail reply \
                 of one group must fit a frame ({detail_max} bytes for {}; the frame size limit \
                 is {frame_size_max})",
                groups.members_listed_max
            ));
        }
        Ok(())
    }

    /// Checks the per-connection bounds against each other and the frame size.
    fn validate_connection_bounds(&self) -> Result<(), String> {
        let frame_size_max = self.wire.frame_size_max as usize;
        // A consumer is fed until its output reaches the high-water mark, and one more event
        // may take it past the mark by a whole frame: that must never reach the hard limit.
        let output_min = self.send_buffer_high_water.saturating_add(frame_size_max);
        if self.output_bytes_hard_max < output_min {
            return Err(format!(
                "max output buffer {} must be at least the send buffer high-water mark plus the frame size limit ({output_min})",
                self.output_bytes_hard_max
            ));
        }
        let memory_min = frame_size_max.saturating_add(self.output_bytes_hard_max);
        if self.connection_memory_max < memory_min {
            return Err(format!(
                "max connection memory {} must be at least the frame size limit plus the max output buffer ({memory_min})",
                self.connection_memory_max
            ));
        }
        if self.connections_memory_max < self.connection_memory_max {
            return Err(format!(
                "max clients memory {} must be at least the max connection memory ({})",
                self.connections_memory_max, self.connection_memory_max
            ));
        }
        // A Hello of the longest client name and auth token a client library sends.
        if self.hello_frame_size_max < 256 || self.hello_frame_size_max > self.wire.frame_size_max {
            return Err(
                "the Hello frame size limit must be between 256 and the frame size limit".into(),
            );
        }
        if self.peer_hello_frame_size_max < self.hello_frame_size_max
            || self.peer_hello_frame_size_max > self.wire.frame_size_max
        {
            return Err("the peer handshake frame size limit must be between the Hello limit and the frame size limit".into());
        }
        // A handshake at the cluster limits (a vector of `actors_max` entries and a member list
        // of `members_max` addresses) must fit the peer handshake frame limit.
        let handshake_max = 2048 + 10 * self.cluster.actors_max + 68 * self.cluster.members_max;
        if handshake_max > self.peer_hello_frame_size_max as usize {
            return Err(format!(
                "the peer handshake frame size limit {} is below a handshake at the actor and member limits ({handshake_max} bytes)",
                self.peer_hello_frame_size_max
            ));
        }
        if self.frame_timeout.is_zero() {
            return Err("frame time-out must be positive".into());
        }
        if self.cursor_entries_max == 0 || self.cursor_entries_max > u32::from(u16::MAX) {
            return Err("cursor entry limit must be between 1 and 65535".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_the_documented_forms() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!("interval:1000".parse(), Ok(FsyncPolicy::IntervalMs(1000)));
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert_eq!(FsyncPolicy::IntervalMs(5).to_string(), "interval:5");
    }

    #[test]
    fn default_config_is_valid_and_bad_limits_are_refused() {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "/tmp/x".into());
        assert_eq!(config.validate(), Ok(()));
        config.wire.frame_size_max = 1024;
        assert!(config.validate().is_err());
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "/tmp/x".into());
        config.wire.glob_length_max = config.wire.namespace_length_max - 1;
        assert!(config.validate().is_err());
        config.wire.glob_length_max = 65536;
        assert!(config.validate().is_err());
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "/tmp/x".into());
        config.groups.parked_list_max = 0;
        assert!(config.validate().is_err());
        config.groups.parked_list_max = 70_000;
        assert!(config.validate().is_err());
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "/tmp/x".into());
        config.groups.journal_compact_entries_per_turn = 15;
        assert!(config.validate().is_err(), "a compaction's share below 16");
        config.groups.journal_compact_entries_per_turn = 16;
        assert_eq!(config.validate(), Ok(()));
        config.groups.expiries_per_turn_max = 0;
        assert!(config.validate().is_err(), "no time-outs handled at all");
        config.groups.expiries_per_turn_max = 1;
        assert_eq!(config.validate(), Ok(()));
        config.groups.ack_sync_interval = Duration::from_millis(1001);
        assert!(
            config.validate().is_err(),
            "acks synced less than once a second"
        );
        config.groups.ack_sync_interval = Duration::ZERO;
        assert_eq!(
            config.validate(),
            Ok(()),
            "every turn's acks synced at once"
        );
    }

    #[test]
    fn connection_bounds_must_fit_together() {
        let valid = Config::new("127.0.0.1:0".parse().unwrap(), "/tmp/x".into());
        let refused = |change: &dyn Fn(&mut Config)| {
            let mut config = valid.clone();
            change(&mut config);
            config.validate().is_err()
        };
        assert!(refused(
            &|c| c.output_bytes_hard_max = c.send_buffer_high_water
        ));
        assert!(refused(
            &|c| c.connection_memory_max = c.output_bytes_hard_max
        ));
        assert!(refused(
            &|c| c.connections_memory_max = c.connection_memory_max - 1
        ));
        assert!(refused(&|c| c.hello_frame_size_max = 16));
        assert!(refused(
            &|c| c.peer_hello_frame_size_max = c.wire.frame_size_max + 1
        ));
        assert!(refused(&|c| c.frame_timeout = Duration::ZERO));
        assert!(refused(&|c| c.cursor_entries_max = 0));
    }

    #[test]
    fn turn_and_peer_limits_are_validated() {
        let valid = Config::new("127.0.0.1:0".parse().unwrap(), "/tmp/x".into());
        let refused = |change: &dyn Fn(&mut Config)| {
            let mut config = valid.clone();
            change(&mut config);
            config.validate().is_err()
        };
        assert!(refused(&|c| c.cluster.peer_credit_window = 0));
        assert!(refused(&|c| c.cluster.peer_credit_window = 65_537));
        assert!(refused(&|c| c.cluster.min_replicas = 0));
        assert!(refused(&|c| c.cluster.min_replicas = 2));
        assert!(refused(&|c| c.cluster.replication_timeout = Duration::ZERO));
        assert!(refused(&|c| c.cluster.order_buffer_bytes_max = 0));
        assert!(refused(&|c| c.cluster.order_stall_timeout = Duration::ZERO));
        assert!(refused(&|c| c.cluster.peer_proof_failures_max = 0));
        assert!(refused(
            &|c| c.cluster.peer_proof_failure_window = Duration::ZERO
        ));
        assert!(refused(&|c| c.cluster.peer_proof_failure_addresses_max = 0));
        assert!(refused(&|c| c.cluster.dial_backoff_initial = Duration::ZERO));
        assert!(refused(&|c| {
            c.cluster.dial_backoff_max = c.cluster.dial_backoff_initial / 2
        }));
        assert!(refused(&|c| c.cluster.connect_timeout = Duration::ZERO));
        assert!(refused(&|c| c.refused_linger_timeout = Duration::ZERO));
        assert!(refused(&|c| c.refused_lingering_max = 0));
        assert!(refused(
            &|c| c.reactor_slice = Duration::from_micros(100_001)
        ));
        assert!(!refused(&|c| c.reactor_slice = Duration::ZERO));
        assert!(refused(&|c| c.reactor_spin = Duration::from_micros(1_001)));
        assert!(!refused(&|c| c.reactor_spin = Duration::ZERO));
        assert!(refused(
            &|c| c.reactor_spin_per_second_max = Duration::from_millis(501)
        ));
        assert!(!refused(&|c| c.reactor_spin_per_second_max = Duration::ZERO));
        assert!(refused(&|c| c.housekeeping_interval = Duration::ZERO));
        assert!(refused(
            &|c| c.housekeeping_interval = Duration::from_secs(61)
        ));
        assert!(refused(&|c| c.timeout_check_interval_min = Duration::ZERO));
        assert!(refused(
            &|c| c.timeout_check_interval_min = Duration::from_millis(1_001)
        ));
        assert!(!refused(
            &|c| c.timeout_check_interval_min = Duration::from_secs(1)
        ));
        assert!(refused(&|c| c.turn_namespaces_matched_max = 0));
        assert!(refused(&|c| c.unindexed_globs_max = 0));
        assert!(refused(&|c| c.storage.namespace_segments_per_query_max = 0));
        assert!(refused(&|c| c.storage.segment_size_max = (1 << 37) + 1));
        assert!(refused(&|c| c.storage.open_files_max = OPEN_FILES_MAX + 1));
    }

    #[test]
    fn metrics_limits_are_validated() {
        let valid = Config::new("127.0.0.1:3000".parse().unwrap(), "/tmp/x".into());
        let refused = |change: &dyn Fn(&mut Config)| {
            let mut config = valid.clone();
            change(&mut config);
            config.validate().is_err()
        };
        assert!(!refused(
            &|c| c.metrics.addr = Some("127.0.0.1:9100".parse().unwrap())
        ));
        assert!(refused(&|c| c.metrics.addr = Some(c.bind)));
        assert!(refused(&|c| c.metrics.connections_max = 0));
        assert!(refused(&|c| c.metrics.request_size_max = 100));
        assert!(refused(&|c| c.metrics.request_timeout = Duration::ZERO));
    }
}
