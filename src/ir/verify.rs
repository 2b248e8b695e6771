//! The verifier: every stage's output graph must pass it.
//!
//! Checks that the graph is acyclic, that each node has the number of inputs
//! its op allows in contiguous slots, that stored output types equal freshly
//! inferred ones, that graph input, parameter and output names are unique, and
//! that every graph output refers to an existing value.

use std::collections::HashSet;

use petgraph::Direction;

use super::graph::Graph;
use super::infer::infer;
use super::op::Op;
use super::IrError;

/// Verifies `graph`, returning the first violated invariant.
pub fn verify(graph: &Graph) -> Result<(), IrError> {
    let bad = |node: &str, reason: String| IrError::Invalid {
        node: node.to_string(),
        reason,
    };
    graph.topo_order()?;

    let mut input_names = HashSet::new();
    let mut weight_names = HashSet::new();
    for n in graph.g.node_indices() {
        let node = &graph.g[n];
        match &node.op {
            Op::Input { name, .. } if !input_names.insert(name.clone()) => {
                return Err(bad(name, "duplicate graph input name".into()));
            }
            Op::Weight { name, .. } if !weight_names.insert(name.clone()) => {
                return Err(bad(name, "duplicate parameter name".into()));
            }
            _ => {}
        }

        let mut slots: Vec<usize> = graph
            .g
            .edges_directed(n, Direction::Incoming)
            .map(|e| e.weight().input)
            .collect();
        slots.sort_unstable();
        if slots.iter().enumerate().any(|(i, s)| i != *s) {
            return Err(bad(
                &node.name,
                format!("input slots {slots:?} are not contiguous"),
            ));
        }
        let inputs = graph.inputs(n);
        for v in &inputs {
            if v.output >= graph.g[v.node].outputs.len() {
                return Err(bad(
                    &node.name,
                    format!(
                        "reads missing output {} of {}",
                        v.output, graph.g[v.node].name
                    ),
                ));
            }
        }
        let types: Vec<_> = inputs.iter().map(|v| graph.ty(*v)).collect();
        let inferred = infer(&node.op, &types).map_err(|r| bad(&node.name, r))?;
        if inferred != node.outputs {
            let show = |ts: &[super::TensorType]| {
                ts.iter()
                    .map(|t| t.to_display())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(bad(
                &node.name,
                format!(
                    "stored type {} differs from inferred {}",
                    show(&node.outputs),
                    show(&inferred)
                ),
            ));
        }
    }

    let mut out_names = HashSet::new();
    for (name, v) in &graph.outputs {
        if !out_names.insert(name) {
            return Err(bad(name, "duplicate graph output name".into()));
        }
        if graph
            .g
            .node_weight(v.node)
            .is_none_or(|n| v.output >= n.outputs.len())
        {
            return Err(bad(name, "graph output refers to a missing value".into()));
        }
    }
    if graph.outputs.is_empty() {
        return Err(bad(&graph.name, "the graph has no outputs".into()));
    }
    Ok(())
}
