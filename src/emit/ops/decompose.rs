//! The portable form of the IR's fused operators: standard ONNX nodes that
//! compute exactly what each fused [`Op`] documents, at any supported opset.
//!
//! Every function writes the same sequence of operations that lowering
//! writes for the unfused construct (same order of additions, same casts to
//! and from f32), so a model optimised with fusions and decomposed here gives
//! the same numbers as the unoptimised model. Sub-nodes are named
//! `{fused node}/{OpType}` and their values `{fused node}/{OpType}_output`,
//! made unique with the emitter's usual suffixes.

use std::f64::consts::{PI, SQRT_2};
use std::sync::Arc;

use super::{float, int, ints, NodeCx};
use crate::emit::onnx_proto::{AttributeProto, NodeProto};
use crate::emit::EmitError;
use crate::ir::{DType, GeluApproximation, TensorData};

impl NodeCx<'_> {
    /// Appends a standard-domain sub-node writing `outputs`.
    pub(super) fn part_to(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
        outputs: Vec<String>,
    ) {
        let name = self.names.unique(&format!("{}/{op_type}", self.name));
        self.nodes.push(NodeProto {
            input: inputs,
            output: outputs,
            name: Some(name),
            op_type: Some(op_type.to_string()),
            attribute: attrs,
            ..NodeProto::default()
        });
    }

    /// Appends a standard-domain sub-node with one fresh output; returns its name.
    pub(super) fn part(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = self
            .names
            .unique(&format!("{}/{op_type}_output", self.name));
        self.part_to(op_type, inputs, attrs, vec![out.clone()]);
        out
    }

    /// Adds a literal initializer `{node}_{suffix}`; returns its name.
    pub(super) fn literal(&mut self, suffix: &str, data: TensorData) -> Result<String, EmitError> {
        let name = self.names.unique(&format!("{}_{suffix}", self.name));
        let tensor = super::Tensor::constant(name.clone(), Arc::new(data))?;
        self.tensors.push(tensor);
        Ok(name)
    }

    /// A scalar of `dtype` (f32 or f16) holding `v`.
    fn scalar(&mut self, suffix: &str, dtype: DType, v: f64) -> Result<String, EmitError> {
        self.literal(suffix, TensorData::float(dtype, vec![], &[v as f32]))
    }

    /// `x` converted to `to`, or `x` itself when it already has that type.
    fn cast(&mut self, x: String, from: DType, to: DType) -> String {
        if from == to {
            return x;
        }
        self.part("Cast", vec![x], vec![int("to", to.onnx_code() as i64)])
    }

    /// Reshape to a constant target (0 copies an axis, -1 infers one).
    fn reshape(&mut self, x: String, target: &[i64]) -> Result<String, EmitError> {
        let shape = self.const_i64("shape", target, false)?;
        Ok(self.part("Reshape", vec![x, shape], vec![]))
    }

    /// The opset-dependent `ReduceMean` over the last axis, keeping it.
    fn mean_last(&mut self, x: String) -> Result<String, EmitError> {
        let keep = int("keepdims", 1);
        if self.opset >= 18 {
            let axes = self.const_i64("axes", &[-1], false)?;
            Ok(self.part("ReduceMean", vec![x, axes], vec![keep]))
        } else {
            Ok(self.part("ReduceMean", vec![x], vec![ints("axes", &[-1]), keep]))
        }
    }
}

/// [`crate::ir::Op::Attention`] as reshapes, transposes, two `MatMul`s and a
/// softmax in f32. Key/value heads are repeated for grouped-query attention
/// with a `Gather` on the head axis.
pub(super) fn attention(
    cx: &mut NodeCx,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    scale: f32,
) -> Result<(), EmitError> {
    let dtype = cx.input_types[0].dtype;
    let (h, kv, d) = (heads as i64, kv_heads as i64, head_dim as i64);
    let [q, k, v] = [0, 1, 2].map(|i| cx.inputs[i].clone());

    let q = cx.reshape(q, &[0, 0, h, d])?;
    let q = cx.part("Transpose", vec![q], vec![ints("perm", &[0, 2, 1, 3])]);
    let k = cx.reshape(k, &[0, 0, kv, d])?;
    let mut k_t = cx.part("Transpose", vec![k], vec![ints("perm", &[0, 2, 3, 1])]);
    let v = cx.reshape(v, &[0, 0, kv, d])?;
    let mut v = cx.part("Transpose", vec![v], vec![ints("perm", &[0, 2, 1, 3])]);
    if kv != h {
        let groups = h / kv;
        let index: Vec<i64> = (0..h).map(|i| i / groups).collect();
        let index = cx.const_i64("kv_index", &index, false)?;
        let axis = vec![int("axis", 1)];
        k_t = cx.part("Gather", vec![k_t, index.clone()], axis.clone());
        v = cx.part("Gather", vec![v, index], axis);
    }

    let scores = cx.part("MatMul", vec![q, k_t], vec![]);
    let mut scores = cx.cast(scores, dtype, DType::F32);
    if scale != 1.0 {
        let s = cx.literal("scale", TensorData::scalar_f32(scale))?;
        scores = cx.part("Mul", vec![scores, s], vec![]);
    }
    if let Some(bias) = cx.inputs.get(3).cloned() {
        scores = cx.part("Add", vec![scores, bias], vec![]);
    }
    let probs = cx.part("Softmax", vec![scores], vec![int("axis", -1)]);
    let probs = cx.cast(probs, DType::F32, dtype);

    let context = cx.part("MatMul", vec![probs, v], vec![]);
    let context = cx.part(
        "Transpose",
        vec![context],
        vec![ints("perm", &[0, 2, 1, 3])],
    );
    let shape = cx.const_i64("shape", &[0, 0, h * d], false)?;
    let out = cx.outputs.clone();
    cx.part_to("Reshape", vec![context, shape], vec![], out);
    Ok(())
}

/// `x + (skip [+ bias])` written to the node's output `slot`; returns its name.
fn skip_sum(cx: &mut NodeCx, bias: Option<usize>, slot: usize) -> String {
    let (x, skip) = (cx.inputs[0].clone(), cx.inputs[1].clone());
    let skip = match bias {
        Some(i) if i < cx.inputs.len() => {
            let b = cx.inputs[i].clone();
            cx.part("Add", vec![skip, b], vec![])
        }
        _ => skip,
    };
    let sum = cx.outputs[slot].clone();
    cx.part_to("Add", vec![x, skip], vec![], vec![sum.clone()]);
    sum
}

/// LayerNorm of `x` in f32 with `gamma` and `beta`, cast back to `dtype` and
/// written to the node's first output.
fn layer_norm_f32(cx: &mut NodeCx, [x, gamma, beta]: [String; 3], dtype: DType, eps: f32) {
    let x = cx.cast(x, dtype, DType::F32);
    let gamma = cx.cast(gamma, dtype, DType::F32);
    let beta = cx.cast(beta, dtype, DType::F32);
    let attrs = vec![int("axis", -1), float("epsilon", eps)];
    let out = cx.outputs[0].clone();
    if dtype == DType::F32 {
        cx.part_to("LayerNormalization", vec![x, gamma, beta], attrs, vec![out]);
    } else {
        let y = cx.part("LayerNormalization", vec![x, gamma, beta], attrs);
        cx.part_to(
            "Cast",
            vec![y],
            vec![int("to", dtype.onnx_code() as i64)],
            vec![out],
        );
    }
}

/// [`crate::ir::Op::SkipLayerNorm`]: the sum, then LayerNorm in f32.
pub(super) fn skip_layer_norm(cx: &mut NodeCx, eps: f32) {
    let sum = skip_sum(cx, Some(4), 1);
    let (gamma, beta) = (cx.inputs[2].clone(), cx.inputs[3].clone());
    let dtype = cx.input_types[0].dtype;
    layer_norm_f32(cx, [sum, gamma, beta], dtype, eps);
}

/// RMSNorm of `x` with `weight`, written to the node's first output.
fn rms_norm_of(cx: &mut NodeCx, x: String, weight: String, eps: f32) -> Result<(), EmitError> {
    let dtype = cx.input_types[0].dtype;
    let x = cx.cast(x, dtype, DType::F32);
    let square = cx.part("Mul", vec![x.clone(), x.clone()], vec![]);
    let mean = cx.mean_last(square)?;
    let eps = cx.literal("eps", TensorData::scalar_f32(eps))?;
    let shifted = cx.part("Add", vec![mean, eps], vec![]);
    let root = cx.part("Sqrt", vec![shifted], vec![]);
    let inverse = cx.part("Reciprocal", vec![root], vec![]);
    let normed = cx.part("Mul", vec![x, inverse], vec![]);
    let normed = cx.cast(normed, DType::F32, dtype);
    let out = cx.outputs[0].clone();
    cx.part_to("Mul", vec![normed, weight], vec![], vec![out]);
    Ok(())
}

/// [`crate::ir::Op::RmsNorm`].
pub(super) fn rms_norm(cx: &mut NodeCx, eps: f32) -> Result<(), EmitError> {
    let (x, weight) = (cx.inputs[0].clone(), cx.inputs[1].clone());
    rms_norm_of(cx, x, weight, eps)
}

/// [`crate::ir::Op::SkipRmsNorm`].
pub(super) fn skip_rms_norm(cx: &mut NodeCx, eps: f32) -> Result<(), EmitError> {
    let sum = skip_sum(cx, Some(3), 1);
    let weight = cx.inputs[2].clone();
    rms_norm_of(cx, sum, weight, eps)
}

/// GELU of `x` (of type `dtype`) written to the node's first output.
fn gelu_of(
    cx: &mut NodeCx,
    x: String,
    dtype: DType,
    approximate: GeluApproximation,
) -> Result<(), EmitError> {
    let out = cx.outputs[0].clone();
    let shifted = match approximate {
        GeluApproximation::None => {
            let sqrt2 = cx.scalar("sqrt2", dtype, SQRT_2)?;
            let scaled = cx.part("Div", vec![x.clone(), sqrt2], vec![]);
            let erf = cx.part("Erf", vec![scaled], vec![]);
            let one = cx.scalar("one", dtype, 1.0)?;
            cx.part("Add", vec![erf, one], vec![])
        }
        GeluApproximation::Tanh => {
            let square = cx.part("Mul", vec![x.clone(), x.clone()], vec![]);
            let cube = cx.part("Mul", vec![square, x.clone()], vec![]);
            let coefficient = cx.scalar("coefficient", dtype, 0.044715)?;
            let cubic = cx.part("Mul", vec![cube, coefficient], vec![]);
            let inner = cx.part("Add", vec![x.clone(), cubic], vec![]);
            let factor = cx.scalar("factor", dtype, (2.0 / PI).sqrt())?;
            let inner = cx.part("Mul", vec![inner, factor], vec![]);
            let tanh = cx.part("Tanh", vec![inner], vec![]);
            let one = cx.scalar("one", dtype, 1.0)?;
            cx.part("Add", vec![tanh, one], vec![])
        }
    };
    let half = cx.scalar("half", dtype, 0.5)?;
    let half_x = cx.part("Mul", vec![x, half], vec![]);
    cx.part_to("Mul", vec![half_x, shifted], vec![], vec![out]);
    Ok(())
}

/// [`crate::ir::Op::Gelu`].
pub(super) fn gelu(cx: &mut NodeCx, approximate: GeluApproximation) -> Result<(), EmitError> {
    let x = cx.inputs[0].clone();
    let dtype = cx.input_types[0].dtype;
    gelu_of(cx, x, dtype, approximate)
}

/// [`crate::ir::Op::BiasGelu`].
pub(super) fn bias_gelu(cx: &mut NodeCx, approximate: GeluApproximation) -> Result<(), EmitError> {
    let sum = cx.part("Add", cx.inputs.clone(), vec![]);
    let dtype = cx.input_types[0].dtype;
    gelu_of(cx, sum, dtype, approximate)
}

/// A constant-bound slice of the last axis.
fn slice_last(cx: &mut NodeCx, x: String, start: i64, end: i64) -> Result<String, EmitError> {
    let starts = cx.const_i64("starts", &[start], false)?;
    let ends = cx.const_i64("ends", &[end], false)?;
    let axes = cx.const_i64("axes", &[-1], false)?;
    Ok(cx.part("Slice", vec![x, starts, ends, axes], vec![]))
}

/// [`crate::ir::Op::RotaryEmbedding`]: the cosine and sine tables widened to
/// the head layout, then rotate-half or interleaved pairs.
pub(super) fn rotary(cx: &mut NodeCx, interleaved: bool, rotary_dim: u64) -> Result<(), EmitError> {
    let dim = rotary_dim as i64;
    let (x, cos, sin) = (
        cx.inputs[0].clone(),
        cx.inputs[1].clone(),
        cx.inputs[2].clone(),
    );
    let head_dim = cx.input_types[0].shape.last().and_then(|d| d.as_const());
    let partial = head_dim != Some(dim);
    let result = cx.outputs[0].clone();
    // The last node of the rotation writes the result unless a pass-through
    // part is appended after it.
    let last = |cx: &mut NodeCx, op: &str, inputs: Vec<String>, attrs| {
        if partial {
            cx.part(op, inputs, attrs)
        } else {
            cx.part_to(op, inputs, attrs, vec![result.clone()]);
            result.clone()
        }
    };
    let rotated = if partial {
        slice_last(cx, x.clone(), 0, dim)?
    } else {
        x.clone()
    };

    let out = if interleaved {
        let axes = cx.const_i64("axes", &[2, 4], false)?;
        let cos = cx.part("Unsqueeze", vec![cos, axes.clone()], vec![]);
        let sin = cx.part("Unsqueeze", vec![sin, axes], vec![]);
        let pairs = cx.reshape(rotated, &[0, 0, 0, dim / 2, 2])?;
        let x1 = slice_last(cx, pairs.clone(), 0, 1)?;
        let x2 = slice_last(cx, pairs.clone(), 1, 2)?;
        let neg = cx.part("Neg", vec![x2], vec![]);
        let turned = cx.part("Concat", vec![neg, x1], vec![int("axis", -1)]);
        let a = cx.part("Mul", vec![pairs, cos], vec![]);
        let c = cx.part("Mul", vec![turned, sin], vec![]);
        let sum = cx.part("Add", vec![a, c], vec![]);
        let flat = cx.const_i64("shape", &[0, 0, 0, dim], false)?;
        last(cx, "Reshape", vec![sum, flat], vec![])
    } else {
        let axis = vec![int("axis", -1)];
        let cos = cx.part("Concat", vec![cos.clone(), cos], axis.clone());
        let sin = cx.part("Concat", vec![sin.clone(), sin], axis.clone());
        let axes = cx.const_i64("axes", &[2], false)?;
        let cos = cx.part("Unsqueeze", vec![cos, axes.clone()], vec![]);
        let sin = cx.part("Unsqueeze", vec![sin, axes], vec![]);
        let half = dim / 2;
        let x1 = slice_last(cx, rotated.clone(), 0, half)?;
        let x2 = slice_last(cx, rotated.clone(), half, dim)?;
        let neg = cx.part("Neg", vec![x2], vec![]);
        let turned = cx.part("Concat", vec![neg, x1], axis);
        let a = cx.part("Mul", vec![rotated, cos], vec![]);
        let c = cx.part("Mul", vec![turned, sin], vec![]);
        last(cx, "Add", vec![a, c], vec![])
    };

    if partial {
        let pass = slice_last(cx, x, dim, i64::MAX)?;
        cx.part_to(
            "Concat",
            vec![out, pass],
            vec![int("axis", -1)],
            vec![result],
        );
    }
    Ok(())
}

/// [`crate::ir::Op::MatMulAddBias`].
pub(super) fn matmul_add_bias(cx: &mut NodeCx) {
    let product = cx.part("MatMul", cx.inputs[..2].to_vec(), vec![]);
    let bias = cx.inputs[2].clone();
    let out = cx.outputs.clone();
    cx.part_to("Add", vec![product, bias], vec![], out);
}

/// [`crate::ir::Op::EmbedLayerNorm`]: gathers summed in lowering's order,
/// then LayerNorm in f32.
pub(super) fn embed_layer_norm(cx: &mut NodeCx, eps: f32) {
    let ins = cx.inputs.clone();
    let axis = vec![int("axis", 0)];
    let mut sum = cx.part("Gather", vec![ins[2].clone(), ins[0].clone()], axis.clone());
    if ins.len() == 8 {
        let segment = cx.part("Gather", vec![ins[7].clone(), ins[6].clone()], axis.clone());
        sum = cx.part("Add", vec![sum, segment], vec![]);
    }
    let position = cx.part("Gather", vec![ins[3].clone(), ins[1].clone()], axis);
    let sum = cx.part("Add", vec![sum, position], vec![]);
    let dtype = cx.input_types[2].dtype;
    layer_norm_f32(cx, [sum, ins[4].clone(), ins[5].clone()], dtype, eps);
}
