//! Listing namespaces (`NamespacesRequest`, `flo-client namespaces`): one page of the
//! namespaces above a name, in name order, with how many records each has and where its first
//! and last are, gathered segment by segment under a work budget so a listing of a long log
//! spreads over reactor turns.
//!
//! A listing keeps at most `page_max + 1` candidate names: the smallest names above `after`
//! that the caller accepts, seen so far. Every segment contributes its own smallest such
//! names; a name that ends on the page is among the smallest in every segment that holds it
//! (fewer than `page_max + 1` accepted names are below it anywhere), so its counts are
//! complete. Sealed segments with a `.nsx` file are walked in its name order (a binary search,
//! then one read per name); the open segment by its names sorted in memory in parts made
//! over calls (`NameView`: one unit of work per record sorted, then a binary search in each
//! part and one unit of work per part's name merged, and its records appended after the sort
//! one by one), and a segment whose index is not usable record by record (one unit of work
//! each). A listing is not a snapshot: records
//! appended to a segment the walk has passed, or deleted by retention while it runs, may be
//! missing from or still in its counts.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use crate::event::Event;

use super::file::{SealedNamespaces, SealedShape};
use super::namespace::{
    NameEntry, NameView, NamespaceFileError, NamespaceHeader, NamespaceKey, SegmentNames,
};
use super::segment::namespace_index_path;
use super::{FileLog, Log, Offset, StorageError};

/// What a listing knows of one namespace: its records among the segments walked, and the
/// offsets of the oldest and newest of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceCounts {
    /// Records of the namespace.
    pub count: u64,
    /// The offset of the oldest of them.
    pub first: u64,
    /// The offset of the newest of them.
    pub last: u64,
}

/// The caller's side of a listing: which names it lists, and whether its own budget for
/// deciding is spent. Deciding can cost far more than reading a name (a glob of a thousand
/// pieces matched against a namespace of a thousand bytes is about a hundred thousand word
/// operations), so `accept` charges that work to the caller's budget and the walk stops once
/// `spent` says so, as when `work` runs out: the listing goes on from there at the next call.
/// A walk asks about at least one name per call, so a listing always progresses.
pub trait NameFilter {
    /// Whether `name` is listed.
    fn accept(&mut self, name: &str) -> bool;

    /// Whether the walk must stop before asking about another name.
    fn spent(&self) -> bool {
        false
    }
}

/// A plain function or closure decides for free.
impl<F: FnMut(&str) -> bool> NameFilter for F {
    fn accept(&mut self, name: &str) -> bool {
        self(name)
    }
}

/// One namespace listing in progress (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceListing {
    /// Only names that start with this are listed (a glob's literal prefix).
    pub prefix: String,
    /// Only names above this are listed (the last name of the previous page).
    pub after: String,
    page_max: usize,
    /// Where the walk goes on: a segment's first offset, or a record's when the walk reads
    /// records (the open segment).
    pub(super) next: u64,
    /// Within the sealed segment that starts at `next`: the last name its table walk
    /// visited, when the walk stopped because the work was spent.
    pub(super) segment_after: Option<String>,
    candidates: BTreeMap<String, NamespaceCounts>,
}

impl NamespaceListing {
    /// A listing of at most `page_max` (at least 1) names above `after` that start with
    /// `prefix`.
    pub fn new(prefix: &str, after: &str, page_max: usize) -> NamespaceListing {
        NamespaceListing {
            prefix: prefix.to_string(),
            after: after.to_string(),
            page_max: page_max.max(1),
            next: 0,
            segment_after: None,
            candidates: BTreeMap::new(),
        }
    }

    /// Whether `name` can still be on the page: above `after`, under the prefix, and below the
    /// largest candidate while the candidates are full.
    pub fn wants(&self, name: &str) -> bool {
        if name <= self.after.as_str() || !name.starts_with(self.prefix.as_str()) {
            return false;
        }
        self.candidates.contains_key(name)
            || self.candidates.len() <= self.page_max
            || self
                .candidates
                .last_key_value()
                .is_some_and(|(largest, _)| name < largest.as_str())
    }

    /// Counts `count` records of `name`, the oldest at `first`, the newest at `last`.
    pub fn add(&mut self, name: &str, count: u64, first: u64, last: u64) {
        if let Some(known) = self.candidates.get_mut(name) {
            known.count += count;
            known.first = known.first.min(first);
            known.last = known.last.max(last);
            return;
        }
        let counts = NamespaceCounts { count, first, last };
        self.candidates.insert(name.to_string(), counts);
        if self.candidates.len() > self.page_max + 1 {
            self.candidates.pop_last();
        }
    }

    /// Counts one record read while walking record by record; `accept` is asked once per
    /// record whose name is not a candidate yet.
    pub fn observe(&mut self, offset: u64, name: &str, accept: &mut dyn NameFilter) {
        if self.candidates.contains_key(name) || (self.wants(name) && accept.accept(name)) {
            self.add(name, 1, offset, offset);
        }
    }

    /// As `observe`, for a record read one by one in the segment `next` is in: a name at or
    /// below `segment_after` was counted already by the walk of that segment's names in name
    /// order, which stopped after it (its records appended since are not counted: a listing
    /// is not a snapshot).
    fn observe_unwalked(&mut self, offset: u64, name: &str, accept: &mut dyn NameFilter) {
        if self
            .segment_after
            .as_deref()
            .is_some_and(|walked| name <= walked)
        {
            return;
        }
        self.observe(offset, name, accept);
    }

    /// The most names one sealed segment's table walk may keep: more could not be on the page.
    pub fn page_max(&self) -> usize {
        self.page_max
    }

    /// The page: at most `page_max` names in name order, and whether more follow.
    pub fn into_page(mut self) -> (Vec<(String, NamespaceCounts)>, bool) {
        let more = self.candidates.len() > self.page_max;
        if more {
            self.candidates.pop_last();
        }
        (self.candidates.into_iter().collect(), more)
    }
}

/// `Log::list_namespaces_within` by reading the records from `listing.next`, one unit of
/// `work` each (at least one record): the reference the index walk must agree with. Returns
/// whether the walk reached the durable end.
pub fn scan_listing<L: Log + ?Sized>(
    log: &mut L,
    listing: &mut NamespaceListing,
    accept: &mut dyn NameFilter,
    work: &mut u64,
) -> Result<bool, StorageError> {
    let end = log.durable_end().0;
    let from = listing.next.max(log.start().0);
    let mut read = 0u64;
    let reached = log.read(Offset(from), &mut |offset, event| {
        if (*work == 0 || accept.spent()) && read > 0 {
            return false;
        }
        *work = work.saturating_sub(1);
        read += 1;
        listing.observe(offset.0, event.namespace, accept);
        true
    })?;
    listing.next = reached.0.max(from);
    listing.segment_after = None;
    Ok(listing.next >= end)
}

/// The durable record at `offset`, if the log still holds it.
pub fn read_one<L: Log + ?Sized>(log: &mut L, offset: u64) -> Result<Option<Event>, StorageError> {
    let mut found = None;
    if offset < log.start().0 || offset >= log.durable_end().0 {
        return Ok(None);
    }
    log.read(Offset(offset), &mut |at, event| {
        if at.0 == offset {
            found = Some(event.to_event());
        }
        false
    })?;
    Ok(found)
}

impl FileLog {
    /// `Log::list_namespaces_within` for the file log: sealed segments by their `.nsx` table
    /// (in name order, resuming inside a table after the last name visited), the open
    /// segment and a segment whose file is being written by its names in memory, and a
    /// segment whose index cannot be written, or a listing that resumes inside a sealed
    /// segment, by reading its records.
    pub(super) fn list_namespaces_indexed(
        &mut self,
        listing: &mut NamespaceListing,
        accept: &mut dyn NameFilter,
        work: &mut u64,
    ) -> Result<bool, StorageError> {
        if !self.config.namespace_index {
            return scan_listing(self, listing, accept, work);
        }
        self.finish_namespace_build(false);
        let durable_end = self.durable_end().0;
        let mut rebuilt = false;
        loop {
            let start = self.start().0;
            if listing.next < start {
                // Retention deleted where the listing was: it goes on at the oldest record.
                listing.next = start;
                listing.segment_after = None;
            }
            if listing.next >= durable_end {
                return Ok(true);
            }
            if *work == 0 || accept.spent() {
                return Ok(false);
            }
            let segment = self.segment_of(listing.next);
            let segment_end = segment.end_offset().min(durable_end);
            let shape = SealedShape::of(segment);
            let open = shape.first_offset == self.open.index.first_offset;
            if open {
                let namespaces = &mut self.open.namespaces;
                let sorted = &mut self.activity.listing_records_sorted;
                if !listing_from_open(namespaces, listing, accept, work, segment_end, sorted) {
                    return Ok(false);
                }
                continue;
            }
            if let Some(SealedNamespaces::Building(names)) =
                self.sealed_namespaces.get(&shape.first_offset)
            {
                let names = Arc::clone(names);
                listing_from_names(&names, listing, accept, work, segment_end);
                continue;
            }
            let header = match self.sealed_namespaces.get(&shape.first_offset) {
                Some(SealedNamespaces::Written(header)) if listing.next == shape.first_offset => {
                    *header
                }
                Some(_) => {
                    // Unwritable, or resuming inside the segment: read its records.
                    self.scan_listing_range(listing, accept, work, segment_end)?;
                    continue;
                }
                None => {
                    // Missing: `lookup_sealed` rebuilds it (an empty range finds nothing).
                    let range = (shape.first_offset, shape.first_offset);
                    self.lookup_sealed(
                        shape,
                        &NamespaceKey::Exact(String::new()),
                        range,
                        0,
                        work,
                        &mut Vec::new(),
                    )?;
                    continue;
                }
            };
            let path = namespace_index_path(&self.config.data_dir, shape.first_offset);
            match walk_sealed(&path, &header, listing, accept, work) {
                Ok(true) => {
                    listing.next = segment_end;
                    listing.segment_after = None;
                }
                Ok(false) => return Ok(false),
                Err(error) if !rebuilt => {
                    log::warn!(
                        "namespace index {} cannot be used ({error})",
                        path.display()
                    );
                    self.sealed_namespaces.remove(&shape.first_offset);
                    rebuilt = true;
                }
                Err(error) => {
                    return Err(StorageError::Corrupt {
                        context: format!("namespace index {}: {error}", path.display()),
                    })
                }
            }
        }
    }

    /// Reads the records from `listing.next` up to `end` (one unit of `work` each).
    fn scan_listing_range(
        &mut self,
        listing: &mut NamespaceListing,
        accept: &mut dyn NameFilter,
        work: &mut u64,
        end: u64,
    ) -> Result<(), StorageError> {
        let from = listing.next;
        let mut read = 0u64;
        let reached = self.read(Offset(from), &mut |offset, event| {
            if offset.0 >= end || ((*work == 0 || accept.spent()) && read > 0) {
                return false;
            }
            *work = work.saturating_sub(1);
            read += 1;
            listing.observe_unwalked(offset.0, event.namespace, accept);
            true
        })?;
        listing.next = reached.0.clamp(from, end);
        if listing.next == end {
            listing.segment_after = None;
        }
        Ok(())
    }
}

/// Counts the records of `names` from `listing.next` up to `end`, one unit of `work` per
/// record (at least one).
fn listing_from_names(
    names: &SegmentNames,
    listing: &mut NamespaceListing,
    accept: &mut dyn NameFilter,
    work: &mut u64,
    end: u64,
) {
    let first = names.first_offset;
    let stop = end.saturating_sub(first).min(names.record_count());
    let mut record = listing.next.saturating_sub(first);
    let begin = record;
    while record < stop && ((*work > 0 && !accept.spent()) || record == begin) {
        *work = work.saturating_sub(1);
        // Names were validated as UTF-8 strings when they were appended.
        let name = String::from_utf8_lossy(names.name(record as usize));
        listing.observe_unwalked(first + record, &name, accept);
        record += 1;
    }
    listing.next = if record >= stop { end } else { first + record };
    if listing.next == end {
        listing.segment_after = None;
    }
}

/// Counts the open segment's records for `listing` from `listing.next` up to `end`: when the
/// listing enters the segment and it has a [`NameView`] (built or refreshed here, one unit
/// of `work` per record sorted, over as many calls as that takes), the view's names in name
/// order from the listing's `after` (one unit per part's entry, resuming after
/// `listing.segment_after`), then the records appended after the view one by one; else every
/// record one by one. Adds the records sorted to `sorted`. Returns false when the call must
/// end here: the view is still being built (its work is spent).
fn listing_from_open(
    names: &mut SegmentNames,
    listing: &mut NamespaceListing,
    accept: &mut dyn NameFilter,
    work: &mut u64,
    end: u64,
    sorted: &mut u64,
) -> bool {
    let first = names.first_offset;
    if listing.next == first {
        *sorted += names.refresh_name_view(work);
        let names = &*names;
        if names.name_view().is_some_and(NameView::is_building) {
            return false;
        }
        if let Some(view) = names.name_view().filter(|v| first + v.covered() <= end) {
            let covered = first + view.covered();
            if !walk_view(names, view, listing, accept, work) {
                return true;
            }
            listing.next = covered;
            listing.segment_after = None;
            if *work == 0 || accept.spent() {
                return true;
            }
        }
    }
    listing_from_names(names, listing, accept, work, end);
    true
}

/// Walks `view` (of `names`) for `listing` in name order; returns whether it is done (false:
/// the work was spent; `listing.segment_after` says where to resume).
fn walk_view(
    names: &SegmentNames,
    view: &NameView,
    listing: &mut NamespaceListing,
    accept: &mut dyn NameFilter,
    work: &mut u64,
) -> bool {
    let first_offset = names.first_offset;
    let after = (listing.segment_after.clone().unwrap_or_default()).max(listing.after.clone());
    let start = after.as_str().max(listing.prefix.as_str());
    let mut taken = 0;
    for entry in view.names_from(names, start.as_bytes()) {
        let name = entry.name;
        if name <= after.as_bytes() {
            continue;
        }
        if !name.starts_with(listing.prefix.as_bytes()) {
            return true;
        }
        *work = work.saturating_sub(entry.entries);
        // Names were validated as UTF-8 strings when they were appended.
        let name = String::from_utf8_lossy(name);
        if !listing.wants(&name) {
            return true;
        }
        if accept.accept(&name) {
            let (first, last) = (first_offset + entry.first, first_offset + entry.last);
            listing.add(&name, entry.count, first, last);
            taken += 1;
        }
        if taken > listing.page_max() {
            return true;
        }
        if *work == 0 || accept.spent() {
            listing.segment_after = Some(name.into_owned());
            return false;
        }
    }
    true
}

/// Walks one sealed segment's `.nsx` table for `listing`; returns whether the segment is
/// done (false: the work was spent; `listing.segment_after` says where to resume).
fn walk_sealed(
    path: &std::path::Path,
    header: &NamespaceHeader,
    listing: &mut NamespaceListing,
    accept: &mut dyn NameFilter,
    work: &mut u64,
) -> Result<bool, NamespaceFileError> {
    let file = File::open(path)?;
    let after = listing
        .segment_after
        .clone()
        .unwrap_or_default()
        .max(listing.after.clone());
    let mut taken: Vec<NameEntry> = Vec::new();
    let mut last_visited = None;
    let page_max = listing.page_max();
    let mut filter_spent = false;
    let walked = header.walk(&file, &listing.prefix, &after, work, &mut |entry| {
        last_visited = Some(entry.name.clone());
        if !listing.wants(&entry.name) {
            return false;
        }
        if accept.accept(&entry.name) {
            taken.push(entry);
        }
        // The name just decided is behind `last_visited`: the walk resumes after it.
        filter_spent = accept.spent();
        taken.len() <= page_max && !filter_spent
    })?;
    let done = walked && !(filter_spent && taken.len() <= page_max);
    // Every list is read (and checked) before any is counted: a damaged one makes the caller
    // rebuild the file and walk this segment again, which must not count a name twice.
    let mut bounds = Vec::with_capacity(taken.len());
    for entry in &taken {
        bounds.push(header.offset_bounds(&file, entry)?);
        *work = work.saturating_sub(1 + entry.count / 1024);
    }
    for (entry, (first, last)) in taken.iter().zip(bounds) {
        listing.add(&entry.name, entry.count, first, last);
    }
    if !done {
        listing.segment_after = last_visited;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept_all() -> impl FnMut(&str) -> bool {
        |_| true
    }

    #[test]
    fn a_page_keeps_the_smallest_names_with_complete_counts() {
        let mut listing = NamespaceListing::new("/a", "/a/1", 2);
        let names = [
            "/a/9", "/a/2", "/b", "/a/1", "/a/3", "/a/2", "/a/4", "/a/3", "/a/2",
        ];
        for (offset, name) in names.iter().enumerate() {
            listing.observe(offset as u64, name, &mut accept_all());
        }
        let (page, more) = listing.into_page();
        let expected = vec![
            (
                "/a/2".to_string(),
                NamespaceCounts {
                    count: 3,
                    first: 1,
                    last: 8,
                },
            ),
            (
                "/a/3".to_string(),
                NamespaceCounts {
                    count: 2,
                    first: 4,
                    last: 7,
                },
            ),
        ];
        assert_eq!((page, more), (expected, true));
    }

    #[test]
    fn names_the_caller_refuses_are_not_listed() {
        let mut listing = NamespaceListing::new("", "", 10);
        let mut asked = 0;
        let mut accept = |name: &str| {
            asked += 1;
            name != "/secret"
        };
        for (offset, name) in ["/secret", "/open", "/secret"].iter().enumerate() {
            listing.observe(offset as u64, name, &mut accept);
        }
        let (page, more) = listing.into_page();
        assert_eq!(page.len(), 1, "{page:?}");
        assert_eq!((page[0].0.as_str(), more, asked), ("/open", false, 3));
    }
}
