//! The stable text form of a graph (`tfc build --emit ir`).
//!
//! One line per node in deterministic topological order:
//! `%12 = MatMul(%10, %11) : f32[batch, sequence, 768]  # /encoder/layers.0/attention/q_proj/MatMul`.
//! Inputs and parameters are listed first with their types; values are
//! numbered in print order, so the dump does not depend on internal indices.

use std::collections::HashMap;
use std::fmt::Write;

use super::graph::{Graph, Value};
use super::op::Op;
use super::IrError;

/// Renders `graph` as text.
pub fn print(graph: &Graph) -> Result<String, IrError> {
    let order = graph.topo_order()?;
    let mut ids: HashMap<Value, usize> = HashMap::new();
    let mut next = 0usize;
    let mut out = String::new();
    let _ = writeln!(out, "graph {} {{", graph.name);
    for n in order {
        let node = &graph.g[n];
        let mut results = Vec::new();
        for i in 0..node.outputs.len() {
            ids.insert(Value { node: n, output: i }, next);
            results.push(format!("%{next}"));
            next += 1;
        }
        let types: Vec<String> = node.outputs.iter().map(|t| t.to_display()).collect();
        let lhs = results.join(", ");
        let ty = types.join(", ");
        let _ = match &node.op {
            Op::Input { name, .. } => writeln!(out, "  {lhs} = input \"{name}\" : {ty}"),
            Op::Weight { name, init, .. } => {
                writeln!(out, "  {lhs} = weight \"{name}\" {init} : {ty}")
            }
            Op::Constant(_) => writeln!(out, "  {lhs} = constant : {ty}  # {}", node.name),
            op => {
                let args: Vec<String> = graph
                    .inputs(n)
                    .iter()
                    .map(|v| format!("%{}", ids.get(v).copied().unwrap_or(usize::MAX)))
                    .collect();
                writeln!(
                    out,
                    "  {lhs} = {}{}({}) : {ty}  # {}",
                    op.name(),
                    op.attrs(),
                    args.join(", "),
                    node.name
                )
            }
        };
    }
    for (name, v) in &graph.outputs {
        let id = ids.get(v).copied().unwrap_or(usize::MAX);
        let _ = writeln!(
            out,
            "  output \"{name}\" = %{id} : {}",
            graph.ty(*v).to_display()
        );
    }
    out.push_str("}\n");
    Ok(out)
}

/// Counts nodes per op name, sorted by name (for operator histograms).
pub fn histogram(graph: &Graph) -> Vec<(&'static str, usize)> {
    let mut counts: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for n in graph.g.node_indices() {
        let op = &graph.g[n].op;
        if !op.is_source() {
            *counts.entry(op.name()).or_insert(0) += 1;
        }
    }
    counts.into_iter().collect()
}

/// Renders `graph` in Graphviz dot: one box per operation labelled with its
/// op and output type, parameters and constants folded into their users'
/// labels to keep the picture readable.
pub fn to_dot(graph: &Graph) -> Result<String, IrError> {
    let order = graph.topo_order()?;
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", esc(&graph.name));
    let _ = writeln!(
        out,
        "  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];"
    );
    for n in &order {
        let node = &graph.g[*n];
        if matches!(node.op, Op::Weight { .. } | Op::Constant(_)) {
            continue;
        }
        let ty = node
            .outputs
            .iter()
            .map(|t| t.to_display())
            .collect::<Vec<_>>()
            .join(", ");
        let (label, style) = match &node.op {
            Op::Input { name, .. } => (
                format!("{name}\\n{ty}"),
                ", style=filled, fillcolor=\"#d8e8f8\"",
            ),
            op => {
                let params: Vec<String> = graph
                    .inputs(*n)
                    .iter()
                    .filter_map(|v| match &graph.g[v.node].op {
                        Op::Weight { name, .. } => Some(
                            name.rsplit('.')
                                .take(2)
                                .collect::<Vec<_>>()
                                .into_iter()
                                .rev()
                                .collect::<Vec<_>>()
                                .join("."),
                        ),
                        _ => None,
                    })
                    .collect();
                let extra = if params.is_empty() {
                    String::new()
                } else {
                    format!("\\n[{}]", params.join(", "))
                };
                (
                    format!("{}{}\\n{}{extra}", op.name(), esc(&op.attrs()), ty),
                    "",
                )
            }
        };
        let _ = writeln!(
            out,
            "  n{} [label=\"{}\", tooltip=\"{}\"{style}];",
            n.index(),
            label,
            esc(&node.name)
        );
    }
    for n in &order {
        if matches!(graph.g[*n].op, Op::Weight { .. } | Op::Constant(_)) {
            continue;
        }
        for v in graph.inputs(*n) {
            if !matches!(graph.g[v.node].op, Op::Weight { .. } | Op::Constant(_)) {
                let _ = writeln!(out, "  n{} -> n{};", v.node.index(), n.index());
            }
        }
    }
    for (i, (name, v)) in graph.outputs.iter().enumerate() {
        let _ = writeln!(
            out,
            "  out{i} [label=\"{}\", shape=ellipse, style=filled, fillcolor=\"#e0f0d8\"];",
            esc(name)
        );
        let _ = writeln!(out, "  n{} -> out{i};", v.node.index());
    }
    out.push_str("}\n");
    Ok(out)
}
