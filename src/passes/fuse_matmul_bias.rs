//! Projection bias fusion.
//!
//! Before: `y = Add(MatMul(x, w), bias)` with a 2-D parameter `w` and a 1-D
//! parameter `bias` of its output width.
//!
//! After: `y = MatMulAddBias(x, w, bias)`.
//!
//! Preconditions: the product has no other user. Runs after the fusions
//! that absorb a bias themselves (skip norms, BiasGelu), so it only claims
//! the biases they left.

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, binary, op, out, replace, use_count};
use super::{Pass, PassError};
use crate::ir::{Graph, Op};

/// Fuses `MatMul` + bias `Add` into [`Op::MatMulAddBias`].
pub struct FuseMatMulBias;

impl Pass for FuseMatMulBias {
    fn name(&self) -> &'static str {
        "fuse_matmul_bias"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut fused = 0;
        let candidates: Vec<NodeIndex> = g.g.node_indices().collect();
        for n in candidates {
            if !g.g.contains_node(n) || !matches!(g.g[n].op, Op::Add) || use_count(g, out(n)) == 0 {
                continue;
            }
            let [p, bias] = g.inputs(n)[..] else { continue };
            let Some((x, w)) = binary(g, p, "MatMul") else {
                continue;
            };
            let width = g.ty(out(n)).shape.last().cloned();
            let is_param = |v| matches!(op(g, v), Op::Weight { .. });
            if use_count(g, p) != 1
                || !is_param(w)
                || g.ty(w).rank() != 2
                || !is_param(bias)
                || g.ty(bias).rank() != 1
                || g.ty(bias).shape.last() != width.as_ref()
            {
                continue;
            }
            let y = add_near(g, self.name(), n, Op::MatMulAddBias, &[x, w, bias])?[0];
            tracing::debug!(pass = self.name(), matmul = %g.g[p.node].name, "fused MatMulAddBias");
            replace(g, out(n), y);
            fused += 1;
        }
        Ok(fused)
    }
}
