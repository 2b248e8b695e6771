//! The op table: how each IR [`Op`] becomes ONNX nodes.
//!
//! Everything that depends on the opset lives in [`emit_op`], one match
//! arm per op. Values that the IR keeps as attributes but ONNX wants as
//! inputs (reshape targets, slice bounds, `Unsqueeze`/`Squeeze`/`ReduceSum`
//! axes, the `CumSum` axis) become i64 initializers named after the node.
//! `ReduceMean`/`ReduceMax` take `axes` as an attribute below opset 18 and
//! as an input from 18 on. Fused operators become the single operator the
//! target's table names (`fused`, through [`NodeCx::node_in`], which records
//! a non-standard domain so the model imports it) or, where there is none,
//! standard nodes (`decompose`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::convert::{Names, Tensor};
use super::onnx_proto::{attribute_proto::AttributeType, AttributeProto, NodeProto};
use super::target::{fused_form, Target, TargetProvider};
use super::EmitError;
use crate::ir::{Op, ReshapeDim, TensorData, TensorType};

mod decompose;
mod fused;

/// Everything one IR node's conversion reads and appends to.
pub(crate) struct NodeCx<'a> {
    /// IR node name, used as the ONNX node name.
    pub name: &'a str,
    /// Value names of the node's inputs, in slot order.
    pub inputs: Vec<String>,
    /// Value names of the node's outputs.
    pub outputs: Vec<String>,
    /// Types of the node's inputs, in slot order.
    pub input_types: Vec<TensorType>,
    /// Opset of the standard domain.
    pub opset: i64,
    /// Which fused forms the output uses.
    pub target: Target,
    /// The execution provider the fused forms are chosen for.
    pub provider: TargetProvider,
    /// The graph's nodes.
    pub nodes: &'a mut Vec<NodeProto>,
    /// The graph's initializers.
    pub tensors: &'a mut Vec<Tensor>,
    /// Value names in use.
    pub names: &'a mut Names,
    /// Non-standard domains used.
    pub domains: &'a mut BTreeSet<String>,
    /// Values that several nodes' conversions share, by a key naming what
    /// they compute (an attention bias expanded to full size is written once
    /// for all the layers that read it).
    pub shared: &'a mut BTreeMap<String, String>,
}

impl NodeCx<'_> {
    /// Appends a standard-domain node named after the IR node, reading the
    /// given inputs and writing the IR node's outputs.
    fn node(&mut self, op_type: &str, inputs: Vec<String>, attrs: Vec<AttributeProto>) {
        self.node_in("", op_type, inputs, attrs);
    }

    /// Appends a node in `domain` (`""` is the standard domain).
    pub fn node_in(
        &mut self,
        domain: &str,
        op_type: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        if !domain.is_empty() {
            self.domains.insert(domain.to_string());
        }
        self.nodes.push(NodeProto {
            input: inputs,
            output: self.outputs.clone(),
            name: Some(self.name.to_string()),
            op_type: Some(op_type.to_string()),
            domain: (!domain.is_empty()).then(|| domain.to_string()),
            attribute: attrs,
            ..NodeProto::default()
        });
    }

    /// The node's inputs, in slot order.
    fn ins(&self) -> Vec<String> {
        self.inputs.clone()
    }

    /// The node's inputs followed by `extra`.
    fn ins_and(&self, extra: &[String]) -> Vec<String> {
        self.inputs.iter().chain(extra).cloned().collect()
    }

    /// Adds an i64 initializer `{node}_{suffix}`; a scalar when `scalar`,
    /// otherwise 1-D. Returns its name.
    fn const_i64(
        &mut self,
        suffix: &str,
        values: &[i64],
        scalar: bool,
    ) -> Result<String, EmitError> {
        let name = self.names.unique(&format!("{}_{suffix}", self.name));
        let shape = if scalar {
            vec![]
        } else {
            vec![values.len() as u64]
        };
        let data = Arc::new(TensorData::i64(shape, values));
        self.tensors.push(Tensor::constant(name.clone(), data)?);
        Ok(name)
    }
}

/// An integer attribute.
fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(i),
        ..AttributeProto::default()
    }
}

/// An integer-list attribute.
fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..AttributeProto::default()
    }
}

/// A float attribute.
fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(f),
        ..AttributeProto::default()
    }
}

/// Emits the ONNX form of one non-source IR node.
pub(crate) fn emit_op(op: &Op, cx: &mut NodeCx) -> Result<(), EmitError> {
    match op {
        // Sources are graph inputs and initializers, not nodes.
        Op::Input { .. } | Op::Weight { .. } | Op::Constant(_) => {}

        // Same name, same inputs, no attributes.
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Pow
        | Op::Max
        | Op::Min
        | Op::Equal
        | Op::Less
        | Op::LessOrEqual
        | Op::Greater
        | Op::And
        | Op::Where
        | Op::Neg
        | Op::Sqrt
        | Op::Reciprocal
        | Op::Tanh
        | Op::Erf
        | Op::Sin
        | Op::Cos
        | Op::Relu
        | Op::Sigmoid
        | Op::Exp
        | Op::Log
        | Op::Abs
        | Op::Not
        | Op::MatMul
        | Op::Range
        | Op::Expand => cx.node(op.name(), cx.ins(), vec![]),

        Op::Cast { to } => cx.node("Cast", cx.ins(), vec![int("to", to.onnx_code() as i64)]),
        Op::Softmax { axis } => cx.node("Softmax", cx.ins(), vec![int("axis", *axis)]),
        Op::Gather { axis } => cx.node("Gather", cx.ins(), vec![int("axis", *axis)]),
        Op::Concat { axis } => cx.node("Concat", cx.ins(), vec![int("axis", *axis)]),
        Op::Transpose { perm } => cx.node("Transpose", cx.ins(), vec![ints("perm", perm)]),
        Op::LayerNorm { eps } => {
            let attrs = vec![int("axis", -1), float("epsilon", *eps)];
            cx.node("LayerNormalization", cx.ins(), attrs);
        }
        Op::Shape { start, end } => {
            let mut attrs = Vec::new();
            if *start != 0 {
                attrs.push(int("start", *start));
            }
            if let Some(end) = end {
                attrs.push(int("end", *end));
            }
            cx.node("Shape", cx.ins(), attrs);
        }

        // An empty axis list means "no axis" in the IR; ONNX would reduce or
        // squeeze every axis, or reject it, so these are Identities.
        Op::ReduceMean { axes, .. }
        | Op::ReduceSum { axes, .. }
        | Op::ReduceMax { axes, .. }
        | Op::Unsqueeze { axes }
        | Op::Squeeze { axes }
            if axes.is_empty() =>
        {
            cx.node("Identity", cx.ins(), vec![])
        }
        Op::ReduceSum { axes, keepdims } => {
            let axes = cx.const_i64("axes", axes, false)?;
            let attrs = vec![int("keepdims", i64::from(*keepdims))];
            cx.node("ReduceSum", cx.ins_and(&[axes]), attrs);
        }
        Op::ReduceMean { axes, keepdims } | Op::ReduceMax { axes, keepdims } => {
            let keep = int("keepdims", i64::from(*keepdims));
            if cx.opset >= 18 {
                let axes = cx.const_i64("axes", axes, false)?;
                cx.node(op.name(), cx.ins_and(&[axes]), vec![keep]);
            } else {
                cx.node(op.name(), cx.ins(), vec![ints("axes", axes), keep]);
            }
        }
        Op::CumSum { axis } => {
            let axis = cx.const_i64("axis", &[*axis], true)?;
            cx.node("CumSum", cx.ins_and(&[axis]), vec![]);
        }
        Op::Reshape { shape } => {
            let target: Vec<i64> = shape
                .iter()
                .map(|d| match d {
                    ReshapeDim::Copy => 0,
                    ReshapeDim::Infer => -1,
                    ReshapeDim::Fixed(n) => *n,
                })
                .collect();
            let shape = cx.const_i64("shape", &target, false)?;
            cx.node("Reshape", cx.ins_and(&[shape]), vec![]);
        }
        Op::Unsqueeze { axes } | Op::Squeeze { axes } => {
            let axes = cx.const_i64("axes", axes, false)?;
            cx.node(op.name(), cx.ins_and(&[axes]), vec![]);
        }
        Op::Slice { axes, starts, ends } => {
            let starts = cx.const_i64("starts", starts, false)?;
            let ends = cx.const_i64("ends", ends, false)?;
            let axes = cx.const_i64("axes", axes, false)?;
            cx.node("Slice", cx.ins_and(&[starts, ends, axes]), vec![]);
        }

        // Fused operators: the target's fused form where it has one that
        // fits, otherwise the standard-ONNX decomposition.
        Op::Attention { .. }
        | Op::SkipLayerNorm { .. }
        | Op::RmsNorm { .. }
        | Op::SkipRmsNorm { .. }
        | Op::Gelu { .. }
        | Op::BiasGelu { .. }
        | Op::RotaryEmbedding { .. }
        | Op::MatMulAddBias
        | Op::EmbedLayerNorm { .. } => {
            if !emit_fused(op, cx)? {
                decompose_fused(op, cx)?;
            }
        }
    }
    Ok(())
}

/// Writes `op`'s fused form for the context's target; `false` when the
/// target has none for this op, dtype and provider, or the op's inputs do
/// not fit it.
fn emit_fused(op: &Op, cx: &mut NodeCx) -> Result<bool, EmitError> {
    // The activation type: the first input, or the word embeddings of an
    // embedding lookup (its first inputs are ids).
    let activation = match op {
        Op::EmbedLayerNorm { .. } => 2,
        _ => 0,
    };
    let Some(dtype) = cx.input_types.get(activation).map(|t| t.dtype) else {
        return Ok(false);
    };
    let Some(form) = fused_form(cx.target, cx.provider, op, dtype) else {
        return Ok(false);
    };
    match op {
        Op::Attention {
            heads,
            kv_heads,
            scale,
            ..
        } => fused::attention(cx, form, *heads, *kv_heads, *scale),
        Op::SkipRmsNorm { eps } if form.op_type == "RMSNormalization" => {
            fused::add_then_rms_norm(cx, form, *eps);
            Ok(true)
        }
        Op::SkipLayerNorm { eps } | Op::SkipRmsNorm { eps } => {
            fused::skip_norm(cx, form, *eps);
            Ok(true)
        }
        Op::RmsNorm { eps } => {
            fused::rms_norm(cx, form, *eps);
            Ok(true)
        }
        Op::Gelu { .. } | Op::BiasGelu { .. } => {
            fused::gelu(cx, form);
            Ok(true)
        }
        Op::EmbedLayerNorm { eps } => {
            fused::embed_layer_norm(cx, form, *eps);
            Ok(true)
        }
        Op::RotaryEmbedding {
            interleaved,
            rotary_dim,
        } => fused::rotary(cx, form, *interleaved, *rotary_dim),
        _ => Ok(false),
    }
}

/// Writes a fused op as standard nodes (see `decompose`).
fn decompose_fused(op: &Op, cx: &mut NodeCx) -> Result<(), EmitError> {
    match op {
        Op::Attention {
            heads,
            kv_heads,
            head_dim,
            scale,
            mask: _,
        } => decompose::attention(cx, *heads, *kv_heads, *head_dim, *scale)?,
        Op::SkipLayerNorm { eps } => decompose::skip_layer_norm(cx, *eps),
        Op::RmsNorm { eps } => decompose::rms_norm(cx, *eps)?,
        Op::SkipRmsNorm { eps } => decompose::skip_rms_norm(cx, *eps)?,
        Op::Gelu { approximate } => decompose::gelu(cx, *approximate)?,
        Op::BiasGelu { approximate } => decompose::bias_gelu(cx, *approximate)?,
        Op::RotaryEmbedding {
            interleaved,
            rotary_dim,
        } => decompose::rotary(cx, *interleaved, *rotary_dim)?,
        Op::MatMulAddBias => decompose::matmul_add_bias(cx),
        Op::EmbedLayerNorm { eps } => decompose::embed_layer_norm(cx, *eps),
        other => {
            return Err(EmitError::Unsupported {
                node: cx.name.to_string(),
                op: other.name(),
                reason: "not a fused operator".into(),
            })
        }
    }
    Ok(())
}
