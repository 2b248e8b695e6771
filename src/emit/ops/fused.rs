//! The fused forms of the IR's fused operators: one ONNX node each, in the
//! standard opset-23 domain or ONNX Runtime's `com.microsoft` domain, as
//! `targets.yaml` chooses.
//!
//! Each function writes the node that computes what the IR op documents
//! (the same value `decompose` writes as standard nodes), adapting layouts
//! where the operator wants another one: casts of token ids to int32,
//! reshapes between `[batch, seq, heads, head_dim]` and `[batch, seq,
//! hidden]`, an `Expand` of a broadcast attention bias to the full
//! `[.., queries, keys]` that ONNX Runtime's kernels require, key/value heads
//! repeated for `MultiHeadAttention`. Where an op's inputs do not fit the
//! fused operator at all (an attention bias of another rank, a rotary whose
//! head count is not a constant) the function returns `false` and the
//! caller decomposes the op instead.

use super::{float, int, NodeCx};
use crate::emit::target::FusedForm;
use crate::emit::EmitError;
use crate::ir::{DType, Dim, TensorData};

impl NodeCx<'_> {
    /// Appends the fused node itself: named after the IR node, in `form`'s
    /// domain, reading `inputs` and writing `outputs`.
    fn fused_node(
        &mut self,
        form: FusedForm,
        inputs: Vec<String>,
        attrs: Vec<super::AttributeProto>,
        outputs: Vec<String>,
    ) {
        let saved = std::mem::replace(&mut self.outputs, outputs);
        self.node_in(form.domain, form.op_type, inputs, attrs);
        self.outputs = saved;
    }

    /// `x` cast to int32 (token and position ids for `EmbedLayerNormalization`).
    fn cast_i32(&mut self, x: String) -> String {
        self.part(
            "Cast",
            vec![x],
            vec![int("to", DType::I32.onnx_code() as i64)],
        )
    }

    /// The 1-D shape of input `slot` from axis `start` to `end`.
    fn shape_of(&mut self, slot: usize, start: i64, end: i64) -> String {
        let x = self.inputs[slot].clone();
        self.part("Shape", vec![x], vec![int("start", start), int("end", end)])
    }
}

/// Emits `op`'s fused form; `false` when its inputs do not fit the form.
pub(super) fn attention(
    cx: &mut NodeCx,
    form: FusedForm,
    heads: u64,
    kv_heads: u64,
    scale: f32,
) -> Result<bool, EmitError> {
    let bias = match cx.inputs.get(3) {
        None => None,
        Some(_) if cx.input_types[3].rank() != 4 => return Ok(false),
        Some(_) => Some(full_bias(cx)),
    };
    let (q, k, v) = (
        cx.inputs[0].clone(),
        cx.inputs[1].clone(),
        cx.inputs[2].clone(),
    );
    let out = cx.outputs.clone();
    match (form.domain, form.op_type) {
        ("com.microsoft", "MultiHeadAttention") => {
            // The kernel has as many key/value heads as query heads: repeat
            // each key/value head for its group of query heads.
            let (k, v) = if heads == kv_heads {
                (k, v)
            } else {
                let head_dim = cx.input_types[1].shape.last().and_then(Dim::as_const);
                let Some(d) = head_dim.map(|w| w / kv_heads as i64) else {
                    return Ok(false);
                };
                let groups = (heads / kv_heads) as i64;
                let index: Vec<i64> = (0..heads as i64).map(|i| i / groups).collect();
                let index = cx.const_i64("kv_index", &index, false)?;
                let mut repeat = |x: String| -> Result<String, EmitError> {
                    let split = cx.const_i64("kv_shape", &[0, 0, kv_heads as i64, d], false)?;
                    let x = cx.part("Reshape", vec![x, split], vec![]);
                    let x = cx.part("Gather", vec![x, index.clone()], vec![int("axis", 2)]);
                    let join = cx.const_i64("shape", &[0, 0, heads as i64 * d], false)?;
                    Ok(cx.part("Reshape", vec![x, join], vec![]))
                };
                (repeat(k)?, repeat(v)?)
            };
            let mut inputs = vec![q, k, v];
            if let Some(bias) = bias {
                let bias = bias_in_activation_type(cx, bias)?;
                inputs.extend([String::new(), String::new(), bias]);
            }
            let attrs = vec![int("num_heads", heads as i64), float("scale", scale)];
            cx.fused_node(form, inputs, attrs, out);
        }
        ("", "Attention") => {
            let mut inputs = vec![q, k, v];
            inputs.extend(bias);
            let attrs = vec![
                int("q_num_heads", heads as i64),
                int("kv_num_heads", kv_heads as i64),
                float("scale", scale),
                // Softmax in f32 whatever the activations, as the IR op says.
                int("softmax_precision", DType::F32.onnx_code() as i64),
            ];
            cx.fused_node(form, inputs, attrs, out);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `MultiHeadAttention` takes its bias in the activation type. The f32 bias
/// is clipped to the half-precision range first, so a masked position stays
/// a large negative number (-65504) rather than becoming -inf, which would
/// turn a fully masked row into NaN. Shared by the layers reading it.
fn bias_in_activation_type(cx: &mut NodeCx, bias: String) -> Result<String, EmitError> {
    let dtype = cx.input_types[0].dtype;
    if dtype == DType::F32 {
        return Ok(bias);
    }
    let key = format!("bias_as({bias}, {})", dtype.short());
    if let Some(done) = cx.shared.get(&key) {
        return Ok(done.clone());
    }
    let lowest = f64::from(half::f16::MIN) as f32;
    let lowest = cx.literal("f16_lowest", TensorData::scalar_f32(lowest))?;
    let clipped = cx.part("Max", vec![bias, lowest], vec![]);
    let cast = cx.part(
        "Cast",
        vec![clipped],
        vec![int("to", dtype.onnx_code() as i64)],
    );
    cx.shared.insert(key, cast.clone());
    Ok(cast)
}

/// The attention bias (input 3) expanded over its last two axes to
/// `[.., queries, keys]` where it broadcasts there, as ONNX Runtime's
/// attention kernels take only a full bias. Leading axes of 1 (batch, heads)
/// stay broadcast.
fn full_bias(cx: &mut NodeCx) -> String {
    let bias = cx.inputs[3].clone();
    let queries = cx.input_types[0].shape.get(1).cloned();
    let keys = cx.input_types[1].shape.get(1).cloned();
    let shape = &cx.input_types[3].shape;
    let fits = |axis: usize, want: &Option<Dim>| shape.get(axis) == want.as_ref();
    if fits(2, &queries) && fits(3, &keys) {
        return bias;
    }
    // Symbolic lengths that are equal are equal at run time, so layers
    // reading the same bias at the same lengths share one expansion.
    let show = |d: &Option<Dim>| d.as_ref().map(Dim::to_string).unwrap_or_default();
    let key = format!("full_bias({bias}, {}, {})", show(&queries), show(&keys));
    if let Some(done) = cx.shared.get(&key) {
        return done.clone();
    }
    let lead = cx.shape_of(3, 0, 2);
    let q_len = cx.shape_of(0, 1, 2);
    let k_len = cx.shape_of(1, 1, 2);
    let target = cx.part("Concat", vec![lead, q_len, k_len], vec![int("axis", 0)]);
    let full = cx.part("Expand", vec![bias, target], vec![]);
    cx.shared.insert(key, full.clone());
    full
}

/// `SkipLayerNormalization` / `SkipSimplifiedLayerNormalization`: inputs
/// `x, skip, gamma[, beta][, bias]`, outputs the normalised value and the
/// sum (the operator's fourth output).
pub(super) fn skip_norm(cx: &mut NodeCx, form: FusedForm, eps: f32) {
    let inputs = cx.inputs.clone();
    let outputs = vec![
        cx.outputs[0].clone(),
        String::new(),
        String::new(),
        cx.outputs[1].clone(),
    ];
    cx.fused_node(form, inputs, vec![float("epsilon", eps)], outputs);
}

/// `x + (skip [+ bias])` then opset-23 `RMSNormalization` of the sum, for
/// a skip-RMSNorm on a target with no fused skip form: inputs `x, skip,
/// weight[, bias]`, outputs the normalised value and the sum.
pub(super) fn add_then_rms_norm(cx: &mut NodeCx, form: FusedForm, eps: f32) {
    let (x, skip) = (cx.inputs[0].clone(), cx.inputs[1].clone());
    let skip = match cx.inputs.get(3).cloned() {
        Some(bias) => cx.part("Add", vec![skip, bias], vec![]),
        None => skip,
    };
    let sum = cx.outputs[1].clone();
    cx.part_to("Add", vec![x, skip], vec![], vec![sum.clone()]);
    let attrs = vec![
        int("axis", -1),
        float("epsilon", eps),
        int("stash_type", DType::F32.onnx_code() as i64),
    ];
    let inputs = vec![sum, cx.inputs[2].clone()];
    let out = vec![cx.outputs[0].clone()];
    cx.fused_node(form, inputs, attrs, out);
}

/// `RMSNormalization` (opset 23) over the last axis, computed in f32.
pub(super) fn rms_norm(cx: &mut NodeCx, form: FusedForm, eps: f32) {
    let attrs = vec![
        int("axis", -1),
        float("epsilon", eps),
        int("stash_type", DType::F32.onnx_code() as i64),
    ];
    let (inputs, outputs) = (cx.inputs.clone(), cx.outputs.clone());
    cx.fused_node(form, inputs, attrs, outputs);
}

/// `Gelu`, `FastGelu` or `BiasGelu`: the inputs (`x[, bias]`) as they are.
pub(super) fn gelu(cx: &mut NodeCx, form: FusedForm) {
    let (inputs, outputs) = (cx.inputs.clone(), cx.outputs.clone());
    cx.fused_node(form, inputs, vec![], outputs);
}

/// `EmbedLayerNormalization`: the IR's `ids, position_ids, word, position,
/// gamma, beta[, segment_ids, segment]` reordered to the operator's inputs,
/// with ids cast to int32. Its `mask_index` output is written but unused.
pub(super) fn embed_layer_norm(cx: &mut NodeCx, form: FusedForm, eps: f32) {
    let ins = cx.inputs.clone();
    let ids = cx.cast_i32(ins[0].clone());
    let positions = cx.cast_i32(ins[1].clone());
    let (segment_ids, segment) = match ins.len() {
        8 => (cx.cast_i32(ins[6].clone()), ins[7].clone()),
        _ => (String::new(), String::new()),
    };
    let inputs = vec![
        ids,
        segment_ids,
        ins[2].clone(),
        ins[3].clone(),
        segment,
        ins[4].clone(),
        ins[5].clone(),
        String::new(),
        positions,
    ];
    let mask_index = cx.names.unique(&format!("{}/mask_index", cx.name));
    let outputs = vec![cx.outputs[0].clone(), mask_index];
    cx.fused_node(form, inputs, vec![float("epsilon", eps)], outputs);
}

/// Opset-23 `RotaryEmbedding` on `x` `[batch, seq, heads, head_dim]`: the
/// operator reads 4-D input as `[batch, heads, seq, head_dim]`, so `x` is
/// flattened to `[batch, seq, hidden]` and the result reshaped back; `cos`
/// and `sin` (`[batch | 1, seq, rotary_dim / 2]`) are expanded to the batch.
pub(super) fn rotary(
    cx: &mut NodeCx,
    form: FusedForm,
    interleaved: bool,
    rotary_dim: u64,
) -> Result<bool, EmitError> {
    let x_shape = cx.input_types[0].shape.clone();
    let Some(heads) = x_shape.get(2).and_then(Dim::as_const) else {
        return Ok(false);
    };
    let Some(head_dim) = x_shape.get(3).and_then(Dim::as_const) else {
        return Ok(false);
    };
    let x = cx.inputs[0].clone();
    let flat = cx.const_i64("flat_shape", &[0, 0, heads * head_dim], false)?;
    let flat = cx.part("Reshape", vec![x, flat], vec![]);

    let inputs = match form.domain {
        // Opset 23: cos and sin `[batch, seq, rotary_dim / 2]`, no positions.
        "" => {
            let cos = batch_table(cx, 1);
            let sin = batch_table(cx, 2);
            vec![flat, cos, sin]
        }
        // com.microsoft: position ids index rows of 2-D caches; the
        // per-token tables flattened to rows are such caches, indexed by
        // `0..batch·seq` (or `0..seq` repeated when shared by the batch).
        _ => {
            let (positions, cos, sin) = table_rows(cx, rotary_dim)?;
            vec![flat, positions, cos, sin]
        }
    };
    let rotated = cx
        .names
        .unique(&format!("{}/{}_output", cx.name, form.op_type));
    let attrs = vec![
        int("num_heads", heads),
        int("rotary_embedding_dim", rotary_dim as i64),
        int("interleaved", i64::from(interleaved)),
    ];
    cx.fused_node(form, inputs, attrs, vec![rotated.clone()]);

    let back = cx.const_i64("shape", &[0, 0, heads, head_dim], false)?;
    let out = cx.outputs.clone();
    cx.part_to("Reshape", vec![rotated, back], vec![], out);
    Ok(true)
}

/// The rotary table in `slot` expanded to `x`'s batch (shared by every
/// rotary node reading it).
fn batch_table(cx: &mut NodeCx, slot: usize) -> String {
    let table = cx.inputs[slot].clone();
    if cx.input_types[slot].shape.first() == cx.input_types[0].shape.first() {
        return table;
    }
    let key = format!("batch_table({table})");
    if let Some(done) = cx.shared.get(&key) {
        return done.clone();
    }
    let b = cx.shape_of(0, 0, 1);
    let rest = cx.shape_of(slot, 1, 3);
    let target = cx.part("Concat", vec![b, rest], vec![int("axis", 0)]);
    let full = cx.part("Expand", vec![table, target], vec![]);
    cx.shared.insert(key, full.clone());
    full
}

/// Position ids `[batch, seq]` and the cos and sin tables as 2-D caches
/// `[rows, rotary_dim / 2]` for `com.microsoft.RotaryEmbedding` (shared by
/// every rotary node reading the same tables).
fn table_rows(cx: &mut NodeCx, rotary_dim: u64) -> Result<(String, String, String), EmitError> {
    let (cos, sin) = (cx.inputs[1].clone(), cx.inputs[2].clone());
    let keys = ["positions", "cos", "sin"].map(|part| format!("table_rows({cos}, {sin}).{part}"));
    if let [Some(p), Some(c), Some(s)] = keys.each_ref().map(|k| cx.shared.get(k).cloned()) {
        return Ok((p, c, s));
    }
    let rows = cx.const_i64("rows", &[-1, rotary_dim as i64 / 2], false)?;
    let cos_rows = cx.part("Reshape", vec![cos, rows.clone()], vec![]);
    let sin_rows = cx.part("Reshape", vec![sin, rows], vec![]);

    // 0..rows, shaped like the table's leading axes, then broadcast to x's batch.
    let count = cx.shape_of(1, 0, 2);
    let zero = cx.const_i64("zero", &[0], true)?;
    let n = cx.part("ReduceProd", vec![count.clone()], vec![int("keepdims", 0)]);
    let one = cx.const_i64("one", &[1], true)?;
    let ids = cx.part("Range", vec![zero, n, one], vec![]);
    let ids = cx.part("Reshape", vec![ids, count], vec![]);
    let batch = cx.shape_of(0, 0, 2);
    let positions = cx.part("Expand", vec![ids, batch], vec![]);

    for (key, value) in keys.into_iter().zip([&positions, &cos_rows, &sin_rows]) {
        cx.shared.insert(key, value.clone());
    }
    Ok((positions, cos_rows, sin_rows))
}
