//! Hostile cases: storage.
