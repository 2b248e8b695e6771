//! Additive attention masks, built in f32 and added to f32 scores.
//!
//! A masked key gets `f32::MIN` (Hugging Face adds the dtype's minimum), an
//! allowed one 0. Padding and causal masks are combined with `Min`, not `Add`,
//! so a key masked twice stays at `f32::MIN` instead of overflowing to `-inf`;
//! a fully masked row then softmaxes to a uniform row, never to NaN.

use crate::ir::{DType, Op, Value};

use super::builder::Builder;
use super::LowerError;

/// The padding mask `(1 - attention_mask) · f32::MIN` as `[batch, 1, 1, keys]`
/// from an i64 `attention_mask` `[batch, keys]`.
pub fn padding(b: &mut Builder, mask: Value) -> Result<Value, LowerError> {
    b.scoped("padding_mask", |b| {
        let mask = b.cast(mask, DType::F32)?;
        let one = b.scalar_f32(1.0);
        let masked = b.sub(one, mask)?;
        let min = b.scalar_f32(f32::MIN);
        let bias = b.mul(masked, min)?;
        b.unsqueeze(bias, &[1, 2])
    })
}

/// The causal mask `[1, 1, queries, keys]`: `f32::MIN` where the key comes
/// after the query, from 1-D i64 query and key positions.
pub fn causal(b: &mut Builder, queries: Value, keys: Value) -> Result<Value, LowerError> {
    b.scoped("causal_mask", |b| {
        let q = b.unsqueeze(queries, &[1])?;
        let k = b.unsqueeze(keys, &[0])?;
        let future = b.op(Op::Greater, &[k, q])?;
        let min = b.scalar_f32(f32::MIN);
        let zero = b.scalar_f32(0.0);
        let bias = b.op(Op::Where, &[future, min, zero])?;
        b.unsqueeze(bias, &[0, 1])
    })
}

/// Combines two masks without overflow: the element-wise minimum.
pub fn combine(
    b: &mut Builder,
    a: Option<Value>,
    c: Option<Value>,
) -> Result<Option<Value>, LowerError> {
    match (a, c) {
        (Some(a), Some(c)) => Ok(Some(b.op(Op::Min, &[a, c])?)),
        (a, c) => Ok(a.or(c)),
    }
}
