//! The `flo-client` command-line client: argument parsing and output only; the protocol work
//! is in `flo::client`.

use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use flo::client::format::{format_human, format_json, format_status, parse_start_position};
use flo::client::{
    Ack, Client, ClientError, ClientOptions, ClientTls, Delivery, NewEvent, Producer,
};
use flo::event::EventId;

/// Produces to stdin-fed streams keep this many events in flight.
const PRODUCE_WINDOW: usize = 256;

/// Produce events to and consume events from a flo server.
#[derive(Parser, Debug)]
#[command(name = "flo-client", version)]
struct Cli {
    /// The server's host name or address.
    #[arg(short = 'H', long, default_value = "localhost", global = true)]
    host: String,
    /// The server's port.
    #[arg(short, long, default_value_t = 3000, global = true)]
    port: u16,
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Produce events and print their ids.
    ///
    /// With -d, one event with that data. Without -d and with standard input piped or
    /// redirected, one event per line of it (the newline removed), many in flight at once.
    /// Without -d at a terminal, one event without data (as in `produce -n /food/lunch/salad`).
    /// Empty standard input produces nothing and exits with code 1 (in a script, use -d ""
    /// for one event without data). Prints each event id as the server acknowledges it, then
    /// a summary line. If the server goes away, every id printed was acknowledged, and the
    /// exit code is 1.
    Produce {
        /// The namespace to produce to, such as /food/breakfast/eggs.
        #[arg(short, long)]
        namespace: String,
        /// The event data. Use -d "" for an event without data.
        #[arg(short, long)]
        data: Option<String>,
        /// The id of the event these events respond to (25 digits or COUNTER.ACTOR).
        #[arg(long, value_name = "ID")]
        parent: Option<String>,
    },
    /// Consume events and print them.
    ///
    /// Without -t it stops after the stored events; with -t it waits for new ones until
    /// Ctrl-C, which exits with code 0.
    Consume {
        /// Only events whose namespace matches this glob (`*` is one path segment, `**` any
        /// number of them).
        #[arg(short, long = "namespace", value_name = "GLOB", default_value = "/**")]
        namespace: String,
        /// Keep waiting for new events after the stored ones are printed (like tail -f);
        /// stop with Ctrl-C.
        #[arg(short, long)]
        tail: bool,
        /// Where to start: `beginning`; `end` (only new events); an event id (25 digits or
        /// COUNTER.ACTOR), to start just after that event; or a time, as `ms:<milliseconds
        /// since the epoch>` or RFC 3339 such as 2024-05-01T12:00:00Z.
        #[arg(long, value_name = "POSITION", default_value = "beginning")]
        from: String,
        /// Stop after this many events (0: no limit).
        #[arg(long, value_name = "N", default_value_t = 0)]
        limit: u64,
        /// `human`: the event id, namespace and data as text, each event after a blank line.
        /// `json`: one JSON object per line with id, parent_id, namespace, timestamp (ms) and
        /// data (a string when it is UTF-8, otherwise base64 with "data_encoding":"base64").
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the server's cluster status: its actor id, counter, version vector, and each
    /// member's state and how many records it has not yet been sent (lag).
    Status,
    /// Benchmark the server: produce throughput and acknowledgement latency, end-to-end
    /// latency to tailing consumers, catch-up read throughput.
    ///
    /// Opens --connections producer connections, each keeping --window produces of --size
    /// bytes in flight, to a fresh namespace (/bench/<pid>_<ns>), for --count events or
    /// --duration seconds, as fast as acknowledgements allow or at --rate events/s. Only
    /// acknowledged events count; latency runs from the send (or, at a --rate, from the moment
    /// the event was due) to its acknowledgement. Prints events/s, MB/s and latency p50, p99 and
    /// p99.9; with --consumers, end-to-end latency from produce to a tailing consumer too;
    /// with --read, stores --count events and then measures reading them back from the start
    /// on one connection. --json prints one JSON object (the one ci/bench.sh collects).
    ///
    /// Example: flo-client bench --connections 4 --window 64 --size 100 --duration 3
    Bench(BenchArgs),
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
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Store --count events, then read them back from the start on one connection (a
    /// subscription with a large credit window, until its end) and report that.
    #[arg(long, conflicts_with_all = ["consumers", "duration", "rate"])]
    read: bool,
    /// Tailing consumers that measure end-to-end latency (produce to delivery), each on its
    /// own connection and receiving every event; the latency merges all their deliveries.
    /// Events must be at least 8 bytes (they carry their send time); best with --rate.
    #[arg(long, value_name = "N", default_value_t = 0)]
    consumers: usize,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Human,
    Json,
}

/// Where to connect and how.
struct Endpoint {
    addr: String,
    options: ClientOptions,
}

impl Endpoint {
    fn from_cli(cli: &Cli) -> Result<Endpoint, String> {
        let tls = match (&cli.ca, cli.tls) {
            (Some(ca), true) => Some(ClientTls {
                ca_pem: std::fs::read(ca)
                    .map_err(|error| format!("could not read {}: {error}", ca.display()))?,
                server_name: cli.tls_server_name.clone(),
            }),
            (Some(_), false) => return Err("--ca is for TLS connections: add --tls".into()),
            (None, _) => None,
        };
        Ok(Endpoint {
            addr: format!("{}:{}", cli.host, cli.port),
            options: ClientOptions {
                tls,
                ..ClientOptions::default()
            },
        })
    }

    fn connect(&self) -> Result<Client, String> {
        Client::connect(&self.addr, self.options.clone()).map_err(|error| error.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let endpoint = match Endpoint::from_cli(&cli) {
        Ok(endpoint) => endpoint,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Produce {
            namespace,
            data,
            parent,
        } => produce(&endpoint, &namespace, data, parent.as_deref()),
        Command::Consume {
            namespace,
            tail,
            from,
            limit,
            format,
        } => consume(&endpoint, &namespace, tail, &from, limit, format),
        Command::Status => status(&endpoint),
        Command::Bench(args) => bench::run(&endpoint.addr, &endpoint.options, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn status(endpoint: &Endpoint) -> Result<(), String> {
    let mut client = endpoint.connect()?;
    let status = client.status().map_err(|error| error.to_string())?;
    print!("{}", format_status(&status));
    Ok(())
}

mod bench;

fn produce(
    endpoint: &Endpoint,
    namespace: &str,
    data: Option<String>,
    parent: Option<&str>,
) -> Result<(), String> {
    let parent_id = parent
        .map(|text| text.parse::<EventId>())
        .transpose()
        .map_err(|error| error.to_string())?;
    let mut client = endpoint.connect()?;
    let mut out = BufWriter::new(io::stdout().lock());
    // At a terminal, no -d means one event without data (the seed README's example); reading
    // lines from the keyboard would look like a hang.
    let data = match data {
        None if io::stdin().is_terminal() => Some(String::new()),
        data => data,
    };
    let count = match data {
        Some(data) => {
            let ack = client
                .produce_event(NewEvent {
                    namespace: namespace.to_string(),
                    parent_id,
                    data: data.into_bytes(),
                })
                .map_err(|error| error.to_string())?;
            write_ack(&mut out, &ack).map_err(|error| output_error(&error))?;
            1
        }
        None => produce_lines(&mut client, namespace, parent_id, &mut out)?,
    };
    writeln!(out, "Successfully produced {count} events to {namespace}")
        .and_then(|()| out.flush())
        .map_err(|error| output_error(&error))
}

/// One event per line of standard input, pipelined; prints each id as its ack arrives.
/// Returns how many events were acknowledged.
fn produce_lines(
    client: &mut Client,
    namespace: &str,
    parent_id: Option<EventId>,
    out: &mut impl Write,
) -> Result<u64, String> {
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut producer = client.producer(PRODUCE_WINDOW);
    let mut acknowledged = 0u64;
    let mut line = Vec::new();
    let mut lines_read = 0u64;
    let fail = |acknowledged: u64, error: String| {
        format!("{error} ({acknowledged} events were produced to {namespace} before the error)")
    };
    loop {
        if input.buffer().is_empty() {
            // About to wait for input: show every outstanding ack first, so an interactive
            // user sees each id as soon as the server has it.
            while receive_ack(&mut producer, out, &mut acknowledged)? {}
            out.flush().map_err(|error| output_error(&error))?;
        }
        line.clear();
        let read = input.read_until(b'\n', &mut line);
        if read.map_err(|error| {
            fail(
                acknowledged,
                format!("could not read standard input: {error}"),
            )
        })? == 0
        {
            break;
        }
        lines_read += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        if producer.is_full() {
            receive_ack(&mut producer, out, &mut acknowledged)?;
        }
        let event = NewEvent {
            namespace: namespace.to_string(),
            parent_id,
            data: line.clone(),
        };
        if let Err(error) = producer.send(event) {
            // Print the acks that arrived before the failure; then report it.
            while let Ok(true) = receive_ack(&mut producer, out, &mut acknowledged) {}
            let _ = out.flush();
            return Err(fail(acknowledged, error.to_string()));
        }
    }
    while receive_ack(&mut producer, out, &mut acknowledged)? {}
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
    producer: &mut Producer<'_>,
    out: &mut impl Write,
    acknowledged: &mut u64,
) -> Result<bool, String> {
    match producer.recv_ack() {
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

fn output_error(error: &io::Error) -> String {
    format!(
        "could not write to standard output: {}",
        flo::client::describe_io_error(error)
    )
}

fn consume(
    endpoint: &Endpoint,
    glob: &str,
    tail: bool,
    from: &str,
    limit: u64,
    format: Format,
) -> Result<(), String> {
    let start = parse_start_position(from)?;
    stop_cleanly_on_ctrl_c()?;
    let mut client = endpoint.connect()?;
    let mut subscription = client
        .consume()
        .glob(glob)
        .start(start)
        .limit(limit)
        .tail(tail)
        .subscribe()
        .map_err(|error| error.to_string())?;
    let mut out = BufWriter::new(io::stdout().lock());
    loop {
        // Flush before any wait for the network, so a tailing consumer shows each event as
        // it arrives while a catch-up read still writes in large blocks.
        let buffered = subscription
            .has_buffered()
            .map_err(|error| error.to_string())?;
        if !buffered && flush_or_stop(&mut out)? {
            return Ok(());
        }
        let delivery = subscription
            .next_delivery()
            .map_err(|error: ClientError| error.to_string())?;
        let event = match delivery {
            None | Some(Delivery::End(_)) => break,
            Some(Delivery::CaughtUp) => {
                if flush_or_stop(&mut out)? {
                    return Ok(());
                }
                continue;
            }
            Some(Delivery::Skipped(count)) => {
                eprintln!(
                    "warning: the server's retention deleted {count} records this consumer \
                     had not read yet; they are skipped"
                );
                continue;
            }
            Some(Delivery::Event(event)) => event,
        };
        let text = match format {
            Format::Human => format_human(&event),
            Format::Json => format_json(&event),
        };
        if let Err(error) = out.write_all(text.as_bytes()) {
            return stopped_reader(error);
        }
    }
    flush_or_stop(&mut out).map(|_| ())
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
