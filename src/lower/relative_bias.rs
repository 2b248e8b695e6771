//! T5's bucketed relative position bias.
//!
//! The relative position `key - query` falls into one of `num_buckets`
//! buckets (Hugging Face's `_relative_position_bucket`): bidirectional stacks
//! give each direction half the buckets; causal stacks only look back. Small
//! distances get one bucket each, larger ones share logarithmically sized
//! buckets up to `max_distance`. The table `{stack}.relative_attention_bias.weight`
//! `[num_buckets, heads]` is gathered at the buckets once per stack, and every
//! layer adds the same bias `[1, heads…, queries, keys]` to its scores.

use crate::ir::{DType, Op, ReshapeDim, Value};

use super::builder::Builder;
use super::LowerError;

/// Bucketing parameters.
#[derive(Debug, Clone, Copy)]
pub struct Buckets {
    /// Number of buckets.
    pub num_buckets: u64,
    /// Largest distance with its own logarithmic bucket.
    pub max_distance: u64,
    /// Whether keys after the query get their own buckets (encoder).
    pub bidirectional: bool,
}

impl Buckets {
    /// Buckets per direction and the number of exact (one per distance) buckets.
    pub fn split(self) -> (i64, i64) {
        let per_direction = if self.bidirectional {
            self.num_buckets / 2
        } else {
            self.num_buckets
        } as i64;
        (per_direction, per_direction / 2)
    }
}

/// The bias `[1, heads…, queries, keys]` in f32 from 1-D i64 query and key
/// positions; `heads_shape` is `[heads]` or `[kv_heads, groups]`.
pub fn bias(
    b: &mut Builder,
    buckets: Buckets,
    heads_shape: &[u64],
    queries: Value,
    keys: Value,
) -> Result<Value, LowerError> {
    let heads: u64 = heads_shape.iter().product();
    let table = b.matrix("relative_attention_bias.weight", buckets.num_buckets, heads);
    b.scoped("relative_attention_bias", |b| {
        let q = b.unsqueeze(queries, &[1])?;
        let k = b.unsqueeze(keys, &[0])?;
        let relative = b.sub(k, q)?;
        let index = bucket(b, buckets, relative)?;

        // [buckets, heads] → [buckets, heads…] so the gather yields the score layout.
        let table = if heads_shape.len() > 1 {
            let shape = std::iter::once(buckets.num_buckets)
                .chain(heads_shape.iter().copied())
                .map(|d| ReshapeDim::Fixed(d as i64))
                .collect();
            b.op(Op::Reshape { shape }, &[table])?
        } else {
            table
        };
        let values = b.op(Op::Gather { axis: 0 }, &[table, index])?;
        let n = heads_shape.len() as i64;
        let perm: Vec<i64> = (2..2 + n).chain([0, 1]).collect();
        let values = b.transpose(values, &perm)?;
        let values = b.unsqueeze(values, &[0])?;
        b.cast(values, DType::F32)
    })
}

/// The bucket index of each relative position (i64 in, i64 out).
fn bucket(b: &mut Builder, buckets: Buckets, relative: Value) -> Result<Value, LowerError> {
    let (per_direction, max_exact) = buckets.split();
    let zero = b.scalar_i64(0);

    // Direction: keys after the query use the upper half of the buckets.
    let (offset, distance) = if buckets.bidirectional {
        let after = b.op(Op::Greater, &[relative, zero])?;
        let after = b.cast(after, DType::I64)?;
        let half = b.scalar_i64(per_direction);
        let offset = b.mul(after, half)?;
        (Some(offset), b.op(Op::Abs, &[relative])?)
    } else {
        let back = b.op(Op::Min, &[relative, zero])?;
        (None, b.op(Op::Neg, &[back])?)
    };

    // Large distances: max_exact + ⌊log(d / max_exact) / log(max_distance / max_exact)
    // · (per_direction - max_exact)⌋, capped at per_direction - 1. The distance is
    // clamped to max_exact first so the log never sees 0; those lanes are
    // discarded by the Where below.
    let exact = b.scalar_i64(max_exact);
    let small = b.op(Op::Less, &[distance, exact])?;
    let clamped = b.op(Op::Max, &[distance, exact])?;
    let clamped = b.cast(clamped, DType::F32)?;
    let exact_f = b.scalar_f32(max_exact as f32);
    let ratio = b.div(clamped, exact_f)?;
    let log = b.op(Op::Log, &[ratio])?;
    let range = (buckets.max_distance as f64 / max_exact as f64).ln();
    let range = b.scalar_f32(range as f32);
    let log = b.div(log, range)?;
    let width = b.scalar_f32((per_direction - max_exact) as f32);
    let scaled = b.mul(log, width)?;
    let scaled = b.cast(scaled, DType::I64)?;
    let large = b.add(exact, scaled)?;
    let last = b.scalar_i64(per_direction - 1);
    let large = b.op(Op::Min, &[large, last])?;

    let index = b.op(Op::Where, &[small, distance, large])?;
    match offset {
        Some(offset) => b.add(offset, index),
        None => Ok(index),
    }
}
