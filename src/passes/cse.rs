//! Common-subexpression elimination.
//!
//! Pattern: two nodes with the same op, the same attributes and the same
//! inputs (in slot order) → the later one's uses read the earlier one.
//! Constants with the same element type, shape and bytes merge the same way
//! (up to [`MAX_CONSTANT_BYTES`]; larger tables are left alone).
//!
//! Deterministic: nodes are visited in the graph's topological order and the
//! first one of each class is kept. Graph inputs and parameters never merge.
//! The merged-away node is left for `dce`.

use std::collections::HashMap;

use super::pattern::use_count;
use super::{Pass, PassError};
use crate::ir::{Graph, Op, Value};

/// The largest constant, in bytes, that CSE compares.
pub const MAX_CONSTANT_BYTES: usize = 4096;

/// Merges identical nodes.
pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let order = g.topo_order().map_err(|source| PassError::Ir {
            pass: "cse",
            source,
        })?;
        let mut seen: HashMap<String, petgraph::stable_graph::NodeIndex> = HashMap::new();
        let mut merged = 0;
        for n in order {
            let key = match &g.g[n].op {
                Op::Input { .. } | Op::Weight { .. } => continue,
                Op::Constant(data) if data.bytes.len() > MAX_CONSTANT_BYTES => continue,
                Op::Constant(data) => {
                    format!("const {:?} {:?} {:?}", data.dtype, data.shape, data.bytes)
                }
                op => {
                    let inputs: Vec<String> = g
                        .inputs(n)
                        .iter()
                        .map(|v| format!("{}:{}", v.node.index(), v.output))
                        .collect();
                    format!("{op:?} ({})", inputs.join(","))
                }
            };
            match seen.get(&key) {
                Some(&first) => {
                    let outputs = g.g[n].outputs.len();
                    let used = (0..outputs).any(|i| use_count(g, Value { node: n, output: i }) > 0);
                    if !used {
                        continue;
                    }
                    for i in 0..outputs {
                        let from = Value { node: n, output: i };
                        g.replace_uses(
                            from,
                            Value {
                                node: first,
                                output: i,
                            },
                        );
                    }
                    tracing::debug!(
                        pass = "cse",
                        node = %g.g[n].name,
                        into = %g.g[first].name,
                        "merged"
                    );
                    merged += 1;
                }
                None => {
                    seen.insert(key, n);
                }
            }
        }
        Ok(merged)
    }
}
