//! Hostile cases: globs.
