//! The intermediate representation every stage meets in.
//!
//! Lowering builds a [`Graph`] from a resolved model, passes rewrite it, and
//! the emitter writes it as ONNX. Between stages [`verify`] must pass; the
//! text form from [`print`] is stable and snapshot-tested.

mod dim;
mod dtype;
mod graph;
mod infer;
mod op;
mod print;
mod verify;

pub use dim::{shape_string, Dim, Shape};
pub use dtype::DType;
pub use graph::{Edge, Graph, Node, TensorType, Value};
pub use infer::{broadcast, infer};
pub use op::{AttentionMask, GeluApproximation, Init, Op, ReshapeDim, TensorData};
pub use print::{histogram, print, to_dot};
pub use verify::verify;

/// Errors from building or checking a graph. These indicate a compiler bug or
/// a model construct that lowering did not check; they name the node, op and
/// shapes involved.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    /// An op was applied to inputs of the wrong type or shape.
    #[error("{op} at {node}: {reason} (inputs: {})", inputs.join(", "))]
    Type {
        /// Node name.
        node: String,
        /// Op name.
        op: &'static str,
        /// Input types.
        inputs: Vec<String>,
        /// What is wrong.
        reason: String,
    },
    /// The graph has a cycle.
    #[error("the graph has a cycle")]
    Cycle,
    /// A structural invariant does not hold.
    #[error("invalid graph at {node}: {reason}")]
    Invalid {
        /// Node or value name.
        node: String,
        /// What is wrong.
        reason: String,
    },
}
