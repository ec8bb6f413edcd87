//! The operator's commands of `flo-client`: `purge`, the purge and retention lines of `info`,
//! `top`, and the JSON forms of `groups`.

use std::io::{self, IsTerminal, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flo::client::format::{
    format_info, format_info_json, format_rfc3339_ms, push_json_string, push_terminal_safe,
};
use flo::client::{GroupDetail, GroupInfo, GroupSettings, PurgesReply};
use flo::event::{EventId, PurgeBefore, StartPosition};
use flo::units::format_duration_ms;

use super::{ask_status, connect, Format, Server};

/// `--before ID|TIME`: an event id (25 digits or COUNTER.ACTOR) purges the ids below it; a time
/// (RFC 3339, `ms:<milliseconds>`, or relative to now such as 7d) purges the events stored
/// before it.
pub fn parse_purge_before(text: &str) -> Result<PurgeBefore, String> {
    if text.parse::<EventId>().is_ok() {
        // Counter 0 is no event's id: the server refuses it as a malformed frame.
        return super::parse_event_id(text)
            .map(PurgeBefore::Id)
            .map_err(|error| format!("--before: {error}"));
    }
    // `--from`'s forms: an age such as 7d is a time before now.
    match super::parse_from(text, super::wall_clock_ms()) {
        Ok(super::From::Position(StartPosition::Timestamp(ms))) if ms > 0 => {
            Ok(PurgeBefore::Time(ms))
        }
        Ok(super::From::Position(StartPosition::AfterId(id))) => Ok(PurgeBefore::Id(id)),
        _ => Err(format!(
            "--before {text:?}: expected an event id (25 digits or COUNTER.ACTOR) or a time \
             (2024-05-01T12:00:00Z, ms:<milliseconds since the epoch>, or an age such as 7d)"
        )),
    }
}

fn describe_before(before: &PurgeBefore) -> String {
    match before {
        PurgeBefore::Id(id) => format!("id {id}"),
        PurgeBefore::Time(ms) => format!("time ms:{ms}"),
    }
}

fn before_json(out: &mut String, before: &PurgeBefore) {
    match before {
        PurgeBefore::Id(id) => out.push_str(&format!("\"before_id\":\"{id}\"")),
        PurgeBefore::Time(ms) => out.push_str(&format!("\"before_ms\":{ms}")),
    }
}

/// `flo-client purge -n GLOB --before ID|TIME`.
pub fn purge(server: &Server, glob: &str, before: &str, format: Format) -> Result<(), String> {
    let before = parse_purge_before(before)?;
    let mut client = connect(server)?;
    let purged = client
        .purge(glob, before)
        .map_err(|error| error.to_string())?;
    match format {
        Format::Human => {
            let mut shown = String::new();
            push_terminal_safe(&mut shown, glob);
            let what = if purged.changed {
                "purged"
            } else {
                "already purged (an equal or later purge is in force)"
            };
            println!("{shown}: {what} before {}", describe_before(&before));
        }
        Format::Json => {
            let mut out = String::from("{\"glob\":");
            push_json_string(&mut out, glob);
            out.push(',');
            before_json(&mut out, &before);
            out.push_str(&format!(",\"changed\":{}}}", purged.changed));
            println!("{out}");
        }
    }
    Ok(())
}

/// `flo-client info`: the Info figures, then the purges and retention rules in force.
pub fn info(server: &Server, format: Format) -> Result<(), String> {
    let mut client = connect(server)?;
    let info = client.info().map_err(|error| error.to_string())?;
    let purges = client.purges().map_err(|error| error.to_string())?;
    match format {
        Format::Human => print!("{}{}", format_info(&info), format_purges(&purges)),
        Format::Json => {
            let mut out = format_info_json(&info);
            out.pop(); // the closing brace
            out.push(',');
            out.push_str(&purges_json_fields(&purges));
            out.push('}');
            println!("{out}");
        }
    }
    Ok(())
}

fn format_purges(reply: &PurgesReply) -> String {
    let mut out = String::new();
    for rule in &reply.retention {
        let mut glob = String::new();
        push_terminal_safe(&mut glob, &rule.glob);
        out.push_str(&format!(
            "retention:     {glob} keep {} (hidden before ms:{})\n",
            format_duration_ms(rule.keep_ms),
            rule.cutoff_ms
        ));
    }
    for rule in &reply.purges {
        let mut glob = String::new();
        push_terminal_safe(&mut glob, &rule.glob);
        out.push_str(&format!(
            "purge:         {glob} before {}\n",
            describe_before(&rule.before)
        ));
    }
    out
}

fn purges_json_fields(reply: &PurgesReply) -> String {
    let mut out = String::from("\"retention\":[");
    for (index, rule) in reply.retention.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str("{\"glob\":");
        push_json_string(&mut out, &rule.glob);
        out.push_str(&format!(
            ",\"keep_ms\":{},\"cutoff_ms\":{}}}",
            rule.keep_ms, rule.cutoff_ms
        ));
    }
    out.push_str("],\"purges\":[");
    for (index, rule) in reply.purges.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str("{\"glob\":");
        push_json_string(&mut out, &rule.glob);
        out.push(',');
        before_json(&mut out, &rule.before);
        out.push('}');
    }
    out.push(']');
    out
}

/// One group as a JSON object.
pub fn group_json(group: &GroupInfo) -> String {
    let mut out = String::from("{\"name\":");
    push_json_string(&mut out, &group.name);
    out.push_str(",\"glob\":");
    push_json_string(&mut out, &group.glob);
    out.push_str(&format!(
        ",\"members\":{},\"in_flight\":{},\"pending\":{},\"parked\":{},\"floor\":{},\"next\":{},\"acked_above_floor\":{},\"lag\":{},\"oldest_pending_age_ms\":{}}}",
        group.members,
        group.in_flight,
        group.pending,
        group.parked,
        group.floor,
        group.next,
        group.acked_above_floor,
        group.lag,
        group.oldest_pending_age_ms
    ));
    out
}

/// `groups --format json` (used by `top`): one JSON array of the groups.
pub fn groups_json(groups: &[GroupInfo]) -> String {
    let entries: Vec<String> = groups.iter().map(group_json).collect();
    format!("[{}]", entries.join(","))
}

/// One group with its settings as a JSON object: [`group_json`]'s fields, then `settings`
/// (`ack_timeout_ms`, `max_deliveries`, `max_in_flight`) and, with `members`, `member_list`:
/// one object per listed member (`subscription_id`, `connection`, `in_flight`,
/// `max_in_flight`, `credit`). `members` (the count) stays the group's member count, which
/// may be more than the server lists.
pub fn group_detail_json(detail: &GroupDetail, members: bool) -> String {
    let mut out = group_json(&detail.info);
    out.pop(); // the closing brace
    let settings = &detail.settings;
    out.push_str(&format!(
        ",\"settings\":{{\"ack_timeout_ms\":{},\"max_deliveries\":{},\"max_in_flight\":{}}}",
        settings.ack_timeout_ms, settings.max_deliveries, settings.max_in_flight
    ));
    if members {
        out.push_str(",\"member_list\":[");
        for (index, member) in detail.members.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"subscription_id\":{},\"connection\":",
                member.subscription_id
            ));
            push_json_string(&mut out, &member.connection);
            out.push_str(&format!(
                ",\"in_flight\":{},\"max_in_flight\":{},\"credit\":{}}}",
                member.in_flight, member.max_in_flight, member.credit
            ));
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// `groups --format json`: one JSON array of the groups with their settings (a list carries
/// no members: `info NAME` has them); without settings from a server older than
/// GroupsDetailRequest, which does not say them.
pub fn groups_list_json(groups: &[(GroupInfo, Option<GroupSettings>)]) -> String {
    let entries: Vec<String> = groups
        .iter()
        .map(|(info, settings)| match settings {
            Some(settings) => group_detail_json(
                &GroupDetail {
                    info: info.clone(),
                    settings: *settings,
                    members: Vec::new(),
                },
                false,
            ),
            None => group_json(info),
        })
        .collect();
    format!("[{}]", entries.join(","))
}

/// `produce --format json`: a writer that turns each line holding just an event id (25 digits)
/// into `{"id":"..."}` and passes every other line through.
pub struct JsonIdLines<W: Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: Write> JsonIdLines<W> {
    pub fn new(inner: W) -> JsonIdLines<W> {
        JsonIdLines {
            inner,
            line: Vec::new(),
        }
    }
}

impl<W: Write> Write for JsonIdLines<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        for &byte in bytes {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            let is_id = self.line.len() == 25 && self.line.iter().all(u8::is_ascii_digit);
            if is_id {
                self.inner.write_all(b"{\"id\":\"")?;
                self.inner.write_all(&self.line)?;
                self.inner.write_all(b"\"}\n")?;
            } else {
                self.inner.write_all(&self.line)?;
                self.inner.write_all(b"\n")?;
            }
            self.line.clear();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What `top` shows at one refresh.
struct Sample {
    at: Instant,
    durable_end: u64,
    /// `flo_fsync_duration_seconds` sum and count, with --metrics-addr.
    fsync: Option<(f64, u64)>,
}

/// The options of `flo-client top`.
pub struct TopOptions {
    pub interval: Duration,
    /// Refreshes before exiting (0: until Ctrl-C).
    pub count: u64,
    pub metrics_addr: Option<String>,
    pub format: Format,
}

/// `flo-client top`: every `interval`, the append rate, connections, the members' and groups'
/// lag, and (with the metrics address) the mean fsync latency over the interval. At a
/// terminal the screen is redrawn in place; elsewhere each refresh follows the last.
pub fn top(server: &Server, options: &TopOptions) -> Result<(), String> {
    let mut client = connect(server)?;
    let failed = |error: flo::client::ClientError| error.to_string();
    let redraw = options.format == Format::Human && io::stdout().is_terminal();
    let mut previous: Option<Sample> = None;
    let mut shown = 0u64;
    loop {
        let info = client.info().map_err(failed)?;
        let status = ask_status(server, &mut client)?;
        let groups = client.groups().map_err(failed)?;
        let fsync = match &options.metrics_addr {
            Some(addr) => Some(scrape_fsync(addr, server.timeout)?),
            None => None,
        };
        let sample = Sample {
            at: Instant::now(),
            durable_end: status.durable_end,
            fsync,
        };
        let (rate, fsync_ms) = match &previous {
            Some(before) => rates(before, &sample),
            None => (None, None),
        };
        let text = match options.format {
            Format::Human => {
                let mut screen = String::new();
                if redraw {
                    screen.push_str("\x1b[H\x1b[2J");
                }
                screen.push_str(&top_text(&info, &status, &groups, rate, fsync_ms));
                screen
            }
            Format::Json => top_json(&info, &status, &groups, rate, fsync_ms) + "\n",
        };
        // A reader that has gone (`top | head`) ends it quietly, as for `consume`.
        if super::write_out(&text)? {
            return Ok(());
        }
        previous = Some(sample);
        shown += 1;
        if options.count != 0 && shown >= options.count {
            return Ok(());
        }
        std::thread::sleep(options.interval);
    }
}

/// Events appended per second and the mean fsync latency (ms) between two samples.
fn rates(before: &Sample, now: &Sample) -> (Option<f64>, Option<f64>) {
    let seconds = now.at.duration_since(before.at).as_secs_f64();
    let appended = now.durable_end.saturating_sub(before.durable_end) as f64;
    let rate = (seconds > 0.0).then(|| appended / seconds);
    let fsync_ms = match (before.fsync, now.fsync) {
        (Some((sum_before, count_before)), Some((sum, count))) if count > count_before => {
            Some((sum - sum_before) * 1000.0 / (count - count_before) as f64)
        }
        _ => None,
    };
    (rate, fsync_ms)
}

fn top_text(
    info: &flo::client::Info,
    status: &flo::client::Status,
    groups: &[GroupInfo],
    rate: Option<f64>,
    fsync_ms: Option<f64>,
) -> String {
    // The wall clock as a person reads it (it printed seconds since the epoch before).
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // To the second: `YYYY-MM-DDTHH:MM:SS` of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    let stamp = format_rfc3339_ms(now_ms);
    let now = stamp.get(..19).unwrap_or(&stamp);
    let mut out = format!(
        "flo {} actor {}  up {}s  (at {now} UTC, refreshing; Ctrl-C quits)\n",
        info.version,
        info.actor_id,
        info.uptime_ms / 1000
    );
    let rate = rate.map_or("-".to_string(), |r| format!("{r:.0}"));
    let fsync = fsync_ms.map_or("-".to_string(), |ms| format!("{ms:.3} ms"));
    out.push_str(&format!(
        "appended/s {rate:>10}   fsync mean {fsync:>12}   events {:>12}   segments {}\n",
        info.event_count, info.segment_count
    ));
    out.push_str(&format!(
        "clients {:>6}   peers {:>3}   subscriptions {:>6}   groups {}\n",
        info.client_connections, info.peer_connections, info.subscriptions, info.group_count
    ));
    if !status.members.is_empty() {
        out.push_str("\nMEMBER  STATE          LAG  ADDR\n");
        for member in &status.members {
            let mut addr = String::new();
            push_terminal_safe(&mut addr, &member.addr);
            out.push_str(&format!(
                "{:<6}  {:<12} {:>5}  {addr}\n",
                member.actor_id,
                format!("{:?}", member.state).to_lowercase(),
                member.lag
            ));
        }
    }
    if !groups.is_empty() {
        out.push_str("\nGROUP                    MEMBERS   PENDING  PARKED        LAG\n");
        for group in groups {
            let mut name = String::new();
            push_terminal_safe(&mut name, &group.name);
            out.push_str(&format!(
                "{name:<24} {:>7} {:>9} {:>7} {:>10}\n",
                group.members, group.pending, group.parked, group.lag
            ));
        }
    }
    out.push('\n');
    out
}

fn top_json(
    info: &flo::client::Info,
    status: &flo::client::Status,
    groups: &[GroupInfo],
    rate: Option<f64>,
    fsync_ms: Option<f64>,
) -> String {
    let number = |value: Option<f64>| value.map_or("null".to_string(), |v| format!("{v:.3}"));
    let members: Vec<String> = status
        .members
        .iter()
        .map(|member| {
            let mut out = format!("{{\"actor_id\":{},\"addr\":", member.actor_id);
            push_json_string(&mut out, &member.addr);
            out.push_str(&format!(
                ",\"state\":\"{}\",\"lag\":{}}}",
                format!("{:?}", member.state).to_lowercase(),
                member.lag
            ));
            out
        })
        .collect();
    format!(
        "{{\"appended_per_second\":{},\"fsync_mean_ms\":{},\"durable_end\":{},\"info\":{},\"members\":[{}],\"groups\":{}}}",
        number(rate),
        number(fsync_ms),
        status.durable_end,
        format_info_json(info),
        members.join(","),
        groups_json(groups)
    )
}

/// The sum and count of `flo_fsync_duration_seconds` from the server's /metrics.
fn scrape_fsync(addr: &str, timeout: Duration) -> Result<(f64, u64), String> {
    let failed = |error: io::Error| format!("could not read metrics from {addr}: {error}");
    let mut stream = TcpStream::connect(addr).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    stream.set_write_timeout(Some(timeout)).map_err(failed)?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(failed)?;
    let mut body = String::new();
    // The scrape is a few KiB; a server that sends more than 4 MiB is not flo.
    stream
        .take(4 << 20)
        .read_to_string(&mut body)
        .map_err(failed)?;
    let value = |name: &str| {
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|text| text.trim().parse::<f64>().ok())
    };
    match (
        value("flo_fsync_duration_seconds_sum"),
        value("flo_fsync_duration_seconds_count"),
    ) {
        (Some(sum), Some(count)) => Ok((sum, count as u64)),
        _ => Err(format!(
            "{addr} answered without flo_fsync_duration_seconds: is it flo's --metrics-addr?"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_bounds_parse_as_ids_or_times() {
        let id: EventId = "0000000000000000004200001".parse().unwrap();
        assert_eq!(
            parse_purge_before("0000000000000000004200001"),
            Ok(PurgeBefore::Id(id))
        );
        assert_eq!(
            parse_purge_before("ms:1700000000000"),
            Ok(PurgeBefore::Time(1_700_000_000_000))
        );
        assert!(matches!(parse_purge_before("7d"), Ok(PurgeBefore::Time(_))));
        assert!(parse_purge_before("end").unwrap_err().contains("--before"));
        assert!(parse_purge_before("-5").is_err());
    }
}
