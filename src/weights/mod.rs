//! Parameter values: where the numbers behind each `Op::Weight` come from.
//!
//! The emitter asks this module for a weight's bytes while it streams the
//! model file, so no stage ever holds every parameter in memory at once.

pub mod init;
