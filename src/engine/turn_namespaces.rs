//! The namespaces appended this turn, with the newest id of each: to wake only the tailing
//! consumers that match, and for conditional produces.
//!
//! The names are interned: a namespace keeps its shared name across turns, so a turn that
//! appends to namespaces seen recently allocates nothing (issue 13: no allocation per event
//! on the produce path). Names of earlier turns are kept up to a bound and dropped, all those
//! not appended this turn at once, when a new name would pass it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::EventId;

#[derive(Debug, Default)]
pub(super) struct TurnNamespaces {
    /// Every interned name, with the newest id appended to it and the turn of that append
    /// (and the name again, to list it in `current` without a second lookup).
    names: HashMap<Arc<str>, (EventId, u64, Arc<str>)>,
    /// The names appended this turn, in the order of their first append.
    current: Vec<Arc<str>>,
    turn: u64,
    /// Names of earlier turns are dropped when a new name would take `names` past this.
    retained_max: usize,
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
        if let Some((newest, turn, name)) = self.names.get_mut(namespace) {
            *newest = id;
            if *turn != self.turn {
                *turn = self.turn;
                self.current.push(Arc::clone(name));
            }
            return;
        }
        if self.names.len() >= self.retained_max {
            let turn = self.turn;
            self.names.retain(|_, (_, seen, _)| *seen == turn);
        }
        let name: Arc<str> = Arc::from(namespace);
        self.current.push(Arc::clone(&name));
        self.names.insert(Arc::clone(&name), (id, self.turn, name));
    }

    /// The newest id appended to `namespace` this turn.
    pub fn get(&self, namespace: &str) -> Option<EventId> {
        match self.names.get(namespace) {
            Some(&(id, turn, _)) if turn == self.turn => Some(id),
            _ => None,
        }
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
}
