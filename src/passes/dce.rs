//! Dead-code elimination.
//!
//! Pattern: a node none of whose outputs reaches a graph output → removed.
//!
//! Graph inputs and parameters are never removed, even when unused: inputs
//! are the model's interface and parameters its checkpoint layout (weights
//! load by name, and `tfc inspect` counts them).

use std::collections::HashSet;

use petgraph::stable_graph::NodeIndex;
use petgraph::Direction;

use super::{Pass, PassError};
use crate::ir::{Graph, Op};

/// Removes nodes whose results are never used.
pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut live: HashSet<NodeIndex> = HashSet::new();
        let mut stack: Vec<NodeIndex> = g.outputs.iter().map(|(_, v)| v.node).collect();
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(g.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        let mut dead: Vec<NodeIndex> =
            g.g.node_indices()
                .filter(|n| !live.contains(n))
                .filter(|n| !matches!(g.g[*n].op, Op::Input { .. } | Op::Weight { .. }))
                .collect();
        dead.sort();
        for n in &dead {
            tracing::debug!(pass = "dce", node = %g.g[*n].name, "removed");
            g.g.remove_node(*n);
        }
        Ok(dead.len())
    }
}
