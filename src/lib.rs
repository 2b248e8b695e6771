//! tfc: compiles `.tfm` transformer specs to ONNX.
//!
//! The pipeline, one module per stage (see `docs/ARCHITECTURE.md`):
//! `front` (source → [`model::Model`]) → `lower` (model → [`ir::Graph`]) →
//! `passes` (graph → graph) → `emit` (graph → ONNX).
#![warn(missing_docs)]

pub mod driver;
pub mod emit;
pub mod front;
pub mod inspect;
pub mod interrupt;
pub mod ir;
pub mod lint;
pub mod lower;
pub mod model;
pub mod passes;
pub mod runtime;
pub mod weights;
