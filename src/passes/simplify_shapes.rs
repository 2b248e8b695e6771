//! Shape-computation simplification and removal of operations that do nothing.
//!
//! Patterns:
//!
//! - a non-`Shape` node whose output is a 1-D i64 tensor with symbolically
//!   known contents equal to axes `start..end` of a graph input's shape (for
//!   example `Concat(Unsqueeze(Gather(Shape(ids), 0)), Unsqueeze(Gather(
//!   Shape(ids), 1)))` holding `[batch, sequence]`) → `Shape{start, end}(input)`;
//! - `Cast{to}(x)` with `x` already of type `to` → `x`;
//! - `Cast{from}(Cast{f32}(x))` with `x` of type `from` (f16 or bf16, so the
//!   widening is exact) → `x`;
//! - `Reshape`, `Expand`, `Transpose`, `Slice`, `Squeeze` or `Unsqueeze`
//!   whose output type equals its input type and which is the identity
//!   (reshape to the same shape, identity permutation, a slice keeping every
//!   element, no axes) → its input.
//!
//! Guarantee: afterwards no node of the second kind remains, and every
//! 1-D i64 value whose contents are a contiguous run of one graph input's
//! dimensions is computed by a single `Shape` slice of that input. ONNX has
//! no symbolic constants, so that is the shortest runtime form. Scalars and
//! vectors mixing dimensions with numbers are left as they are (numbers
//! alone are `fold`'s). Values are untouched: every rewrite is exact.

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, out, use_count};
use super::{Pass, PassError};
use crate::ir::{DType, Dim, Graph, Op, Value};

/// Replaces shape chains by `Shape` slices and removes no-op nodes.
pub struct SimplifyShapes;

impl Pass for SimplifyShapes {
    fn name(&self) -> &'static str {
        "simplify_shapes"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let order = g.topo_order().map_err(|source| PassError::Ir {
            pass: "simplify_shapes",
            source,
        })?;
        let inputs = g.graph_inputs();
        let mut rewrites = 0;
        for n in order {
            if g.g[n].op.is_source() || g.g[n].outputs.len() != 1 || use_count(g, out(n)) == 0 {
                continue;
            }
            if let Some(x) = no_op(g, n) {
                tracing::debug!(pass = "simplify_shapes", node = %g.g[n].name, "removed no-op");
                g.replace_uses(out(n), x);
                rewrites += 1;
                continue;
            }
            if let Some((input, start, end)) = shape_slice(g, n, &inputs) {
                let op = Op::Shape {
                    start,
                    end: Some(end),
                };
                let v = add_near(g, "simplify_shapes", n, op, &[out(input)])?[0];
                tracing::debug!(
                    pass = "simplify_shapes",
                    node = %g.g[n].name,
                    input = %g.g[input].name,
                    start,
                    end,
                    "shape chain replaced by a Shape slice"
                );
                g.replace_uses(out(n), v);
                rewrites += 1;
            }
        }
        Ok(rewrites)
    }
}

/// The input that node `n` passes through unchanged, if it does nothing.
fn no_op(g: &Graph, n: NodeIndex) -> Option<Value> {
    let ins = g.inputs(n);
    let x = *ins.first()?;
    let (tx, ty) = (g.ty(x), &g.g[n].outputs[0]);
    let same = tx.dtype == ty.dtype && tx.shape == ty.shape;
    let identity = match &g.g[n].op {
        Op::Cast { to } => {
            if tx.dtype == *to {
                true
            } else if let Op::Cast { to: DType::F32 } = g.g[x.node].op {
                let inner = g.inputs(x.node)[0];
                let from = g.ty(inner).dtype;
                if matches!(from, DType::F16 | DType::BF16) && from == *to {
                    return Some(inner);
                }
                false
            } else {
                false
            }
        }
        Op::Reshape { .. } | Op::Expand => same,
        Op::Transpose { perm } => perm.iter().enumerate().all(|(i, p)| *p == i as i64),
        Op::Squeeze { axes } | Op::Unsqueeze { axes } => axes.is_empty(),
        // Same size and starting at 0: every element is kept.
        Op::Slice { starts, .. } => starts.iter().all(|s| *s == 0),
        _ => false,
    };
    (identity && same).then_some(x)
}

/// The graph input and axes whose `Shape` slice equals node `n`'s contents.
fn shape_slice(g: &Graph, n: NodeIndex, inputs: &[NodeIndex]) -> Option<(NodeIndex, i64, i64)> {
    if matches!(g.g[n].op, Op::Shape { .. }) {
        return None;
    }
    let t = &g.g[n].outputs[0];
    if t.dtype != DType::I64 || t.rank() != 1 {
        return None;
    }
    let value = t.value.as_ref()?;
    if value.is_empty() || value.iter().all(|d| d.as_const().is_some()) {
        return None;
    }
    for &input in inputs {
        let shape: &Vec<Dim> = &g.g[input].outputs[0].shape;
        for start in 0..shape.len() {
            let end = start + value.len();
            if end <= shape.len() && shape[start..end] == value[..] {
                return Some((input, start as i64, end as i64));
            }
        }
    }
    None
}
