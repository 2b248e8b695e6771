//! Rotary position embedding (RoPE) of queries and keys.
//!
//! `inv_freq[i] = 1 / θ^(2i/dim)` for `i < dim/2`, computed in f32 as Hugging
//! Face does; the angles are `position_ids ⊗ inv_freq`, and their cosines and
//! sines are built once per stack and shared by its layers. Each head
//! `[batch, sequence, heads, head_dim]` rotates its first `dim` dimensions and
//! passes the rest through (partial rotary, GPT-NeoX and Phi):
//!
//! - rotate-half (LLaMA, NeoX): `x·cos + rotate_half(x)·sin` with
//!   `rotate_half(x) = concat(-x₂, x₁)` and `cos = cos(concat(angles, angles))`;
//! - interleaved (GPT-J): the pairs `(2i, 2i+1)` rotate by angle `i`, written
//!   on a `[.., dim/2, 2]` view of the head.

use crate::ir::{DType, Op, ReshapeDim, TensorData, Value};
use crate::model::{Rotary, RotaryLayout};

use super::builder::Builder;
use super::LowerError;

/// A stack's rotary tables.
#[derive(Debug, Clone, Copy)]
pub struct RotaryTables {
    /// Cosines, `[batch | 1, sequence, 1, dim]` (rotate-half) or
    /// `[batch | 1, sequence, 1, dim/2, 1]` (interleaved), activation type.
    pub cos: Value,
    /// Sines, shaped like `cos`.
    pub sin: Value,
    /// Number of rotated dimensions per head.
    pub dim: u64,
    /// Pairing of rotated dimensions.
    pub layout: RotaryLayout,
}

/// The inverse frequencies `1 / θ^(2i/dim)`, in f32 arithmetic.
pub fn inverse_frequencies(theta: f64, dim: u64) -> Vec<f32> {
    let base = theta as f32;
    (0..dim / 2)
        .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
        .collect()
}

/// Builds the cosine and sine tables from i64 position ids `[batch | 1, sequence]`.
pub fn tables(
    b: &mut Builder,
    rotary: &Rotary,
    positions: Value,
) -> Result<RotaryTables, LowerError> {
    b.scoped("rotary", |b| {
        let freqs = inverse_frequencies(rotary.theta, rotary.dim);
        let data = TensorData::f32(vec![rotary.dim / 2], &freqs);
        let inv_freq = b.graph.constant("inv_freq", data);

        let positions = b.cast(positions, DType::F32)?;
        let positions = b.unsqueeze(positions, &[-1])?;
        let angles = b.mul(positions, inv_freq)?;

        let (angles, axes): (Value, &[i64]) = match rotary.layout {
            RotaryLayout::RotateHalf => {
                let both = b.op(Op::Concat { axis: -1 }, &[angles, angles])?;
                (both, &[2])
            }
            RotaryLayout::Interleaved => (angles, &[2, 4]),
        };
        let cos = b.op(Op::Cos, &[angles])?;
        let sin = b.op(Op::Sin, &[angles])?;
        let cos = b.narrow(cos)?;
        let sin = b.narrow(sin)?;
        Ok(RotaryTables {
            cos: b.unsqueeze(cos, axes)?,
            sin: b.unsqueeze(sin, axes)?,
            dim: rotary.dim,
            layout: rotary.layout,
        })
    })
}

/// Rotates `x` `[batch, sequence, heads, head_dim]`.
pub fn apply(
    b: &mut Builder,
    t: &RotaryTables,
    x: Value,
    head_dim: u64,
) -> Result<Value, LowerError> {
    let dim = t.dim as i64;
    let partial = t.dim < head_dim;
    let rotated = if partial { b.slice(x, -1, 0, dim)? } else { x };

    let out = match t.layout {
        RotaryLayout::RotateHalf => {
            let half = dim / 2;
            let x1 = b.slice(rotated, -1, 0, half)?;
            let x2 = b.slice(rotated, -1, half, dim)?;
            let neg = b.op(Op::Neg, &[x2])?;
            let turned = b.op(Op::Concat { axis: -1 }, &[neg, x1])?;
            rotate(b, t, rotated, turned)?
        }
        RotaryLayout::Interleaved => {
            use ReshapeDim::{Copy, Fixed};
            let pairs_shape = vec![Copy, Copy, Copy, Fixed(dim / 2), Fixed(2)];
            let pairs = b.op(Op::Reshape { shape: pairs_shape }, &[rotated])?;
            let x1 = b.slice(pairs, -1, 0, 1)?;
            let x2 = b.slice(pairs, -1, 1, 2)?;
            let neg = b.op(Op::Neg, &[x2])?;
            let turned = b.op(Op::Concat { axis: -1 }, &[neg, x1])?;
            let out = rotate(b, t, pairs, turned)?;
            let flat = vec![Copy, Copy, Copy, Fixed(dim)];
            b.op(Op::Reshape { shape: flat }, &[out])?
        }
    };

    if partial {
        let pass = b.slice(x, -1, dim, i64::MAX)?;
        b.op(Op::Concat { axis: -1 }, &[out, pass])
    } else {
        Ok(out)
    }
}

/// `x·cos + turned·sin`.
fn rotate(b: &mut Builder, t: &RotaryTables, x: Value, turned: Value) -> Result<Value, LowerError> {
    let a = b.mul(x, t.cos)?;
    let c = b.mul(turned, t.sin)?;
    b.add(a, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_follow_theta() {
        let f = inverse_frequencies(10000.0, 4);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], 1.0);
        assert!((f[1] - 0.01).abs() < 1e-9);
    }
}
