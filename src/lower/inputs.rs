//! Graph inputs of one stack and the position indices derived from them.
//!
//! The stack fed by `input_ids` (the encoder, or the only stack) also takes
//! the optional `attention_mask`, `token_type_ids` and `position_ids`; the
//! decoder of an encoder–decoder takes `decoder_input_ids`. Positions that are
//! not given as an input are `0..sequence`, computed in the graph from the
//! ids' shape (`Shape → Gather → Range`) so no sample size is ever baked in.

use crate::ir::{DType, Dim, Op, Value};
use crate::model::Model;

use super::builder::Builder;
use super::LowerError;

/// The integer inputs a stack reads.
#[derive(Debug, Clone, Copy)]
pub struct StackInputs {
    /// Token ids `[batch, sequence]`.
    pub ids: Value,
    /// 1 for real tokens, 0 for padding, `[batch, sequence]`.
    pub mask: Option<Value>,
    /// Segment ids `[batch, sequence]`.
    pub token_types: Option<Value>,
    /// `0..sequence` as a 1-D i64 tensor.
    pub range: Value,
    /// Position ids `[batch, sequence]` or `[1, sequence]`.
    pub positions: Value,
}

/// Declares the inputs of the stack fed by `input_ids`.
pub fn primary(b: &mut Builder, model: &Model) -> Result<StackInputs, LowerError> {
    let shape = vec![Dim::sym(&model.dims.batch), Dim::sym(&model.dims.sequence)];
    let ids = b.graph.input("input_ids", DType::I64, shape.clone());
    let mask = model
        .inputs
        .attention_mask
        .then(|| b.graph.input("attention_mask", DType::I64, shape.clone()));
    let has_types = model.inputs.token_type_ids && model.embeddings.type_vocab_size.is_some();
    let token_types = has_types.then(|| b.graph.input("token_type_ids", DType::I64, shape.clone()));
    let given = model
        .inputs
        .position_ids
        .then(|| b.graph.input("position_ids", DType::I64, shape));
    let range = sequence_range(b, ids)?;
    let positions = match given {
        Some(p) => p,
        None => b.unsqueeze(range, &[0])?,
    };
    Ok(StackInputs {
        ids,
        mask,
        token_types,
        range,
        positions,
    })
}

/// Declares `decoder_input_ids`, the input of an encoder–decoder's decoder.
pub fn decoder(b: &mut Builder, model: &Model) -> Result<StackInputs, LowerError> {
    let shape = vec![
        Dim::sym(&model.dims.batch),
        Dim::sym(&model.dims.decoder_sequence),
    ];
    let ids = b.graph.input("decoder_input_ids", DType::I64, shape);
    let range = sequence_range(b, ids)?;
    let positions = b.unsqueeze(range, &[0])?;
    Ok(StackInputs {
        ids,
        mask: None,
        token_types: None,
        range,
        positions,
    })
}

/// `0..sequence` for ids of shape `[batch, sequence]`.
pub fn sequence_range(b: &mut Builder, ids: Value) -> Result<Value, LowerError> {
    b.scoped("positions", |b| {
        let shape = b.op(
            Op::Shape {
                start: 0,
                end: None,
            },
            &[ids],
        )?;
        let axis = b.scalar_i64(1);
        let len = b.op(Op::Gather { axis: 0 }, &[shape, axis])?;
        let start = b.scalar_i64(0);
        let step = b.scalar_i64(1);
        b.op(Op::Range, &[start, len, step])
    })
}
