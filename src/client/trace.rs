//! Tracing an event from a client (protocol.md section 6, TraceRequest): the event, its
//! ancestors (following parent ids up) and its descendants (every event whose parent chain
//! leads to it), from the server's trace indexes.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{Client, ClientError};
use crate::event::EventId;
use crate::protocol::{ClientFrame, ServerFrame, TraceEntry};

/// A whole trace: its entries in the server's order (ancestors oldest first, the event at
/// depth 0, then the descendants level by level) and whether a server limit cut it short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The entries.
    pub entries: Vec<TraceEntry>,
    /// A limit (`streams.trace_events_max`, `streams.trace_depth_max`) left events out.
    pub truncated: bool,
}

/// The most entries a trace may have: the largest `streams.trace_events_max` a server accepts.
/// A server that sends more (Trace frames with `more` set, without end) is broken or hostile;
/// without this bound the client kept every entry it was sent (attack round 11).
pub const TRACE_ENTRIES_MAX: usize = 1_000_000;

impl Client {
    /// The trace of event `id`: at most the server's `streams.trace_events_max` entries (10,000
    /// by default), received in several frames. A server that sends more than
    /// [`TRACE_ENTRIES_MAX`] gets [`ClientError::Protocol`] `MalformedFrame` and the
    /// connection is not used again. An id the server's log does not hold is
    /// `ErrorCode::NoSuchEvent`; with authentication, events the principal may not consume
    /// are left out (and not followed).
    pub fn trace(&mut self, id: EventId) -> Result<Trace, ClientError> {
        self.connection.send(&ClientFrame::TraceRequest { id })?;
        let mut trace = Trace {
            entries: Vec::new(),
            truncated: false,
        };
        loop {
            match self.connection.receive()? {
                ServerFrame::Trace(reply) => {
                    if trace.entries.len() + reply.entries.len() > TRACE_ENTRIES_MAX {
                        let message = format!(
                            "the server sent a trace of over {TRACE_ENTRIES_MAX} entries, more than any server limit allows"
                        );
                        return Err(self.connection.fail_protocol(message));
                    }
                    trace.entries.extend(reply.entries);
                    if !reply.more {
                        trace.truncated = reply.truncated;
                        return Ok(trace);
                    }
                }
                frame => self.skip_stale(frame)?,
            }
        }
    }
}

/// `flo-client trace` as text: the ancestors from the oldest down, then the traced event
/// (marked `*`) and its descendants as an indented tree, one line each with id, namespace and
/// UTC time.
pub fn format_trace(trace: &Trace) -> String {
    let mut out = String::new();
    let top = trace.entries.iter().map(|e| e.depth).min().unwrap_or(0);
    let mut children: HashMap<EventId, Vec<&TraceEntry>> = HashMap::new();
    let mut root = None;
    for entry in &trace.entries {
        if entry.depth < 0 {
            line(&mut out, entry, (entry.depth - top) as usize, false);
        } else if entry.depth == 0 {
            root = Some(entry);
        } else if let Some(parent) = entry.parent_id {
            children.entry(parent).or_default().push(entry);
        }
    }
    if let Some(root) = root {
        // Depth first, without recursion (a deep chain must not overflow the stack).
        let mut stack = vec![(root, (-top) as usize)];
        while let Some((entry, indent)) = stack.pop() {
            line(&mut out, entry, indent, entry.depth == 0);
            if let Some(below) = children.get(&entry.id) {
                stack.extend(below.iter().rev().map(|child| (*child, indent + 1)));
            }
        }
    }
    if trace.truncated {
        out.push_str("(truncated: the server's trace limits left events out)\n");
    }
    out
}

fn line(out: &mut String, entry: &TraceEntry, indent: usize, traced: bool) {
    let mut namespace = String::new();
    super::format::push_terminal_safe(&mut namespace, &entry.namespace);
    let _ = writeln!(
        out,
        "{}{}{} {namespace} {}",
        "  ".repeat(indent),
        if traced { "* " } else { "" },
        entry.id,
        super::format::format_rfc3339_ms(entry.timestamp_ms)
    );
}

/// `flo-client trace --format json`: one JSON object per entry, on one line each, in the
/// server's order.
pub fn format_trace_json(trace: &Trace) -> String {
    let mut out = String::new();
    for entry in &trace.entries {
        let parent = entry
            .parent_id
            .map_or("null".to_string(), |id| format!("\"{id}\""));
        let mut namespace = String::new();
        super::format::push_json_string(&mut namespace, &entry.namespace);
        let _ = writeln!(
            out,
            "{{\"depth\":{},\"id\":\"{}\",\"parent_id\":{parent},\"namespace\":{namespace},\"timestamp\":{}}}",
            entry.depth, entry.id, entry.timestamp_ms
        );
    }
    if trace.truncated {
        out.push_str("{\"truncated\":true}\n");
    }
    out
}
