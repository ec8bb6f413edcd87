//! Events found by id: `flo-client get ID` and the namespace, time and data of each event
//! `groups parked` lists.
//!
//! The protocol has no "read the event with this id" request, and none is added: two that
//! exist answer it. TraceRequest finds an id in the server's trace indexes (without reading
//! the log) and says whether the event exists for this principal, its namespace and its time
//! (protocol.md section 6); a Subscribe to exactly that namespace, starting just below the id
//! in the total order, then delivers the event with its data as its first event on a single
//! node (section 9: "after id X" delivers the ids above X).

use flo::client::format::{format_human, format_json, format_rfc3339_ms, push_json_string};
use flo::client::{Client, ClientError, Delivery, ErrorCode, ParkedReply, TraceEntry};
use flo::event::{Event, EventId, StartPosition};

use super::{connect, parse_event_id, write_out, Format, Server};

/// Events a lookup's subscription may hold before it grants more credit: it wants one.
const LOOKUP_CREDIT: u32 = 16;

/// What the trace indexes say of `id`, or `None` when the server holds no such event for this
/// principal (`NoSuchEvent`: never stored, deleted, purged, or in a namespace it may not read).
fn find(client: &mut Client, id: EventId) -> Result<Option<TraceEntry>, ClientError> {
    match client.trace(id) {
        Ok(trace) => Ok(trace.entries.into_iter().find(|entry| entry.depth == 0)),
        Err(ClientError::Server {
            code: ErrorCode::NoSuchEvent,
            ..
        }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The glob that matches `namespace` and nothing else: the glob characters in brackets
/// (protocol.md section 8 has no escape character).
fn exact_glob(namespace: &str) -> String {
    let mut glob = String::with_capacity(namespace.len());
    for c in namespace.chars() {
        match c {
            '*' | '?' | '[' | '{' | '}' => {
                glob.push('[');
                glob.push(c);
                glob.push(']');
            }
            c => glob.push(c),
        }
    }
    glob
}

/// The start position just below `id` in the total order of ids: the subscription's first
/// event with an id at or above `id`.
fn just_below(id: EventId) -> StartPosition {
    if id.actor.0 > 1 {
        StartPosition::AfterId(EventId::new(id.counter, id.actor.0 - 1))
    } else if id.counter > 1 {
        StartPosition::AfterId(EventId::new(id.counter - 1, u16::MAX))
    } else {
        StartPosition::Beginning
    }
}

/// The event `id` with its data, or `None` when the server holds no such event for this
/// principal. The subscription reads `entry`'s namespace from just below `id`; it passes over
/// events of other actors stored before it (in a cluster, ids do not follow the log order) and
/// stops at the first later event of the same actor, whose events are stored in counter order,
/// so that an event the trace index still has but the log no longer delivers (deleted by
/// retention while the lookup ran) ends the read there instead of at the end of the namespace.
fn fetch(
    client: &mut Client,
    id: EventId,
    entry: &TraceEntry,
) -> Result<Option<Event>, ClientError> {
    let mut glob = exact_glob(&entry.namespace);
    if glob.len() > client.limits().glob_length_max as usize {
        // Only with brackets added to a namespace near the length limit: every namespace,
        // still ended by the rule above.
        glob = "/**".to_string();
    }
    let mut subscription = client
        .consume()
        .glob(&glob)
        .start(just_below(id))
        .tail(false)
        .credit(LOOKUP_CREDIT)
        .subscribe()?;
    loop {
        match subscription.next_delivery()? {
            Some(Delivery::Event(event)) if event.id == id => return Ok(Some(event)),
            Some(Delivery::Event(event)) if event.id.actor == id.actor && event.id > id => {
                return Ok(None)
            }
            Some(Delivery::Event(_)) | Some(Delivery::CaughtUp) | Some(Delivery::Skipped(_)) => {}
            None | Some(Delivery::End(_)) => return Ok(None),
        }
    }
}

/// The event `id` with its data, or `None` when there is no such event.
pub fn fetch_event(client: &mut Client, id: EventId) -> Result<Option<Event>, ClientError> {
    match find(client, id)? {
        Some(entry) => fetch(client, id, &entry),
        None => Ok(None),
    }
}

/// `error` as `command`'s one line: a server older than a request `command` sends closes the
/// connection with MalformedFrame "unknown frame kind K" (protocol.md section 3), which says
/// nothing useful alone; it is said as the server being too old for the command.
pub fn command_error(error: ClientError, command: &str) -> String {
    match error {
        ClientError::Server {
            code: ErrorCode::MalformedFrame,
            message,
            ..
        } if message.starts_with("unknown frame kind") => format!(
            "the server is too old for `{command}`: it does not know a request the command \
             sends (it answered MalformedFrame: {message}); upgrade the server"
        ),
        error => error.to_string(),
    }
}

/// `flo-client get ID...`: each event as `consume` prints it, in the order given. The first id
/// the server does not hold ends the command with an error (exit code 1) after the events
/// before it are printed.
pub fn get(server: &Server, ids: &[String], format: Format) -> Result<(), String> {
    let ids = ids
        .iter()
        .map(|text| parse_event_id(text))
        .collect::<Result<Vec<EventId>, String>>()?;
    let mut client = connect(server)?;
    for id in ids {
        let event = fetch_event(&mut client, id).map_err(|error| command_error(error, "get"))?;
        let Some(event) = event else {
            return Err(format!(
                "no event {id} on {}: the server does not hold it (never stored, deleted by \
                 retention or a purge, or in a namespace this principal may not consume)",
                server.addr
            ));
        };
        let text = match format {
            Format::Human => format_human(&event),
            Format::Json => format_json(&event),
        };
        if write_out(&text)? {
            return Ok(());
        }
    }
    Ok(())
}

/// One parked event as `groups parked` shows it: the log offset and id from the group, the
/// namespace and time from the trace index, the data with `--data`.
fn parked_text(
    client: &mut Client,
    offset: u64,
    id: EventId,
    data: bool,
    format: Format,
) -> Result<String, ClientError> {
    let entry = find(client, id)?;
    let event = match (&entry, data) {
        (Some(entry), true) => fetch(client, id, entry)?,
        _ => None,
    };
    Ok(match format {
        Format::Human => {
            let mut line = format!("{id} offset {offset} ");
            match &entry {
                Some(entry) => {
                    flo::client::format::push_terminal_safe(&mut line, &entry.namespace);
                    line.push(' ');
                    line.push_str(&format_rfc3339_ms(entry.timestamp_ms));
                }
                None => line.push_str("(gone: deleted or purged; a replay delivers nothing)"),
            }
            line.push('\n');
            if let Some(event) = &event {
                line.push_str(&format_human(event));
            }
            line
        }
        Format::Json => match (&entry, &event) {
            (_, Some(event)) => format!("{{\"offset\":{offset},{}", &format_json(event)[1..]),
            (Some(entry), None) => {
                let parent = entry
                    .parent_id
                    .map_or("null".to_string(), |parent| format!("\"{parent}\""));
                let mut line = format!(
                    "{{\"id\":\"{id}\",\"offset\":{offset},\"parent_id\":{parent},\"namespace\":"
                );
                push_json_string(&mut line, &entry.namespace);
                line.push_str(&format!(",\"timestamp\":{}}}\n", entry.timestamp_ms));
                line
            }
            (None, None) => format!("{{\"id\":\"{id}\",\"offset\":{offset},\"gone\":true}}\n"),
        },
    })
}

/// `flo-client groups parked NAME [--data]`: a page of parked events at a time from the
/// server, each with one trace lookup (and one short read with `--data`), written out as it
/// is found. Returns how many were listed, or `None` when the reader went away (`| head`).
pub fn parked(
    client: &mut Client,
    name: &str,
    data: bool,
    format: Format,
) -> Result<Option<u64>, String> {
    let failed = |error: ClientError| command_error(error, "groups parked");
    let mut from_offset = 0;
    let mut count = 0u64;
    loop {
        let page: ParkedReply = client.parked_page(name, from_offset).map_err(failed)?;
        for parked in &page.events {
            let text =
                parked_text(client, parked.offset, parked.id, data, format).map_err(failed)?;
            if write_out(&text)? {
                return Ok(None);
            }
            count += 1;
        }
        match page.events.last() {
            // parked_page checked that the offsets move forward; at the last offset there is
            // nothing after it.
            Some(last) if page.more && last.offset < u64::MAX => from_offset = last.offset + 1,
            _ => return Ok(Some(count)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_with_glob_characters_becomes_a_glob_of_itself() {
        assert_eq!(exact_glob("/a/b"), "/a/b");
        assert_eq!(exact_glob("/a/*/{x}?[y]"), "/a/[*]/[{]x[}][?][[]y]");
    }

    #[test]
    fn the_start_just_below_an_id_is_the_next_lower_id() {
        assert_eq!(
            just_below(EventId::new(7, 3)),
            StartPosition::AfterId(EventId::new(7, 2))
        );
        assert_eq!(
            just_below(EventId::new(7, 1)),
            StartPosition::AfterId(EventId::new(6, u16::MAX))
        );
        assert_eq!(just_below(EventId::new(1, 1)), StartPosition::Beginning);
    }
}
