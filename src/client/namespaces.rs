//! Listing namespaces from a client (protocol.md section 6, NamespacesRequest): each namespace
//! a glob matches, with its event count and its first and last event. Each page is one
//! request and its answer; the server bounds a page (100 namespaces by default) and the work
//! it does per turn for it.

use super::{Client, ClientError};
use crate::protocol::{
    ClientFrame, NamespaceInfo, NamespacesReply, NamespacesRequest, ServerFrame,
};

impl Client {
    /// One page of the namespaces `glob` matches whose names sort after `after` (empty: from
    /// the first), in bytewise name order; `more` says that another page follows (ask again
    /// with `after` = the last name). On a server with authentication, only namespaces the
    /// principal may consume are listed.
    pub fn namespaces_page(
        &mut self,
        glob: &str,
        after: &str,
    ) -> Result<NamespacesReply, ClientError> {
        let request = NamespacesRequest {
            glob: glob.to_string(),
            after: after.to_string(),
        };
        self.connection
            .send(&ClientFrame::NamespacesRequest(request))?;
        loop {
            match self.connection.receive()? {
                ServerFrame::Namespaces(reply) => return Ok(reply),
                frame => self.skip_stale(frame)?,
            }
        }
    }

    /// Visits every namespace `glob` matches, page by page, in name order, until `visit`
    /// returns false. Holds one page at a time. Names must go up across the listing
    /// (MalformedFrame otherwise), so a server that sends the same page again and again with
    /// `more` set cannot keep the client visiting it without end (attack round 11).
    pub fn for_each_namespace(
        &mut self,
        glob: &str,
        visit: &mut dyn FnMut(&NamespaceInfo) -> bool,
    ) -> Result<(), ClientError> {
        let mut after = String::new();
        loop {
            let page = self.namespaces_page(glob, &after)?;
            for namespace in &page.namespaces {
                if !after.is_empty() && namespace.name <= after {
                    return Err(ClientError::Protocol {
                        code: crate::protocol::ErrorCode::MalformedFrame,
                        message: format!(
                            "the server listed namespace {:?} after {after:?}: names must go up",
                            namespace.name
                        ),
                    });
                }
                after.clone_from(&namespace.name);
                if !visit(namespace) {
                    return Ok(());
                }
            }
            if !page.more || page.namespaces.is_empty() {
                return Ok(());
            }
        }
    }
}

/// `flo-client namespaces` as text: the namespace (terminal-safe), its event count, then the
/// id and UTC time of its first and last event.
pub fn format_namespace(namespace: &NamespaceInfo) -> String {
    let mut name = String::new();
    super::format::push_terminal_safe(&mut name, &namespace.name);
    let end = |id: crate::event::EventId, ms: u64| {
        if id.is_none() {
            return "none".to_string();
        }
        format!("{id} {}", format_rfc3339_ms(ms))
    };
    // "1 events" read as a slip in the first listing a new user saw (walkthrough, session 15).
    let events = match namespace.event_count {
        1 => "event",
        _ => "events",
    };
    format!(
        "{name}  {} {events}  first {}  last {}",
        namespace.event_count,
        end(namespace.first_id, namespace.first_timestamp_ms),
        end(namespace.last_id, namespace.last_timestamp_ms)
    )
}

/// `flo-client namespaces --format json`: one JSON object per namespace, on one line.
pub fn format_namespace_json(namespace: &NamespaceInfo) -> String {
    let mut out = String::from("{\"namespace\":");
    super::format::push_json_string(&mut out, &namespace.name);
    let id = |id: crate::event::EventId| {
        if id.is_none() {
            "null".to_string()
        } else {
            format!("\"{id}\"")
        }
    };
    out.push_str(&format!(
        ",\"event_count\":{},\"first_id\":{},\"first_timestamp\":{},\"last_id\":{},\"last_timestamp\":{}}}",
        namespace.event_count,
        id(namespace.first_id),
        namespace.first_timestamp_ms,
        id(namespace.last_id),
        namespace.last_timestamp_ms
    ));
    out
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), the inverse of
/// `parse_rfc3339_ms` for whole milliseconds.
pub fn format_rfc3339_ms(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let in_day = ms % 86_400_000;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::format::parse_rfc3339_ms;

    #[test]
    fn a_namespace_of_one_event_says_event() {
        let info = |event_count| NamespaceInfo {
            name: "/a".to_string(),
            event_count,
            first_id: crate::event::EventId::new(1, 1),
            first_timestamp_ms: 0,
            last_id: crate::event::EventId::new(1, 1),
            last_timestamp_ms: 0,
        };
        assert!(format_namespace(&info(1)).starts_with("/a  1 event  first "));
        assert!(format_namespace(&info(2)).starts_with("/a  2 events  first "));
    }

    #[test]
    fn times_print_as_rfc3339_and_read_back() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        for ms in [951_782_400_000u64, 4_102_444_799_999, 1_709_164_800_000] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms), "{ms}");
        }
    }
}
