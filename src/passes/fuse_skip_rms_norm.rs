//! Residual-add + RMSNorm fusion.
//!
//! Before: `s = Add(x, branch)`, `y = RmsNorm{eps}(s, weight)`, where the
//! branch may end with a projection bias `branch = Add(MatMul(..), bias)`.
//!
//! After: `y, s = SkipRmsNorm{eps}(x, branch, weight)` (or
//! `SkipRmsNorm{eps}(x, product, weight, bias)`); every other user of `s`
//! (the next residual connection) reads the second output.
//!
//! Preconditions: `x` has the sum's full shape (the residual stream); the
//! bias is absorbed only when the biased branch has no other user.

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, out, replace, residual_add, split_bias, use_count};
use super::{Pass, PassError};
use crate::ir::{Graph, Op};

/// Fuses a residual `Add` into the `RmsNorm` that reads it.
pub struct FuseSkipRmsNorm;

impl Pass for FuseSkipRmsNorm {
    fn name(&self) -> &'static str {
        "fuse_skip_rms_norm"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut fused = 0;
        let candidates: Vec<NodeIndex> = g.g.node_indices().collect();
        for n in candidates {
            let Some(Op::RmsNorm { eps }) = g.g.node_weight(n).map(|w| w.op.clone()) else {
                continue;
            };
            if use_count(g, out(n)) == 0 {
                continue;
            }
            let [sum, weight] = g.inputs(n)[..] else {
                continue;
            };
            let Some((x, branch)) = residual_add(g, sum) else {
                continue;
            };
            let mut inputs = vec![x, branch, weight];
            if let Some((product, bias)) = split_bias(g, branch) {
                inputs = vec![x, product, weight, bias];
            }
            let outs = add_near(g, self.name(), n, Op::SkipRmsNorm { eps }, &inputs)?;
            tracing::debug!(
                pass = self.name(),
                norm = %g.g[n].name,
                add = %g.g[sum.node].name,
                bias = inputs.len() == 4,
                "fused SkipRmsNorm"
            );
            replace(g, sum, outs[1]);
            replace(g, out(n), outs[0]);
            fused += 1;
        }
        Ok(fused)
    }
}
