//! Text forms for the command line: the human and JSON-lines event formats, base64, JSON
//! string escaping, and the `--from` start-position syntax. Hand-written so the CLI needs no
//! serde.

use std::fmt::Write as _;

use crate::event::{Event, EventId, StartPosition};

pub use super::namespaces::{format_namespace, format_namespace_json, format_rfc3339_ms};
pub use super::trace::{format_trace, format_trace_json};

/// The seed README's human format: a blank line, `EventId: <id>`, `Namespace: <namespace>`,
/// then the data as text, each on its own line.
///
/// The text is safe to print to a terminal: an event's data (or a namespace from a hostile
/// server) cannot move the cursor, change colours, retitle the window or fake the next event's
/// header. Control characters (C0, DEL, C1) and the bidirectional overrides are shown as
/// escapes (`\n`, `\r`, `\x1b`, `\u{202e}`), a backslash as `\\`; a tab stays a tab. Data that
/// is not UTF-8 gets a `Data: not UTF-8` line before it and each invalid byte is shown as
/// `\xNN`.
pub fn format_human(event: &Event) -> String {
    let mut text = String::with_capacity(64 + event.namespace.len() + event.data.len());
    text.push_str("\nEventId: ");
    let _ = write!(text, "{}", event.id);
    text.push_str("\nNamespace: ");
    push_terminal_safe(&mut text, &event.namespace);
    text.push('\n');
    if std::str::from_utf8(&event.data).is_err() {
        text.push_str("Data: not UTF-8, invalid bytes shown as \\xNN\n");
    }
    for chunk in event.data.utf8_chunks() {
        push_terminal_safe(&mut text, chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    text.push('\n');
    text
}

/// Appends `value` with every character a terminal would act on escaped (see
/// [`format_human`]).
pub fn push_terminal_safe(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\t' => out.push('\t'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            // C1 controls (some terminals take U+009B as CSI) and the bidirectional
            // embeddings, overrides and isolates, which reorder what is shown.
            '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// One JSON object on one line (newline included): `id` and `parent_id` as 25-digit strings
/// (`parent_id` null when absent), `namespace`, `timestamp` in milliseconds since the epoch,
/// and `data` as a string when it is UTF-8, otherwise base64 with `"data_encoding":"base64"`.
pub fn format_json(event: &Event) -> String {
    let mut text = String::with_capacity(128 + event.namespace.len() + event.data.len() * 2);
    let _ = write!(text, "{{\"id\":\"{}\",\"parent_id\":", event.id);
    match event.parent_id {
        Some(parent_id) => {
            let _ = write!(text, "\"{parent_id}\"");
        }
        None => text.push_str("null"),
    }
    text.push_str(",\"namespace\":");
    push_json_string(&mut text, &event.namespace);
    let _ = write!(text, ",\"timestamp\":{},\"data\":", event.timestamp_ms);
    match std::str::from_utf8(&event.data) {
        Ok(data) => push_json_string(&mut text, data),
        Err(_) => {
            text.push('"');
            text.push_str(&base64_encode(&event.data));
            text.push_str("\",\"data_encoding\":\"base64\"");
        }
    }
    text.push_str("}\n");
    text
}

/// Appends `value` as a JSON string literal, quotes included.
pub fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Other control characters, and the line separators some JavaScript parsers
            // choke on, as \u escapes.
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648, with `=` padding).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = chunk[0] as u32;
        let b1 = chunk.get(1).copied().unwrap_or(0) as u32;
        let b2 = chunk.get(2).copied().unwrap_or(0) as u32;
        let triple = (b0 << 16) | (b1 << 8) | b2;
        let symbols =
            [18, 12, 6, 0].map(|shift| BASE64_ALPHABET[((triple >> shift) & 63) as usize]);
        let kept = chunk.len() + 1;
        for (index, symbol) in symbols.iter().enumerate() {
            text.push(if index < kept { *symbol as char } else { '=' });
        }
    }
    text
}

/// Parses `--from`: `beginning`, `end`, an event id (25 digits or `COUNTER.ACTOR`; the
/// consumer starts after it), `ms:<millis since the epoch>`, or an RFC 3339 time such as
/// `2024-05-01T12:00:00Z` or `2024-05-01T12:00:00.250+02:00`.
pub fn parse_start_position(text: &str) -> Result<StartPosition, String> {
    match text {
        "beginning" => return Ok(StartPosition::Beginning),
        "end" => return Ok(StartPosition::End),
        _ => {}
    }
    if let Some(millis) = text.strip_prefix("ms:") {
        return millis
            .parse::<u64>()
            .map(StartPosition::Timestamp)
            .map_err(|_| format!("invalid timestamp {text:?}: expected ms:<milliseconds>"));
    }
    if text.len() > 10 && text.as_bytes()[4] == b'-' {
        return parse_rfc3339_ms(text)
            .map(StartPosition::Timestamp)
            .ok_or_else(|| {
                format!(
                    "invalid timestamp {text:?}: expected RFC 3339 such as 2024-05-01T12:00:00Z"
                )
            });
    }
    let looks_like_id = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match text.parse::<EventId>() {
        Ok(id) if !id.is_canonical() => Err(format!(
            "invalid start position {text:?}: counter 0 is not an event id (use beginning)"
        )),
        parsed => parsed.map(StartPosition::AfterId).map_err(|error| {
            if looks_like_id {
                error.to_string()
            } else {
                format!(
                    "invalid start position {text:?}: expected beginning, end, an event id \
                     (25 digits or COUNTER.ACTOR), ms:<millis> or an RFC 3339 time"
                )
            }
        }),
    }
}

/// Milliseconds since the epoch of an RFC 3339 date-time; `None` when malformed or before
/// 1970.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = parse_offset(rest)?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds * 1000 + millis).ok()
}

/// `Z` or `±HH:MM`, as minutes east of UTC.
fn parse_offset(text: &str) -> Option<i64> {
    if text == "Z" || text == "z" {
        return Some(0);
    }
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = text[1..].split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 60 + minutes))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `flo-client info` as text: one `name: value` line per figure, sizes and durations in
/// human units with the exact figure beside them.
pub fn format_info(info: &crate::protocol::Info) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut version = String::new();
    push_terminal_safe(&mut version, &info.version);
    let mut fsync = String::new();
    push_terminal_safe(&mut fsync, &info.fsync_policy);
    let seconds = info.uptime_ms / 1000;
    let uptime = format!(
        "{}d {:02}h {:02}m {:02}s",
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60
    );
    let mebibytes = info.log_bytes as f64 / (1024.0 * 1024.0);
    let _ = writeln!(out, "version:       flo {version}");
    let _ = writeln!(out, "actor:         {}", info.actor_id);
    let _ = writeln!(out, "uptime:        {uptime} ({} ms)", info.uptime_ms);
    let _ = writeln!(out, "fsync:         {fsync}");
    let _ = writeln!(
        out,
        "log size:      {mebibytes:.1} MiB ({} bytes)",
        info.log_bytes
    );
    let _ = writeln!(out, "events:        {}", info.event_count);
    let _ = writeln!(out, "segments:      {}", info.segment_count);
    let _ = writeln!(
        out,
        "connections:   {} clients, {} peers",
        info.client_connections, info.peer_connections
    );
    let _ = writeln!(out, "subscriptions: {}", info.subscriptions);
    let _ = writeln!(out, "groups:        {}", info.group_count);
    out
}

/// `flo-client info --format json`: one JSON object on one line.
pub fn format_info_json(info: &crate::protocol::Info) -> String {
    let mut out = String::from("{\"version\":");
    push_json_string(&mut out, &info.version);
    out.push_str(&format!(
        ",\"actor_id\":{},\"uptime_ms\":{}",
        info.actor_id, info.uptime_ms
    ));
    out.push_str(",\"fsync\":");
    push_json_string(&mut out, &info.fsync_policy);
    out.push_str(&format!(
        ",\"log_bytes\":{},\"event_count\":{},\"segment_count\":{},\"client_connections\":{},\"peer_connections\":{},\"subscriptions\":{},\"group_count\":{}}}",
        info.log_bytes,
        info.event_count,
        info.segment_count,
        info.client_connections,
        info.peer_connections,
        info.subscriptions,
        info.group_count
    ));
    out
}

/// `flo-client status --format json`: one JSON object on one line, vectors as objects from
/// actor (as a string key) to counter, member states as `connected`, `connecting` or
/// `backing_off`.
pub fn format_status_json(status: &crate::protocol::Status) -> String {
    use crate::protocol::MemberState;
    let vector = |v: &crate::event::VersionVector| {
        let entries: Vec<String> = v.iter().map(|(a, c)| format!("\"{a}\":{c}")).collect();
        format!("{{{}}}", entries.join(","))
    };
    let members: Vec<String> = status
        .members
        .iter()
        .map(|member| {
            let state = match member.state {
                MemberState::Connected => "connected",
                MemberState::Connecting => "connecting",
                MemberState::BackingOff => "backing_off",
            };
            let mut addr = String::new();
            push_json_string(&mut addr, &member.addr);
            format!(
                "{{\"actor_id\":{},\"addr\":{addr},\"state\":\"{state}\",\"lag\":{},\"disconnected_ms\":{},\"vector\":{}}}",
                member.actor_id,
                member.lag,
                member.disconnected_ms,
                vector(&member.vector)
            )
        })
        .collect();
    let order = &status.order;
    let held_by = match &order.held_by {
        None => "null".to_string(),
        Some(holder) => {
            let mut addr = String::new();
            push_json_string(&mut addr, &holder.addr);
            format!(
                "{{\"actor_id\":{},\"addr\":{addr},\"clock\":{},\"held_ms\":{}}}",
                holder.actor_id, holder.clock, holder.held_ms
            )
        }
    };
    let hold = match &status.hold {
        None => "null".to_string(),
        Some(hold) => {
            let mut addr = String::new();
            push_json_string(&mut addr, &hold.addr);
            let mut waits_for = String::new();
            push_json_string(&mut waits_for, &hold.waits_for);
            format!(
                "{{\"actor_id\":{},\"addr\":{addr},\"held_ms\":{},\"timeout_left_ms\":{},\"waits_for\":{waits_for}}}",
                hold.actor_id, hold.held_ms, hold.timeout_left_ms
            )
        }
    };
    format!(
        "{{\"actor_id\":{},\"counter\":{},\"event_count\":{},\"durable_end\":{},\"vector\":{},\"members\":[{}],\
         \"order\":{{\"stable_clock\":{},\"held_by\":{held_by},\"waiting_subscriptions\":{},\"waiting_events\":{},\"waiting_ms\":{}}},\
         \"hold\":{hold}}}",
        status.actor_id,
        status.counter,
        status.event_count,
        status.durable_end,
        vector(&status.vector),
        members.join(","),
        order.stable_clock,
        order.waiting_subscriptions,
        order.waiting_events,
        order.waiting_ms
    )
}

/// The text `flo-client status` prints: the node, then one line per member.
pub fn format_status(status: &crate::protocol::Status) -> String {
    use crate::protocol::MemberState;
    use std::fmt::Write as _;
    let vector = |v: &crate::event::VersionVector| {
        let entries: Vec<String> = v.iter().map(|(a, c)| format!("{a}:{c}")).collect();
        format!("{{{}}}", entries.join(", "))
    };
    let mut out = String::new();
    let _ = writeln!(out, "actor:       {}", status.actor_id);
    let _ = writeln!(out, "counter:     {}", status.counter);
    let _ = writeln!(out, "events:      {}", status.event_count);
    let _ = writeln!(out, "durable end: {}", status.durable_end);
    let _ = writeln!(out, "vector:      {}", vector(&status.vector));
    if status.members.is_empty() {
        let _ = writeln!(out, "members:     none (not clustered)");
    } else {
        let _ = writeln!(out, "members:");
    }
    for member in &status.members {
        let state = match member.state {
            MemberState::Connected => "connected",
            MemberState::Connecting => "connecting",
            MemberState::BackingOff => "backing off",
        };
        let actor = if member.actor_id == 0 {
            "?".to_string()
        } else {
            member.actor_id.to_string()
        };
        if member.state == MemberState::Connected {
            let _ = writeln!(
                out,
                "  actor {actor} at {}: {state}, lag {} records, vector {}",
                member.addr,
                member.lag,
                vector(&member.vector)
            );
            continue;
        }
        // Not connected: the server sends lag 0 because it does not know what the member
        // holds now; "lag 0" would read as "up to date". Report what is known instead: the
        // member's last known vector, and the actors of which this node holds newer events.
        let behind: Vec<String> = status
            .vector
            .iter()
            .filter(|(actor, counter)| *counter > member.vector.get(*actor))
            .map(|(actor, counter)| format!("{actor}:{}..{counter}", member.vector.get(actor) + 1))
            .collect();
        let missing = if member.vector.is_empty() && member.actor_id == 0 {
            "lag unknown".to_string()
        } else if member.vector.is_empty() {
            // Not connected since this node started, or never sent anything: nothing is known
            // of what it holds.
            "lag unknown, nothing known of what it holds".to_string()
        } else if behind.is_empty() {
            "lag unknown, it held everything this node holds when last seen".to_string()
        } else {
            format!(
                "lag unknown, not sent the counters {} held here before it disconnected",
                behind.join(", ")
            )
        };
        let _ = writeln!(
            out,
            "  actor {actor} at {}: {state} (not connected), disconnected {} ago, {missing}, \
             last known vector {}",
            member.addr,
            format_age(member.disconnected_ms),
            vector(&member.vector)
        );
    }
    if let Some(hold) = &status.hold {
        let timeout = match hold.timeout_left_ms {
            0 => "with no time-out".to_string(),
            left => format!("or for {} more (the catch-up time-out)", format_wait(left)),
        };
        let _ = writeln!(
            out,
            "produces:    refused (NotReady) for {} until this node has met its members: waiting \
             for {}, {timeout} (docs/clustering.md, \"Losing a data directory\")",
            format_wait(hold.held_ms),
            hold.waits_for
        );
    }
    format_order_status(status, &mut out);
    out
}

/// The id-order lines of `flo-client status`: how far id order delivers, who holds it back
/// and what waits.
fn format_order_status(status: &crate::protocol::Status, out: &mut String) {
    use crate::protocol::MemberState;
    use std::fmt::Write as _;
    let order = &status.order;
    match &order.held_by {
        // Not "held back by no member": nothing is produced here until the hold ends.
        None if status.hold.is_some() => {
            let _ = writeln!(
                out,
                "id order:    delivers up to counter {}; this node takes no produces until its \
                 hold ends (above)",
                order.stable_clock
            );
        }
        // A single node: no member could hold id order back (walk11: "held back by no
        // member" read as if something might).
        None if status.members.is_empty() => {
            let _ = writeln!(
                out,
                "id order:    delivers up to counter {} (a single node: nothing holds it back)",
                order.stable_clock
            );
        }
        None => {
            let _ = writeln!(
                out,
                "id order:    delivers up to counter {}, held back by no member",
                order.stable_clock
            );
        }
        Some(holder) if holder.actor_id == 0 => {
            let _ = writeln!(
                out,
                "id order:    held back for {} by the peer at {}, never reached since this node \
                 started: delivers up to counter {} only",
                format_wait(holder.held_ms),
                holder.addr,
                order.stable_clock
            );
        }
        Some(holder) => {
            let connected = status
                .members
                .iter()
                .any(|m| m.actor_id == holder.actor_id && m.state == MemberState::Connected);
            let state = if connected {
                "connected"
            } else {
                "not connected"
            };
            let _ = writeln!(
                out,
                "id order:    held back for {} by actor {} at {} ({state}): it has promised only \
                 counter {}, this node's counter is {} (cluster remove {} excludes a member \
                 that is gone for good)",
                format_wait(holder.held_ms),
                holder.actor_id,
                holder.addr,
                holder.clock,
                status.counter,
                holder.actor_id
            );
        }
    }
    if order.waiting_subscriptions > 0 {
        let _ = writeln!(
            out,
            "             {} id-order subscriptions hold {} events waiting, the longest for {}",
            order.waiting_subscriptions,
            order.waiting_events,
            format_wait(order.waiting_ms)
        );
    }
}

/// A wait: milliseconds below a second, then as [`format_age`].
fn format_wait(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format_age(ms)
    }
}

/// A duration for a person: seconds up to two minutes, then minutes, hours and days (whole
/// units, rounded down).
fn format_age(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7200 => format!("{} min", seconds / 60),
        7200..172_800 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_as_json_lists_members_with_escaped_addresses() {
        use crate::protocol::{MemberState, MemberStatus, Status};
        let status = Status {
            actor_id: 1,
            counter: 9,
            event_count: 8,
            durable_end: 8,
            vector: [(crate::event::ActorId(1), 5)].into_iter().collect(),
            members: vec![MemberStatus {
                actor_id: 2,
                addr: "host\"x:1".into(),
                state: MemberState::BackingOff,
                vector: Default::default(),
                lag: 0,
                disconnected_ms: 42_000,
            }],
            order: Default::default(),
            hold: None,
        };
        assert_eq!(
            format_status_json(&status),
            "{\"actor_id\":1,\"counter\":9,\"event_count\":8,\"durable_end\":8,\"vector\":{\"1\":5},\
             \"members\":[{\"actor_id\":2,\"addr\":\"host\\\"x:1\",\"state\":\"backing_off\",\"lag\":0,\
             \"disconnected_ms\":42000,\"vector\":{}}],\"order\":{\"stable_clock\":0,\"held_by\":null,\
             \"waiting_subscriptions\":0,\"waiting_events\":0,\"waiting_ms\":0},\"hold\":null}"
        );
    }

    /// Walk11: a server outside any cluster printed "held back by no member" under "members:
    /// none (not clustered)"; it now says nothing can hold id order back.
    #[test]
    fn status_of_a_single_node_says_nothing_holds_id_order_back() {
        use crate::protocol::Status;
        let status = Status {
            actor_id: 1,
            counter: 7,
            event_count: 7,
            durable_end: 7,
            vector: Default::default(),
            members: Vec::new(),
            order: crate::protocol::OrderStatus {
                stable_clock: 7,
                ..Default::default()
            },
            hold: None,
        };
        let text = format_status(&status);
        assert!(
            text.contains("members:     none (not clustered)\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "id order:    delivers up to counter 7 (a single node: nothing holds it back)\n"
            ),
            "{text}"
        );
        assert!(!text.contains("held back by"), "{text}");
    }

    /// Walk9: during the catch-up hold `status` printed "id order: delivers up to counter 0,
    /// held back by no member", as if nothing were wrong.
    #[test]
    fn status_of_a_node_holding_produces_says_whom_it_waits_for() {
        use crate::protocol::{ProduceHold, Status};
        let status = Status {
            actor_id: 2,
            counter: 0,
            event_count: 0,
            durable_end: 0,
            vector: Default::default(),
            members: Vec::new(),
            order: Default::default(),
            hold: Some(ProduceHold {
                actor_id: 3,
                addr: "127.0.0.1:3002".into(),
                held_ms: 41_000,
                timeout_left_ms: 0,
                waits_for: "member 3 at 127.0.0.1:3002, not met since the start".into(),
            }),
        };
        let text = format_status(&status);
        assert!(
            text.contains(
                "produces:    refused (NotReady) for 41 s until this node has met its members: \
                 waiting for member 3 at 127.0.0.1:3002, not met since the start, with no time-out"
            ),
            "{text}"
        );
        assert!(!text.contains("held back by no member"), "{text}");
        assert!(
            format_status_json(&status).ends_with(
                "\"hold\":{\"actor_id\":3,\"addr\":\"127.0.0.1:3002\",\"held_ms\":41000,\
                 \"timeout_left_ms\":0,\"waits_for\":\"member 3 at 127.0.0.1:3002, not met since the start\"}}"
            ),
            "{}",
            format_status_json(&status)
        );
        let timed = Status {
            hold: status.hold.clone().map(|hold| ProduceHold {
                timeout_left_ms: 25_000,
                ..hold
            }),
            ..status
        };
        assert!(
            format_status(&timed).contains("or for 25 s more (the catch-up time-out)"),
            "{}",
            format_status(&timed)
        );
    }

    fn event(data: &[u8], parent_id: Option<EventId>) -> Event {
        Event {
            id: EventId::new(1, 1),
            parent_id,
            namespace: "/food/breakfast/eggs".into(),
            timestamp_ms: 1_700_000_000_123,
            data: data.to_vec(),
        }
    }

    #[test]
    fn status_of_a_disconnected_member_says_what_it_misses_not_lag_0() {
        use crate::event::{ActorId, VersionVector};
        use crate::protocol::{MemberState, MemberStatus, Status};
        let vector = |entries: &[(u16, u64)]| -> VersionVector {
            entries.iter().map(|&(a, c)| (ActorId(a), c)).collect()
        };
        let status = Status {
            actor_id: 1,
            counter: 2005,
            event_count: 2005,
            durable_end: 2005,
            vector: vector(&[(1, 2005), (2, 7)]),
            members: vec![
                MemberStatus {
                    actor_id: 2,
                    addr: "127.0.0.1:3001".into(),
                    state: MemberState::Connected,
                    vector: vector(&[(1, 2005), (2, 7)]),
                    lag: 0,
                    disconnected_ms: 0,
                },
                MemberStatus {
                    actor_id: 3,
                    addr: "127.0.0.1:3002".into(),
                    state: MemberState::BackingOff,
                    vector: vector(&[(1, 5), (2, 7)]),
                    lag: 0,
                    disconnected_ms: 42_700,
                },
                // Not connected since this node started: nothing is known of what it holds
                // (it said "not sent the counters 1:1..2005, 2:1..7" before).
                MemberStatus {
                    actor_id: 4,
                    addr: "127.0.0.1:3003".into(),
                    state: MemberState::BackingOff,
                    vector: VersionVector::new(),
                    lag: 0,
                    disconnected_ms: 2_000,
                },
            ],
            order: crate::protocol::OrderStatus {
                stable_clock: 5,
                held_by: Some(crate::protocol::OrderHolder {
                    actor_id: 3,
                    addr: "127.0.0.1:3002".into(),
                    clock: 5,
                    held_ms: 42_600,
                }),
                waiting_subscriptions: 2,
                waiting_events: 17,
                waiting_ms: 41_000,
            },
            hold: None,
        };
        let text = format_status(&status);
        assert!(
            text.contains(
                "actor 2 at 127.0.0.1:3001: connected, lag 0 records, vector {1:2005, 2:7}"
            ),
            "{text}"
        );
        let line = "actor 3 at 127.0.0.1:3002: backing off (not connected), disconnected 42 s \
                    ago, lag unknown, not sent the counters 1:6..2005 held here before it disconnected, last known vector {1:5, 2:7}";
        assert!(text.contains(line), "{text}");
        assert!(!text.contains("backing off, lag 0"), "{text}");
        let line = "actor 4 at 127.0.0.1:3003: backing off (not connected), disconnected 2 s ago, \
                    lag unknown, nothing known of what it holds, last known vector {}";
        assert!(text.contains(line), "{text}");
        let line = "id order:    held back for 42 s by actor 3 at 127.0.0.1:3002 (not connected): \
                    it has promised only counter 5, this node's counter is 2005";
        assert!(text.contains(line), "{text}");
        let line = "2 id-order subscriptions hold 17 events waiting, the longest for 41 s";
        assert!(text.contains(line), "{text}");
        assert_eq!(format_age(119_999), "119 s");
        assert_eq!(format_age(3 * 3_600_000), "3 h");
        assert_eq!(format_age(3 * 86_400_000), "3 d");
    }

    #[test]
    fn human_format_matches_the_seed_readme() {
        assert_eq!(
            format_human(&event(b"I made some eggs", None)),
            "\nEventId: 0000000000000000000100001\nNamespace: /food/breakfast/eggs\nI made some eggs\n"
        );
    }

    #[test]
    fn human_format_cannot_rewrite_the_terminal_and_marks_non_utf8() {
        let hostile =
            b"ok\x1b]0;owned\x07\x1b[2J\rline\nEventId: fake\x7f\\ \xc2\x9b\xe2\x80\xae\tend";
        let text = format_human(&event(hostile, None));
        assert_eq!(
            text,
            "\nEventId: 0000000000000000000100001\nNamespace: /food/breakfast/eggs\n\
             ok\\x1b]0;owned\\x07\\x1b[2J\\rline\\nEventId: fake\\x7f\\\\ \\u{9b}\\u{202e}\tend\n"
        );
        assert!(!text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'));
        assert_eq!(
            format_human(&event(b"a\xffb\xe2\x82", None)),
            "\nEventId: 0000000000000000000100001\nNamespace: /food/breakfast/eggs\n\
             Data: not UTF-8, invalid bytes shown as \\xNN\na\\xffb\\xe2\\x82\n"
        );
    }

    #[test]
    fn json_format_has_every_field() {
        assert_eq!(
            format_json(&event(b"say \"hi\"\n", Some(EventId::new(7, 2)))),
            "{\"id\":\"0000000000000000000100001\",\"parent_id\":\"0000000000000000000700002\",\
             \"namespace\":\"/food/breakfast/eggs\",\"timestamp\":1700000000123,\
             \"data\":\"say \\\"hi\\\"\\n\"}\n"
        );
        assert_eq!(
            format_json(&event(&[0xff, 0x00, 0x41], None)),
            "{\"id\":\"0000000000000000000100001\",\"parent_id\":null,\
             \"namespace\":\"/food/breakfast/eggs\",\"timestamp\":1700000000123,\
             \"data\":\"/wBB\",\"data_encoding\":\"base64\"}\n"
        );
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\u{1}\td\u{2028}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\u0001\\td\\u2028é\"");
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
        }
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn from_accepts_every_documented_form() {
        assert_eq!(
            parse_start_position("beginning"),
            Ok(StartPosition::Beginning)
        );
        assert_eq!(parse_start_position("end"), Ok(StartPosition::End));
        let id = EventId::new(1, 1);
        assert_eq!(
            parse_start_position("0000000000000000000100001"),
            Ok(StartPosition::AfterId(id))
        );
        assert_eq!(parse_start_position("1.1"), Ok(StartPosition::AfterId(id)));
        assert_eq!(
            parse_start_position("0.0"),
            Ok(StartPosition::AfterId(EventId::NONE))
        );
        assert!(parse_start_position("0.5")
            .unwrap_err()
            .contains("counter 0"));
        assert_eq!(
            parse_start_position("ms:1500"),
            Ok(StartPosition::Timestamp(1500))
        );
        assert_eq!(
            parse_start_position("2023-11-14T22:13:20.123Z"),
            Ok(StartPosition::Timestamp(1_700_000_000_123))
        );
        assert_eq!(
            parse_start_position("2023-11-15T00:13:20+02:00"),
            Ok(StartPosition::Timestamp(1_700_000_000_000))
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
    }

    #[test]
    fn from_refuses_malformed_text() {
        for bad in [
            "",
            "start",
            "ms:",
            "ms:x",
            "12",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "2023-11-14T22:13:20.Z",
        ] {
            assert!(parse_start_position(bad).is_err(), "{bad:?} parsed");
        }
    }
}
