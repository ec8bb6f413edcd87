//! The `flo-client` command-line client: argument parsing and output only; the protocol work
//! is in `flo::client`.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use flo::client::format::{
    format_human, format_json, format_status, format_status_json, parse_start_position,
};
use flo::client::{
    Ack, Client, ClientError, ClientOptions, ClientTls, Delivery, Expectation, GroupDelivery,
    IdempotentProducer, NewEvent,
};
use flo::event::{Event, EventId, Order, StartPosition};
use flo::units::parse_duration_ms;

#[path = "../shared/clap_error.rs"]
mod clap_error;
mod interrupt;
use clap_error::one_line;

/// Produces to stdin-fed streams keep this many events in flight.
const PRODUCE_WINDOW: usize = 256;

/// The most events `consume --from -N` holds back (it keeps the last N in memory while it
/// reads the matching events from the beginning).
const FROM_LAST_COUNT_MAX: u64 = 100_000;

/// The server address when neither -H/-p nor FLO_ADDR gives one.
const DEFAULT_ADDR: &str = "localhost:3000";

/// Produce events to and consume events from a flo server.
///
/// The server's address comes from -H and -p, else from the environment variable FLO_ADDR
/// (host:port), else localhost:3000. The handshake's authentication token comes from --token,
/// else from the environment variable FLO_TOKEN.
#[derive(Parser, Debug)]
#[command(name = "flo-client", version)]
struct Cli {
    /// The server's host name or address, or HOST:PORT (default: from FLO_ADDR, else
    /// localhost).
    #[arg(short = 'H', long, global = true)]
    host: Option<String>,
    /// The server's port (default: from FLO_ADDR, else 3000).
    #[arg(short, long, global = true)]
    port: Option<u16>,
    /// How long to wait for the connection, the handshake and each answer (a quiet server is
    /// pinged once before giving up), e.g. 5s or 500ms.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_positive_duration_ms)]
    timeout: u64,
    /// Speak TLS (for a server started with --tls-cert); needs --ca.
    #[arg(long, global = true, requires = "ca")]
    tls: bool,
    /// PEM file of the certificates to trust with --tls: the CA that signed the server's
    /// certificate, or the server's self-signed certificate itself.
    #[arg(long, value_name = "FILE", global = true)]
    ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry (default: the -H host).
    #[arg(long, value_name = "NAME", global = true)]
    tls_server_name: Option<String>,
    /// The authentication token to send (default: from FLO_TOKEN). A flag is visible to other
    /// users of this machine in the process list: prefer FLO_TOKEN where that matters.
    #[arg(long, value_name = "TOKEN", global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Produce events and print their ids.
    ///
    /// With -d, one event with that data; with --data-file, one event with a file's bytes.
    /// Without either and with standard input piped or redirected, one event per line of it
    /// (the newline removed), many in flight at once; a line longer than the server's event
    /// data limit (8 MiB by default) ends it with an error (use --data-file for such data).
    /// Without -d at a terminal, one event without data (as in `produce -n /food/lunch/salad`).
    /// Empty standard input produces nothing and exits with code 1 (in a script, use -d ""
    /// for one event without data). Prints each event id as the server acknowledges it, then
    /// a summary line. If the server goes away, every id printed was acknowledged, and the
    /// exit code is 1. Ctrl-C while reading standard input stops reading, prints the ids of
    /// the events in flight as their acks arrive, says how many lines were produced (the
    /// first N; no later line was sent) and exits with code 130.
    Produce {
        /// The namespace to produce to, such as /food/breakfast/eggs.
        #[arg(short, long)]
        namespace: String,
        /// The event data. Use -d "" for an event without data.
        #[arg(short, long)]
        data: Option<String>,
        /// One event whose data is the bytes of FILE, as they are (binary-safe: newlines and
        /// any byte kept); `-` reads all of standard input as one event. At most the server's
        /// event data limit (8 MiB by default); a larger file is refused before anything is
        /// sent. It is read to its end before the connection that sends it opens (a slow pipe
        /// is not cut by the server's idle time-out).
        #[arg(long, value_name = "FILE", conflicts_with = "data")]
        data_file: Option<std::path::PathBuf>,
        /// The id of the event these events respond to (25 digits or COUNTER.ACTOR).
        #[arg(long, value_name = "ID")]
        parent: Option<String>,
        /// Print nothing on success (errors still go to standard error).
        #[arg(short, long)]
        quiet: bool,
        /// `human`: each id on its own line, then a summary line. `json`: one
        /// `{"id":"..."}` object per event, then `{"produced":N,"namespace":"..."}`.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Each event is acknowledged only once this many cluster members (the server counts)
        /// hold it durably (default: the server's --min-replicas). Fails with
        /// ReplicationTimeout, saying how many it reached, after the server's time-out (the
        /// events stay appended). More than the members the server knows (1 outside a
        /// cluster) is refused at once with NotReady (nothing appended).
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        replicas: u8,
        /// Append only if the namespace's newest event is ID ("none": only if it has no
        /// events; "exists": only if it has at least one). With standard input, all lines go
        /// as one atomic batch (at most 10000). If the namespace ends elsewhere nothing is
        /// appended, the error names its actual newest id, and the exit code is 3.
        #[arg(long, value_name = "ID|none|exists")]
        expect_last: Option<String>,
        /// Lines from standard input are produced idempotently: after a lost connection or a
        /// server restart the client connects again (this many tries, 0 for none) and resends
        /// what was not acknowledged, which the server stores once. Each reconnect is said in
        /// one line on standard error.
        #[arg(long, value_name = "N", default_value_t = 10)]
        reconnect_attempts: u32,
    },
    /// Consume events and print them.
    ///
    /// Without -t it stops after the stored events; with -t it waits for new ones until
    /// Ctrl-C, which exits with code 0.
    ///
    /// With --group NAME it joins that consumer group on the server (created at --from on the
    /// first join): the group's members share its events, each event goes to one of them, and
    /// this consumer acknowledges each event after it is written to standard output. A
    /// restarted consumer carries on after the last acknowledged event; an event it printed
    /// but could not acknowledge (killed in between) is delivered again (at least once).
    ///
    /// With --group and --exec CMD it prints nothing itself: it runs CMD (with `sh -c`) once
    /// per event, one event at a time, with the event's data on CMD's standard input and
    /// FLO_EVENT_ID, FLO_NAMESPACE, FLO_TIMESTAMP_MS and FLO_PARENT_ID (empty without a
    /// parent) in its environment. Exit code 0 acknowledges the event; any other exit refuses
    /// it (a nack, said in one line on standard error): the group delivers it again after
    /// --nack-delay, to this or another member, and parks it after the group's max deliveries
    /// (`flo-client groups parked NAME` lists it). A Ctrl-C while CMD runs lets it finish and
    /// answers its event before exiting (a second Ctrl-C exits at once).
    Consume {
        /// Join this consumer group instead of reading the stream alone.
        #[arg(short, long, value_name = "NAME")]
        group: Option<String>,
        /// With --group: run CMD for each event and acknowledge the event when CMD exits with
        /// 0, refuse it (nack) otherwise (see above).
        #[arg(
            long,
            value_name = "CMD",
            requires = "group",
            conflicts_with = "format"
        )]
        exec: Option<String>,
        /// With --exec: how long the group waits before it delivers a refused event again,
        /// such as 0s (at once, the default), 500ms or 1m.
        #[arg(long, value_name = "DURATION", requires = "exec", default_value = "0s",
              value_parser = parse_duration_ms)]
        nack_delay: u64,
        /// Only events whose namespace matches this glob (`*` is one path segment, `**` any
        /// number of them).
        #[arg(short, long = "namespace", value_name = "GLOB", default_value = "/**")]
        namespace: String,
        /// Keep waiting for new events after the stored ones are printed (like tail -f);
        /// stop with Ctrl-C.
        #[arg(short, long)]
        tail: bool,
        /// Where to start: `beginning` (or `start`, `earliest`); `end` (only new events; or
        /// `latest`, `now`); an event id (25 digits or
        /// COUNTER.ACTOR), to start just after that event; a time, as `ms:<milliseconds
        /// since the epoch>` or RFC 3339 such as 2024-05-01T12:00:00Z; a time relative to now,
        /// such as 1h, 30m or 7d (events stored since then, by the server's timestamps); or
        /// -N, the last N matching events (at most 100000; read from the beginning, keeping
        /// the last N, so it costs a full read of the matching events).
        #[arg(
            long,
            value_name = "POSITION",
            default_value = "beginning",
            allow_hyphen_values = true
        )]
        from: String,
        /// Stop after this many events (0: no limit).
        #[arg(long, value_name = "N", default_value_t = 0)]
        limit: u64,
        /// When the server meets a damaged, unreadable range of its log (a sealed segment
        /// with a bad checksum), skip it with a warning on standard error naming how many
        /// records were lost, and go on. Without it the consumer stops there with an error.
        #[arg(long, conflicts_with = "group")]
        skip_damaged: bool,
        /// `human`: the event id, namespace and data as text, each event after a blank line.
        /// `json`: one JSON object per line with id, parent_id, namespace, timestamp (ms) and
        /// data (a string when it is UTF-8, otherwise base64 with "data_encoding":"base64").
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// `arrival`: the server's log order, each event as soon as it is durable there. `id`:
        /// the total order of ids, the same sequence on every node of a cluster; each event
        /// waits until every member's clock has passed it (about one round trip), and a member
        /// that is down stalls it (the subscription ends with OrderStalled after the server's
        /// --order-stall-timeout). Not with --group.
        #[arg(long, value_enum, default_value_t = ConsumeOrder::Arrival)]
        order: ConsumeOrder,
    },
    /// Print the server's cluster status: its actor id, counter, version vector, and each
    /// member's state and how many records it has not yet been sent (lag).
    Status {
        /// `human`: the node, then one line per member. `json`: one JSON object.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print what the server is and holds: version, actor id, uptime, fsync policy, log size,
    /// event and segment counts, connections, subscriptions and consumer groups.
    Info {
        /// `human`: one `name: value` line each. `json`: one JSON object.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// List the namespaces GLOB matches (all by default), in name order: one line each with
    /// its event count and the id and time of its first and last event. The server answers
    /// from its namespace index, page by page; on a server with authentication only the
    /// namespaces the principal may consume are listed.
    Namespaces {
        /// Which namespaces (a glob: `/accounts/*`, `/orders/**`).
        #[arg(default_value = "/**")]
        glob: String,
        /// `human`: one line per namespace. `json`: one JSON object per line with namespace,
        /// event_count, first_id, first_timestamp, last_id and last_timestamp (ms).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the trace of event ID: its ancestors (its parent, the parent's parent, ... up to
    /// the root), the event (marked *) and its descendants (every event whose parent chain
    /// leads to it) as an indented tree, one line each with id, namespace and time. The server
    /// answers from its trace indexes, up to its limits (10,000 events, 1,000 generations by
    /// default; a cut trace says so).
    Trace {
        /// The event id (25 digits).
        id: String,
        /// `human`: the indented tree. `json`: one JSON object per event (depth, id,
        /// parent_id, namespace, timestamp in ms), in the server's order.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the events with these ids as `consume` prints them (a missing one is an error,
    /// exit code 1, after the ones before it).
    ///
    /// The server finds each id in its trace index (as for `trace`) and then delivers the
    /// event from its namespace. An id it does not hold (never stored, deleted by retention or
    /// a purge, or in a namespace the token may not consume) is "no event".
    Get {
        /// Event ids (25 digits or COUNTER.ACTOR).
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// `human`: the event id, namespace and data as text, each event after a blank line.
        /// `json`: one JSON object per line, as `consume --format json` prints it.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// List the cluster's members, remove one that is gone for good, or add a removed one
    /// back (needs the admin permission on a server with authentication).
    ///
    /// A removal is made on one node and passed on to every member; from then on the removed
    /// member no longer holds id-order delivery back, no longer counts as a replica, and
    /// every member refuses its handshake (MemberRemoved) until it is added back
    /// (docs/clustering.md, "Membership").
    Cluster {
        #[command(subcommand)]
        action: ClusterCommand,
        /// `human`: a table. `json`: one JSON object per member (actor_id, state, version,
        /// addr).
        #[arg(long, value_enum, default_value_t = Format::Human, global = true)]
        format: Format,
    },
    /// List the consumer groups with their lag, or inspect and administer one (needs the admin
    /// permission on a server with authentication).
    ///
    /// Without a subcommand, one line per group: name, members, pending (delivered, not
    /// acknowledged), parked, the acknowledged position (floor), the delivered position (next)
    /// and the lag (log records the group has not looked at yet: an upper bound on matching
    /// events not yet delivered). Positions are offsets in the server's log. `group` is the
    /// same command (`flo-client group info NAME`).
    #[command(visible_alias = "group")]
    Groups {
        #[command(subcommand)]
        action: Option<GroupsCommand>,
        /// `human`: a table, or `name: value` lines for one group. `json`: a JSON array of
        /// the groups with their `settings`; one object for one group (`info`, `create` and
        /// `update` add its members as `member_list`); one object per line for parked events.
        #[arg(long, value_enum, default_value_t = Format::Human, global = true)]
        format: Format,
    },
    /// Purge the namespaces a glob matches: their events before an id or a time are never
    /// delivered again (needs the admin permission on a server with authentication).
    ///
    /// The purge is durable on the server before this returns and is passed to the other
    /// members of a cluster, which apply it too. Disk space comes back when a whole segment
    /// holds only purged or expired events (docs/operations.md, "Purge").
    Purge {
        /// The namespaces to purge, as a glob (`/metrics/**`).
        #[arg(short, long = "namespace", value_name = "GLOB")]
        namespace: String,
        /// An event id (25 digits or COUNTER.ACTOR): events with smaller ids go, the event
        /// itself stays. Or a time: RFC 3339 (2024-05-01T12:00:00Z), `ms:<milliseconds since
        /// the epoch>`, or an age such as 7d: events stored before it go.
        #[arg(long, value_name = "ID|TIME", allow_hyphen_values = true)]
        before: String,
        /// `human`: one line. `json`: one JSON object.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// A live view of the server, refreshed every --interval: events appended per second,
    /// connections, subscriptions, each cluster member's state and lag, each group's pending
    /// events and lag, and with --metrics-addr the mean fsync latency. Ctrl-C quits.
    Top {
        /// Time between refreshes (e.g. 1s, 500ms).
        #[arg(long, default_value = "1s", value_parser = parse_positive_duration_ms)]
        interval: u64,
        /// Exit after this many refreshes (0: until Ctrl-C).
        #[arg(long, value_name = "N", default_value_t = 0)]
        count: u64,
        /// The server's --metrics-addr (HOST:PORT), to show the fsync latency.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<String>,
        /// `human`: a screen of text (redrawn in place at a terminal). `json`: one JSON
        /// object per refresh and line.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Benchmark the server: produce throughput and acknowledgement latency, end-to-end
    /// latency to tailing consumers, catch-up read throughput.
    ///
    /// Opens --connections producer connections, each keeping --window produces of --size
    /// bytes in flight, to a fresh namespace (/bench/PID_NANOS), for --count events or
    /// --duration seconds, as fast as acknowledgements allow or at --rate events/s. Only
    /// acknowledged events count; latency runs from the send (or, at a --rate, from the moment
    /// the event was due) to its acknowledgement. Prints events/s, MB/s and latency p50, p99 and
    /// p99.9; with --consumers, end-to-end latency from produce to a tailing consumer too;
    /// with --read, stores --count events and then measures reading them back from the start
    /// on one connection. --json prints one JSON object (the one ci/bench.sh collects).
    ///
    /// Example: flo-client bench --connections 4 --window 64 --size 100 --duration 3
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// One line per member: actor id, state (self, connected, connecting, backing off,
    /// removed), membership version and address.
    Members,
    /// Remove a member from the cluster (run it on any other member).
    Remove {
        /// The member's actor id.
        actor: u16,
    },
    /// Add a removed member back: it may connect again.
    Add {
        /// The member's actor id.
        actor: u16,
    },
}

#[derive(Subcommand, Debug)]
enum GroupsCommand {
    /// Print everything the server reports about one group.
    Info {
        /// The group's name.
        name: String,
    },
    /// List a group's parked events, in log order: one line each with its id, log offset,
    /// namespace and time (`gone` for one deleted or purged since it was parked); with --data
    /// each followed by the event as `consume` prints it.
    ///
    /// The server sends the list a page at a time (offset and id); each entry then costs one
    /// lookup in the server's trace index, and with --data one short read of its namespace.
    /// A parked event was delivered the group's max deliveries times (the setting when it was
    /// parked); the server keeps no other count.
    Parked {
        /// The group's name.
        name: String,
        /// Show each event's data (and with --format json, the event as `consume --format
        /// json` prints it, with its `offset`).
        #[arg(long)]
        data: bool,
    },
    /// Make parked events of the group deliverable again (delivery count back at 0): every
    /// one, or only those named with --id, or those from --from to --to.
    ///
    /// With --id every named event must be parked, or nothing is replayed (NotParked); at
    /// most the server's parked_list_max ids (1000 by default) at once. --from and --to
    /// replay the parked events whose ids lie between the two (both included; one of the two
    /// alone: open on the other side).
    #[command(visible_alias = "replay-parked")]
    Replay {
        /// The group's name.
        name: String,
        /// Replay this parked event (repeat for several, or separate them with commas).
        #[arg(long, value_name = "ID", value_delimiter = ',', conflicts_with_all = ["from", "to"],
              value_parser = parse_event_id)]
        id: Vec<EventId>,
        /// Replay parked events with ids from this one (included).
        #[arg(long, value_name = "ID", value_parser = parse_event_id)]
        from: Option<EventId>,
        /// Replay parked events with ids up to this one (included).
        #[arg(long, value_name = "ID", value_parser = parse_event_id)]
        to: Option<EventId>,
    },
    /// Move a group to a new position; its acknowledgements and pending events are forgotten,
    /// parked events stay parked. Its consumers must be stopped first.
    Reset {
        /// The group's name.
        name: String,
        /// `beginning`, `end`, an event id (to start just after it) or a time (as for
        /// `consume --from`). `--from` is the same option.
        #[arg(
            long,
            visible_alias = "from",
            value_name = "POSITION",
            allow_hyphen_values = true
        )]
        to: String,
    },
    /// Delete a group and its state. Its consumers must be stopped first.
    Delete {
        /// The group's name.
        name: String,
    },
    /// Create a group (without joining it). Settings left out take the server's defaults
    /// (30 s, 10, 1000). An existing group with the same glob and settings is shown as it
    /// is; other settings are refused (change them with `groups update`).
    Create {
        /// The group's name.
        name: String,
        /// The group's namespace glob.
        #[arg(short = 'n', long = "namespace", value_name = "GLOB")]
        glob: String,
        /// Where the group starts: `beginning` (default), `end`, an event id (just after it)
        /// or a time (as for `consume --from`).
        #[arg(long, value_name = "POSITION", allow_hyphen_values = true)]
        from: Option<String>,
        #[command(flatten)]
        settings: GroupSettingsArgs,
    },
    /// Change a group's settings, also while its consumers run (those left out stay).
    Update {
        /// The group's name.
        name: String,
        #[command(flatten)]
        settings: GroupSettingsArgs,
    },
}

/// A group's settings on the command line (`groups create`, `groups update`).
#[derive(clap::Args, Debug)]
struct GroupSettingsArgs {
    /// An event not acknowledged this long after a delivery is delivered again (such as
    /// `30s`, `500ms`, `2m`).
    #[arg(long, value_name = "DURATION")]
    ack_timeout: Option<String>,
    /// Deliveries after which an unacknowledged event is parked (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    max_deliveries: Option<u16>,
    /// Unacknowledged events one member may hold (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: Option<u32>,
}

impl GroupSettingsArgs {
    /// `groups update`: the settings to change, at least one.
    fn changes(&self) -> Result<flo::client::GroupSettings, String> {
        if self.ack_timeout.is_none()
            && self.max_deliveries.is_none()
            && self.max_in_flight.is_none()
        {
            return Err(
                "nothing to update: give --ack-timeout, --max-deliveries or \
                        --max-in-flight"
                    .into(),
            );
        }
        self.settings()
    }

    fn settings(&self) -> Result<flo::client::GroupSettings, String> {
        let ack_timeout_ms = match &self.ack_timeout {
            None => 0,
            Some(text) => {
                let ms = u32::try_from(parse_duration_ms(text)?).map_err(|_| {
                    format!(
                        "--ack-timeout {text} is too long: the protocol carries at most \
                             4294967295 ms (about 49 days); a flo server takes at most 24h \
                             (groups.ack_timeout_max, docs/limits.md)"
                    )
                })?;
                if ms == 0 {
                    return Err("--ack-timeout must be at least 1ms".into());
                }
                ms
            }
        };
        Ok(flo::client::GroupSettings {
            ack_timeout_ms,
            max_deliveries: self.max_deliveries.unwrap_or(0),
            max_in_flight: self.max_in_flight.unwrap_or(0),
        })
    }
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// The server as HOST:PORT (default: from -H and -p).
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Producer connections, one thread each.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Produces in flight (sent, not yet acknowledged) per connection.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Payload bytes per event.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    size: usize,
    /// Events in total (default 100000 unless --duration is given; with --read, the events
    /// stored and read back).
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Seconds to produce for.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Events per second over all connections (default: as fast as acknowledged).
    #[arg(long, value_name = "EVENTS_PER_S")]
    rate: Option<u64>,
    /// Name of the run in the report.
    #[arg(long, default_value = "flo")]
    label: String,
    /// Print one JSON object instead of text (the same as --format json).
    #[arg(long)]
    json: bool,
    /// `human`: text. `json`: one JSON object (as --json).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Store --count events, then read them back from the start on one connection (a
    /// subscription with a large credit window, until its end) and report that.
    #[arg(long, conflicts_with_all = ["consumers", "duration", "rate"])]
    read: bool,
    /// With --read: read back through a consumer group (a fresh one, one member), acknowledging
    /// every event, instead of a subscription.
    #[arg(long, requires = "read")]
    group: bool,
    /// Tailing consumers that measure end-to-end latency (produce to delivery), each on its
    /// own connection and receiving every event; the latency merges all their deliveries.
    /// Events must be at least 8 bytes (they carry their send time); best with --rate.
    #[arg(long, value_name = "N", default_value_t = 0)]
    consumers: usize,
    /// Each produce is acknowledged once this many cluster members hold it durably
    /// (SetReplicas; default: the server's --min-replicas).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    replicas: u8,
    /// A consumer group (a fresh one) shared by N members, each on its own connection,
    /// acknowledging every event: reports acknowledged deliveries and, live, the delivered
    /// and acked latency (produce to the member's ack). Best with --rate; see --drain.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with_all = ["read", "consumers"])]
    members: usize,
    /// With --members: store --count events first, then measure the members working them off.
    #[arg(long, requires = "members")]
    drain: bool,
    /// With --members: events a member may hold unacknowledged (its credit and max_in_flight).
    #[arg(long, value_name = "N", default_value_t = 256)]
    in_flight: u32,
    /// With --consumers: the order they subscribe in (`arrival` or `id`, as for consume
    /// --order). In a cluster, id order delivers an event once every member's clock has
    /// passed it: run a bench against every node at once to measure it under load.
    #[arg(long, value_enum, default_value_t = ConsumeOrder::Arrival, requires = "consumers")]
    order: ConsumeOrder,
    /// Spread the produced events over N namespaces: the i-th event over all connections goes
    /// to `<run namespace>/<i mod N>` (round robin), so each namespace gets every N-th event,
    /// as events of many aggregates (`/accounts/<id>`) do. 1: every event to the run's
    /// namespace itself. Many namespaces are the namespace index's costly case.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with_all = ["read", "consumers", "members"])]
    namespaces: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ConsumeOrder {
    Arrival,
    Id,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are "errors" that print to standard output and exit 0.
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            // One line, as every other failure: clap's first line, without its usage block.
            eprintln!("flo-client: {} (see flo-client --help)", one_line(&error));
            return ExitCode::from(2);
        }
    };
    let result = run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) if message.starts_with(EXPECTATION_FAILED_PREFIX) => {
            say_error(&message);
            ExitCode::from(EXPECTATION_FAILED_EXIT)
        }
        Err(message) if message.starts_with(interrupt::INTERRUPTED_PREFIX) => {
            say_error(&message);
            ExitCode::from(interrupt::INTERRUPTED_EXIT)
        }
        Err(message) => {
            say_error(&message);
            ExitCode::FAILURE
        }
    }
}

/// Every error of `flo-client` is one line on standard error that starts with `flo-client: `,
/// as clap's are: a script can tell it from the output of the command it ran, and `grep` finds
/// it. A message of several lines (a server's message may hold a newline) is joined with "; ".
/// Errors found after argument parsing had no prefix (walkthrough, session 15).
fn say_error(message: &str) {
    let joined: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    eprintln!("flo-client: {}", joined.join("; "));
}

fn run(cli: Cli) -> Result<(), String> {
    let addr = server_addr(
        cli.host.as_deref(),
        cli.port,
        std::env::var("FLO_ADDR").ok().as_deref(),
    )?;
    let tls = match (&cli.ca, cli.tls) {
        (Some(ca), true) => {
            let ca_pem = std::fs::read(ca)
                .map_err(|error| format!("could not read {}: {error}", ca.display()))?;
            // Named here, before any connection: the TLS layer's refusal cannot name the file.
            const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
            if !ca_pem.windows(BEGIN.len()).any(|window| window == BEGIN) {
                return Err(format!(
                    "--ca {} holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line): \
                     give the CA's certificate or the server's self-signed --tls-cert, not a key",
                    ca.display()
                ));
            }
            Some(ClientTls {
                ca_pem,
                server_name: cli.tls_server_name.clone(),
            })
        }
        (Some(_), false) => return Err("--ca is for TLS connections: add --tls".into()),
        (None, _) => None,
    };
    let server = Server {
        addr,
        timeout: Duration::from_millis(cli.timeout.max(1)),
        token: match cli.token {
            Some(token) => Some(token.into_bytes()),
            None => std::env::var_os("FLO_TOKEN").map(|token| token.into_encoded_bytes()),
        },
        tls,
    };
    match cli.command {
        Command::Produce {
            namespace,
            data,
            data_file,
            parent,
            quiet,
            format,
            replicas,
            expect_last,
            reconnect_attempts,
        } => {
            let options = ProduceOptions {
                parent: parent.as_deref(),
                quiet,
                format,
                replicas,
                expect_last: expect_last.as_deref(),
                reconnect_attempts,
            };
            let data = match data_file {
                Some(path) => Some(Data::File(path)),
                None => data.map(|text| Data::Bytes(text.into_bytes())),
            };
            produce(&server, &namespace, data, &options)
        }
        Command::Consume {
            group: Some(_),
            order: ConsumeOrder::Id,
            ..
        } => Err("--order id is not available with --group: a group hands each event to one member as soon as it is stored".into()),
        Command::Consume {
            group: Some(group),
            namespace,
            tail,
            from,
            limit,
            format,
            order: ConsumeOrder::Arrival,
            skip_damaged: _,
            exec,
            nack_delay,
        } => {
            let output = match exec {
                Some(command) => GroupOutput::Exec {
                    command,
                    nack_delay: Duration::from_millis(nack_delay),
                },
                None => GroupOutput::Print(format),
            };
            consume_group(&server, &group, &namespace, tail, &from, limit, &output)
        }
        Command::Consume {
            group: None,
            exec: _,
            nack_delay: _,
            namespace,
            tail,
            from,
            limit,
            format,
            order,
            skip_damaged,
        } => {
            let order = match order {
                ConsumeOrder::Arrival => Order::Arrival,
                ConsumeOrder::Id => Order::Id,
            };
            let options = ConsumeOptions {
                tail,
                limit,
                format,
                order,
                skip_damaged,
            };
            consume(&server, &namespace, &from, &options)
        }
        Command::Status { format } => status(&server, format),
        Command::Info { format } => ops::info(&server, format),
        Command::Namespaces { glob, format } => namespaces(&server, &glob, format),
        Command::Trace { id, format } => trace(&server, &id, format),
        Command::Get { ids, format } => lookup::get(&server, &ids, format),
        Command::Groups { action, format } => groups(&server, action, format),
        Command::Cluster { action, format } => cluster(&server, action, format),
        Command::Purge {
            namespace,
            before,
            format,
        } => ops::purge(&server, &namespace, &before, format),
        Command::Top {
            interval,
            count,
            metrics_addr,
            format,
        } => {
            let options = ops::TopOptions {
                interval: Duration::from_millis(interval.max(1)),
                count,
                metrics_addr,
                format,
            };
            ops::top(&server, &options)
        }
        Command::Bench(args) => bench::run(&server.addr, &server.options(), &args),
        Command::Completions { shell } => {
            // Generated into memory: clap_complete panics on a write error (a closed pipe).
            let mut command = Cli::command();
            let mut bytes = Vec::new();
            clap_complete::generate(shell, &mut command, "flo-client", &mut bytes);
            write_tool_output(&bytes)
        }
        Command::Man => {
            let mut bytes = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut bytes)
                .map_err(|error| output_error(&error))?;
            write_tool_output(&bytes)
        }
    }
}

/// Where and how to connect.
struct Server {
    addr: String,
    timeout: Duration,
    token: Option<Vec<u8>>,
    tls: Option<ClientTls>,
}

impl Server {
    /// The client options for this server: time-outs, token and TLS.
    fn options(&self) -> ClientOptions {
        ClientOptions {
            connect_timeout: self.timeout,
            io_timeout: self.timeout,
            auth_token: self.token.clone(),
            tls: self.tls.clone(),
            ..ClientOptions::default()
        }
    }
}

/// The address to dial: -H (a host, or HOST:PORT) and -p win over FLO_ADDR (HOST:PORT), which
/// wins over localhost:3000.
fn server_addr(host: Option<&str>, port: Option<u16>, env: Option<&str>) -> Result<String, String> {
    let (env_host, env_port) = match env.filter(|text| !text.is_empty()) {
        Some(text) => split_host_port(text).ok_or_else(|| {
            format!("FLO_ADDR={text:?}: expected HOST:PORT such as localhost:3000")
        })?,
        None => split_host_port(DEFAULT_ADDR).unwrap_or_default(),
    };
    let (host, flag_port) = match host {
        // A bare IPv6 address has colons but no port.
        Some(text) if text.parse::<std::net::Ipv6Addr>().is_ok() => (format!("[{text}]"), None),
        Some(text) if text.contains(':') => {
            let (host, port) = split_host_port(text).ok_or_else(|| host_error(text))?;
            (host, Some(port))
        }
        Some(text) if !is_host(text) => return Err(host_error(text)),
        Some(text) => (text.to_string(), None),
        None => (env_host, None),
    };
    if flag_port.is_some() && port.is_some() {
        return Err("give the port either in -H HOST:PORT or with -p, not both".to_string());
    }
    Ok(format!("{host}:{}", port.or(flag_port).unwrap_or(env_port)))
}

/// `host:port` (or `[v6]:port`) split at its last colon; `None` unless the port is a number.
fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let bracketed = host.len() > 2 && host.starts_with('[') && host.ends_with(']');
    (bracketed || is_host(host)).then(|| (host.to_string(), port))
}

/// A host name or IPv4 address: not empty, and no colon, slash or space. A URL
/// (`http://localhost:3000`) or a doubled port (`localhost:3000:99`) used to be taken as a
/// host and failed later as "failed to lookup address information" (walkthrough, session 9).
fn is_host(text: &str) -> bool {
    !text.is_empty() && !text.contains([':', '/']) && !text.contains(char::is_whitespace)
}

fn host_error(text: &str) -> String {
    format!(
        "-H {text:?}: expected HOST or HOST:PORT, such as localhost, localhost:3000 or \
         [::1]:3000 (not a URL)"
    )
}

/// Appends one formatted line to a `String` (the human output of `groups`).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

/// Writes `text` to standard output; true when the reader has gone (a closed pipe, as with
/// `| head`), which is not an error.
fn write_out(text: &str) -> Result<bool, String> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(false),
        Err(error) => stopped_reader(error).map(|()| true),
    }
}

/// The groups with their settings (GroupsDetailRequest), or, from a server older than that
/// request (it closes the connection with MalformedFrame), the plain list (GroupsRequest, on
/// a new connection): `None` settings.
fn list_groups(
    server: &Server,
    client: &mut Client,
) -> Result<Vec<(flo::client::GroupInfo, Option<flo::client::GroupSettings>)>, String> {
    match client.groups_detail() {
        Ok(groups) => Ok(groups
            .into_iter()
            .map(|detail| (detail.info, Some(detail.settings)))
            .collect()),
        Err(ClientError::Server {
            code: flo::client::ErrorCode::MalformedFrame,
            ..
        }) => {
            let mut older = connect(server)?;
            let groups = older.groups().map_err(|error| error.to_string())?;
            Ok(groups.into_iter().map(|group| (group, None)).collect())
        }
        Err(error) => Err(error.to_string()),
    }
}

fn groups(server: &Server, action: Option<GroupsCommand>, format: Format) -> Result<(), String> {
    let mut client = connect(server)?;
    let failed = |error: ClientError| error.to_string();
    if format == Format::Json {
        return groups_json(server, &mut client, action);
    }
    // Written out at the end (or a page at a time), so that a reader that stopped (`| head`)
    // ends the command quietly instead of a failed print.
    let mut out = String::new();
    match action {
        None => {
            let groups = list_groups(server, &mut client)?;
            if groups.is_empty() {
                return write_out("no groups\n").map(drop);
            }
            outln!(
                out,
                "{:<24} {:>7} {:>9} {:>7} {:>12} {:>12} {:>10} {:>9} {:>7} {:>8}  GLOB",
                "GROUP",
                "MEMBERS",
                "PENDING",
                "PARKED",
                "FLOOR",
                "NEXT",
                "LAG",
                "ACK_MS",
                "MAXDEL",
                "MAXINF"
            );
            for (group, settings) in &groups {
                // A server older than GroupsDetailRequest does not say the settings.
                let [ack_ms, max_deliveries, max_in_flight] = match settings {
                    Some(settings) => [
                        settings.ack_timeout_ms.to_string(),
                        settings.max_deliveries.to_string(),
                        settings.max_in_flight.to_string(),
                    ],
                    None => ["-".to_string(), "-".to_string(), "-".to_string()],
                };
                outln!(
                    out,
                    "{:<24} {:>7} {:>9} {:>7} {:>12} {:>12} {:>10} {:>9} {:>7} {:>8}  {}",
                    group.name,
                    group.members,
                    group.pending,
                    group.parked,
                    group.floor,
                    group.next,
                    group.lag,
                    ack_ms,
                    max_deliveries,
                    max_in_flight,
                    group.glob
                );
            }
        }
        Some(GroupsCommand::Info { name }) => {
            format_group_detail(&mut out, &client.group_detail(&name).map_err(failed)?);
        }
        Some(GroupsCommand::Create {
            name,
            glob,
            from,
            settings,
        }) => {
            let detail = create_group(&mut client, &name, &glob, from, settings)?;
            outln!(
                out,
                "group {name} created (or already there with these settings)"
            );
            format_group_detail(&mut out, &detail);
        }
        Some(GroupsCommand::Update { name, settings }) => {
            let settings = settings.changes()?;
            let detail = client
                .update_group_settings(&name, settings)
                .map_err(failed)?;
            outln!(out, "group {name} updated");
            format_group_detail(&mut out, &detail);
        }
        Some(GroupsCommand::Parked { name, data }) => {
            if let Some(count) = lookup::parked(&mut client, &name, data, Format::Human)? {
                let noun = if count == 1 { "event" } else { "events" };
                eprintln!("{count} parked {noun} in group {name}");
            }
        }
        Some(GroupsCommand::Replay { name, id, from, to }) => {
            let parked_before = client.group_info(&name).map_err(failed)?.parked;
            let group = replay(&mut client, &name, &id, from, to).map_err(failed)?;
            outln!(
                out,
                "replayed {} parked events of group {name}",
                parked_before - group.parked.min(parked_before)
            );
            match group_after_change(&mut client, group) {
                Ok(detail) => format_group_detail(&mut out, &detail),
                Err(group) => format_group(&mut out, &group),
            }
        }
        Some(GroupsCommand::Reset { name, to }) => {
            let start = group_position(&to)?;
            let group = client.reset_group(&name, start).map_err(failed)?;
            outln!(out, "group {name} reset");
            match group_after_change(&mut client, group) {
                Ok(detail) => format_group_detail(&mut out, &detail),
                Err(group) => format_group(&mut out, &group),
            }
        }
        Some(GroupsCommand::Delete { name }) => {
            client.delete_group(&name).map_err(failed)?;
            outln!(out, "group {name} deleted");
        }
    }
    write_out(&out).map(drop)
}

/// After `reset` and `replay`, whose answer is the group without its settings and members:
/// the group as `info` shows it (one more request). A server older than GroupsDetailRequest
/// closes the connection on it; then the answer is all there is (`Err`).
fn group_after_change(
    client: &mut Client,
    group: flo::client::GroupInfo,
) -> Result<flo::client::GroupDetail, flo::client::GroupInfo> {
    client.group_detail(&group.name).map_err(|_| group)
}

/// `groups replay`: every parked event, the ones with these ids, or those from `from` to `to`
/// (either end open when left out).
fn replay(
    client: &mut Client,
    name: &str,
    ids: &[EventId],
    from: Option<EventId>,
    to: Option<EventId>,
) -> Result<flo::client::GroupInfo, ClientError> {
    if !ids.is_empty() {
        client.replay_parked_ids(name, ids)
    } else if from.is_some() || to.is_some() {
        let from = from.unwrap_or(EventId::new(1, 0));
        let to = to.unwrap_or(EventId::new(EventId::COUNTER_MAX, u16::MAX));
        client.replay_parked_range(name, from, to)
    } else {
        client.replay_parked(name)
    }
}

fn cluster(server: &Server, action: ClusterCommand, format: Format) -> Result<(), String> {
    use flo::client::{MemberOp, MembershipState};
    let mut client = connect(server)?;
    let failed = |error: ClientError| error.to_string();
    let entries = match action {
        ClusterCommand::Members => client.members().map_err(failed)?,
        ClusterCommand::Remove { actor } => {
            let entries = client
                .change_member(MemberOp::Remove, actor)
                .map_err(failed)?;
            if format == Format::Human {
                println!("member {actor} removed");
            }
            entries
        }
        ClusterCommand::Add { actor } => {
            // Adding a member that is not removed changes nothing (the server answers with the
            // list): say which of the two happened instead of claiming it was added back.
            let was_removed =
                client.members().map_err(failed)?.iter().any(|entry| {
                    entry.actor_id == actor && entry.state == MembershipState::Removed
                });
            let entries = client.change_member(MemberOp::Add, actor).map_err(failed)?;
            if format == Format::Human {
                if was_removed {
                    println!("member {actor} added back");
                } else {
                    println!("member {actor} was not removed: nothing changed");
                }
            }
            entries
        }
    };
    if format == Format::Human {
        println!("{:>5}  {:<11} {:>7}  ADDRESS", "ACTOR", "STATE", "VERSION");
    }
    for entry in entries {
        let state = match entry.state {
            MembershipState::Itself => "self",
            MembershipState::Connected => "connected",
            MembershipState::Connecting => "connecting",
            MembershipState::BackingOff => "backing off",
            MembershipState::Removed => "removed",
        };
        if format == Format::Json {
            let mut line = format!(
                "{{\"actor_id\":{},\"state\":\"{state}\",\"version\":{},\"addr\":",
                entry.actor_id, entry.version
            );
            flo::client::format::push_json_string(&mut line, &entry.addr);
            line.push('}');
            println!("{line}");
            continue;
        }
        println!(
            "{:>5}  {:<11} {:>7}  {}",
            entry.actor_id, state, entry.version, entry.addr
        );
    }
    Ok(())
}

/// `groups --format json`: the list as one array (with each group's settings), one group as one
/// object (`info`, `create` and `update` with its settings and members), parked events as one
/// object per line, and the changes as the group's object after them.
fn groups_json(
    server: &Server,
    client: &mut Client,
    action: Option<GroupsCommand>,
) -> Result<(), String> {
    let failed = |error: ClientError| error.to_string();
    let detail = |detail: flo::client::GroupDetail| {
        write_out(&format!("{}\n", ops::group_detail_json(&detail, true))).map(drop)
    };
    let group = match action {
        None => {
            let groups = list_groups(server, client)?;
            return write_out(&format!("{}\n", ops::groups_list_json(&groups))).map(drop);
        }
        Some(GroupsCommand::Info { name }) => {
            return detail(client.group_detail(&name).map_err(failed)?)
        }
        Some(GroupsCommand::Parked { name, data }) => {
            return lookup::parked(client, &name, data, Format::Json).map(drop);
        }
        Some(GroupsCommand::Replay { name, id, from, to }) => {
            replay(client, &name, &id, from, to).map_err(failed)?
        }
        Some(GroupsCommand::Reset { name, to }) => {
            let start = group_position(&to)?;
            client.reset_group(&name, start).map_err(failed)?
        }
        Some(GroupsCommand::Create {
            name,
            glob,
            from,
            settings,
        }) => {
            return detail(create_group(client, &name, &glob, from, settings)?);
        }
        Some(GroupsCommand::Update { name, settings }) => {
            let settings = settings.changes()?;
            return detail(
                client
                    .update_group_settings(&name, settings)
                    .map_err(failed)?,
            );
        }
        Some(GroupsCommand::Delete { name }) => {
            client.delete_group(&name).map_err(failed)?;
            let mut out = String::from("{\"deleted\":");
            flo::client::format::push_json_string(&mut out, &name);
            out.push_str("}\n");
            return write_out(&out).map(drop);
        }
    };
    let json = match group_after_change(client, group) {
        Ok(full) => ops::group_detail_json(&full, true),
        Err(group) => ops::group_json(&group),
    };
    write_out(&format!("{json}\n")).map(drop)
}

/// `groups create`, for both output formats: from the beginning unless `--from` says.
fn create_group(
    client: &mut Client,
    name: &str,
    glob: &str,
    from: Option<String>,
    settings: GroupSettingsArgs,
) -> Result<flo::client::GroupDetail, String> {
    let start = match from {
        Some(from) => group_position(&from)?,
        None => StartPosition::Beginning,
    };
    let settings = settings.settings()?;
    client
        .create_group(name, glob, start, settings)
        .map_err(|error| error.to_string())
}

/// `groups info`, `create`, `update`: the group, its settings and its members.
fn format_group_detail(out: &mut String, detail: &flo::client::GroupDetail) {
    format_group(out, &detail.info);
    let settings = &detail.settings;
    outln!(out, "ack time-out:   {} ms", settings.ack_timeout_ms);
    outln!(out, "max deliveries: {}", settings.max_deliveries);
    outln!(out, "max in flight:  {} per member", settings.max_in_flight);
    if detail.members.is_empty() {
        return;
    }
    // The first column is each member's subscription id on its own connection, not a member
    // number: every flo-client member uses subscription 1, and a column headed MEMBER showing
    // 1 for each of two members looked like one member listed twice (walkthrough, session 15).
    outln!(
        out,
        "{:>10}  {:<24} {:>9} {:>9} {:>10}",
        "SUB ID",
        "CONNECTION",
        "IN FLIGHT",
        "MAX",
        "CREDIT"
    );
    for member in &detail.members {
        outln!(
            out,
            "{:>10}  {:<24} {:>9} {:>9} {:>10}",
            member.subscription_id,
            member.connection,
            member.in_flight,
            member.max_in_flight,
            member.credit
        );
    }
    let listed = detail.members.len();
    if listed < usize::from(detail.info.members) {
        outln!(out, "({listed} of {} members listed)", detail.info.members);
    }
}

fn format_group(out: &mut String, group: &flo::client::GroupInfo) {
    outln!(out, "group:          {}", group.name);
    outln!(out, "glob:           {}", group.glob);
    outln!(
        out,
        "members:        {} ({} events in flight)",
        group.members,
        group.in_flight
    );
    outln!(out, "pending:        {}", group.pending);
    outln!(out, "parked:         {}", group.parked);
    outln!(
        out,
        "floor:          {} (every matching record below is acknowledged or parked)",
        group.floor
    );
    outln!(
        out,
        "next:           {} (the next record to look at)",
        group.next
    );
    outln!(out, "acked above:    {}", group.acked_above_floor);
    outln!(out, "lag:            {} (records not looked at yet; at most this many matching events undelivered)", group.lag);
    outln!(out, "oldest pending: {} ms", group.oldest_pending_age_ms);
}

fn status(server: &Server, format: Format) -> Result<(), String> {
    let mut client = connect(server)?;
    let status = ask_status(server, &mut client)?;
    match format {
        Format::Human => print!("{}", format_status(&status)),
        Format::Json => println!("{}", format_status_json(&status)),
    }
    Ok(())
}

fn namespaces(server: &Server, glob: &str, format: Format) -> Result<(), String> {
    let mut client = connect(server)?;
    let mut out = io::stdout().lock();
    let mut written = Ok(());
    let listed = client.for_each_namespace(glob, &mut |namespace| {
        let line = match format {
            Format::Human => flo::client::format::format_namespace(namespace),
            Format::Json => flo::client::format::format_namespace_json(namespace),
        };
        written = writeln!(out, "{line}");
        written.is_ok()
    });
    listed.map_err(|error| error.to_string())?;
    // A closed pipe (`| head`) ends the listing quietly.
    match written {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(error.to_string()),
        _ => Ok(()),
    }
}

/// An event id from the command line (25 digits or COUNTER.ACTOR). Counter 0 is no event's
/// id, and the server refuses a frame carrying one as malformed, closing the connection
/// (walkthrough, session 9, for `trace`; attack round 17 for `--parent`, `--expect-last`,
/// `groups replay` and `purge --before`, which sent it; `--parent 0.0` even stored an event
/// without a parent).
fn parse_event_id(text: &str) -> Result<EventId, String> {
    let id = text.parse::<EventId>().map_err(|error| error.to_string())?;
    if id.counter == 0 {
        return Err(format!(
            "invalid event id {text:?}: counter 0 is not an event id"
        ));
    }
    Ok(id)
}

fn trace(server: &Server, id: &str, format: Format) -> Result<(), String> {
    let id = parse_event_id(id)?;
    let mut client = connect(server)?;
    let trace = (client.trace(id)).map_err(|error| lookup::command_error(error, "trace"))?;
    let text = match format {
        Format::Human => flo::client::format::format_trace(&trace),
        Format::Json => flo::client::format::format_trace_json(&trace),
    };
    // A trace may be 10,000 lines: `| head` must not make print! panic.
    write_out(&text).map(|_| ())
}

mod bench;
mod exec;
mod group_print;
mod lookup;
mod ops;

/// Connects and performs the handshake, saying plainly when the other side is not a flo
/// server (it answers with something else, hangs up, or says nothing).
/// A duration flag that must not be 0: `--timeout 0s` timed out every answer at once (a
/// produce was stored and reported as timed out), `top --interval 0s` would refresh in a loop.
fn parse_positive_duration_ms(text: &str) -> Result<u64, String> {
    match parse_duration_ms(text)? {
        0 => Err(format!(
            "invalid duration {text:?}: must be above 0 (e.g. 500ms)"
        )),
        ms => Ok(ms),
    }
}

/// The server's status, with the produce hold fields. A server older than their option
/// (before session 11) closes the connection with `MalformedFrame` for the request: then
/// `client` is replaced by a new connection and asked the basic StatusRequest.
fn ask_status(server: &Server, client: &mut Client) -> Result<flo::client::Status, String> {
    match client.status() {
        Err(ClientError::Server {
            code: flo::client::ErrorCode::MalformedFrame,
            ..
        }) => {
            *client = connect(server)?;
            client.status_basic().map_err(|error| error.to_string())
        }
        answer => answer.map_err(|error| error.to_string()),
    }
}

fn connect(server: &Server) -> Result<Client, String> {
    let options = server.options();
    let addr = &server.addr;
    Client::connect(addr, options).map_err(|error| match error {
        ClientError::Timeout => format!(
            "{addr} accepted the connection but sent no flo handshake answer within {:?}: the other side does not speak flo (or is overloaded; see --timeout)",
            server.timeout
        ),
        ClientError::Protocol { message, .. } => format!(
            "{addr} does not speak flo: its answer to the handshake is not a flo frame ({message})"
        ),
        ClientError::ConnectionClosed => format!(
            "{addr} closed the connection during the flo handshake: the other side does not \
             speak flo, or refused this client (is --token or FLO_TOKEN right?)"
        ),
        error => error.to_string(),
    })
}

/// The flags of `flo-client produce` besides the namespace and the data.
struct ProduceOptions<'a> {
    parent: Option<&'a str>,
    quiet: bool,
    format: Format,
    replicas: u8,
    expect_last: Option<&'a str>,
    reconnect_attempts: u32,
}

/// The data of `produce`'s one event: `-d TEXT` or `--data-file FILE`.
enum Data {
    Bytes(Vec<u8>),
    File(std::path::PathBuf),
}

/// `--data-file`: the bytes of the file (`-`: of standard input), at most `size_max` (the
/// server's event data limit, so that a larger file costs no more memory than one event and is
/// refused before anything is sent). A FIFO (`--data-file <(cmd)`) is read to its end.
fn read_data_file(path: &std::path::Path, size_max: u32) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let shown = path.display();
    let failed = |error: io::Error| format!("--data-file {shown}: could not read it: {error}");
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).map_err(failed)?)
    };
    let mut bytes = Vec::new();
    reader
        .take(u64::from(size_max) + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() > size_max as usize {
        return Err(format!(
            "--data-file {shown} holds more than the server's event data limit of {size_max} \
             bytes: nothing was produced"
        ));
    }
    Ok(bytes)
}

fn produce(
    server: &Server,
    namespace: &str,
    data: Option<Data>,
    options: &ProduceOptions<'_>,
) -> Result<(), String> {
    let parent_id = options.parent.map(parse_event_id).transpose()?;
    let expect = options
        .expect_last
        .map(|text| match text {
            "none" => Ok(Expectation::NoEvents),
            "exists" => Ok(Expectation::HasEvents),
            text => parse_event_id(text).map(Expectation::LastIs),
        })
        .transpose()
        .map_err(|error| format!("--expect-last: {error}"))?;
    // Input that may be slow to come (a pipe, a FIFO, `<(cmd)`) is read before the connection
    // that sends it is opened: the server closes a connection that sends nothing for its
    // --idle-timeout (attack round 16: `(slow-cmd) | flo-client produce --data-file -` failed
    // with Timeout, nothing stored). The read of --data-file is bounded by the server's event
    // data limit, asked on a connection of its own, closed before the read.
    let data = match data {
        // At a terminal, no -d means one event without data (the seed README's example);
        // reading lines from the keyboard would look like a hang.
        None if io::stdin().is_terminal() => Some(Vec::new()),
        None => None,
        Some(Data::Bytes(bytes)) => Some(bytes),
        Some(Data::File(path)) => {
            let size_max = connect(server)?.limits().event_data_size_max;
            Some(read_data_file(&path, size_max)?)
        }
    };
    // The lines of a conditional produce, one atomic batch, likewise.
    let lines = match (&data, &expect) {
        (None, Some(_)) => {
            let limits = connect(server)?.limits();
            Some(read_lines(namespace, limits)?)
        }
        _ => None,
    };
    let mut client = connect(server)?;
    if options.replicas > 0 {
        client
            .set_replicas(options.replicas)
            .map_err(|error| error.to_string())?;
    }
    let mut out: Box<dyn Write> = match (options.quiet, options.format) {
        (true, _) => Box::new(io::sink()),
        (false, Format::Human) => Box::new(BufWriter::new(io::stdout().lock())),
        (false, Format::Json) => {
            Box::new(ops::JsonIdLines::new(BufWriter::new(io::stdout().lock())))
        }
    };
    let event = |data: Vec<u8>| NewEvent {
        namespace: namespace.to_string(),
        parent_id,
        data,
    };
    let count = match (data, expect) {
        (data, Some(expect)) => {
            let events = match (data, lines) {
                (Some(data), _) => vec![event(data)],
                (None, lines) => lines.unwrap_or_default().into_iter().map(event).collect(),
            };
            let ack = client
                .produce_if(expect, &events)
                .map_err(|error| expectation_error(namespace, &error))?;
            write_ack(&mut out, &ack).map_err(|error| output_error(&error))?;
            u64::from(ack.count)
        }
        (Some(data), None) => {
            let ack = client
                .produce_event(event(data))
                .map_err(|error| error.to_string())?;
            write_ack(&mut out, &ack).map_err(|error| output_error(&error))?;
            1
        }
        (None, None) => {
            let line_max = client.limits().event_data_size_max;
            let mut producer = idempotent_producer(client, server, options)?;
            let lines = LineSource {
                namespace,
                parent_id,
                line_max,
            };
            produce_lines(&mut producer, &server.addr, &lines, &mut out)?
        }
    };
    let summary = match options.format {
        Format::Human => format!("Successfully produced {count} events to {namespace}"),
        Format::Json => {
            let mut text = format!("{{\"produced\":{count},\"namespace\":");
            flo::client::format::push_json_string(&mut text, namespace);
            text + "}"
        }
    };
    writeln!(out, "{summary}")
        .and_then(|()| out.flush())
        .map_err(|error| output_error(&error))
}

/// Exit code 3: a conditional produce found the namespace elsewhere than expected.
const EXPECTATION_FAILED_EXIT: u8 = 3;

/// The message of a failed conditional produce; an expectation that did not hold is marked
/// for exit code 3 (`main` looks for the prefix).
fn expectation_error(namespace: &str, error: &ClientError) -> String {
    match error.actual_last_id() {
        Some(actual) => {
            let actual = actual.map_or("none".to_string(), |id| id.to_string());
            format!(
                "{EXPECTATION_FAILED_PREFIX}the newest event of {namespace} is {actual}: \
                 nothing was produced (read it again and retry with --expect-last {actual})"
            )
        }
        None => error.to_string(),
    }
}

const EXPECTATION_FAILED_PREFIX: &str = "expectation failed: ";

/// Reads one line of `input` into `line` (its newline, and a `\r` before it, removed), reading
/// at most `line_max` bytes of data plus the line end: a longer line is an error, so that
/// `flo-client produce < /dev/zero` holds no more than one event's worth of memory (attack
/// round 16). Returns the bytes read, 0 at the end of input.
fn read_line_bounded(
    input: &mut impl io::BufRead,
    line: &mut Vec<u8>,
    line_max: u32,
) -> Result<usize, String> {
    use std::io::Read;
    let allowed = u64::from(line_max) + 2;
    let read = input
        .take(allowed)
        .read_until(b'\n', line)
        .map_err(|error| format!("could not read standard input: {error}"))?;
    let ended = line.last() == Some(&b'\n');
    if ended {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > line_max as usize || (!ended && read as u64 == allowed) {
        return Err(format!(
            "a line of standard input is longer than the server's event data limit of \
             {line_max} bytes (use --data-file for one event of arbitrary bytes)"
        ));
    }
    Ok(read)
}

/// Every line of standard input (newlines removed), for one atomic batch: each line at most
/// the server's event data limit, all of them at most one frame.
fn read_lines(namespace: &str, limits: flo::config::WireLimits) -> Result<Vec<Vec<u8>>, String> {
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = Vec::new();
        let read = read_line_bounded(&mut input, &mut line, limits.event_data_size_max)?;
        if read == 0 {
            break;
        }
        total += read;
        if total > limits.frame_size_max as usize {
            return Err(format!(
                "standard input holds more than one frame of the server ({} bytes): a \
                 conditional produce is one atomic batch; nothing was produced to {namespace}",
                limits.frame_size_max
            ));
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(format!(
            "standard input was empty: no events produced to {namespace} \
             (use -d \"\" for one event without data)"
        ));
    }
    Ok(lines)
}

/// The stdin producer: idempotent, so a reconnect never stores a line twice.
fn idempotent_producer(
    client: Client,
    server: &Server,
    options: &ProduceOptions<'_>,
) -> Result<IdempotentProducer, String> {
    let id = IdempotentProducer::random_id();
    let mut producer =
        IdempotentProducer::with_client(client, &server.addr, server.options(), id, PRODUCE_WINDOW);
    producer.set_reconnect(options.reconnect_attempts, Duration::from_millis(100));
    if options.replicas > 0 {
        // Sent on this connection already; kept for the ones after a reconnect.
        producer
            .set_replicas(options.replicas)
            .map_err(|error| error.to_string())?;
    }
    Ok(producer)
}

/// Says on standard error, one line each, the reconnects of the stdin producer since the last
/// look: it reconnected without a word after a server restart (walkthrough, session 15), and a
/// user whose server went away should know that the lines were resent, and stored once.
struct ReconnectNotice {
    addr: String,
    said: u64,
}

impl ReconnectNotice {
    fn look(&mut self, producer: &IdempotentProducer) {
        while self.said < producer.reconnects() {
            self.said += 1;
            eprintln!(
                "flo-client: the connection to {} was lost; reconnected (reconnect {}) and resent \
                 the lines not yet acknowledged (the server stores each once)",
                self.addr, self.said
            );
        }
    }
}

/// What the stdin producer makes of each line: its namespace and parent, and the longest line
/// (the server's event data limit).
struct LineSource<'a> {
    namespace: &'a str,
    parent_id: Option<EventId>,
    line_max: u32,
}

/// One event per line of standard input, pipelined; prints each id as its ack arrives.
/// Returns how many events were acknowledged.
fn produce_lines(
    producer: &mut IdempotentProducer,
    addr: &str,
    source: &LineSource<'_>,
    out: &mut impl Write,
) -> Result<u64, String> {
    let LineSource {
        namespace,
        parent_id,
        line_max,
    } = *source;
    let mut notice = ReconnectNotice {
        addr: addr.to_string(),
        said: producer.reconnects(),
    };
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut acknowledged = 0u64;
    let mut line = Vec::new();
    let mut lines_read = 0u64;
    let fail = |acknowledged: u64, error: String| {
        format!("{error} ({acknowledged} events were produced to {namespace} before the error)")
    };
    interrupt::install()?;
    loop {
        let idle = input.buffer().is_empty();
        if idle || interrupt::interrupted() {
            // About to wait for input (or stopped by Ctrl-C): show every outstanding ack
            // first, so an interactive user sees each id as soon as the server has it.
            while receive_ack(producer, &mut notice, out, &mut acknowledged)? {}
            out.flush().map_err(|error| output_error(&error))?;
            if interrupt::interrupted() || (idle && !interrupt::enter_idle(acknowledged)) {
                return Err(interrupt::message(acknowledged));
            }
        }
        line.clear();
        let read = read_line_bounded(&mut input, &mut line, line_max);
        interrupt::leave_idle();
        if read.map_err(|error| fail(acknowledged, error))? == 0 {
            break;
        }
        lines_read += 1;
        if producer.is_full() {
            receive_ack(producer, &mut notice, out, &mut acknowledged)?;
        }
        let event = NewEvent {
            namespace: namespace.to_string(),
            parent_id,
            data: line.clone(),
        };
        let sent = producer.send(event);
        notice.look(producer);
        if let Err(error) = sent {
            // Print the acks that arrived before the failure; then report it.
            while let Ok(true) = receive_ack(producer, &mut notice, out, &mut acknowledged) {}
            let _ = out.flush();
            return Err(fail(acknowledged, error.to_string()));
        }
    }
    while receive_ack(producer, &mut notice, out, &mut acknowledged)? {}
    if interrupt::interrupted() {
        // Ctrl-C at a terminal also stops the command writing into the pipe: the end of
        // input that follows is not a complete input.
        out.flush().map_err(|error| output_error(&error))?;
        return Err(interrupt::message(acknowledged));
    }
    // Empty input (/dev/null, a closed pipe, an upstream command that printed nothing) is
    // refused rather than reported as "produced 0 events": a script must not mistake it for
    // success, and inventing an event without data from no input would be a guess.
    if lines_read == 0 {
        return Err(format!(
            "standard input was empty: no events produced to {namespace} \
             (use -d \"\" for one event without data)"
        ));
    }
    Ok(acknowledged)
}

/// Prints the oldest outstanding ack; false when nothing was in flight.
fn receive_ack(
    producer: &mut IdempotentProducer,
    notice: &mut ReconnectNotice,
    out: &mut impl Write,
    acknowledged: &mut u64,
) -> Result<bool, String> {
    let received = producer.recv_ack();
    notice.look(producer);
    match received {
        Ok(Some(ack)) => {
            write_ack(out, &ack).map_err(|error| output_error(&error))?;
            *acknowledged += u64::from(ack.count);
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(error) => {
            // Everything printed so far was acknowledged; make sure it is out before failing.
            let _ = out.flush();
            Err(format!(
                "{error} ({acknowledged} events were produced before the error)"
            ))
        }
    }
}

fn write_ack(out: &mut impl Write, ack: &Ack) -> io::Result<()> {
    for offset in 0..u64::from(ack.count) {
        let id = EventId {
            counter: ack.first_id.counter + offset,
            actor: ack.first_id.actor,
        };
        writeln!(out, "{id}")?;
    }
    Ok(())
}

/// Writes a completion script or man page; a reader that stopped early (`| head`) is fine.
fn write_tool_output(bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    match io::stdout().lock().write_all(bytes) {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(output_error(&error)),
        _ => Ok(()),
    }
}

fn output_error(error: &io::Error) -> String {
    format!(
        "could not write to standard output: {}",
        flo::client::describe_io_error(error)
    )
}

/// What `--from` asks for: a position the server understands, or the last N events, which
/// the client finds itself.
#[derive(Debug, PartialEq)]
enum From {
    Position(StartPosition),
    Last(u64),
}

/// The forms `consume --from` takes, for the message of one it does not recognise.
const FROM_FORMS: &str = "beginning, end, an event id (25 digits or COUNTER.ACTOR), a time \
    (ms:<millis> or RFC 3339 such as 2024-05-01T12:00:00Z), an age such as 90s, 1h or 7d, or -N \
    (the last N events)";

/// The forms a group's start position takes (`--from` but -N).
const GROUP_POSITION_FORMS: &str = "beginning, end, an event id (25 digits or COUNTER.ACTOR), \
    a time (ms:<millis> or RFC 3339 such as 2024-05-01T12:00:00Z) or an age such as 90s, 1h or 7d";

/// Parses `--from`: the forms of [`parse_start_position`], `-N`, and a duration before `now_ms`.
fn parse_from(text: &str, now_ms: u64) -> Result<From, String> {
    parse_position(text, now_ms, FROM_FORMS)
}

/// [`parse_from`], naming `forms` when `text` is none of them. The library's own message for
/// an unrecognised position lists only the forms the protocol has, not the ages and -N that
/// the CLI adds: a user who typed `--from 1hour` was not told that `1h` works (walkthrough,
/// session 9).
fn parse_position(text: &str, now_ms: u64, forms: &str) -> Result<From, String> {
    // The words other stores use for the two ends of the log (Kafka's earliest and latest,
    // KurrentDB's start and end) name the same positions here: a new user's first `--from
    // start` was refused (walkthrough, session 15).
    match text {
        "start" | "earliest" => return Ok(From::Position(StartPosition::Beginning)),
        "latest" | "now" => return Ok(From::Position(StartPosition::End)),
        // Kafka's offsets start at 0, so `--from 0` is a natural guess; here 0 is no event id.
        "0" => {
            return Err(format!(
                "invalid start position {text:?}: 0 is not an event id; the start of the log is \
                 `beginning`"
            ))
        }
        _ => {}
    }
    if let Some(count) = text.strip_prefix('-') {
        let count: u64 = count.parse().map_err(|_| {
            format!("invalid start position {text:?}: expected -N, a count of events")
        })?;
        if count == 0 || count > FROM_LAST_COUNT_MAX {
            return Err(format!(
                "invalid start position {text:?}: -N must be between 1 and {FROM_LAST_COUNT_MAX}"
            ));
        }
        return Ok(From::Last(count));
    }
    let relative =
        text.ends_with(['s', 'm', 'h', 'd']) && text.starts_with(|c: char| c.is_ascii_digit());
    if relative {
        let ago =
            parse_duration_ms(text).map_err(|error| format!("invalid start position: {error}"))?;
        return Ok(From::Position(StartPosition::Timestamp(
            now_ms.saturating_sub(ago),
        )));
    }
    parse_start_position(text)
        .map(From::Position)
        .map_err(|error| match error.contains(": expected beginning, end") {
            true => format!("invalid start position {text:?}: expected {forms}"),
            false => error,
        })
}

/// A group's start position (`consume --group --from`, `groups create --from`, `groups reset
/// --to`): the forms of `--from` but `-N`, which only a reader that counts can take.
fn group_position(text: &str) -> Result<StartPosition, String> {
    match parse_position(text, wall_clock_ms(), GROUP_POSITION_FORMS)? {
        From::Position(start) => Ok(start),
        From::Last(_) => Err(format!(
            "a group cannot start at {text:?} (-N): a group starts at a position the server \
             knows (beginning, end, an event id, a time, or an age such as 7d)"
        )),
    }
}

/// Milliseconds since the Unix epoch, for `--from` times given as "ago".
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The flags of `flo-client consume` (without --group) besides the glob and --from.
struct ConsumeOptions {
    tail: bool,
    limit: u64,
    format: Format,
    order: Order,
    skip_damaged: bool,
}

fn consume(
    server: &Server,
    glob: &str,
    from: &str,
    options: &ConsumeOptions,
) -> Result<(), String> {
    let ConsumeOptions {
        tail,
        limit,
        format,
        order,
        skip_damaged,
    } = *options;
    let now_ms = wall_clock_ms();
    let from = parse_from(from, now_ms)?;
    stop_cleanly_on_ctrl_c()?;
    let mut client = connect(server)?;
    let (start, server_limit, mut held_back) = match from {
        From::Position(start) => (start, limit, None),
        // The last N: read every matching event from the beginning keeping the newest N, and
        // print them once caught up (or at the end); the limit then counts printed events.
        From::Last(count) => (StartPosition::Beginning, 0, Some(LastEvents::new(count))),
    };
    let mut subscription = client
        .consume()
        .glob(glob)
        .start(start)
        .limit(server_limit)
        .tail(tail || held_back.is_some())
        .order(order)
        .skip_damaged(skip_damaged)
        .subscribe()
        .map_err(|error| error.to_string())?;
    let mut out = BufWriter::new(io::stdout().lock());
    let mut printed = 0u64;
    // The id of the last event printed (for the OrderStalled hint).
    let mut last_id: Option<EventId> = None;
    let mut print = |out: &mut BufWriter<_>, event: &Event| -> Result<bool, String> {
        // Counted here too when the server was given the limit: a server that ignores it
        // (hostile or broken) must not get more than `limit` events printed.
        if limit > 0 && printed >= limit {
            return Ok(false);
        }
        printed += 1;
        let text = match format {
            Format::Human => format_human(event),
            Format::Json => format_json(event),
        };
        match out.write_all(text.as_bytes()) {
            Ok(()) => Ok(true),
            Err(error) => stopped_reader(error).map(|()| false),
        }
    };
    loop {
        // Flush before any wait for the network, so a tailing consumer shows each event as
        // it arrives while a catch-up read still writes in large blocks.
        let buffered = subscription
            .has_buffered()
            .map_err(|error| error.to_string())?;
        if !buffered && flush_or_stop(&mut out)? {
            return Ok(());
        }
        let delivery = subscription.next_delivery().map_err(|error: ClientError| {
            order_stalled_hint(&error, last_id).map_or(error.to_string(), |hint| {
                // What was printed is a prefix of the id order: say how to go on from it.
                let _ = out.flush();
                format!("{error}; {hint}")
            })
        })?;
        let event = match delivery {
            None | Some(Delivery::End(_)) => break,
            Some(Delivery::CaughtUp) => {
                if let Some(last) = held_back.take() {
                    for event in &last.events {
                        last_id = Some(event.id);
                        if !print(&mut out, event)? {
                            return flush_or_stop(&mut out).map(|_| ());
                        }
                    }
                    if !tail {
                        break;
                    }
                }
                if flush_or_stop(&mut out)? {
                    return Ok(());
                }
                continue;
            }
            Some(Delivery::Skipped(count)) => {
                // Skipped carries no reason: without --skip-damaged only retention sends it.
                if skip_damaged {
                    eprintln!(
                        "warning: {count} records of the server's log that this consumer had \
                         not read yet are skipped: deleted by retention, or unreadable on the \
                         server's disk (--skip-damaged)"
                    );
                } else {
                    eprintln!(
                        "warning: the server's retention deleted {count} records this consumer \
                         had not read yet; they are skipped"
                    );
                }
                continue;
            }
            Some(Delivery::Event(event)) => event,
        };
        if let Some(last) = held_back.as_mut() {
            last.push(event);
            continue;
        }
        last_id = Some(event.id);
        if !print(&mut out, &event)? {
            return flush_or_stop(&mut out).map(|_| ());
        }
    }
    if let Some(last) = held_back.take() {
        for event in &last.events {
            if !print(&mut out, event)? {
                break;
            }
        }
    }
    flush_or_stop(&mut out).map(|_| ())
}

/// For an id-order subscription ended by OrderStalled: how to continue the same sequence
/// later, on any node (the events printed are a prefix of the id order, so "after the last
/// id" is exactly the rest of it).
fn order_stalled_hint(error: &ClientError, last_id: Option<EventId>) -> Option<String> {
    match error {
        ClientError::Server {
            code: flo::client::ErrorCode::OrderStalled,
            ..
        } => Some(match last_id {
            Some(id) => format!(
                "to continue the same sequence later, on any node, run the same command with --from {id}"
            ),
            None => "no event was printed: run the same command later, on any node".to_string(),
        }),
        _ => None,
    }
}

/// `consume --group`: joins the group, prints each event and acknowledges it once it is
/// written to standard output (acks are sent before any wait for the network, after the
/// output is flushed). Without -t it stops when the group has caught up; with --limit after
/// that many events, leaving the group (its other unacknowledged events, none here, would go
/// to the other members).
/// A membership's error for `consume --group`; a glob mismatch after a join without `-n`
/// (whose default `/**` is rarely a group's glob) says how to give the group's glob.
pub(crate) fn group_error(group: &str, glob: &str, error: ClientError) -> String {
    let hint = match &error {
        ClientError::Server {
            code: flo::client::ErrorCode::GroupGlobMismatch,
            ..
        } => {
            if glob == "/**" {
                " (without -n the glob is /**: join with -n and the group's glob)"
            } else {
                " (join with -n and the group's glob)"
            }
        }
        _ => "",
    };
    format!("group {group:?}: {error}{hint}")
}

/// A join starts the group at `--from` only when it creates the group; an existing group goes
/// on from its own position. A new user's `consume --group cooks --from end` printed the
/// group's oldest unacknowledged event without a word (walkthrough, session 15), so say it on
/// standard error. The look costs one request before the join; a server that refuses it (a
/// principal without admin) or has no such group (this join creates it) gets no note.
fn note_an_existing_group_ignores_from(client: &mut Client, group: &str, from: &str) {
    if let Ok(info) = client.group_info(group) {
        eprintln!(
            "flo-client: group {group:?} exists, so it goes on from its own position (acknowledged \
             up to log offset {}), not from --from {from}; `flo-client groups reset {group} --to \
             {from}` moves it once its members have stopped",
            info.floor
        );
    }
}

/// What `consume --group` does with each event.
enum GroupOutput {
    /// Print it, then acknowledge it.
    Print(Format),
    /// `--exec`: run the command; acknowledge on exit 0, refuse after `nack_delay` otherwise.
    Exec {
        command: String,
        nack_delay: Duration,
    },
}

fn consume_group(
    server: &Server,
    group: &str,
    glob: &str,
    tail: bool,
    from: &str,
    limit: u64,
    output: &GroupOutput,
) -> Result<(), String> {
    let start = group_position(from)?;
    match output {
        GroupOutput::Exec { .. } => exec::stop_after_the_command_on_ctrl_c()?,
        GroupOutput::Print(_) => stop_cleanly_on_ctrl_c()?,
    }
    let mut client = connect(server)?;
    if from != "beginning" {
        note_an_existing_group_ignores_from(&mut client, group, from);
    }
    let group_ack_timeout = known_group_ack_timeout(server, &mut client, group)?;
    let mut builder =
        (client.join_group(group).glob(glob).start(start)).group_ack_timeout(group_ack_timeout);
    let format = match output {
        GroupOutput::Print(format) => *format,
        GroupOutput::Exec {
            command,
            nack_delay,
        } => {
            // One event in hand at a time: the command may be slow, and an event held
            // behind it would reach its ack time-out and go to another member meanwhile.
            let consumer = builder
                .credit(1)
                .max_in_flight(1)
                .probe_progress(true)
                .join()
                .map_err(|error| group_error(group, glob, error))?;
            return exec::consume(consumer, group, glob, tail, limit, command, *nack_delay);
        }
    };
    if limit > 0 {
        // No more in hand than will be printed, so that nothing waits for a time-out.
        let window = u32::try_from(limit).unwrap_or(u32::MAX);
        builder = builder
            .credit(window.min(256))
            .max_in_flight(window.min(1000));
    }
    // Probed: the member sends GroupProgress while standard output is blocked.
    let mut consumer = (builder.probe_progress(true).join()).map_err(|error| error.to_string())?;
    let mut out = group_print::HeldOutput::start()?;
    let mut printed = 0u64;
    let mut said_single_acks = false;
    let mut said_no_progress = false;
    loop {
        if limit > 0 && printed >= limit {
            break;
        }
        if consumer.ack_ranges_refused() && !said_single_acks {
            said_single_acks = true;
            eprintln!(
                "flo-client: group {group:?}: the server is older than GroupAckRange; joined \
                 again, acknowledging by id"
            );
        }
        if consumer.progress_refused() && !said_no_progress {
            said_no_progress = true;
            eprintln!("{}", exec::no_progress_note(group));
        }
        // Flush before any wait for the network (the consumer sends its queued acks only
        // then, so an event is acknowledged only after it reached standard output).
        let buffered = consumer.has_buffered().map_err(|error| error.to_string())?;
        if !buffered && out.flush(&mut consumer)? {
            return Ok(());
        }
        let event = match consumer.next_delivery() {
            Ok(None) | Ok(Some(GroupDelivery::End(_))) => break,
            Ok(Some(GroupDelivery::CaughtUp)) if !tail => break,
            Ok(Some(GroupDelivery::CaughtUp)) => continue,
            Ok(Some(GroupDelivery::Event(event))) => event,
            Err(error) => return Err(group_error(group, glob, error)),
        };
        let text = match format {
            Format::Human => format_human(&event),
            Format::Json => format_json(&event),
        };
        if out.push(&text, &mut consumer)? {
            return Ok(());
        }
        printed += 1;
        if consumer.queued_acks() + 1 >= flo::client::ACK_BATCH_DEFAULT
            && out.flush(&mut consumer)?
        {
            return Ok(());
        }
        consumer.ack(event.id).map_err(|error| error.to_string())?;
    }
    if out.flush(&mut consumer)? {
        return Ok(());
    }
    consumer
        .leave()
        .map_err(|error| format!("group {group}: {error}"))
}

/// The newest `count` events seen so far, for `--from -N`.
struct LastEvents {
    count: u64,
    events: VecDeque<Event>,
}

impl LastEvents {
    fn new(count: u64) -> LastEvents {
        LastEvents {
            count,
            events: VecDeque::new(),
        }
    }

    fn push(&mut self, event: Event) {
        if self.events.len() as u64 == self.count {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

/// The group's ack time-out, which the join does not tell a member, so that it sends
/// GroupProgress often enough (`GroupConsumer::progress_interval`): asked with
/// GroupsDetailRequest. Zero when the server does not say: the group does not exist yet (the
/// join creates it with the server's default), the principal is not an admin
/// (PermissionDenied), or the server is older than that request (it closed the connection
/// with MalformedFrame: `client` is connected again).
fn known_group_ack_timeout(
    server: &Server,
    client: &mut Client,
    group: &str,
) -> Result<Duration, String> {
    use flo::client::ErrorCode;
    match client.group_detail(group) {
        Ok(detail) => Ok(Duration::from_millis(u64::from(
            detail.settings.ack_timeout_ms,
        ))),
        Err(ClientError::Server {
            code: ErrorCode::NoSuchGroup | ErrorCode::PermissionDenied,
            ..
        }) => Ok(Duration::ZERO),
        Err(ClientError::Server {
            code: ErrorCode::MalformedFrame,
            ..
        }) => {
            *client = connect(server)?;
            Ok(Duration::ZERO)
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Flushes the output; true when the reader went away (`consume | head`), which ends the
/// consumer successfully.
fn flush_or_stop(out: &mut impl Write) -> Result<bool, String> {
    match out.flush() {
        Ok(()) => Ok(false),
        Err(error) => stopped_reader(error).map(|()| true),
    }
}

fn stopped_reader(error: io::Error) -> Result<(), String> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(output_error(&error))
    }
}

/// Ctrl-C (SIGINT) ends a consumer with exit code 0. The output is flushed whenever the
/// consumer waits for the network, so what was printed before the wait is complete.
fn stop_cleanly_on_ctrl_c() -> Result<(), String> {
    // SAFETY: the handler only calls `_exit` (through `low_level::exit`), which is
    // async-signal-safe; it touches no locks, no allocator and no Rust state.
    let registered = unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGINT, || {
            signal_hook::low_level::exit(0)
        })
    };
    registered
        .map(|_| ())
        .map_err(|error| format!("could not install the Ctrl-C handler: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walkthrough (issue 17): a user whose `consume --order id` ended with OrderStalled was
    /// told to "resume from the cursor" with no way to give one; the CLI says how.
    #[test]
    fn order_stalled_says_how_to_continue_the_same_sequence() {
        let stalled = ClientError::Server {
            scope: flo::client::ErrorScope::Subscription(1),
            code: flo::client::ErrorCode::OrderStalled,
            message: "id order stalled".into(),
        };
        let hint = order_stalled_hint(&stalled, Some(EventId::new(7, 2))).unwrap();
        assert!(
            hint.ends_with("run the same command with --from 0000000000000000000700002"),
            "{hint}"
        );
        assert!(order_stalled_hint(&stalled, None).is_some());
        assert_eq!(order_stalled_hint(&ClientError::Timeout, None), None);
    }

    #[test]
    fn the_address_comes_from_flags_then_flo_addr_then_the_default() {
        assert_eq!(
            server_addr(None, None, None).as_deref(),
            Ok("localhost:3000")
        );
        assert_eq!(
            server_addr(None, None, Some("db:4000")).as_deref(),
            Ok("db:4000")
        );
        assert_eq!(
            server_addr(None, Some(5), Some("db:4000")).as_deref(),
            Ok("db:5")
        );
        assert_eq!(
            server_addr(Some("h"), None, Some("db:4000")).as_deref(),
            Ok("h:4000")
        );
        assert_eq!(
            server_addr(Some("h:7"), None, Some("db:4000")).as_deref(),
            Ok("h:7")
        );
        assert_eq!(
            server_addr(Some("::1"), None, None).as_deref(),
            Ok("[::1]:3000")
        );
        assert_eq!(
            server_addr(Some("[::1]:9"), None, None).as_deref(),
            Ok("[::1]:9")
        );
        assert!(server_addr(None, None, Some("db")).is_err());
        assert!(server_addr(Some("h:x"), None, None).is_err());
        assert_eq!(
            server_addr(Some("[::1]:4000"), None, None),
            Ok("[::1]:4000".into())
        );
        for bad in [
            "http://localhost:3000",
            "localhost:3000:99",
            " localhost",
            "a/b",
            ":3000",
        ] {
            let error = server_addr(Some(bad), None, None).expect_err(bad);
            assert!(error.contains("(not a URL)"), "{bad}: {error}");
        }
        assert!(server_addr(None, None, Some("http://h:3000")).is_err());
    }

    #[test]
    fn from_takes_last_n_and_times_relative_to_now() {
        let now = 10_000_000;
        assert_eq!(parse_from("-3", now), Ok(From::Last(3)));
        assert_eq!(
            parse_from("1h", now),
            Ok(From::Position(StartPosition::Timestamp(now - 3_600_000)))
        );
        assert_eq!(
            parse_from("30d", now),
            Ok(From::Position(StartPosition::Timestamp(0)))
        );
        assert_eq!(
            parse_from("end", now),
            Ok(From::Position(StartPosition::End))
        );
        assert!(parse_from("-0", now).is_err());
        assert!(parse_from("-100001", now).is_err());
        assert!(parse_from("-x", now).is_err());
        assert!(parse_from("1w", now).is_err());
    }

    /// Walkthrough (session 15): two flo-client members of one group were listed under
    /// MEMBER as 1 and 1, their subscription ids; the column says what it holds.
    #[test]
    fn group_members_are_listed_by_connection_and_subscription_id() {
        let member = |connection: &str| flo::client::GroupMemberInfo {
            subscription_id: 1,
            connection: connection.to_string(),
            in_flight: 0,
            max_in_flight: 1000,
            credit: 256,
        };
        let detail = flo::client::GroupDetail {
            info: flo::client::GroupInfo {
                name: "w".to_string(),
                glob: "/**".to_string(),
                members: 2,
                in_flight: 0,
                pending: 0,
                parked: 0,
                floor: 0,
                next: 0,
                acked_above_floor: 0,
                lag: 0,
                oldest_pending_age_ms: 0,
            },
            settings: flo::client::GroupSettings {
                ack_timeout_ms: 30_000,
                max_deliveries: 10,
                max_in_flight: 1000,
            },
            members: vec![member("127.0.0.1:5001"), member("127.0.0.1:5002")],
        };
        let mut out = String::new();
        format_group_detail(&mut out, &detail);
        let header = out
            .lines()
            .find(|line| line.contains("CONNECTION"))
            .unwrap_or_else(|| panic!("no member header in {out}"));
        let columns: Vec<&str> = header.split("  ").map(str::trim).collect();
        assert!(columns.contains(&"SUB ID"), "{header}");
        assert!(!header.contains("MEMBER"), "{header}");
    }

    /// Walkthrough (session 15): a new user's `--from start` (and Kafka's `earliest` and
    /// `latest`) was refused; they name the two ends of the log. `--from 0` says what to write.
    #[test]
    fn from_takes_the_other_stores_names_for_the_ends_of_the_log() {
        for text in ["start", "earliest"] {
            let position = From::Position(StartPosition::Beginning);
            assert_eq!(parse_from(text, 1), Ok(position), "{text}");
            assert_eq!(group_position(text), Ok(StartPosition::Beginning), "{text}");
        }
        for text in ["latest", "now"] {
            let position = From::Position(StartPosition::End);
            assert_eq!(parse_from(text, 1), Ok(position), "{text}");
            assert_eq!(group_position(text), Ok(StartPosition::End), "{text}");
        }
        let error = parse_from("0", 1).expect_err("0 is no event id");
        assert!(
            error.contains("the start of the log is `beginning`"),
            "{error}"
        );
    }

    /// Walkthrough (session 9): `--from garbage` listed beginning, end, an id and two time
    /// forms, but not the ages (1h) and -N that `--from` takes too.
    #[test]
    fn an_unknown_position_names_every_form_the_flag_takes() {
        let error = parse_from("1hour", 10_000).expect_err("not a position");
        assert!(error.contains("an age such as 90s, 1h or 7d"), "{error}");
        assert!(error.contains("-N (the last N events)"), "{error}");
        let error = group_position("garbage").expect_err("not a position");
        assert!(error.contains("an age such as 90s, 1h or 7d"), "{error}");
        assert!(!error.contains("-N"), "{error}");
        // A malformed id keeps its own, more precise message.
        let error = parse_from("00000000000000000001", 10_000).expect_err("not an id");
        assert!(error.contains("expected 25 digits"), "{error}");
    }
}
