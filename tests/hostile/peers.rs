//! Hostile cases: peers.
