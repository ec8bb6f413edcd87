//! The namespaces appended this turn, with the newest id of each: to wake only the tailing
//! consumers that match, and for conditional produces.
//!
//! The names are interned: a namespace keeps its shared name across turns, so a turn that
//! appends to namespaces seen recently allocates nothing (issue 13: no allocation per event
//! on the produce path). Names of earlier turns are kept up to a bound and dropped, all those
//! not appended this turn at once, when a new name would pass it. A turn's own names are
//! never dropped (its conditional produces ask for them), so a turn of more distinct names
//! than the bound holds them all until the next turn's first new name: the memory is bounded
//! by the events of one turn, and each name is inserted once (issue 14, session 10: the names
//! were rebuilt for every new name past the bound, 67% of the reactor's time with events
//! spread over 1,000,000 namespaces).

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::EventId;

#[derive(Debug, Default)]
pub(super) struct TurnNamespaces {
    /// Every interned name, with its slot in `entries`.
    names: HashMap<Arc<str>, usize>,
    /// Per interned name: the newest id appended to it and the turn of that append.
    entries: Vec<Entry>,
    /// The slot of the name observed last: a run of appends to one namespace (a batch, a
    /// pipelined producer) compares the name's bytes instead of hashing it for every event.
    last: Option<usize>,
    /// The names appended this turn, in the order of their first append.
    current: Vec<Arc<str>>,
    turn: u64,
    /// Names of earlier turns are dropped when a new name would take `names` past this.
    retained_max: usize,
    /// How often names of earlier turns were dropped (tests check it stays linear).
    evictions: u64,
}

#[derive(Debug)]
struct Entry {
    newest: EventId,
    turn: u64,
    name: Arc<str>,
}

impl TurnNamespaces {
    pub fn new(retained_max: usize) -> TurnNamespaces {
        TurnNamespaces {
            retained_max,
            ..TurnNamespaces::default()
        }
    }

    /// An event `id` was appended to `namespace` this turn.
    pub fn observe(&mut self, namespace: &str, id: EventId) {
        let last = self
            .last
            .filter(|&slot| *self.entries[slot].name == *namespace);
        let slot = match last.or_else(|| self.names.get(namespace).copied()) {
            Some(slot) => slot,
            None => self.intern(namespace, id),
        };
        self.last = Some(slot);
        let entry = &mut self.entries[slot];
        entry.newest = id;
        if entry.turn != self.turn {
            entry.turn = self.turn;
            self.current.push(Arc::clone(&entry.name));
        }
    }

    /// A name not interned yet, appended this turn: its slot.
    fn intern(&mut self, namespace: &str, id: EventId) -> usize {
        // `current` lists this turn's names once each: the names of earlier turns still
        // held are the rest. When there are none, dropping would only rebuild the map.
        if self.names.len() >= self.retained_max && self.names.len() > self.current.len() {
            // Every name not appended this turn is forgotten at once (the map and the
            // entries keep their memory).
            self.evictions += 1;
            let turn = self.turn;
            self.entries.retain(|entry| entry.turn == turn);
            self.names.clear();
            for (slot, entry) in self.entries.iter().enumerate() {
                self.names.insert(Arc::clone(&entry.name), slot);
            }
            self.last = None;
        }
        let name: Arc<str> = Arc::from(namespace);
        self.current.push(Arc::clone(&name));
        let slot = self.entries.len();
        self.entries.push(Entry {
            newest: id,
            turn: self.turn,
            name: Arc::clone(&name),
        });
        self.names.insert(name, slot);
        slot
    }

    /// The newest id appended to `namespace` this turn.
    pub fn get(&self, namespace: &str) -> Option<EventId> {
        let entry = &self.entries[*self.names.get(namespace)?];
        (entry.turn == self.turn).then_some(entry.newest)
    }

    /// The namespaces appended this turn.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.current.iter().map(|name| &**name)
    }

    /// The turn ended: no namespace is appended in the next one yet.
    pub fn clear(&mut self) {
        self.current.clear();
        self.turn += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_this_turn_only_and_a_bounded_memory_of_earlier_ones() {
        let id = |counter| EventId::new(counter, 1);
        let mut turn = TurnNamespaces::new(2);
        turn.observe("/a", id(1));
        turn.observe("/b", id(2));
        turn.observe("/a", id(3));
        assert_eq!(turn.len(), 2);
        assert_eq!(turn.get("/a"), Some(id(3)));
        assert_eq!(turn.names().collect::<Vec<_>>(), ["/a", "/b"]);
        turn.clear();
        assert_eq!((turn.len(), turn.get("/a")), (0, None));
        turn.observe("/b", id(4));
        assert_eq!(turn.names().collect::<Vec<_>>(), ["/b"]);
        // A third name passes the bound: "/a", not appended this turn, is forgotten.
        turn.observe("/c", id(5));
        assert_eq!(turn.names.len(), 2);
        assert_eq!(turn.get("/b"), Some(id(4)));
        assert_eq!(turn.get("/c"), Some(id(5)));
        assert_eq!(turn.get("/a"), None);
    }

    #[test]
    fn a_turn_of_more_names_than_the_bound_drops_earlier_names_once() {
        let id = |counter| EventId::new(counter, 1);
        let mut turn = TurnNamespaces::new(4);
        for round in 0..3u64 {
            for i in 0..1000u64 {
                turn.observe(&format!("/r{round}/{i}"), id(round * 1000 + i + 1));
            }
            // Every name of the turn is held and answered, and the earlier turns' names were
            // dropped at most once, not for each new name past the bound.
            assert_eq!(turn.len(), 1000);
            assert_eq!(turn.names.len(), 1000);
            assert_eq!(
                turn.get(&format!("/r{round}/0")),
                Some(id(round * 1000 + 1))
            );
            assert_eq!(
                turn.get(&format!("/r{round}/999")),
                Some(id(round * 1000 + 1000))
            );
            assert_eq!(turn.evictions, round);
            turn.clear();
        }
        // A turn of few names after a big one drops the big one's names at its first new name.
        turn.observe("/small", id(5000));
        assert_eq!((turn.names.len(), turn.evictions), (1, 3));
    }

    #[test]
    fn a_name_appended_again_in_a_later_turn_is_listed_in_that_turn() {
        let id = |counter| EventId::new(counter, 1);
        let mut turn = TurnNamespaces::new(8);
        turn.observe("/x", id(1));
        turn.observe("/x", id(2));
        assert_eq!((turn.len(), turn.get("/x")), (1, Some(id(2))));
        turn.clear();
        turn.observe("/x", id(3));
        turn.observe("/y", id(4));
        turn.observe("/x", id(5));
        assert_eq!(turn.names().collect::<Vec<_>>(), ["/x", "/y"]);
        assert_eq!((turn.get("/x"), turn.get("/y")), (Some(id(5)), Some(id(4))));
    }
}
