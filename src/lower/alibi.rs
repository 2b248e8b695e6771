//! ALiBi (attention with linear biases, BLOOM): `slope[head] · key_position`
//! added to the attention scores.
//!
//! Slopes follow Hugging Face's `build_alibi_tensor`: for the closest power
//! of two `n ≤ heads`, `slope_k = (2^(-8/n))^k`, and the remaining heads take
//! the odd powers of `2^(-4/n)`. Key positions are
//! `(cumsum(attention_mask) - 1) · attention_mask`, so left padding does not
//! shift them; without a mask they are `0..keys`.

use crate::ir::{DType, Op, TensorData, Value};

use super::builder::Builder;
use super::LowerError;

/// The per-head slopes.
pub fn slopes(heads: u64) -> Vec<f32> {
    let closest = 1u64 << (63 - heads.leading_zeros());
    let base_of = |n: u64| 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0))));
    let base = base_of(closest);
    let mut slopes: Vec<f32> = (1..=closest).map(|k| base.powi(k as i32) as f32).collect();
    if closest != heads {
        let extra = base_of(2 * closest);
        let remaining = closest.min(heads - closest);
        slopes.extend((0..remaining).map(|k| extra.powi((2 * k + 1) as i32) as f32));
    }
    slopes
}

/// The bias `[batch | 1, heads…, 1, keys]` in f32, where `heads…` is
/// `heads_shape` (`[heads]`, or `[kv_heads, groups]` for grouped scores).
///
/// `mask` is the i64 attention mask `[batch, keys]`; `range` is `0..keys`.
pub fn bias(
    b: &mut Builder,
    heads_shape: &[u64],
    mask: Option<Value>,
    range: Value,
) -> Result<Value, LowerError> {
    b.scoped("alibi", |b| {
        let positions = match mask {
            Some(mask) => {
                let sum = b.op(Op::CumSum { axis: -1 }, &[mask])?;
                let one = b.scalar_i64(1);
                let shifted = b.sub(sum, one)?;
                b.mul(shifted, mask)?
            }
            None => b.unsqueeze(range, &[0])?,
        };
        let positions = b.cast(positions, DType::F32)?;
        // [batch, keys] → [batch, 1…, 1, keys]: one axis per head axis, one for queries.
        let axes: Vec<i64> = (1..=heads_shape.len() as i64 + 1).collect();
        let positions = b.unsqueeze(positions, &axes)?;

        let heads: u64 = heads_shape.iter().product();
        let mut shape = heads_shape.to_vec();
        shape.extend([1, 1]);
        let slopes = b
            .graph
            .constant("slopes", TensorData::f32(shape, &slopes(heads)));
        b.mul(positions, slopes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_match_bloom() {
        let eight = slopes(8);
        assert_eq!(eight[0], 0.5);
        assert_eq!(eight[7], 1.0 / 256.0);
        // Six heads: four from 2^(-2), then odd powers of 2^(-1).
        let six = slopes(6);
        assert_eq!(six, vec![0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);
    }
}
