//! The embedding block of one stack: token lookup, optional scale, absolute
//! positions (learned or sinusoidal), segment embeddings, embedding norm.
//!
//! Sums in Hugging Face's order: `token · scale + segment + position`, then
//! the stack's `embedding_norm`. Rotary, ALiBi and relative positions act in
//! attention instead and add nothing here.

use crate::ir::{Op, TensorData, Value};
use crate::model::{Model, Position, Stack};

use super::builder::Builder;
use super::inputs::StackInputs;
use super::norm::norm;
use super::sinusoidal;
use super::LowerError;

/// Where the stack's parameters live.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingTables {
    /// The token embedding matrix `[vocab, hidden]`.
    pub word: Value,
    /// Whether the model has a single stack: its learned position table is
    /// `embeddings.position_embeddings`, otherwise `{stack}.embed_positions`.
    pub single_stack: bool,
    /// Whether this stack adds segment (token type) embeddings.
    pub segments: bool,
    /// The stack's scope name (`encoder` or `decoder`).
    pub stack_name: &'static str,
}

/// Embeds the stack's input ids, returning `[batch, sequence, hidden]`.
///
/// Runs inside the stack's scope (parameters named `{stack}.…`).
pub fn embed(
    b: &mut Builder,
    model: &Model,
    stack: &Stack,
    inputs: &StackInputs,
    tables: EmbeddingTables,
) -> Result<Value, LowerError> {
    let hidden = model.hidden_size;
    b.scoped("embeddings", |b| {
        let mut x = b.op(Op::Gather { axis: 0 }, &[tables.word, inputs.ids])?;
        if let Some(scale) = model.embeddings.scale {
            let scale = b.scalar(scale);
            x = b.mul(x, scale)?;
        }

        if let (true, Some(types)) = (tables.segments, model.embeddings.type_vocab_size) {
            let table = b.at_root("embeddings", |b| {
                Ok(b.matrix("token_type_embeddings.weight", types, hidden))
            })?;
            // Without a token_type_ids input every token is segment 0.
            let ids = match inputs.token_types {
                Some(ids) => ids,
                None => b.scalar_i64(0),
            };
            let segment = b.op(Op::Gather { axis: 0 }, &[table, ids])?;
            x = b.add(x, segment)?;
        }

        if let Some(position) = absolute_position(b, model, stack, inputs, tables)? {
            x = b.add(x, position)?;
        }
        Ok(x)
    })
    .and_then(|x| match &stack.embedding_norm {
        Some(n) => norm(b, "embedding_norm", n, hidden, x),
        None => Ok(x),
    })
}

/// The learned or sinusoidal position embedding `[batch | 1, sequence, hidden]`,
/// or `None` when positions enter elsewhere.
fn absolute_position(
    b: &mut Builder,
    model: &Model,
    stack: &Stack,
    inputs: &StackInputs,
    tables: EmbeddingTables,
) -> Result<Option<Value>, LowerError> {
    let hidden = model.hidden_size;
    match stack.position {
        Position::Learned {
            max_position_embeddings: rows,
            offset,
        } => {
            let table = if tables.single_stack {
                b.at_root("embeddings", |b| {
                    Ok(b.matrix("position_embeddings.weight", rows, hidden))
                })?
            } else {
                b.at_root(tables.stack_name, |b| {
                    Ok(b.matrix("embed_positions.weight", rows, hidden))
                })?
            };
            let mut ids = inputs.positions;
            if offset != 0 {
                let offset = b.scalar_i64(offset as i64);
                ids = b.add(ids, offset)?;
            }
            Ok(Some(b.op(Op::Gather { axis: 0 }, &[table, ids])?))
        }
        Position::Sinusoidal {
            max_position_embeddings: rows,
            layout,
        } => {
            let values = sinusoidal::table(rows, hidden, layout);
            let data = TensorData::float(b.float, vec![rows, hidden], &values);
            let table = b.graph.constant("sinusoidal_table", data);
            Ok(Some(
                b.op(Op::Gather { axis: 0 }, &[table, inputs.positions])?,
            ))
        }
        Position::None | Position::Rotary(_) | Position::Alibi | Position::RelativeBias { .. } => {
            Ok(None)
        }
    }
}
