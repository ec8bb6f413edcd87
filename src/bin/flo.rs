//! The `flo` server binary: argument parsing, logging set-up, signals and exit codes around
//! the embedded server (`flo::reactor::Server`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use flo::config::{Config, FsyncPolicy, Retention};
use flo::event::ActorId;
use flo::reactor::Server;
use flo::units::{parse_duration_ms, parse_size};

/// flo: a small, fast, durable event stream server.
#[derive(Parser, Debug)]
#[command(name = "flo", version, about, long_about = None)]
struct Args {
    /// Directory for the event log (created if missing).
    #[arg(short = 'd', long = "data-dir", default_value = ".")]
    data_dir: PathBuf,

    /// TCP port for clients.
    #[arg(short = 'p', long, default_value_t = 3000)]
    port: u16,

    /// Address to listen on. Anything other than a loopback address exposes the server to the
    /// network (there is no client authentication); that choice is logged.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,

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

    /// When acknowledged events are on disk: `always` (fdatasync before every ack; the
    /// default), `interval:<ms>` (fdatasync at most every <ms>; a power loss can lose that
    /// window of acknowledged events) or `never` (the OS decides; a power loss can lose any
    /// acknowledged event not yet written back). All three survive a crash of flo itself.
    #[arg(long, default_value = "always")]
    fsync: FsyncPolicy,

    /// Most client connections at once; more are refused with a TooManyConnections error.
    #[arg(long = "max-connections", default_value_t = 4096)]
    max_connections: usize,

    /// A connection must send Hello within this time (e.g. 10s, 500ms).
    #[arg(long = "handshake-timeout", default_value = "10s", value_parser = parse_duration_ms)]
    handshake_timeout: u64,

    /// A connection that sends no frame for this long is closed with a Timeout error; 0s
    /// disables it. Clients keep a connection open with Ping.
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
    #[arg(long = "log-level", default_value = "info")]
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
    #[arg(long = "peer-addr")]
    peer_addrs: Vec<SocketAddr>,

    /// Shared secret cluster members must present in their handshake. It travels in
    /// cleartext: it keeps misconfigured nodes out, not eavesdroppers.
    #[arg(long = "cluster-secret")]
    cluster_secret: Option<String>,

    /// The address other members dial to reach this node (default: the listening address;
    /// set it when binding 0.0.0.0).
    #[arg(long = "advertise-addr")]
    advertise_addr: Option<SocketAddr>,

    /// With --fsync interval/never and peers: how long produces are refused (NotReady) at start-up
    /// for this node to catch up with its peers, so that it cannot reuse the ids of events it
    /// lost in a power loss (e.g. 30s).
    #[arg(long = "catch-up-timeout", default_value = "30s", value_parser = parse_duration_ms)]
    catch_up_timeout: u64,
}

fn parse_module_level(text: &str) -> Result<(String, log::LevelFilter), String> {
    let (module, level) = text
        .split_once('=')
        .ok_or_else(|| format!("expected MODULE=LEVEL, got {text:?}"))?;
    let level = level
        .parse()
        .map_err(|_| format!("invalid log level {level:?}"))?;
    Ok((module.to_string(), level))
}

/// A small logger: a default level, per-module levels (longest matching prefix wins), and
/// lines to standard error and optionally a file.
struct Logger {
    default_level: log::LevelFilter,
    modules: Vec<(String, log::LevelFilter)>,
    file: Option<Mutex<std::fs::File>>,
}

impl Logger {
    fn level_for(&self, target: &str) -> log::LevelFilter {
        self.modules
            .iter()
            .filter(|(module, _)| target.starts_with(module.as_str()))
            .max_by_key(|(module, _)| module.len())
            .map(|(_, level)| *level)
            .unwrap_or(self.default_level)
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level_for(metadata.target())
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let line = format!(
            "{} {:5} {}: {}\n",
            utc_text(millis as u64),
            record.level(),
            record.target(),
            record.args()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Some(file) = &self.file {
            if let Ok(mut file) = file.lock() {
                let _ = file.write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {
        if let Some(file) = &self.file {
            if let Ok(mut file) = file.lock() {
                let _ = file.flush();
            }
        }
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
fn utc_text(millis: u64) -> String {
    let seconds = millis / 1000;
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), shifted so that eras start in March.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        millis % 1000
    )
}

fn init_logging(args: &Args) -> Result<(), String> {
    let file = match &args.log_file {
        None => None,
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|error| format!("could not open log file {}: {error}", path.display()))?,
        )),
    };
    let max_level = args
        .log_modules
        .iter()
        .map(|(_, level)| *level)
        .chain([args.log_level])
        .max()
        .unwrap_or(args.log_level);
    let logger = Logger {
        default_level: args.log_level,
        modules: args.log_modules.clone(),
        file,
    };
    log::set_boxed_logger(Box::new(logger)).map_err(|error| error.to_string())?;
    log::set_max_level(max_level);
    Ok(())
}

fn config_from(args: &Args) -> Config {
    let mut config = Config::new(SocketAddr::new(args.bind, args.port), args.data_dir.clone());
    config.actor_id = ActorId(args.actor_id);
    config.connections_max = args.max_connections;
    config.handshake_timeout = Duration::from_millis(args.handshake_timeout);
    config.idle_timeout = Duration::from_millis(args.idle_timeout);
    config.linger_timeout = Duration::from_millis(args.linger_timeout);
    config.shutdown_timeout = Duration::from_millis(args.shutdown_timeout);
    config.storage.fsync = args.fsync;
    config.storage.cache_bytes_max = args.max_cache_memory as usize;
    config.storage.segment_size_max = args.segment_size;
    config.storage.retention = Retention {
        events_max: args.max_events,
        bytes_max: args.max_bytes,
        age_max_ms: args.max_age,
    };
    config.cluster.peer_addrs = args.peer_addrs.clone();
    config.cluster.secret = args.cluster_secret.clone();
    config.cluster.advertise_addr = args.advertise_addr;
    config.cluster.catch_up_timeout = std::time::Duration::from_millis(args.catch_up_timeout);
    config
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = init_logging(&args) {
        eprintln!("flo: {message}");
        return ExitCode::FAILURE;
    }
    let config = config_from(&args);
    if !config.bind.ip().is_loopback() {
        log::warn!(
            "listening on {}, which is not a loopback address: any host that can reach it may produce and consume",
            config.bind
        );
    }
    match config.storage.fsync {
        FsyncPolicy::Always => {}
        policy => log::warn!(
            "fsync policy {policy}: acknowledged events survive a crash of flo but a power loss can lose the ones not yet synced"
        ),
    }
    if !config.cluster.peer_addrs.is_empty() {
        log::info!(
            "cluster member {} with peers {:?}{}",
            config.actor_id,
            config.cluster.peer_addrs,
            if config.cluster.secret.is_some() {
                " and a cluster secret (sent in cleartext)"
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
    let server = match Server::start(config.clone()) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("flo: {error}");
            return ExitCode::FAILURE;
        }
    };
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
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]);
    match signals {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    log::info!("signal {signal} received; shutting down");
                    trigger.trigger();
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
    #[test]
    fn log_timestamps_are_utc_text() {
        assert_eq!(super::utc_text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc_text(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(
            super::utc_text(1_795_705_439_372),
            "2026-11-26T15:03:59.372Z"
        );
    }
}
