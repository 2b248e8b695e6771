//! Bias + GELU fusion.
//!
//! Before: `y = Gelu{approximate}(Add(MatMul(..), bias))` with a 1-D bias
//! parameter.
//!
//! After: `y = BiasGelu{approximate}(MatMul(..), bias)`.
//!
//! Preconditions: the biased value has no other user.

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, out, replace, split_bias, use_count};
use super::{Pass, PassError};
use crate::ir::{Graph, Op};

/// Fuses a projection bias into the GELU that reads it.
pub struct FuseBiasGelu;

impl Pass for FuseBiasGelu {
    fn name(&self) -> &'static str {
        "fuse_bias_gelu"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut fused = 0;
        let candidates: Vec<NodeIndex> = g.g.node_indices().collect();
        for n in candidates {
            let Some(Op::Gelu { approximate }) = g.g.node_weight(n).map(|w| w.op.clone()) else {
                continue;
            };
            if use_count(g, out(n)) == 0 {
                continue;
            }
            let x = g.inputs(n)[0];
            let Some((product, bias)) = split_bias(g, x) else {
                continue;
            };
            let op = Op::BiasGelu { approximate };
            let y = add_near(g, self.name(), n, op, &[product, bias])?[0];
            tracing::debug!(pass = self.name(), gelu = %g.g[n].name, "fused BiasGelu");
            replace(g, out(n), y);
            fused += 1;
        }
        Ok(fused)
    }
}
