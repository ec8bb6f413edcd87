//! The `flo` server binary: argument parsing, logging set-up, signals and exit codes around
//! the embedded server (`flo::Server`).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use flo::config::{Config, FsyncPolicy, PeerPurges, Retention, TlsPem};
use flo::event::ActorId;
use flo::units::{parse_duration_ms, parse_size};
use flo::Server;

#[path = "flo/config_file.rs"]
mod config_file;

use config_file::{format_duration_ms, format_size};

#[path = "shared/bounded_file.rs"]
mod bounded_file;
#[path = "shared/clap_error.rs"]
mod clap_error;
use clap_error::one_line;

/// flo: a small, fast, durable event stream server.
#[derive(Parser, Debug)]
#[command(name = "flo", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    tool: Option<Tool>,

    /// Read settings from this TOML file: each key is a long flag name without `--`
    /// (`data-dir = "/var/lib/flo"`, `peer-addr = ["10.0.0.2:3000"]`, `repair` excepted). A flag
    /// on the command line overrides the file's key; an unknown key is an error.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Check the settings (file and flags), print the effective configuration as a TOML file
    /// and exit: 0 when it is valid, 1 when not. Does not open the data directory.
    #[arg(long = "check-config")]
    check_config: bool,

    /// Directory for the event log (created if missing).
    #[arg(short = 'd', long = "data-dir", default_value = ".")]
    data_dir: PathBuf,

    /// TCP port for clients.
    #[arg(short = 'p', long, default_value_t = 3000)]
    port: u16,

    /// Address to listen on. A non-loopback address needs --auth-file (or --insecure-no-auth).
    #[arg(long, default_value = "127.0.0.1", value_parser = parse_bind_addr)]
    bind: IpAddr,

    /// TOML file of principals: hashed tokens and the namespaces each may produce to and
    /// consume from (docs/security.md). With it, every client must present a token.
    #[arg(long = "auth-file", value_name = "FILE")]
    auth_file: Option<PathBuf>,

    /// Allow a non-loopback --bind without --auth-file: anyone who reaches the port may
    /// produce and consume everything (and, with --peer-addr but without a --cluster-secret of
    /// at least 32 bytes, join the cluster as a member).
    #[arg(long = "insecure-no-auth")]
    insecure_no_auth: bool,

    /// Failed handshakes (unknown tokens) accepted per second from one source address (an IPv4
    /// address, an IPv6 /64); past it every Hello from that address is refused until its second
    /// ends, which caps token guessing without locking out other addresses.
    #[arg(long = "max-auth-failures", default_value_t = 20)]
    max_auth_failures: u32,

    /// PEM certificate chain (the server's certificate first): with --tls-key, the port speaks
    /// TLS 1.3 from the first byte and plaintext clients are refused (TlsRequired). A clustered
    /// node dials its peers with TLS too (see --peer-ca). docs/security.md shows a self-signed
    /// set-up for testing.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the --tls-cert certificate.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// PEM certificates to trust for the TLS of peers this node dials (with --tls-cert; each
    /// peer's certificate must name the IP address it is dialed at). Default: the
    /// certificates of --tls-cert.
    #[arg(long = "peer-ca", value_name = "FILE", requires = "tls_cert")]
    peer_ca: Option<PathBuf>,

    /// Bytes of the newest events kept in memory for tailing consumers (K, M, G suffixes).
    #[arg(long = "max-cache-memory", default_value = "64M", value_parser = parse_size)]
    max_cache_memory: u64,

    /// Retention: delete the oldest whole segments once the log holds more events than this.
    #[arg(long = "max-events")]
    max_events: Option<u64>,

    /// Retention: delete the oldest whole segments once the log is larger than this (K, M, G).
    #[arg(long = "max-bytes", value_parser = parse_size)]
    max_bytes: Option<u64>,

    /// Retention: delete whole segments whose newest event is older than this (e.g. 90s, 30m,
    /// 12h, 7d).
    #[arg(long = "max-age", value_parser = parse_duration_ms)]
    max_age: Option<u64>,

    /// Per-namespace retention, as `GLOB keep DURATION` (repeat the flag for more rules; in
    /// the config file a list: `retention-rule = ["/metrics/** keep 7d"]`). Events of matching
    /// namespaces older than DURATION are never delivered again, and a segment holding only
    /// such (or purged) events is deleted (docs/operations.md, "Purge and per-namespace
    /// retention"). At most 64 rules.
    #[arg(long = "retention-rule", value_name = "RULE")]
    retention_rules: Vec<flo::config::NamespaceRetention>,

    /// Purge rules the server keeps at most (`flo-client purge`); a purge of a new glob past
    /// it is refused with PurgeRulesFull. Each rule is checked against every event handed out.
    #[arg(long = "max-purge-rules", default_value_t = 256)]
    max_purge_rules: usize,

    /// Bytes of glob all purge rules may have together; a purge of a new glob past it is
    /// refused with PurgeRulesFull. Bounds what checking one event against every rule costs.
    #[arg(long = "max-purge-glob-bytes", default_value_t = 16 * 1024)]
    max_purge_glob_bytes: usize,

    /// Namespaces whose newest id the server remembers after deleting their purged events
    /// with their segment, so a conditional produce (--expect-last) never sees it go back;
    /// a segment whose deletion would pass it stays on disk. About 100 bytes each.
    #[arg(long = "max-purged-namespaces", default_value_t = 100_000)]
    max_purged_namespaces: usize,

    /// When acknowledged events are on disk: `always` (fdatasync before every ack; the
    /// default), `interval:<ms>` (fdatasync at most every <ms>; a power loss can lose that
    /// window of acknowledged events) or `never` (the OS decides; a power loss can lose any
    /// acknowledged event not yet written back). All three survive a crash of flo itself.
    #[arg(long, default_value = "always")]
    fsync: FsyncPolicy,

    /// Most client connections at once; more are refused with a TooManyConnections error.
    #[arg(long = "max-connections", default_value_t = 4096)]
    max_connections: usize,

    /// A connection whose unread replies pass this size is closed with a ResourceLimit error
    /// (K, M, G). Reading from a client stops long before, at 1M of unread replies.
    #[arg(long = "max-output-buffer", default_value = "16M", value_parser = parse_size)]
    max_output_buffer: u64,

    /// A connection whose buffers and subscriptions together pass this size is closed with a
    /// ResourceLimit error (K, M, G).
    #[arg(long = "max-connection-memory", default_value = "32M", value_parser = parse_size)]
    max_connection_memory: u64,

    /// What all connections together may hold (K, M, G): events wait for consumers' output to
    /// drain instead of passing it, and past it the connection holding the most is closed with
    /// a ResourceLimit error.
    #[arg(long = "max-clients-memory", default_value = "1G", value_parser = parse_size)]
    max_clients_memory: u64,

    /// A frame must arrive whole within this time of its first byte, else the connection is
    /// closed with a Timeout error (e.g. 10s).
    #[arg(long = "frame-timeout", default_value = "10s", value_parser = parse_duration_ms)]
    frame_timeout: u64,
    /// A connection must send Hello within this time (e.g. 10s, 500ms).
    #[arg(long = "handshake-timeout", default_value = "10s", value_parser = parse_duration_ms)]
    handshake_timeout: u64,

    /// A connection that sends nothing (not one byte) for this long is closed with a Timeout
    /// error; 0s disables it. Clients keep a connection open with Ping.
    #[arg(long = "idle-timeout", default_value = "5m", value_parser = parse_duration_ms)]
    idle_timeout: u64,

    /// How long a connection the server closes may take to receive the replies it is owed and
    /// the closing Error (it counts toward --max-connections meanwhile).
    #[arg(long = "linger-timeout", default_value = "5s", value_parser = parse_duration_ms)]
    linger_timeout: u64,

    /// On SIGTERM/SIGINT: one deadline for all connections to receive their last acks and the
    /// ShuttingDown error, after the log is synced; slower readers are cut.
    #[arg(long = "shutdown-timeout", default_value = "5s", value_parser = parse_duration_ms)]
    shutdown_timeout: u64,

    /// Segment files are sealed and a new one started past this size (K, M, G).
    #[arg(long = "segment-size", default_value = "64M", value_parser = parse_size)]
    segment_size: u64,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log-level", default_value = "info", value_parser = parse_log_level)]
    log_level: log::LevelFilter,

    /// Per-module log level, MODULE=LEVEL (e.g. flo::engine=debug); may be repeated.
    #[arg(long = "log-module", value_parser = parse_module_level)]
    log_modules: Vec<(String, log::LevelFilter)>,

    /// Also append log lines to this file.
    #[arg(long = "log-file")]
    log_file: Option<PathBuf>,

    /// This server's id in a cluster, 1 to 65535; unique among the cluster's servers.
    #[arg(long = "actor-id", default_value_t = 1)]
    actor_id: u16,

    /// Address of another cluster member; may be repeated. Other members are discovered.
    #[arg(long = "peer-addr", value_parser = parse_socket_addr)]
    peer_addrs: Vec<SocketAddr>,

    /// Shared secret cluster members prove in their handshake (HMAC challenge-response; the
    /// secret itself is never sent). Use a long random one: `flo gen-token` makes one. Not
    /// empty; with a non-loopback --bind it is required and at least 32 bytes.
    #[arg(long = "cluster-secret")]
    cluster_secret: Option<String>,

    /// The address other members dial to reach this node (default: the listening address;
    /// set it when binding 0.0.0.0).
    #[arg(long = "advertise-addr", value_parser = parse_socket_addr)]
    advertise_addr: Option<SocketAddr>,

    /// With peers, after a start with --fsync interval/never: how long produces are refused
    /// (NotReady) at most for this node to catch up with its peers, so that it gets back the
    /// events it may have lost (e.g. 30s).
    #[arg(long = "catch-up-timeout", default_value = "30s", value_parser = parse_duration_ms)]
    catch_up_timeout: u64,

    /// With peers, on an empty (perhaps lost) data directory: take produces after this time
    /// even if a member has not been met. Default: no time-out, since a member not met may hold
    /// this node's old events, whose ids new events would then reuse (docs/clustering.md).
    #[arg(long = "empty-dir-catch-up-timeout", value_parser = parse_duration_ms)]
    empty_dir_catch_up_timeout: Option<u64>,

    /// Every produce is acknowledged only once this many members (this node counts) hold its
    /// events durably (1 to 1 + the number of --peer-addr); a client may ask for more.
    #[arg(long = "min-replicas", default_value_t = 1)]
    min_replicas: u8,

    /// A produce waiting for replicas gets ReplicationTimeout after this time; its events stay
    /// appended and keep replicating (e.g. 5s).
    #[arg(long = "replication-timeout", default_value = "5s", value_parser = parse_duration_ms)]
    replication_timeout: u64,

    /// Bytes of events an id-order subscription holds while they wait for every member's clock
    /// to pass them (past it, the largest ids are read again from the log later; e.g. 1M).
    #[arg(long = "order-buffer-size", default_value = "1M", value_parser = parse_size)]
    order_buffer_size: u64,

    /// An id-order subscription whose next event waited this long for the cluster's clocks (a
    /// member down or cut off) is ended with OrderStalled (e.g. 30s).
    #[arg(long = "order-stall-timeout", default_value = "30s", value_parser = parse_duration_ms)]
    order_stall_timeout: u64,

    /// PeerEvent frames a peer may send this node before it returns credit (1 to 65536): what
    /// this node buffers per peer is at most this many frames.
    #[arg(long = "peer-credit-window", default_value_t = 1024)]
    peer_credit_window: u32,

    /// Purges a peer sends (PeerPurge): `accept` merges them like a client's Purge and passes
    /// them on, so a purge is cluster-wide (the default); `refuse` ignores them (logged and
    /// counted), so only this node's own clients' purges apply here.
    #[arg(long = "peer-purges", default_value = "accept")]
    peer_purges: PeerPurges,

    /// The wait before redialing a member after a failed dial; it doubles (with jitter) per
    /// failure up to --dial-backoff-max (e.g. 100ms).
    #[arg(long = "dial-backoff-initial", default_value = "100ms", value_parser = parse_duration_ms)]
    dial_backoff_initial: u64,

    /// The longest wait between dials of a member that keeps failing (e.g. 10s).
    #[arg(long = "dial-backoff-max", default_value = "10s", value_parser = parse_duration_ms)]
    dial_backoff_max: u64,

    /// An outbound peer connection that is not established within this time counts as a
    /// failed dial (e.g. 5s).
    #[arg(long = "connect-timeout", default_value = "5s", value_parser = parse_duration_ms)]
    connect_timeout: u64,

    /// The scheduler slice, in microseconds, that the reactor thread asks the kernel for (Linux
    /// 6.12 and later; the kernel takes 100 to 100000): a short one lets it run sooner after it
    /// wakes while other processes keep the cores busy; its share of the CPU stays the same. 0:
    /// the kernel's default (the default: on a quiet host a short slice makes the reactor
    /// preempt clients on the same cores; try 100 where other processes keep the cores busy).
    #[arg(long = "reactor-slice-us", default_value_t = 0)]
    reactor_slice_us: u64,

    /// After a turn that wrote to a socket, the reactor polls this many microseconds without
    /// sleeping before it waits in epoll_wait, so that a quick answer (a group member's ack of
    /// the event just sent) finds it awake instead of paying for waking it (0 to 1000; 0: never).
    #[arg(long = "reactor-spin-us", default_value_t = 100)]
    reactor_spin_us: u64,

    /// At most this many milliseconds of that polling per second, whatever the traffic: the
    /// CPU it may cost (0 to 500).
    #[arg(long = "reactor-spin-per-second-ms", default_value_t = 50)]
    reactor_spin_per_second_ms: u64,

    /// The group journal is compacted (rewritten as a snapshot, a few entries a loop turn)
    /// once it is larger than this and four times its last snapshot (K, M, G suffixes).
    #[arg(long = "group-journal-compact-size", default_value = "64M", value_parser = parse_size)]
    group_journal_compact_size: u64,

    /// Entries of the snapshot a group-journal compaction writes per loop turn (at least 16).
    #[arg(long = "group-journal-compact-entries", default_value_t = 4096)]
    group_journal_compact_entries: usize,

    /// Serve Prometheus metrics on GET http://ADDR/metrics (e.g. 127.0.0.1:9100; off when not
    /// given). Anyone who reaches it sees the server's figures (no authentication): keep it on
    /// loopback or a monitoring network.
    #[arg(long = "metrics-addr", value_name = "ADDR", value_parser = parse_socket_addr)]
    metrics_addr: Option<SocketAddr>,

    /// Most open connections to the metrics endpoint; more are closed at once.
    #[arg(long = "max-metrics-connections", default_value_t = 16)]
    max_metrics_connections: usize,

    /// The longest HTTP request head the metrics endpoint reads (K suffix); past it the answer
    /// is 431.
    #[arg(long = "max-metrics-request", default_value = "8K", value_parser = parse_size)]
    max_metrics_request: u64,

    /// A metrics request must arrive within this time of connecting, and its response be
    /// taken within this time, else the connection is dropped (e.g. 5s).
    #[arg(long = "metrics-timeout", default_value = "5s", value_parser = parse_duration_ms)]
    metrics_timeout: u64,

    /// Turn the namespace index off (docs/storage.md): no `.nsx` file is written at a seal,
    /// a subscription to one namespace reads the whole log, and a ProduceIf's check of a
    /// namespace the server does not remember reads the whole log too (spread over turns, the
    /// ProduceIf waiting). For measuring what the index costs; a later start without this
    /// flag rebuilds the missing files.
    #[arg(long = "no-namespace-index")]
    no_namespace_index: bool,

    /// Start even when the newest segment holds damage that start-up does not cut by itself
    /// (a bad record followed by records with valid checksums, or a damaged header): the
    /// damaged bytes are moved to <segment>.quarantine-<byte> beside it, every record among
    /// them that passes its checksum is kept, then the server starts. Without it such damage
    /// stops the start with a message naming the file and byte. It also reads every record of
    /// every sealed segment (a plain start does not), and rewrites a damaged one after copying
    /// it whole to quarantine: every record that passes its checksum keeps its offset, each
    /// lost one becomes a hole, and one warning says how many records and bytes were lost and
    /// between which offsets.
    #[arg(long)]
    repair: bool,
}

/// What `flo` does instead of serving.
#[derive(Subcommand, Debug)]
enum Tool {
    /// Print a shell completion script (e.g. flo completions bash > /etc/bash_completion.d/flo).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; e.g. flo man > /usr/share/man/man1/flo.1).
    Man,
    /// Read a token from standard input (one line) and print its hash (`sha256:...`), the
    /// value of `token = "..."` in an --auth-file. Tokens shorter than 32 bytes are refused.
    HashToken,
    /// Print a new random token (256 bits, 64 hex digits) and, on standard error, its hash
    /// for the --auth-file.
    GenToken,
}

/// Parses the command line and, with `--config`, the file under it: the file's keys become
/// arguments placed before the command line's, leaving out the keys the command line sets,
/// so a flag always wins.
fn parse_args() -> Result<Args, String> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let command = Args::command();
    let matches = match command.clone().try_get_matches_from(&argv) {
        Ok(matches) => matches,
        // --help and --version print to standard output and exit 0.
        Err(error) if !error.use_stderr() => error.exit(),
        // Every other flag error is one line, like flo-client's.
        Err(error) => return Err(one_line(&error)),
    };
    let Some(path) = matches.get_one::<PathBuf>("config") else {
        return Args::from_arg_matches(&matches).map_err(|error| one_line(&error));
    };
    let file_arguments = config_file::file_arguments(path, &command, &matches)?;
    // The file's values alone first, so that a bad one is reported as the file's.
    let program = argv.first().cloned().unwrap_or_else(|| "flo".into());
    let file_only = std::iter::once(program.clone()).chain(file_arguments.iter().cloned());
    command
        .clone()
        .try_get_matches_from(file_only)
        .map_err(|error| format!("{}: {}", path.display(), one_line(&error)))?;
    let combined = std::iter::once(program)
        .chain(file_arguments)
        .chain(argv.into_iter().skip(1));
    let matches = command
        .try_get_matches_from(combined)
        .map_err(|error| one_line(&error))?;
    Args::from_arg_matches(&matches).map_err(|error| one_line(&error))
}

/// The effective settings as a configuration file that `--config` accepts; unset optional
/// settings are listed as comments.
fn effective_config(args: &Args) -> String {
    let mut table = toml::Table::new();
    let mut unset = Vec::new();
    let mut hidden = Vec::new();
    let mut put = |key: &str, value: Option<toml::Value>| match value {
        Some(value) => {
            table.insert(key.to_string(), value);
        }
        None => unset.push(key.to_string()),
    };
    let text = |value: String| Some(toml::Value::String(value));
    let list = |values: Vec<String>| {
        Some(toml::Value::Array(
            values.into_iter().map(toml::Value::String).collect(),
        ))
    };
    put("data-dir", text(args.data_dir.display().to_string()));
    put("port", Some(toml::Value::Integer(i64::from(args.port))));
    put("bind", text(args.bind.to_string()));
    put(
        "auth-file",
        args.auth_file
            .as_ref()
            .and_then(|path| text(path.display().to_string())),
    );
    put(
        "insecure-no-auth",
        Some(toml::Value::Boolean(args.insecure_no_auth)),
    );
    put(
        "no-namespace-index",
        Some(toml::Value::Boolean(args.no_namespace_index)),
    );
    let path = |path: &Option<PathBuf>| {
        path.as_ref()
            .and_then(|path| text(path.display().to_string()))
    };
    put("tls-cert", path(&args.tls_cert));
    put("tls-key", path(&args.tls_key));
    put("peer-ca", path(&args.peer_ca));
    put(
        "max-auth-failures",
        Some(toml::Value::Integer(i64::from(args.max_auth_failures))),
    );
    put("max-cache-memory", text(format_size(args.max_cache_memory)));
    put(
        "max-events",
        args.max_events.and_then(|n| text(n.to_string())),
    );
    put(
        "max-bytes",
        args.max_bytes.and_then(|n| text(format_size(n))),
    );
    put(
        "max-age",
        args.max_age.and_then(|n| text(format_duration_ms(n))),
    );
    put(
        "retention-rule",
        list(
            args.retention_rules
                .iter()
                .map(ToString::to_string)
                .collect(),
        ),
    );
    put(
        "max-purge-rules",
        Some(toml::Value::Integer(
            i64::try_from(args.max_purge_rules).unwrap_or(i64::MAX),
        )),
    );
    put(
        "max-purge-glob-bytes",
        Some(toml::Value::Integer(
            i64::try_from(args.max_purge_glob_bytes).unwrap_or(i64::MAX),
        )),
    );
    put(
        "max-purged-namespaces",
        Some(toml::Value::Integer(
            i64::try_from(args.max_purged_namespaces).unwrap_or(i64::MAX),
        )),
    );
    put("fsync", text(args.fsync.to_string()));
    let count = |n: usize| Some(toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
    put("max-connections", count(args.max_connections));
    put(
        "max-output-buffer",
        text(format_size(args.max_output_buffer)),
    );
    put(
        "max-connection-memory",
        text(format_size(args.max_connection_memory)),
    );
    put(
        "max-clients-memory",
        text(format_size(args.max_clients_memory)),
    );
    put(
        "frame-timeout",
        text(format_duration_ms(args.frame_timeout)),
    );
    put(
        "handshake-timeout",
        text(format_duration_ms(args.handshake_timeout)),
    );
    put("idle-timeout", text(format_duration_ms(args.idle_timeout)));
    put(
        "linger-timeout",
        text(format_duration_ms(args.linger_timeout)),
    );
    put(
        "shutdown-timeout",
        text(format_duration_ms(args.shutdown_timeout)),
    );
    put("segment-size", text(format_size(args.segment_size)));
    put("log-level", text(args.log_level.to_string().to_lowercase()));
    let modules = args.log_modules.iter();
    put(
        "log-module",
        list(
            modules
                .map(|(module, level)| format!("{module}={}", level.to_string().to_lowercase()))
                .collect(),
        ),
    );
    put(
        "log-file",
        args.log_file
            .as_ref()
            .and_then(|path| text(path.display().to_string())),
    );
    put(
        "actor-id",
        Some(toml::Value::Integer(i64::from(args.actor_id))),
    );
    put(
        "peer-addr",
        list(args.peer_addrs.iter().map(ToString::to_string).collect()),
    );
    // The secret is not printed: check-config output ends up in tickets and chat logs.
    if args.cluster_secret.is_some() {
        hidden.push("cluster-secret");
    } else {
        put("cluster-secret", None);
    }
    put(
        "advertise-addr",
        args.advertise_addr.and_then(|addr| text(addr.to_string())),
    );
    put(
        "catch-up-timeout",
        text(format_duration_ms(args.catch_up_timeout)),
    );
    put(
        "empty-dir-catch-up-timeout",
        args.empty_dir_catch_up_timeout
            .and_then(|n| text(format_duration_ms(n))),
    );
    put(
        "min-replicas",
        Some(toml::Value::Integer(i64::from(args.min_replicas))),
    );
    put(
        "replication-timeout",
        text(format_duration_ms(args.replication_timeout)),
    );
    put(
        "order-buffer-size",
        text(format_size(args.order_buffer_size)),
    );
    put(
        "order-stall-timeout",
        text(format_duration_ms(args.order_stall_timeout)),
    );
    put(
        "peer-credit-window",
        Some(toml::Value::Integer(i64::from(args.peer_credit_window))),
    );
    put("peer-purges", text(args.peer_purges.to_string()));
    put(
        "dial-backoff-initial",
        text(format_duration_ms(args.dial_backoff_initial)),
    );
    put(
        "dial-backoff-max",
        text(format_duration_ms(args.dial_backoff_max)),
    );
    put(
        "connect-timeout",
        text(format_duration_ms(args.connect_timeout)),
    );
    put(
        "reactor-slice-us",
        count(usize::try_from(args.reactor_slice_us).unwrap_or(usize::MAX)),
    );
    put(
        "reactor-spin-us",
        count(usize::try_from(args.reactor_spin_us).unwrap_or(usize::MAX)),
    );
    put(
        "reactor-spin-per-second-ms",
        count(usize::try_from(args.reactor_spin_per_second_ms).unwrap_or(usize::MAX)),
    );
    put(
        "group-journal-compact-size",
        text(format_size(args.group_journal_compact_size)),
    );
    put(
        "group-journal-compact-entries",
        count(args.group_journal_compact_entries),
    );
    put(
        "metrics-addr",
        args.metrics_addr.and_then(|addr| text(addr.to_string())),
    );
    put(
        "max-metrics-connections",
        count(args.max_metrics_connections),
    );
    put(
        "max-metrics-request",
        text(format_size(args.max_metrics_request)),
    );
    put(
        "metrics-timeout",
        text(format_duration_ms(args.metrics_timeout)),
    );
    let mut out = table.to_string();
    for key in hidden {
        out.push_str(&format!("# {key}: set (not shown)\n"));
    }
    for key in unset {
        out.push_str(&format!("# {key}: not set\n"));
    }
    out
}

fn parse_module_level(text: &str) -> Result<(String, log::LevelFilter), String> {
    let (module, level) = text
        .split_once('=')
        .ok_or_else(|| format!("expected MODULE=LEVEL, got {text:?}"))?;
    Ok((module.to_string(), parse_log_level(level)?))
}

/// A log level; clap's own message ("attempted to convert a string that doesn't match an
/// existing log level") did not say which levels exist (walkthrough, session 9).
fn parse_log_level(text: &str) -> Result<log::LevelFilter, String> {
    text.parse().map_err(|_| {
        format!("invalid log level {text:?}: expected error, warn, info, debug or trace")
    })
}

/// An IP address and port. The standard parser's "invalid socket address syntax" did not say
/// what was expected, nor that a host name is not resolved (walkthrough, session 9).
fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid address {text:?}: expected IP:PORT such as 127.0.0.1:3001 or \
             [::1]:3001 (a host name is not resolved)"
        )
    })
}

/// A listening address. The standard parser's "invalid IP address syntax" did not say what
/// was expected, nor that the port is a flag of its own.
fn parse_bind_addr(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid address {text:?}: expected an IP address such as 127.0.0.1, 0.0.0.0 or \
             ::1 (no port: that is --port)"
        )
    })
}

/// Which records one simplelog logger writes: those of `level` or more severe whose target
/// starts with `allow` (every target when `None`) and with none of `ignore`.
#[derive(Debug, PartialEq)]
struct LogScope {
    level: log::LevelFilter,
    allow: Option<String>,
    ignore: Vec<String>,
}

/// Per-module levels as simplelog filters: one scope per `--log-module` and one for the rest.
/// The longest matching module wins, because each scope ignores the longer modules inside it
/// (with `flo=warn` and `flo::engine=debug`, the `flo` scope ignores `flo::engine`), and the
/// default scope ignores every named module.
fn log_scopes(
    default_level: log::LevelFilter,
    modules: &[(String, log::LevelFilter)],
) -> Vec<LogScope> {
    let inside = |outer: Option<&str>| -> Vec<String> {
        let mut names: Vec<String> = modules
            .iter()
            .map(|(module, _)| module.clone())
            .filter(|module| outer.is_none_or(|outer| module.starts_with(outer) && module != outer))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    // A module named twice takes its last level, as a repeated flag does.
    let mut named: Vec<(String, log::LevelFilter)> = Vec::new();
    for (module, level) in modules {
        named.retain(|(kept, _)| kept != module);
        named.push((module.clone(), *level));
    }
    let mut scopes = vec![LogScope {
        level: default_level,
        allow: None,
        ignore: inside(None),
    }];
    for (module, level) in named {
        scopes.push(LogScope {
            level,
            ignore: inside(Some(&module)),
            allow: Some(module),
        });
    }
    scopes
}

/// Lines like `2026-11-26T15:03:59.372Z INFO  flo: flo 0.1.0 listening on ..` (UTC, RFC 3339) to
/// standard error and, with `--log-file`, appended to that file; one simplelog logger per
/// scope and destination.
fn init_logging(args: &Args) -> Result<(), String> {
    let file = match &args.log_file {
        None => None,
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|error| format!("could not open log file {}: {error}", path.display()))?,
        ),
    };
    let mut loggers: Vec<Box<dyn simplelog::SharedLogger>> = Vec::new();
    for scope in log_scopes(args.log_level, &args.log_modules) {
        let mut builder = simplelog::ConfigBuilder::new();
        builder
            .set_time_format_rfc3339()
            .set_thread_level(log::LevelFilter::Off)
            .set_target_level(log::LevelFilter::Error)
            .set_location_level(log::LevelFilter::Off)
            .set_level_padding(simplelog::LevelPadding::Right);
        if let Some(module) = scope.allow {
            builder.add_filter_allow(module);
        }
        for module in scope.ignore {
            builder.add_filter_ignore(module);
        }
        let config = builder.build();
        // A LineWriter hands each line to standard error in one write.
        let stderr = std::io::LineWriter::new(std::io::stderr());
        loggers.push(simplelog::WriteLogger::new(
            scope.level,
            config.clone(),
            stderr,
        ));
        if let Some(file) = &file {
            let file = file
                .try_clone()
                .map_err(|error| format!("could not share the log file: {error}"))?;
            loggers.push(simplelog::WriteLogger::new(scope.level, config, file));
        }
    }
    simplelog::CombinedLogger::init(loggers).map_err(|error| error.to_string())
}

fn config_from(args: &Args) -> Config {
    let mut config = Config::new(SocketAddr::new(args.bind, args.port), args.data_dir.clone());
    config.actor_id = ActorId(args.actor_id);
    config.connections_max = args.max_connections;
    config.auth_failures_per_second_max = args.max_auth_failures;
    config.output_bytes_hard_max = usize::try_from(args.max_output_buffer).unwrap_or(usize::MAX);
    config.connection_memory_max =
        usize::try_from(args.max_connection_memory).unwrap_or(usize::MAX);
    config.connections_memory_max = usize::try_from(args.max_clients_memory).unwrap_or(usize::MAX);
    config.frame_timeout = std::time::Duration::from_millis(args.frame_timeout);
    config.handshake_timeout = Duration::from_millis(args.handshake_timeout);
    config.idle_timeout = Duration::from_millis(args.idle_timeout);
    config.linger_timeout = Duration::from_millis(args.linger_timeout);
    config.reactor_slice = Duration::from_micros(args.reactor_slice_us);
    config.reactor_spin = Duration::from_micros(args.reactor_spin_us);
    config.reactor_spin_per_second_max = Duration::from_millis(args.reactor_spin_per_second_ms);
    config.groups.journal_compact_bytes = args.group_journal_compact_size;
    config.groups.journal_compact_entries_per_turn = args.group_journal_compact_entries;
    config.shutdown_timeout = Duration::from_millis(args.shutdown_timeout);
    config.storage.fsync = args.fsync;
    config.storage.cache_bytes_max = args.max_cache_memory as usize;
    config.storage.segment_size_max = args.segment_size;
    config.storage.namespace_index = !args.no_namespace_index;
    config.storage.retention = Retention {
        events_max: args.max_events,
        bytes_max: args.max_bytes,
        age_max_ms: args.max_age,
    };
    config.storage.namespace_retention = args.retention_rules.clone();
    config.storage.purge_rules_max = args.max_purge_rules;
    config.storage.purge_glob_bytes_max = args.max_purge_glob_bytes;
    config.storage.purged_namespaces_max = args.max_purged_namespaces;
    config.cluster.peer_addrs = args.peer_addrs.clone();
    config.cluster.secret = args.cluster_secret.clone();
    config.cluster.advertise_addr = args.advertise_addr;
    config.cluster.catch_up_timeout = std::time::Duration::from_millis(args.catch_up_timeout);
    config.cluster.empty_dir_catch_up_timeout = args
        .empty_dir_catch_up_timeout
        .map(std::time::Duration::from_millis);
    config.cluster.peer_credit_window = args.peer_credit_window;
    config.cluster.min_replicas = args.min_replicas;
    config.cluster.peer_purges = args.peer_purges;
    config.cluster.replication_timeout = Duration::from_millis(args.replication_timeout);
    config.cluster.order_buffer_bytes_max =
        usize::try_from(args.order_buffer_size).unwrap_or(usize::MAX);
    config.cluster.order_stall_timeout = Duration::from_millis(args.order_stall_timeout);
    config.cluster.dial_backoff_initial = Duration::from_millis(args.dial_backoff_initial);
    config.cluster.dial_backoff_max = Duration::from_millis(args.dial_backoff_max);
    config.cluster.connect_timeout = Duration::from_millis(args.connect_timeout);
    config.metrics.addr = args.metrics_addr;
    config.metrics.connections_max = args.max_metrics_connections;
    config.metrics.request_size_max =
        usize::try_from(args.max_metrics_request).unwrap_or(usize::MAX);
    config.metrics.request_timeout = Duration::from_millis(args.metrics_timeout);
    config
}

/// `--tls-cert` and `--tls-key`, and `--peer-ca`, read (the server parses them when it starts).
fn read_tls_files(args: &Args) -> Result<(Option<TlsPem>, Option<Vec<u8>>), String> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok((None, None));
    };
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|error| format!("could not read {}: {error}", path.display()))
    };
    let tls = TlsPem {
        cert_chain_pem: read(cert)?,
        key_pem: read(key)?,
    };
    let peer_ca = args.peer_ca.as_ref().map(read).transpose()?;
    Ok((Some(tls), peer_ca))
}

/// `flo hash-token`: one line from standard input, without its line end.
fn hash_token_from_stdin() -> ExitCode {
    let mut line = String::new();
    if let Err(error) = std::io::stdin().read_line(&mut line) {
        eprintln!("flo: could not read the token from standard input: {error}");
        return ExitCode::FAILURE;
    }
    let token = line.trim_end_matches(['\n', '\r']);
    if token.len() < flo::auth_file::TOKEN_LENGTH_MIN {
        eprintln!(
            "flo: the token is {} bytes; use at least {} (make one with `flo gen-token`)",
            token.len(),
            flo::auth_file::TOKEN_LENGTH_MIN
        );
        return ExitCode::FAILURE;
    }
    println!("{}", flo::auth_file::hash_token(token.as_bytes()));
    ExitCode::SUCCESS
}

/// Reads `--auth-file`, and refuses a non-loopback `--bind` without it unless
/// `--insecure-no-auth` says so; then the cluster secret (`check_cluster_secret`).
fn load_auth(args: &Args, config: &mut Config) -> Result<(), String> {
    load_client_auth(args, config)?;
    check_cluster_secret(args, config)
}

/// A node that accepts peers (`--peer-addr` or `--cluster-secret`) on a non-loopback `--bind`
/// needs a cluster secret of at least `TOKEN_LENGTH_MIN` bytes unless `--insecure-no-auth`
/// says so. A peer is not a client: `--auth-file` does not apply to it, and without a secret
/// any host that reaches the port joined as a member, was sent every event and could write
/// its own (attack round 18); a short secret can be guessed offline from one recorded
/// handshake (docs/security.md). An empty secret is refused everywhere (`Config::validate`).
fn check_cluster_secret(args: &Args, config: &Config) -> Result<(), String> {
    let cluster = &config.cluster;
    let accepts_peers = !cluster.peer_addrs.is_empty() || cluster.secret.is_some();
    let ip = config.bind.ip();
    if !accepts_peers || ip.is_loopback() {
        return Ok(());
    }
    let min = flo::auth_file::TOKEN_LENGTH_MIN;
    let problem = match cluster.secret.as_deref() {
        Some("") => return Err(flo::config::EMPTY_CLUSTER_SECRET.into()),
        Some(secret) if secret.len() >= min => return Ok(()),
        Some(secret) => format!(
            "a --cluster-secret of {} bytes on {ip}: anyone who records a handshake can guess a short secret offline; give at least {min} bytes (`flo gen-token` makes 64 hex digits)",
            secret.len()
        ),
        None => format!(
            "cluster peers on {ip} without --cluster-secret: any host that reaches the port could join as a member, be sent every event and write its own, whatever --auth-file allows; give --cluster-secret (`flo gen-token` makes one)"
        ),
    };
    if !args.insecure_no_auth {
        return Err(format!(
            "refusing {problem}, or --insecure-no-auth to let anyone who reaches the port do so"
        ));
    }
    log::warn!("accepting {problem} (--insecure-no-auth)");
    Ok(())
}

/// Reads `--auth-file`, and refuses a non-loopback `--bind` without it unless
/// `--insecure-no-auth` says so.
fn load_client_auth(args: &Args, config: &mut Config) -> Result<(), String> {
    if let Some(path) = &args.auth_file {
        let table = load_auth_file(path)?;
        log::info!(
            "clients must authenticate: {} principals in {}",
            table.principals().len(),
            path.display()
        );
        config.auth = Some(std::sync::Arc::new(table));
    } else if !config.bind.ip().is_loopback() {
        if !args.insecure_no_auth {
            return Err(format!(
                "refusing to listen on {} without client authentication: give --auth-file FILE \
                 (docs/security.md), or --insecure-no-auth to let anyone who reaches the port \
                 produce and consume",
                config.bind.ip()
            ));
        }
        log::warn!(
            "no client authentication on {} (--insecure-no-auth): any host that can reach it may produce and consume",
            config.bind
        );
    }
    Ok(())
}

/// Reads and parses an auth file (the binary reads it: only storage and the binaries touch
/// files).
fn load_auth_file(path: &std::path::Path) -> Result<flo::auth_file::AuthTable, String> {
    let size_max = flo::auth_file::AUTH_FILE_SIZE_MAX;
    let text = bounded_file::read_text_file(path, size_max, "auth file")?;
    flo::auth_file::AuthTable::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
}

/// SIGHUP: reads the auth file again and hands it to the server; a file that no longer parses
/// is logged and the server keeps the table it has.
fn reload_auth_file(path: Option<&std::path::Path>, reloader: &flo::AuthReloader) {
    let Some(path) = path else {
        log::info!("SIGHUP received; no --auth-file to reload");
        return;
    };
    match load_auth_file(path) {
        Ok(table) => reloader.reload(table),
        Err(message) => {
            log::error!("auth file not reloaded, the old one stays in force: {message}")
        }
    }
}

/// `flo completions SHELL` and `flo man`.
fn run_tool(tool: &Tool) -> ExitCode {
    use std::io::Write;
    let mut command = Args::command();
    let mut out = std::io::stdout().lock();
    let written = match tool {
        Tool::Completions { shell } => {
            // Generated into memory: clap_complete panics on a write error (a closed pipe).
            let mut bytes = Vec::new();
            clap_complete::generate(*shell, &mut command, "flo", &mut bytes);
            out.write_all(&bytes)
        }
        Tool::Man => clap_mangen::Man::new(command).render(&mut out),
        Tool::HashToken => return hash_token_from_stdin(),
        Tool::GenToken => match flo::auth_file::generate_token() {
            Ok(token) => {
                eprintln!("{}", flo::auth_file::hash_token(token.as_bytes()));
                writeln!(out, "{token}")
            }
            Err(message) => {
                eprintln!("flo: {message}");
                return ExitCode::FAILURE;
            }
        },
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`flo man | head`) is not an error.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flo: could not write to standard output: {error}");
            ExitCode::FAILURE
        }
    }
}

/// File descriptors a server needs besides its connections and kept-open files: the
/// listeners, the poller, the lock, the open segment and its index, the journals, a counter
/// lease or purge rewrite in progress, the log's stderr.
const FILES_RESERVED: u64 = 64;

/// Makes the connection limit fit the process's open-file limit (RLIMIT_NOFILE), as Redis
/// does for maxclients: the soft limit is raised (up to the hard limit) to what the
/// configuration needs, and if that is not enough `connections_max` is lowered with a
/// warning. Attack round 8: with `ulimit -n 128` and the default 4096 connections, 200 idle
/// connections took every descriptor and every produce failed (StorageFailure: the counter
/// lease could not be written) until they went.
// `rlim_t` is u64 on 64-bit Linux but not on every target: the casts stay.
#[allow(clippy::unnecessary_cast)]
fn fit_open_files(config: &mut Config) -> Result<(), String> {
    let others = (config.storage.open_files_max as u64)
        .saturating_add(config.metrics.connections_max as u64)
        .saturating_add(config.refused_lingering_max as u64)
        .saturating_add(FILES_RESERVED);
    let needed = others.saturating_add(config.connections_max as u64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        log::warn!(
            "could not read the open file limit: {}",
            std::io::Error::last_os_error()
        );
        return Ok(());
    }
    let soft = limit.rlim_cur as u64;
    if soft >= needed {
        return Ok(());
    }
    let wanted = needed.min(limit.rlim_max as u64);
    let raised = libc::rlimit {
        rlim_cur: wanted as libc::rlim_t,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one rlimit through a valid pointer to a local.
    let soft = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        wanted
    } else {
        soft
    };
    if soft >= needed {
        log::info!("open file limit raised to {soft} for {needed} files and connections");
        return Ok(());
    }
    let fitting = soft.saturating_sub(others);
    if fitting == 0 {
        return Err(format!(
            "the open file limit ({soft}, ulimit -n) leaves no room for connections: the server \
             needs {others} files besides them (storage.open_files_max, metrics connections, \
             refused connections lingering, {FILES_RESERVED} of its own); raise it"
        ));
    }
    log::warn!(
        "--max-connections lowered from {} to {fitting}: the open file limit is {soft} \
         (ulimit -n; the hard limit is {}) and {others} files are needed besides connections",
        config.connections_max,
        limit.rlim_max
    );
    config.connections_max = fitting as usize;
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("flo: {message}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(tool) = &args.tool {
        return run_tool(tool);
    }
    if args.check_config {
        let mut config = config_from(&args);
        print!("{}", effective_config(&args));
        // What a start would refuse before opening the data directory is refused here too:
        // the limits, the TLS and auth files, a non-loopback bind without authentication.
        let checked = config
            .validate()
            .map_err(|message| format!("invalid configuration: {message}"))
            .and_then(|()| read_tls_files(&args).map(drop))
            .and_then(|()| load_auth(&args, &mut config));
        return match checked {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("flo: {message}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(message) = init_logging(&args) {
        eprintln!("flo: {message}");
        return ExitCode::FAILURE;
    }
    let mut config = config_from(&args);
    match read_tls_files(&args) {
        Ok((tls, peer_ca)) => {
            config.tls = tls;
            config.cluster.peer_ca_pem = peer_ca;
        }
        Err(message) => {
            eprintln!("flo: {message}");
            return ExitCode::FAILURE;
        }
    }
    if config.tls.is_some() {
        log::info!("the port speaks TLS only (--tls-cert)");
    }
    if let Err(message) = load_auth(&args, &mut config) {
        eprintln!("flo: {message}");
        return ExitCode::FAILURE;
    }
    // The limits first: fitting the open file limit adds some of them up, and an absurd one
    // (`--max-metrics-connections 4294967295`) must be named, not reported as a ulimit.
    if let Err(message) = config.validate() {
        eprintln!("flo: invalid configuration: {message}");
        return ExitCode::FAILURE;
    }
    if let Err(message) = fit_open_files(&mut config) {
        eprintln!("flo: {message}");
        return ExitCode::FAILURE;
    }
    // The fsync policy's warning comes from storage, which opens the log (also for a server
    // embedded as a library); logging it here too printed it twice (walkthrough, session 9).
    if !config.cluster.peer_addrs.is_empty() {
        log::info!(
            "cluster member {} with peers {:?}{}",
            config.actor_id,
            config.cluster.peer_addrs,
            if config.cluster.secret.is_some() {
                " and a cluster secret"
            } else {
                ""
            }
        );
        if config.bind.ip().is_unspecified() && config.cluster.advertise_addr.is_none() {
            log::warn!(
                "listening on {} without --advertise-addr: peers learn an address they cannot dial",
                config.bind
            );
        }
    }
    // A write past the file size limit (`ulimit -f`, RLIMIT_FSIZE) raises SIGXFSZ, whose
    // default action kills the process. With a handler installed the write fails with EFBIG
    // instead, and the storage error path answers the produce with StorageFailure as it does
    // for a full disk. The flag is never read: the handler only has to exist.
    let file_size_exceeded = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Err(error) =
        signal_hook::flag::register(signal_hook::consts::SIGXFSZ, file_size_exceeded)
    {
        log::warn!("could not install the SIGXFSZ handler: {error}");
    }
    let started = if args.repair {
        // The log repaired, the group journal opened as on any start (the directory stays
        // locked throughout).
        Server::start_repairing(config.clone())
    } else {
        Server::start(config.clone())
    };
    let server = match started {
        Ok(server) => server,
        Err(error) => {
            eprintln!("flo: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Installed before the start-up line, which tells scripts and tests that the server is
    // ready: a SIGTERM sent right after it must shut down cleanly, not kill the process.
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]);
    if let Some(addr) = server.metrics_addr() {
        log::info!("metrics on http://{addr}/metrics");
    }
    log::info!(
        "flo {} listening on {}, data directory {}, fsync {}, actor id {}, {} events recovered",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        config.storage.data_dir.display(),
        config.storage.fsync,
        config.actor_id,
        server.recovered_events()
    );
    let trigger = server.shutdown_trigger();
    let reloader = server.auth_reloader();
    let auth_file = args.auth_file.clone();
    match signals {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for signal in signals.forever() {
                    if signal == signal_hook::consts::SIGHUP {
                        reload_auth_file(auth_file.as_deref(), &reloader);
                        continue;
                    }
                    log::info!("signal {signal} received; shutting down");
                    trigger.trigger();
                    break;
                }
            });
        }
        Err(error) => log::warn!("could not install signal handlers: {error}"),
    }
    match server.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{log_scopes, LogScope};
    use log::LevelFilter::{Debug, Info, Trace, Warn};

    #[test]
    fn the_longest_named_module_sets_the_level() {
        let modules = [
            ("flo".to_string(), Warn),
            ("flo::engine".to_string(), Debug),
            ("flo::engine".to_string(), Trace),
        ];
        let scopes = log_scopes(Info, &modules);
        assert_eq!(
            scopes,
            [
                LogScope {
                    level: Info,
                    allow: None,
                    ignore: vec!["flo".to_string(), "flo::engine".to_string()],
                },
                LogScope {
                    level: Warn,
                    allow: Some("flo".to_string()),
                    ignore: vec!["flo::engine".to_string()],
                },
                LogScope {
                    level: Trace,
                    allow: Some("flo::engine".to_string()),
                    ignore: Vec::new(),
                },
            ]
        );
    }
}
