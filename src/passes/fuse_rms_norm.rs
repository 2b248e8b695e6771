//! RMSNorm fusion.
//!
//! Before (as `lower::norm` writes it; the casts only when the activation
//! type is not f32):
//!
//! ```text
//! w = Cast{f32}(x)
//! r = Reciprocal(Sqrt(Add(ReduceMean{axes=[-1], keepdims}(Mul(w, w)), eps)))
//! y = Mul(Cast{dtype}(Mul(w, r)), weight)
//! ```
//!
//! After: `y = RmsNorm{eps}(x, weight)`.
//!
//! Preconditions: `weight` is a 1-D parameter the size of the last axis;
//! `eps` is a scalar constant; the same `w` is squared and scaled. Interior
//! values may have other users (they are then kept alive by them).

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, op, out, producer_of, replace, scalar, through_cast, use_count};
use super::{Pass, PassError};
use crate::ir::{DType, Graph, Op, Value};

/// Fuses the elementary RMSNorm into [`Op::RmsNorm`].
pub struct FuseRmsNorm;

/// A recognised RMSNorm.
struct Match {
    x: Value,
    weight: Value,
    eps: f32,
}

impl Pass for FuseRmsNorm {
    fn name(&self) -> &'static str {
        "fuse_rms_norm"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut fused = 0;
        let candidates: Vec<NodeIndex> = g.g.node_indices().collect();
        for n in candidates {
            if !g.g.contains_node(n) || use_count(g, out(n)) == 0 {
                continue;
            }
            let Some(m) = matches(g, n) else { continue };
            let op = Op::RmsNorm { eps: m.eps };
            let y = add_near(g, self.name(), n, op, &[m.x, m.weight])?[0];
            tracing::debug!(pass = self.name(), root = %g.g[n].name, "fused RmsNorm");
            replace(g, out(n), y);
            fused += 1;
        }
        Ok(fused)
    }
}

/// Step by step from the final `Mul` by the weight.
fn matches(g: &Graph, n: NodeIndex) -> Option<Match> {
    // y = Mul(normed, weight), weight a 1-D parameter of the last axis.
    let [normed, weight] = producer_of(g, out(n), "Mul")?[..] else {
        return None;
    };
    let x_ty = g.ty(normed).clone();
    let last = x_ty.shape.last()?;
    if !matches!(op(g, weight), Op::Weight { .. }) || g.ty(weight).shape != [last.clone()] {
        return None;
    }
    // normed = narrow(Mul(w, r)).
    let scaled = through_cast(g, normed, x_ty.dtype);
    let [w, r] = producer_of(g, scaled, "Mul")?[..] else {
        return None;
    };
    if g.ty(w).dtype != DType::F32 {
        return None;
    }
    // r = Reciprocal(Sqrt(Add(ReduceMean(Mul(w, w)), eps))).
    let [root] = producer_of(g, r, "Reciprocal")?[..] else {
        return None;
    };
    let [shifted] = producer_of(g, root, "Sqrt")?[..] else {
        return None;
    };
    let [mean, eps] = producer_of(g, shifted, "Add")?[..] else {
        return None;
    };
    let eps = scalar(g, eps)? as f32;
    let Op::ReduceMean { axes, keepdims } = op(g, mean) else {
        return None;
    };
    let rank = g.ty(w).rank() as i64;
    if !keepdims || !(axes == &[-1] || axes == &[rank - 1]) {
        return None;
    }
    let [square] = producer_of(g, mean, "ReduceMean")?[..] else {
        return None;
    };
    let [a, b] = producer_of(g, square, "Mul")?[..] else {
        return None;
    };
    if a != w || b != w {
        return None;
    }
    // x: the activation before widening, of the output's type.
    let x = through_cast(g, w, DType::F32);
    if g.ty(x).dtype != x_ty.dtype || g.ty(x).shape != x_ty.shape {
        return None;
    }
    Some(Match { x, weight, eps })
}
