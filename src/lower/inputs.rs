//! Graph inputs of one stack and the position indices derived from them.
//!
//! The stack fed by `input_ids` (the encoder, or the only stack) also takes
//! the optional `attention_mask`, `token_type_ids` and `position_ids`; the
//! decoder of an encoder–decoder takes `decoder_input_ids`. Positions that are
//! not given as an input are `0..sequence`, computed in the graph from the
//! ids' shape (`Shape → Gather → Range`) so no sample size is ever baked in.
//!
//! Graphs with a key/value cache take the past keys and values as inputs
//! too; there queries sit at `past + 0..sequence` among `0..past + sequence`
//! keys, where `past` is read from the shape of the first past key, and the
//! attention mask covers past and new tokens.

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
    /// Position of each query among the keys, 1-D i64: `range` without a
    /// cache, `past + range` with one.
    pub queries: Value,
    /// Position of each key, 1-D i64: `range` without a cache,
    /// `0..past + sequence` with one.
    pub keys: Value,
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
        queries: range,
        keys: range,
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
        queries: range,
        keys: range,
        positions,
    })
}

/// Shape of one layer's cached keys or values.
#[derive(Debug, Clone, Copy)]
pub struct CacheShape {
    /// Key/value heads.
    pub kv_heads: u64,
    /// Width of one head.
    pub head_dim: u64,
}

impl CacheShape {
    /// `[batch, kv_heads, length, head_dim]`.
    fn dims(self, batch: &str, length: Dim) -> Vec<Dim> {
        vec![
            Dim::sym(batch),
            Dim::c(self.kv_heads as i64),
            length,
            Dim::c(self.head_dim as i64),
        ]
    }
}

/// Declares `{prefix}.key` and `{prefix}.value` of one layer's past
/// `[batch, kv_heads, length, head_dim]`.
pub fn past_pair(
    b: &mut Builder,
    model: &Model,
    prefix: &str,
    shape: CacheShape,
    length: &Dim,
) -> (Value, Value) {
    let dims = shape.dims(&model.dims.batch, length.clone());
    let float = b.float;
    let key = b.graph.input(&format!("{prefix}.key"), float, dims.clone());
    let value = b.graph.input(&format!("{prefix}.value"), float, dims);
    (key, value)
}

/// Declares the inputs of a cached decoder-only graph: `input_ids`,
/// `attention_mask` `[batch, past_sequence + sequence]`, `token_type_ids`
/// when the model takes them, `position_ids`, and each layer's past keys and
/// values. Returns the stack inputs and the past `(key, value)` per layer.
pub fn cached_primary(
    b: &mut Builder,
    model: &Model,
    layers: u64,
    cache: CacheShape,
) -> Result<(StackInputs, Vec<(Value, Value)>), LowerError> {
    let batch = Dim::sym(&model.dims.batch);
    let sequence = Dim::sym(&model.dims.sequence);
    let past = Dim::sym(PAST_SEQUENCE);
    let shape = vec![batch.clone(), sequence.clone()];
    let ids = b.graph.input("input_ids", DType::I64, shape.clone());
    let total = vec![batch, past.add(&sequence)];
    let mask = b.graph.input("attention_mask", DType::I64, total);
    let has_types = model.inputs.token_type_ids && model.embeddings.type_vocab_size.is_some();
    let token_types = has_types.then(|| b.graph.input("token_type_ids", DType::I64, shape.clone()));
    let positions = b.graph.input("position_ids", DType::I64, shape);
    let past_kv: Vec<(Value, Value)> = (0..layers)
        .map(|i| past_pair(b, model, &format!("past_key_values.{i}"), cache, &past))
        .collect();

    let (range, queries, keys) = cached_ranges(b, ids, past_kv.first().map(|p| p.0))?;
    let inputs = StackInputs {
        ids,
        mask: Some(mask),
        token_types,
        range,
        queries,
        keys,
        positions,
    };
    Ok((inputs, past_kv))
}

/// The symbolic length of a decoder-only graph's past.
pub const PAST_SEQUENCE: &str = "past_sequence";
/// The symbolic length of an encoder–decoder's past decoder tokens.
pub const PAST_DECODER_SEQUENCE: &str = "past_decoder_sequence";

/// Stack inputs of the decoder of a cached encoder–decoder, for
/// `decoder_input_ids` `ids` and the first past decoder key (if any layer).
/// Positions are `past + 0..decoder_sequence`; every token is real.
pub fn cached_decoder(
    b: &mut Builder,
    ids: Value,
    first_past_key: Option<Value>,
) -> Result<StackInputs, LowerError> {
    let (range, queries, keys) = cached_ranges(b, ids, first_past_key)?;
    let positions = b.unsqueeze(queries, &[0])?;
    Ok(StackInputs {
        ids,
        mask: None,
        token_types: None,
        range,
        queries,
        keys,
        positions,
    })
}

/// `0..sequence`, `past + 0..sequence` and `0..past + sequence` for ids
/// `[batch, sequence]` and a past key `[batch, kv_heads, past, d]` (no past:
/// 0).
fn cached_ranges(
    b: &mut Builder,
    ids: Value,
    past_key: Option<Value>,
) -> Result<(Value, Value, Value), LowerError> {
    let range = sequence_range(b, ids)?;
    b.scoped("positions", |b| {
        let past = match past_key {
            Some(key) => {
                let shape = b.op(
                    Op::Shape {
                        start: 0,
                        end: None,
                    },
                    &[key],
                )?;
                let axis = b.scalar_i64(2);
                b.op(Op::Gather { axis: 0 }, &[shape, axis])?
            }
            None => b.scalar_i64(0),
        };
        let queries = b.add(range, past)?;
        let shape = b.op(
            Op::Shape {
                start: 0,
                end: None,
            },
            &[ids],
        )?;
        let axis = b.scalar_i64(1);
        let len = b.op(Op::Gather { axis: 0 }, &[shape, axis])?;
        let total = b.add(past, len)?;
        let start = b.scalar_i64(0);
        let step = b.scalar_i64(1);
        let keys = b.op(Op::Range, &[start, total, step])?;
        Ok((range, queries, keys))
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
