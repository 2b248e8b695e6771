//! Residual-add + LayerNorm fusion.
//!
//! Before (casts only when the activation type is not f32):
//!
//! ```text
//! s = Add(x, branch)            branch possibly Add(MatMul(..), bias)
//! y = Cast{dtype}(LayerNorm{eps}(Cast{f32}(s), Cast{f32}(gamma), Cast{f32}(beta)))
//! ```
//!
//! After: `y, s = SkipLayerNorm{eps}(x, branch, gamma, beta)` (or with the
//! product and `bias` as the fifth input); other users of `s` read the
//! second output. Covers post-norm (`norm(x + f(x))`) and the pre-norm
//! residual stream (`s` feeds the next residual).
//!
//! Preconditions: `x` has the sum's full shape; the bias is absorbed only
//! when the biased branch has no other user.

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, layer_norm, out, replace, residual_add, split_bias, use_count};
use super::{Pass, PassError};
use crate::ir::{Graph, Op};

/// Fuses a residual `Add` into the `LayerNorm` that reads it.
pub struct FuseSkipLayerNorm;

impl Pass for FuseSkipLayerNorm {
    fn name(&self) -> &'static str {
        "fuse_skip_layer_norm"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut fused = 0;
        let candidates: Vec<NodeIndex> = g.g.node_indices().collect();
        for n in candidates {
            if !g.g.contains_node(n) {
                continue;
            }
            let Some(m) = layer_norm(g, n) else { continue };
            if use_count(g, out(m.root)) == 0 {
                continue;
            }
            let Some((x, branch)) = residual_add(g, m.x) else {
                continue;
            };
            let mut inputs = vec![x, branch, m.gamma, m.beta];
            if let Some((product, bias)) = split_bias(g, branch) {
                inputs = vec![x, product, m.gamma, m.beta, bias];
            }
            let op = Op::SkipLayerNorm { eps: m.eps };
            let outs = add_near(g, self.name(), n, op, &inputs)?;
            tracing::debug!(
                pass = self.name(),
                norm = %g.g[n].name,
                add = %g.g[m.x.node].name,
                bias = inputs.len() == 5,
                "fused SkipLayerNorm"
            );
            replace(g, m.x, outs[1]);
            replace(g, out(m.root), outs[0]);
            fused += 1;
        }
        Ok(fused)
    }
}
