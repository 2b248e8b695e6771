//! IR graph → ONNX `GraphProto` without initializer bytes.
//!
//! Naming rules, applied in this order so the result is deterministic:
//! graph inputs keep their names, weights keep their dotted parameter names,
//! and the first use of a node output as a graph output takes the output's
//! name. Every other value is `{node name}_output_{i}`; a constant is named
//! after its node, and a constant input created for an op attribute after
//! its node plus a suffix (`/encoder/.../Reshape_shape`). A name that is
//! already taken gets `_1`, `_2`, … appended. A graph output that is a
//! source (input, weight, constant) or repeats an earlier output's value is
//! produced by an `Identity` node named `/{output}/Identity`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::onnx_proto::{
    tensor_shape_proto, type_proto, GraphProto, NodeProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use super::ops::{self, NodeCx};
use super::{EmitError, EmitOptions, WeightMode, SUPPORTED_OPSETS};
use crate::ir::{verify, DType, Dim, Graph, Init, Op, TensorData, Value};
use crate::weights::init;

/// Whether an initializer comes from a parameter or is part of the graph's
/// structure (constants, attribute inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TensorKind {
    /// An `Op::Weight`.
    Weight,
    /// An `Op::Constant` or a constant made for an op attribute.
    Constant,
}

/// One initializer, described but not yet materialised.
#[derive(Debug, Clone)]
pub(crate) struct Tensor {
    /// Initializer (value) name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub dims: Vec<u64>,
    /// How the bytes are produced.
    pub init: Init,
    /// Where it comes from.
    pub kind: TensorKind,
    /// Payload size in bytes, checked against `init`.
    pub bytes: u64,
}

impl Tensor {
    /// A checked initializer.
    pub fn new(
        name: String,
        dtype: DType,
        dims: Vec<u64>,
        init: Init,
        kind: TensorKind,
    ) -> Result<Tensor, EmitError> {
        let bytes = init::check(&name, dtype, &dims, &init)?;
        Ok(Tensor {
            name,
            dtype,
            dims,
            init,
            kind,
            bytes,
        })
    }

    /// A constant from literal data.
    pub fn constant(name: String, data: Arc<TensorData>) -> Result<Tensor, EmitError> {
        let (dtype, dims) = (data.dtype, data.shape.clone());
        Tensor::new(name, dtype, dims, Init::Data(data), TensorKind::Constant)
    }

    /// The `TensorProto` without any data: name, dims and data type.
    pub fn meta(&self) -> TensorProto {
        TensorProto {
            dims: self.dims.iter().map(|d| *d as i64).collect(),
            data_type: Some(self.dtype.onnx_code()),
            name: Some(self.name.clone()),
            ..TensorProto::default()
        }
    }

    /// Streams the payload bytes to `out`.
    pub fn write_bytes(&self, seed: u64, out: &mut impl std::io::Write) -> Result<(), EmitError> {
        init::fill(&self.name, self.dtype, &self.dims, &self.init, seed, out)?;
        Ok(())
    }
}

/// The converted graph: every `GraphProto` field but the initializers, which
/// are listed separately so their bytes can be streamed.
#[derive(Debug, Clone)]
pub(crate) struct Lowered {
    /// Nodes, inputs, outputs and name; `initializer` is empty.
    pub graph: GraphProto,
    /// Initializers, in file order.
    pub tensors: Vec<Tensor>,
    /// Operator-set domains used besides the standard one.
    pub domains: BTreeSet<String>,
}

/// Hands out unique names.
#[derive(Debug, Default)]
pub(crate) struct Names {
    taken: HashSet<String>,
}

impl Names {
    /// Claims `name` exactly, failing when it is taken.
    fn reserve(&mut self, kind: &'static str, name: &str) -> Result<(), EmitError> {
        if !self.taken.insert(name.to_string()) {
            return Err(EmitError::DuplicateName {
                kind,
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// `base`, or `base_1`, `base_2`, … when taken; the result is claimed.
    pub fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

/// Converts a graph, checking it first.
pub(crate) fn lower(graph: &Graph, opts: &EmitOptions) -> Result<Lowered, EmitError> {
    if !SUPPORTED_OPSETS.contains(&opts.opset) || opts.opset < opts.target.opset() {
        return Err(EmitError::Opset(opts.opset));
    }
    verify(graph)?;
    let order = graph.topo_order()?;

    // Reserve the public names: graph inputs, parameters, graph outputs.
    let mut values = Names::default();
    for n in graph.g.node_indices() {
        match &graph.g[n].op {
            Op::Input { name, .. } => values.reserve("graph input", name)?,
            Op::Weight { name, .. } => values.reserve("parameter", name)?,
            _ => {}
        }
    }
    for (name, _) in &graph.outputs {
        values.reserve("graph output", name)?;
    }

    // Name every value.
    let mut claimed: HashSet<Value> = HashSet::new();
    let mut output_of: HashMap<Value, &str> = HashMap::new();
    for (name, v) in &graph.outputs {
        if !graph.g[v.node].op.is_source() && claimed.insert(*v) {
            output_of.insert(*v, name);
        }
    }
    let mut value_name: HashMap<Value, String> = HashMap::new();
    for &n in &order {
        let node = &graph.g[n];
        for i in 0..node.outputs.len() {
            let v = Value { node: n, output: i };
            let name = match (&node.op, output_of.get(&v)) {
                (Op::Input { name, .. } | Op::Weight { name, .. }, _) => name.clone(),
                (Op::Constant(_), _) => values.unique(&node.name),
                (_, Some(out)) => out.to_string(),
                (_, None) => values.unique(&format!("{}_output_{i}", node.name)),
            };
            value_name.insert(v, name);
        }
    }

    // Graph inputs, and weights as initializers or inputs.
    let mut g = GraphProto {
        name: Some(graph.name.clone()),
        ..GraphProto::default()
    };
    let mut tensors = Vec::new();
    for n in graph.graph_inputs() {
        if let Op::Input { name, dtype, shape } = &graph.g[n].op {
            g.input.push(value_info(name, *dtype, shape));
        }
    }
    for n in graph.weights() {
        if let Op::Weight {
            name,
            dtype,
            shape,
            init,
        } = &graph.g[n].op
        {
            match opts.weights {
                WeightMode::Random => tensors.push(Tensor::new(
                    name.clone(),
                    *dtype,
                    shape.clone(),
                    init.clone(),
                    TensorKind::Weight,
                )?),
                WeightMode::None => {
                    let dims: Vec<Dim> = shape.iter().map(|d| Dim::c(*d as i64)).collect();
                    g.input.push(value_info(name, *dtype, &dims));
                }
            }
        }
    }

    // Nodes in topological order; constants become initializers.
    let mut node_names = Names::default();
    for &n in &order {
        if let Op::Input { .. } | Op::Weight { .. } = graph.g[n].op {
            continue;
        }
        node_names.reserve("node", &graph.g[n].name)?;
    }
    let mut domains = BTreeSet::new();
    let mut shared = BTreeMap::new();
    for &n in &order {
        let node = &graph.g[n];
        match &node.op {
            Op::Input { .. } | Op::Weight { .. } => continue,
            Op::Constant(data) => {
                let name = value_name[&Value { node: n, output: 0 }].clone();
                tensors.push(Tensor::constant(name, data.clone())?);
                continue;
            }
            _ => {}
        }
        let inputs = graph
            .inputs(n)
            .iter()
            .map(|v| value_name[v].clone())
            .collect();
        let outputs = (0..node.outputs.len())
            .map(|i| value_name[&Value { node: n, output: i }].clone())
            .collect();
        let input_types = graph
            .inputs(n)
            .iter()
            .map(|v| graph.ty(*v).clone())
            .collect();
        let mut cx = NodeCx {
            name: &node.name,
            inputs,
            outputs,
            input_types,
            opset: opts.opset,
            target: opts.target,
            provider: opts.provider,
            nodes: &mut g.node,
            tensors: &mut tensors,
            names: &mut values,
            domains: &mut domains,
            shared: &mut shared,
        };
        ops::emit_op(&node.op, &mut cx)?;
    }

    // Graph outputs, with an Identity where the value has another name.
    for (name, v) in &graph.outputs {
        let source = &value_name[v];
        if source != name {
            g.node.push(NodeProto {
                input: vec![source.clone()],
                output: vec![name.clone()],
                name: Some(node_names.unique(&format!("/{name}/Identity"))),
                op_type: Some("Identity".into()),
                ..NodeProto::default()
            });
        }
        let ty = graph.ty(*v);
        g.output.push(value_info(name, ty.dtype, &ty.shape));
    }

    Ok(Lowered {
        graph: g,
        tensors,
        domains,
    })
}

/// A `ValueInfoProto` for a tensor; symbolic dims become `dim_param`s.
pub(crate) fn value_info(name: &str, dtype: DType, shape: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::dimension::Value as D;
    let dim = shape
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match (d.as_const(), d.as_sym()) {
                (Some(c), _) => D::DimValue(c),
                (None, Some(s)) => D::DimParam(s.to_string()),
                (None, None) => D::DimParam(d.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: Some(dtype.onnx_code()),
        shape: Some(TensorShapeProto { dim }),
    };
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}
