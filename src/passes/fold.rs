//! Constant folding of shape and index arithmetic and of small tensors.
//!
//! Patterns:
//!
//! - an integer node of rank 0 or 1 whose contents type inference knows
//!   and which are all numbers (`Shape` of a fixed-size axis, arithmetic on
//!   such values, `Gather`/`Concat`/`Slice` of them) → `Constant`;
//! - a node whose inputs are all constants, whose op is a layout change
//!   (`Reshape`, `Unsqueeze`, `Squeeze`) or exact f32/i64 arithmetic (`Add`,
//!   `Sub`, `Mul`, `Neg`, `Min`, `Max` with equal shapes or a scalar
//!   operand), with at most [`MAX_ELEMENTS`] output elements → `Constant`.
//!
//! Preconditions: none. Only operations whose results are bit-exact in IEEE
//! arithmetic are evaluated, so a folded model computes the same numbers as
//! the unfolded one. Parameters (`Weight`) are never folded: their values are
//! only known when the model is written. The replaced node is left for `dce`.

use std::sync::Arc;

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, out, use_count};
use super::{Pass, PassError};
use crate::ir::{DType, Graph, Op, TensorData};

/// The largest result, in elements, that folding writes as a constant.
pub const MAX_ELEMENTS: u64 = 1024;

/// Replaces computations on constants by their results.
pub struct Fold;

impl Pass for Fold {
    fn name(&self) -> &'static str {
        "fold"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let order = g.topo_order().map_err(|source| PassError::Ir {
            pass: "fold",
            source,
        })?;
        let mut folded = 0;
        for n in order {
            if g.g[n].op.is_source() || g.g[n].outputs.len() != 1 || use_count(g, out(n)) == 0 {
                continue;
            }
            let Some(data) = known_integers(g, n).or_else(|| evaluate(g, n)) else {
                continue;
            };
            let c = add_near(g, "fold", n, Op::Constant(Arc::new(data)), &[])?[0];
            g.replace_uses(out(n), c);
            tracing::debug!(pass = "fold", node = %g.g[n].name, "folded to a constant");
            folded += 1;
        }
        Ok(folded)
    }
}

/// The contents of a small integer value whose inferred contents are numbers.
fn known_integers(g: &Graph, n: NodeIndex) -> Option<TensorData> {
    let t = &g.g[n].outputs[0];
    if t.dtype != DType::I64 || t.rank() > 1 {
        return None;
    }
    let values: Vec<i64> = t
        .value
        .as_ref()?
        .iter()
        .map(|d| d.as_const())
        .collect::<Option<_>>()?;
    let shape: Vec<u64> = t
        .shape
        .iter()
        .map(|d| d.as_const().map(|c| c as u64))
        .collect::<Option<_>>()?;
    (shape.iter().product::<u64>() == values.len() as u64).then(|| TensorData::i64(shape, &values))
}

/// Evaluates a layout change or exact arithmetic on constant inputs.
fn evaluate(g: &Graph, n: NodeIndex) -> Option<TensorData> {
    let inputs: Vec<Arc<TensorData>> = g
        .inputs(n)
        .iter()
        .map(|v| match &g.g[v.node].op {
            Op::Constant(d) => Some(d.clone()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let t = &g.g[n].outputs[0];
    let shape: Vec<u64> = t
        .shape
        .iter()
        .map(|d| d.as_const().and_then(|c| u64::try_from(c).ok()))
        .collect::<Option<_>>()?;
    if shape.iter().product::<u64>() > MAX_ELEMENTS {
        return None;
    }
    match &g.g[n].op {
        Op::Reshape { .. } | Op::Unsqueeze { .. } | Op::Squeeze { .. } => Some(TensorData {
            dtype: inputs[0].dtype,
            shape,
            bytes: inputs[0].bytes.clone(),
        }),
        op @ (Op::Add | Op::Sub | Op::Mul | Op::Min | Op::Max) => {
            arithmetic(op, &inputs[0], &inputs[1], shape)
        }
        Op::Neg => {
            let zero = match inputs[0].dtype {
                DType::F32 => TensorData::scalar_f32(0.0),
                DType::I64 => TensorData::scalar_i64(0),
                _ => return None,
            };
            arithmetic(&Op::Sub, &zero, &inputs[0], shape)
        }
        _ => None,
    }
}

/// Element-wise `op` on two f32 or two i64 tensors of the same shape, or one
/// of them a scalar.
fn arithmetic(op: &Op, a: &TensorData, b: &TensorData, shape: Vec<u64>) -> Option<TensorData> {
    if a.dtype != b.dtype || !(a.shape == b.shape || a.numel() == 1 || b.numel() == 1) {
        return None;
    }
    let n = a.numel().max(b.numel()) as usize;
    if shape.iter().product::<u64>() as usize != n {
        return None;
    }
    let at = |i: usize, len: u64| if len == 1 { 0 } else { i };
    match a.dtype {
        DType::F32 => {
            let (x, y) = (f32s(a), f32s(b));
            let v: Vec<f32> = (0..n)
                .map(|i| {
                    let (p, q) = (x[at(i, a.numel())], y[at(i, b.numel())]);
                    match op {
                        Op::Add => p + q,
                        Op::Sub => p - q,
                        Op::Mul => p * q,
                        Op::Min => p.min(q),
                        _ => p.max(q),
                    }
                })
                .collect();
            Some(TensorData::f32(shape, &v))
        }
        DType::I64 => {
            let (x, y) = (a.as_i64()?, b.as_i64()?);
            let v: Vec<i64> = (0..n)
                .map(|i| {
                    let (p, q) = (x[at(i, a.numel())], y[at(i, b.numel())]);
                    match op {
                        Op::Add => p.checked_add(q),
                        Op::Sub => p.checked_sub(q),
                        Op::Mul => p.checked_mul(q),
                        Op::Min => Some(p.min(q)),
                        _ => Some(p.max(q)),
                    }
                })
                .collect::<Option<_>>()?;
            Some(TensorData::i64(shape, &v))
        }
        _ => None,
    }
}

fn f32s(d: &TensorData) -> Vec<f32> {
    d.bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
