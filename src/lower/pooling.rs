//! Pooling a sequence of hidden states `[batch, sequence, hidden]` into one
//! vector per sequence `[batch, hidden]`, as sentence-transformers and
//! Hugging Face's classifiers do.
//!
//! Pooling computes in f32. Without an attention mask every token counts as
//! real.

use crate::ir::{DType, Op, Value};
use crate::model::Pooling;

use super::builder::Builder;
use super::LowerError;

/// Pools `hidden` with the optional i64 `mask` `[batch, sequence]`; `range` is
/// `0..sequence`. Returns `[batch, hidden]` in the activation type.
pub fn pool(
    b: &mut Builder,
    pooling: Pooling,
    hidden: Value,
    mask: Option<Value>,
    range: Value,
) -> Result<Value, LowerError> {
    b.scoped("pooling", |b| {
        let h = b.widen(hidden)?;
        let pooled = match (pooling, mask) {
            (Pooling::Cls, _) => first(b, h)?,
            (Pooling::Mean, Some(mask)) => masked_mean(b, h, mask)?,
            (Pooling::Mean, None) => b.op(reduce_over_sequence(Reduce::Mean), &[h])?,
            (Pooling::Last, Some(mask)) => last_real(b, h, mask, range)?,
            (Pooling::Last, None) => {
                let last = b.scalar_i64(-1);
                b.op(Op::Gather { axis: 1 }, &[h, last])?
            }
            (Pooling::Max, Some(mask)) => masked_max(b, h, mask)?,
            (Pooling::Max, None) => b.op(reduce_over_sequence(Reduce::Max), &[h])?,
        };
        b.narrow(pooled)
    })
}

/// `x / max(‖x‖₂, 1e-12)` over the last axis (PyTorch's `F.normalize`), in f32.
pub fn l2_normalize(b: &mut Builder, x: Value) -> Result<Value, LowerError> {
    b.scoped("normalize", |b| {
        let x = b.widen(x)?;
        let square = b.mul(x, x)?;
        let sum = b.op(
            Op::ReduceSum {
                axes: vec![-1],
                keepdims: true,
            },
            &[square],
        )?;
        let length = b.op(Op::Sqrt, &[sum])?;
        let eps = b.scalar_f32(1e-12);
        let length = b.op(Op::Max, &[length, eps])?;
        let unit = b.div(x, length)?;
        b.narrow(unit)
    })
}

enum Reduce {
    Sum,
    Mean,
    Max,
}

/// A reduction over axis 1 without keeping it.
fn reduce_over_sequence(kind: Reduce) -> Op {
    let (axes, keepdims) = (vec![1], false);
    match kind {
        Reduce::Sum => Op::ReduceSum { axes, keepdims },
        Reduce::Mean => Op::ReduceMean { axes, keepdims },
        Reduce::Max => Op::ReduceMax { axes, keepdims },
    }
}

/// The first token (BERT's `[CLS]`).
fn first(b: &mut Builder, h: Value) -> Result<Value, LowerError> {
    let zero = b.scalar_i64(0);
    b.op(Op::Gather { axis: 1 }, &[h, zero])
}

/// `Σ h·mask / max(Σ mask, 1e-9)` over the sequence.
fn masked_mean(b: &mut Builder, h: Value, mask: Value) -> Result<Value, LowerError> {
    let weights = b.cast(mask, DType::F32)?;
    let weights = b.unsqueeze(weights, &[-1])?;
    let masked = b.mul(h, weights)?;
    let sum = b.op(reduce_over_sequence(Reduce::Sum), &[masked])?;
    let count = b.op(reduce_over_sequence(Reduce::Sum), &[weights])?;
    let eps = b.scalar_f32(1e-9);
    let count = b.op(Op::Max, &[count, eps])?;
    b.div(sum, count)
}

/// The hidden state of the last real token, at `Σ mask - 1`, selected with a
/// one-hot weight over the sequence.
fn last_real(b: &mut Builder, h: Value, mask: Value, range: Value) -> Result<Value, LowerError> {
    let count = b.op(
        Op::ReduceSum {
            axes: vec![1],
            keepdims: true,
        },
        &[mask],
    )?;
    let one = b.scalar_i64(1);
    let index = b.sub(count, one)?;
    let hit = b.op(Op::Equal, &[range, index])?;
    let weights = b.cast(hit, DType::F32)?;
    let weights = b.unsqueeze(weights, &[-1])?;
    let selected = b.mul(h, weights)?;
    b.op(reduce_over_sequence(Reduce::Sum), &[selected])
}

/// The element-wise maximum over real tokens; padding is replaced by -1e9
/// first, as sentence-transformers does.
fn masked_max(b: &mut Builder, h: Value, mask: Value) -> Result<Value, LowerError> {
    let zero = b.scalar_i64(0);
    let padding = b.op(Op::Equal, &[mask, zero])?;
    let padding = b.unsqueeze(padding, &[-1])?;
    let low = b.scalar_f32(-1e9);
    let filled = b.op(Op::Where, &[padding, low, h])?;
    b.op(reduce_over_sequence(Reduce::Max), &[filled])
}
