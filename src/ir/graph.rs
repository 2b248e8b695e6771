//! The IR graph: a petgraph DAG of [`Node`]s joined by typed edges.
//!
//! A node is one operation with one or more typed outputs; an edge runs from
//! output `output` of its source to input slot `input` of its target. Types
//! are inferred when a node is added, so a graph under construction is always
//! typed, and [`super::verify`] re-checks the whole graph after every stage.
//! Node names are hierarchical (`/encoder/layers.3/attention/q_proj/MatMul`)
//! and parameter names dotted (`encoder.layers.3.attention.q_proj.weight`);
//! both come from the builder's scope stack.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashSet};
use std::sync::Arc;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::dim::{shape_string, Dim, Shape};
use super::dtype::DType;
use super::infer::infer;
use super::op::{Init, Op, TensorData};
use super::IrError;
use crate::front::span::Span;

/// The type of one tensor value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Symbolic shape.
    pub shape: Shape,
    /// For small 1-D or scalar integer tensors whose contents are known
    /// symbolically (shapes, indices), the contents. Lets reshapes, ranges and
    /// expands get exact symbolic output shapes.
    pub value: Option<Vec<Dim>>,
}

impl TensorType {
    /// A type with no known contents.
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType {
            dtype,
            shape,
            value: None,
        }
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// `f32[batch, sequence, 768]`.
    pub fn to_display(&self) -> String {
        format!("{}{}", self.dtype, shape_string(&self.shape))
    }
}

/// An operation in the graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// Hierarchical, unique node name.
    pub name: String,
    /// Types of the outputs, inferred from the inputs.
    pub outputs: Vec<TensorType>,
    /// The spec construct the node was lowered from.
    pub span: Option<Span>,
}

/// An edge: output `output` of the source feeds input slot `input` of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Output index on the source node.
    pub output: usize,
    /// Input slot on the target node.
    pub input: usize,
}

/// A reference to one output of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    /// Producing node.
    pub node: NodeIndex,
    /// Output index.
    pub output: usize,
}

/// A typed tensor-operation graph with named outputs.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Graph (model) name.
    pub name: String,
    /// The DAG.
    pub g: StableDiGraph<Node, Edge>,
    /// Graph outputs in order.
    pub outputs: Vec<(String, Value)>,
    /// Key/value metadata carried to the emitted model.
    pub metadata: Vec<(String, String)>,
    scope: Vec<String>,
    span: Option<Span>,
    names: HashSet<String>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            ..Graph::default()
        }
    }

    /// Enters a naming scope (`encoder`, `layers.3`, `attention`).
    pub fn push_scope(&mut self, scope: impl Into<String>) {
        self.scope.push(scope.into());
    }

    /// Leaves the innermost naming scope.
    pub fn pop_scope(&mut self) {
        self.scope.pop();
    }

    /// Sets the spec span attached to nodes added from now on.
    pub fn set_span(&mut self, span: Option<Span>) {
        self.span = span;
    }

    /// The dotted parameter name of `leaf` in the current scope.
    pub fn param_name(&self, leaf: &str) -> String {
        let mut parts: Vec<&str> = self.scope.iter().map(String::as_str).collect();
        parts.push(leaf);
        parts.join(".")
    }

    fn node_name(&mut self, label: &str) -> String {
        let mut base = String::new();
        for s in &self.scope {
            base.push('/');
            base.push_str(s);
        }
        base.push('/');
        base.push_str(label);
        let mut name = base.clone();
        let mut k = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Adds a node with the given inputs and returns all its outputs.
    pub fn add_multi(
        &mut self,
        label: &str,
        op: Op,
        inputs: &[Value],
    ) -> Result<Vec<Value>, IrError> {
        let name_for_err = self.node_name(label);
        let in_types: Vec<&TensorType> = inputs.iter().map(|v| self.ty(*v)).collect();
        let outputs = infer(&op, &in_types).map_err(|reason| IrError::Type {
            node: name_for_err.clone(),
            op: op.name(),
            inputs: in_types.iter().map(|t| t.to_display()).collect(),
            reason,
        })?;
        let n_out = outputs.len();
        let node = Node {
            op,
            name: name_for_err,
            outputs,
            span: self.span,
        };
        let idx = self.g.add_node(node);
        for (slot, v) in inputs.iter().enumerate() {
            self.g.add_edge(
                v.node,
                idx,
                Edge {
                    output: v.output,
                    input: slot,
                },
            );
        }
        Ok((0..n_out)
            .map(|output| Value { node: idx, output })
            .collect())
    }

    /// Adds a single-output node.
    pub fn add(&mut self, label: &str, op: Op, inputs: &[Value]) -> Result<Value, IrError> {
        Ok(self.add_multi(label, op, inputs)?[0])
    }

    /// Adds a graph input.
    pub fn input(&mut self, name: &str, dtype: DType, shape: Shape) -> Value {
        let op = Op::Input {
            name: name.to_string(),
            dtype,
            shape: shape.clone(),
        };
        let node = Node {
            op,
            name: name.to_string(),
            outputs: vec![TensorType::new(dtype, shape)],
            span: self.span,
        };
        self.names.insert(name.to_string());
        Value {
            node: self.g.add_node(node),
            output: 0,
        }
    }

    /// Adds a parameter named `leaf` in the current scope.
    pub fn weight(&mut self, leaf: &str, dtype: DType, shape: &[u64], init: Init) -> Value {
        let name = self.param_name(leaf);
        let dims = shape.iter().map(|d| Dim::c(*d as i64)).collect();
        let op = Op::Weight {
            name: name.clone(),
            dtype,
            shape: shape.to_vec(),
            init,
        };
        let node = Node {
            op,
            name,
            outputs: vec![TensorType::new(dtype, dims)],
            span: self.span,
        };
        Value {
            node: self.g.add_node(node),
            output: 0,
        }
    }

    /// Adds a literal constant.
    pub fn constant(&mut self, label: &str, data: TensorData) -> Value {
        let name = self.node_name(label);
        let ty = super::infer::constant_type(&data);
        let node = Node {
            op: Op::Constant(Arc::new(data)),
            name,
            outputs: vec![ty],
            span: self.span,
        };
        Value {
            node: self.g.add_node(node),
            output: 0,
        }
    }

    /// Declares a graph output.
    pub fn set_output(&mut self, name: &str, value: Value) {
        self.outputs.push((name.to_string(), value));
    }

    /// The type of a value.
    pub fn ty(&self, v: Value) -> &TensorType {
        &self.g[v.node].outputs[v.output]
    }

    /// The shape of a value.
    pub fn shape(&self, v: Value) -> &Shape {
        &self.ty(v).shape
    }

    /// The inputs of a node, in slot order.
    pub fn inputs(&self, n: NodeIndex) -> Vec<Value> {
        let mut edges: Vec<(usize, Value)> = self
            .g
            .edges_directed(n, Direction::Incoming)
            .map(|e| {
                (
                    e.weight().input,
                    Value {
                        node: e.source(),
                        output: e.weight().output,
                    },
                )
            })
            .collect();
        edges.sort();
        edges.into_iter().map(|(_, v)| v).collect()
    }

    /// Nodes in a deterministic topological order (smallest index first among
    /// the ready ones).
    pub fn topo_order(&self) -> Result<Vec<NodeIndex>, IrError> {
        let mut indegree: std::collections::HashMap<NodeIndex, usize> = self
            .g
            .node_indices()
            .map(|n| {
                let preds: BTreeSet<NodeIndex> =
                    self.g.neighbors_directed(n, Direction::Incoming).collect();
                (n, preds.len())
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<NodeIndex>> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| Reverse(*n))
            .collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(n);
            let succs: BTreeSet<NodeIndex> =
                self.g.neighbors_directed(n, Direction::Outgoing).collect();
            for s in succs {
                let d = indegree
                    .get_mut(&s)
                    .expect("successor is a node of the graph");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(s));
                }
            }
        }
        if order.len() != self.g.node_count() {
            return Err(IrError::Cycle);
        }
        Ok(order)
    }

    /// Redirects every use of `old` (edges and graph outputs) to `new`.
    pub fn replace_uses(&mut self, old: Value, new: Value) {
        let uses: Vec<_> = self
            .g
            .edges_directed(old.node, Direction::Outgoing)
            .filter(|e| e.weight().output == old.output)
            .map(|e| (e.id(), e.target(), e.weight().input))
            .collect();
        for (id, target, input) in uses {
            self.g.remove_edge(id);
            self.g.add_edge(
                new.node,
                target,
                Edge {
                    output: new.output,
                    input,
                },
            );
        }
        for (_, v) in self.outputs.iter_mut() {
            if *v == old {
                *v = new;
            }
        }
    }

    /// Graph inputs in insertion order.
    pub fn graph_inputs(&self) -> Vec<NodeIndex> {
        self.g
            .node_indices()
            .filter(|n| matches!(self.g[*n].op, Op::Input { .. }))
            .collect()
    }

    /// Parameters in insertion order.
    pub fn weights(&self) -> Vec<NodeIndex> {
        self.g
            .node_indices()
            .filter(|n| matches!(self.g[*n].op, Op::Weight { .. }))
            .collect()
    }

    /// Total number of parameter elements.
    pub fn parameter_count(&self) -> u64 {
        self.weights()
            .iter()
            .map(|n| match &self.g[*n].op {
                Op::Weight { shape, .. } => shape.iter().product::<u64>(),
                _ => 0,
            })
            .sum()
    }
}
