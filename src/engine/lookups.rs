//! Lookups that read the log's indexes for a client and may take several turns: the
//! namespace listing (`NamespacesRequest`) and the trace of an event (`TraceRequest`),
//! protocol.md section 6.
//!
//! A connection has at most one lookup in progress (a second request is refused with
//! `LookupBusy`). At the end of every turn the engine goes on with the lookups in turn, under
//! one budget of `records_per_turn_max` units (a record looked at, or a piece of an index file
//! read: the units of the subscriptions' index lookups), so a listing of a long log, or many
//! of them, spread over turns instead of holding up the acks of the others.

use std::sync::Arc;

use crate::auth_file::Principal;
use std::collections::{HashSet, VecDeque};

use crate::config::StreamLimits;
use crate::event::{Event, EventId};
use crate::protocol::glob::{GlobError, NamespaceGlob};
use crate::protocol::{
    ErrorCode, ErrorScope, NamespaceInfo, NamespacesReply, NamespacesRequest, ServerFrame,
    TraceEntry, TraceReply, NAMESPACES_FRAME_EMPTY_SIZE, TRACE_FRAME_EMPTY_SIZE,
};
use crate::storage::{
    read_one, Log, NameFilter, NamespaceKey, NamespaceListing, Offset, StorageError, TraceKey,
};

use super::consume::{hidden_charged, index_key};
use super::{ConnId, Engine};

/// A lookup in progress for one connection.
#[derive(Debug)]
pub(super) struct Lookup {
    conn: ConnId,
    /// The connection's principal, when the server checks permissions: only namespaces it
    /// may consume are listed, and a trace leaves out the events of the others.
    principal: Option<Arc<Principal>>,
    kind: LookupKind,
}

#[derive(Debug)]
enum LookupKind {
    Namespaces(Box<(NamespaceGlob, NamespaceListing)>),
    /// The listing is complete: its page is being read out (first and last events).
    Page(Box<PageWalk>),
    Trace(Box<TraceWalk>),
}

/// A listing's page being answered, a name at a time: each name's first and last events
/// are read and checked against the purge and retention rules, which may cost a turn's
/// matching budget for a few names (`purge_rules_max` rules of long globs).
#[derive(Debug)]
struct PageWalk {
    names: std::vec::IntoIter<(String, crate::storage::NamespaceCounts)>,
    reply: NamespacesReply,
    /// Bytes of the reply's entries so far.
    used: usize,
}

impl PageWalk {
    fn of(listing: NamespaceListing) -> PageWalk {
        let (names, more) = listing.into_page();
        PageWalk {
            reply: NamespacesReply {
                more,
                namespaces: Vec::with_capacity(names.len()),
            },
            names: names.into_iter(),
            used: 0,
        }
    }
}

fn may_consume(principal: &Option<Arc<Principal>>, namespace: &str) -> bool {
    principal.as_ref().is_none_or(|principal| {
        principal
            .consume
            .iter()
            .any(|p| p.allows_namespace(namespace))
    })
}

impl<L: Log> Engine<L> {
    pub(super) fn on_namespaces_request(&mut self, conn: ConnId, request: NamespacesRequest) {
        let scope = ErrorScope::Connection;
        if self.lookup_busy(conn) {
            return;
        }
        let glob_length_max = self.config.wire.glob_length_max as usize;
        let glob = match NamespaceGlob::with_length_max(&request.glob, glob_length_max) {
            Ok(glob) => glob,
            Err(error) => {
                let message = match error {
                    GlobError::TooLong { .. } => error.to_string(),
                    _ => format!("invalid glob {:?}: {error}", request.glob),
                };
                return self.send_error(conn, scope, ErrorCode::InvalidGlob, &message);
            }
        };
        let prefix = match index_key(&request.glob) {
            Some(NamespaceKey::Exact(name) | NamespaceKey::Prefix(name)) => name,
            None => String::new(),
        };
        let page_max = self.config.streams.namespaces_per_reply_max;
        let listing = NamespaceListing::new(&prefix, &request.after, page_max);
        self.lookups.push_back(Lookup {
            conn,
            principal: self.principal(conn).cloned(),
            kind: LookupKind::Namespaces(Box::new((glob, listing))),
        });
    }

    /// Refuses a second lookup of a connection while its first runs (true: refused).
    fn lookup_busy(&mut self, conn: ConnId) -> bool {
        if !self.lookups.iter().any(|lookup| lookup.conn == conn) {
            return false;
        }
        let message =
            "the previous NamespacesRequest or TraceRequest of this connection is still running";
        self.send_error(conn, ErrorScope::Connection, ErrorCode::LookupBusy, message);
        true
    }

    pub(super) fn on_trace_request(&mut self, conn: ConnId, id: EventId) {
        if self.lookup_busy(conn) {
            return;
        }
        self.lookups.push_back(Lookup {
            conn,
            principal: self.principal(conn).cloned(),
            kind: LookupKind::Trace(Box::new(TraceWalk::new(id))),
        });
    }

    pub(super) fn has_lookups(&self) -> bool {
        !self.lookups.is_empty()
    }

    /// Goes on with the lookups in progress, each in turn, until the turn's budget is spent.
    pub(super) fn lookups_turn_end(&mut self) {
        if self.lookups.is_empty() {
            return;
        }
        let sorted_before = self.log.activity().listing_records_sorted;
        self.lookups_turn();
        let sorted = self.log.activity().listing_records_sorted - sorted_before;
        self.metrics.on_listing_sorted(sorted);
    }

    /// `lookups_turn_end`'s work: each lookup in turn until the budget is spent.
    fn lookups_turn(&mut self) {
        let mut work = self.config.records_per_turn_max;
        let mut match_steps = self.config.match_steps_per_turn_max;
        let mut name_bytes = self.config.feed_bytes_per_turn_max;
        let mut turns = self.lookups.len();
        while turns > 0 && work > 0 && match_steps > 0 && name_bytes > 0 {
            turns -= 1;
            let Some(mut lookup) = self.lookups.pop_front() else {
                break;
            };
            if !self.is_open(lookup.conn) {
                continue;
            }
            match &mut lookup.kind {
                LookupKind::Namespaces(namespaces) => {
                    let (glob, listing) = &mut **namespaces;
                    let mut accept = ListingFilter {
                        glob,
                        principal: &lookup.principal,
                        steps: &mut match_steps,
                        bytes: &mut name_bytes,
                        charged: &mut self.stats.match_steps_charged,
                    };
                    match self
                        .log
                        .list_namespaces_within(listing, &mut accept, &mut work)
                    {
                        Ok(false) => self.lookups.push_back(lookup),
                        Ok(true) => {
                            // The page is answered from here on, this turn if work is left.
                            let empty = NamespaceListing::new("", "", 1);
                            let listing = std::mem::replace(listing, empty);
                            lookup.kind = LookupKind::Page(Box::new(PageWalk::of(listing)));
                            self.lookups.push_front(lookup);
                            turns += 1;
                        }
                        Err(error) => self.lookup_failed(lookup.conn, &error),
                    }
                }
                LookupKind::Page(page) => {
                    match self.continue_page(page, &mut work, &mut match_steps) {
                        Ok(false) => self.lookups.push_back(lookup),
                        Ok(true) => {
                            let LookupKind::Page(page) = lookup.kind else {
                                unreachable!("matched above")
                            };
                            self.send(lookup.conn, &ServerFrame::Namespaces(page.reply));
                        }
                        Err(error) => self.lookup_failed(lookup.conn, &error),
                    }
                }
                LookupKind::Trace(walk) => {
                    let frame_size_max = self.config.wire.frame_size_max;
                    let limits = TraceLimits::of(&self.config.streams, frame_size_max);
                    let budget = TraceBudget {
                        work: &mut work,
                        match_steps: &mut match_steps,
                        charged: &mut self.stats.match_steps_charged,
                    };
                    let result = walk.step(&mut self.log, &lookup.principal, &limits, budget);
                    let conn = lookup.conn;
                    for reply in walk.take_replies(&limits) {
                        self.send(conn, &ServerFrame::Trace(reply));
                    }
                    match result {
                        Ok(TraceProgress::Going) => self.lookups.push_back(lookup),
                        Ok(TraceProgress::Done) => {}
                        Ok(TraceProgress::NotFound) => {
                            let message = format!("the log holds no event {}", walk.root);
                            let scope = ErrorScope::Connection;
                            self.send_error(conn, scope, ErrorCode::NoSuchEvent, &message);
                        }
                        Err(error) => self.lookup_failed(conn, &error),
                    }
                }
            }
        }
    }

    /// Goes on with a finished listing's page: each namespace with the id and time of its
    /// first and last record (two record reads, charged to `work`, and two checks against
    /// the purge and retention rules, charged to `match_steps`), until the page is done
    /// (true) or the budgets are spent (at least one name per call).
    fn continue_page(
        &mut self,
        page: &mut PageWalk,
        work: &mut u64,
        match_steps: &mut u64,
    ) -> Result<bool, StorageError> {
        let room = self.config.wire.frame_size_max as usize - NAMESPACES_FRAME_EMPTY_SIZE;
        let hide = self.log.hide_rules();
        let mut looked = 0;
        while looked == 0 || (*work > 0 && *match_steps > 0) {
            let Some((name, counts)) = page.names.next() else {
                return Ok(true);
            };
            looked += 1;
            *work = work.saturating_sub(2);
            let first = read_one(&mut self.log, counts.first)?;
            let last = read_one(&mut self.log, counts.last)?;
            let mut hidden = |event: &Option<Event>| {
                event.as_ref().is_some_and(|event| {
                    let (hidden, cost) = hide.hides_with_cost(event.view());
                    *match_steps = match_steps.saturating_sub(cost);
                    self.stats.match_steps_charged += cost;
                    hidden
                })
            };
            // Purges and retention rules hide a namespace's oldest events: a namespace whose
            // newest event is hidden has none left to show; a hidden first one is not named.
            if hidden(&last) {
                continue;
            }
            let first_hidden = hidden(&first);
            let id_and_time = |event: Option<Event>, hidden: bool| match event {
                // Retention deleted it while the listing ran, or a purge hides it.
                None => Ok((EventId::NONE, 0)),
                Some(_) if hidden => Ok((EventId::NONE, 0)),
                Some(event) if event.namespace == name => Ok((event.id, event.timestamp_ms)),
                Some(event) => Err(StorageError::Corrupt {
                    context: format!(
                        "the namespace index lists a record of {name:?} that is in {:?}",
                        event.namespace
                    ),
                }),
            };
            let first = id_and_time(first, first_hidden)?;
            let last = id_and_time(last, false)?;
            let info = NamespaceInfo {
                name,
                event_count: counts.count,
                first_id: first.0,
                first_timestamp_ms: first.1,
                last_id: last.0,
                last_timestamp_ms: last.1,
            };
            page.used += info.encoded_size();
            if page.used > room {
                // The rest comes with the next page (after the last name sent).
                page.reply.more = true;
                return Ok(true);
            }
            page.reply.namespaces.push(info);
        }
        Ok(false)
    }

    fn lookup_failed(&mut self, conn: ConnId, error: &StorageError) {
        log::error!("{conn}: a namespace listing or trace could not read the log: {error}");
        let message = format!("could not read the log: {error}");
        self.send_error(
            conn,
            ErrorScope::Connection,
            ErrorCode::StorageFailure,
            &message,
        );
    }
}

/// What a namespace listing lists: the names its glob matches, which the principal may
/// consume. The work a name costs is charged to the turn besides the listing's record units:
/// the glob's matching to `match_steps_per_turn_max`, and the name's bytes (plus
/// `NAME_BYTES_FIXED` for reading its entry) to `feed_bytes_per_turn_max`. A record unit per
/// name alone let one turn decide 64 Ki names whatever their length and the glob's (attack
/// round 3, F2: a 1 KiB glob over 20,000 names of 1000 bytes held the reactor 2.6 s), so an
/// expensive listing now spreads over turns.
struct ListingFilter<'a> {
    glob: &'a NamespaceGlob,
    principal: &'a Option<Arc<Principal>>,
    steps: &'a mut u64,
    bytes: &'a mut u64,
    charged: &'a mut u64,
}

/// What looking at one name costs besides its bytes, in the units of
/// `feed_bytes_per_turn_max`: its index entry and the read that fetches it.
const NAME_BYTES_FIXED: u64 = 64;

impl NameFilter for ListingFilter<'_> {
    fn accept(&mut self, name: &str) -> bool {
        let (matched, cost) = self.glob.matches_with_cost(name);
        *self.steps = self.steps.saturating_sub(cost);
        *self.charged += cost;
        let read = NAME_BYTES_FIXED + name.len() as u64;
        *self.bytes = self.bytes.saturating_sub(read);
        matched && may_consume(self.principal, name)
    }

    fn spent(&self) -> bool {
        *self.steps == 0 || *self.bytes == 0
    }
}

/// The trace limits (`StreamLimits`), and the room of one Trace frame.
struct TraceLimits {
    events_max: usize,
    depth_max: i16,
    per_reply_max: usize,
    /// Bytes of entries one frame may carry.
    room: usize,
}

impl TraceLimits {
    fn of(streams: &StreamLimits, frame_size_max: u32) -> TraceLimits {
        TraceLimits {
            room: (frame_size_max as usize).saturating_sub(TRACE_FRAME_EMPTY_SIZE),
            events_max: streams.trace_events_max,
            // Validated at most 10000.
            depth_max: streams.trace_depth_max.min(i16::MAX as u16) as i16,
            per_reply_max: streams.trace_events_per_reply_max,
        }
    }
}

/// What a trace may still do this turn: index and record units (`records_per_turn_max`)
/// and the purge and retention checks of the events it finds (`match_steps_per_turn_max`).
struct TraceBudget<'a> {
    work: &'a mut u64,
    match_steps: &'a mut u64,
    /// The engine's count of matching steps charged.
    charged: &'a mut u64,
}

/// How far a trace got this turn.
enum TraceProgress {
    /// The work ran out; it goes on next turn.
    Going,
    Done,
    /// The traced event is not in the log.
    NotFound,
}

/// What a trace looks for next.
#[derive(Debug, Clone, Copy)]
enum TraceStep {
    /// The traced event itself, by its id.
    Root,
    /// An ancestor, by its id, at this depth (negative).
    Ancestor(EventId, i16),
    /// The children of an event of the tree, whose depth is given.
    Children(EventId, i16),
    Done,
}

/// A trace in progress: the traced event found by the id index, its ancestors by following
/// parent ids up through the same index, then its descendants level by level through the
/// parent index. Memory: the ids seen and the events whose children are still to be looked
/// for, both bounded by `trace_events_max`, and the entries not yet sent.
#[derive(Debug)]
pub(super) struct TraceWalk {
    root: EventId,
    step: TraceStep,
    /// Where the search of the current step goes on.
    search_from: Offset,
    /// The traced event and its ancestors found so far, the traced event first.
    ancestry: Vec<TraceEntry>,
    /// Entries ready to be sent, in order.
    ready: Vec<TraceEntry>,
    seen: HashSet<EventId>,
    /// Events whose children are still to be looked for, with their depth.
    waiting: VecDeque<(EventId, i16)>,
    truncated: bool,
    done: bool,
}

impl TraceWalk {
    fn new(root: EventId) -> TraceWalk {
        TraceWalk {
            root,
            step: TraceStep::Root,
            search_from: Offset(0),
            ancestry: Vec::new(),
            ready: Vec::new(),
            seen: HashSet::new(),
            waiting: VecDeque::new(),
            truncated: false,
            done: false,
        }
    }

    fn entry(event: &Event, depth: i16) -> TraceEntry {
        TraceEntry {
            depth,
            id: event.id,
            parent_id: event.parent_id,
            timestamp_ms: event.timestamp_ms,
            namespace: event.namespace.clone(),
        }
    }

    /// Goes on until the trace is done or the budget is spent (at least one event found is
    /// looked at per call).
    fn step<L: Log>(
        &mut self,
        log: &mut L,
        principal: &Option<Arc<Principal>>,
        limits: &TraceLimits,
        budget: TraceBudget<'_>,
    ) -> Result<TraceProgress, StorageError> {
        let TraceBudget {
            work,
            match_steps,
            charged,
        } = budget;
        let mut looked = false;
        loop {
            let (key, id, count_max) = match self.step {
                TraceStep::Done => {
                    self.done = true;
                    return Ok(TraceProgress::Done);
                }
                TraceStep::Root => (TraceKey::Id, self.root, 1),
                TraceStep::Ancestor(id, _) => (TraceKey::Id, id, 1),
                TraceStep::Children(id, _) => (TraceKey::Parent, id, 1024),
            };
            if *work == 0 || *match_steps == 0 {
                return Ok(TraceProgress::Going);
            }
            let mut found = Vec::new();
            let from = self.search_from;
            let reached = log.find_traced_within(key, id, from, count_max, work, &mut found)?;
            self.search_from = reached;
            let exhausted = reached >= log.durable_end();
            let step = self.step;
            let mut step_done = exhausted;
            let hide = log.hide_rules();
            for offset in &found {
                if looked && (*work == 0 || *match_steps == 0) {
                    // The rest of this step's search starts at this event, next turn.
                    self.search_from = *offset;
                    return Ok(TraceProgress::Going);
                }
                looked = true;
                *work = work.saturating_sub(1);
                let Some(event) = read_one(log, offset.0)? else {
                    continue;
                };
                let hidden = hidden_charged(&hide, event.view(), match_steps, charged);
                match step {
                    // An event the principal may not read is answered as one the log does not
                    // hold: the answer must not tell which ids exist in other namespaces.
                    TraceStep::Root if !may_consume(principal, &event.namespace) || hidden => {
                        return Ok(TraceProgress::NotFound);
                    }
                    TraceStep::Root | TraceStep::Ancestor(..) => {
                        step_done = true;
                        self.take_ancestor(event, principal, hidden, limits);
                    }
                    TraceStep::Children(_, depth) => {
                        if !self.take_child(event, depth + 1, principal, hidden, limits) {
                            step_done = true;
                            break;
                        }
                    }
                    TraceStep::Done => {}
                }
            }
            if !step_done {
                continue;
            }
            match step {
                TraceStep::Root if found.is_empty() => return Ok(TraceProgress::NotFound),
                // `take_ancestor` chose the next step: the parent, or the descendants.
                TraceStep::Root | TraceStep::Ancestor(..) if !found.is_empty() => {}
                _ => self.next_step(limits),
            }
        }
    }

    /// The traced event or an ancestor was found: keeps it and goes on to its parent, or,
    /// at the top, to the descendants.
    fn take_ancestor(
        &mut self,
        event: Event,
        principal: &Option<Arc<Principal>>,
        hidden: bool,
        limits: &TraceLimits,
    ) {
        let depth = match self.step {
            TraceStep::Ancestor(_, depth) => depth,
            _ => 0,
        };
        // An event outside the principal's permissions is not shown, nor followed; a cycle of
        // parent ids (possible: a parent id is whatever the producer sent) ends the ancestry.
        let visible = may_consume(principal, &event.namespace) && !hidden;
        if !visible || !self.seen.insert(event.id) || self.seen.len() > limits.events_max {
            self.truncated |= self.seen.len() > limits.events_max;
            return self.next_step(limits);
        }
        self.ancestry.push(TraceWalk::entry(&event, depth));
        match event.parent_id {
            Some(parent) if depth > -limits.depth_max => {
                self.step = TraceStep::Ancestor(parent, depth - 1);
                self.search_from = Offset(0);
            }
            Some(_) => {
                self.truncated = true;
                self.next_step(limits);
            }
            None => self.next_step(limits),
        }
    }

    /// A child of an event of the tree was found; false when the trace is full.
    fn take_child(
        &mut self,
        event: Event,
        depth: i16,
        principal: &Option<Arc<Principal>>,
        hidden: bool,
        limits: &TraceLimits,
    ) -> bool {
        if self.seen.len() >= limits.events_max {
            self.truncated = true;
            return false;
        }
        if !may_consume(principal, &event.namespace) || hidden || !self.seen.insert(event.id) {
            return true;
        }
        self.ready.push(TraceWalk::entry(&event, depth));
        if depth < limits.depth_max {
            self.waiting.push_back((event.id, depth));
        } else {
            self.truncated = true;
        }
        true
    }

    /// The current step is complete: the next one.
    fn next_step(&mut self, limits: &TraceLimits) {
        self.search_from = Offset(0);
        match self.step {
            TraceStep::Root | TraceStep::Ancestor(..) if !self.ancestry.is_empty() => {
                // The ancestry is complete (no parent, the parent not in the log, a limit):
                // it goes out oldest first, then the descendants of the traced event.
                let mut ancestry = std::mem::take(&mut self.ancestry);
                ancestry.reverse();
                self.ready.splice(0..0, ancestry);
                self.waiting.push_back((self.root, 0));
            }
            TraceStep::Root | TraceStep::Ancestor(..) | TraceStep::Children(..) => {}
            TraceStep::Done => {}
        }
        self.step = if self.seen.len() >= limits.events_max {
            TraceStep::Done
        } else {
            match self.waiting.pop_front() {
                Some((id, depth)) => TraceStep::Children(id, depth),
                None => TraceStep::Done,
            }
        };
    }

    /// The Trace frames to send now: whole frames of ready entries, and the rest once done.
    fn take_replies(&mut self, limits: &TraceLimits) -> Vec<TraceReply> {
        let mut replies = Vec::new();
        while self.ready.len() >= limits.per_reply_max || (self.done && !self.ready.is_empty()) {
            let mut count = 0;
            let mut used = 0;
            for entry in self.ready.iter().take(limits.per_reply_max) {
                used += entry.encoded_size();
                if used > limits.room && count > 0 {
                    break;
                }
                count += 1;
            }
            let entries: Vec<TraceEntry> = self.ready.drain(..count).collect();
            let last = self.done && self.ready.is_empty();
            replies.push(TraceReply {
                more: !last,
                truncated: last && self.truncated,
                entries,
            });
        }
        if self.done && replies.is_empty() {
            replies.push(TraceReply {
                more: false,
                truncated: self.truncated,
                entries: Vec::new(),
            });
        }
        replies
    }
}
