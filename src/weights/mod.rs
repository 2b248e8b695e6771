//! Parameter values: where the numbers behind each `Op::Weight` come from.
//!
//! The emitter asks this module for a weight's bytes while it streams the
//! model file, so no stage ever holds every parameter in memory at once.
//! Random initialisation lives in [`init`]; [`load`] fills a graph's weights
//! from a safetensors checkpoint through a [`map::WeightMap`].

pub mod error;
pub mod init;
pub mod load;
pub mod map;

pub use error::{LoadError, MapError, Problem};
pub use load::{load_checkpoint, load_checkpoint_with, LoadOptions, LoadReport};
pub use map::WeightMap;
