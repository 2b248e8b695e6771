//! LayerNorm and RMSNorm over the last axis.
//!
//! Both compute in f32 whatever the activation type (fp16 variances overflow
//! in deep stacks). LayerNorm is the IR's fused op with `weight` and `bias`;
//! RMSNorm is decomposed as Hugging Face's T5/LLaMA code does it:
//! `x · 1/√(mean(x²) + eps)` in f32, cast back, times `weight`.

use crate::ir::{Init, Op, Value};
use crate::model::{Norm, NormKind};

use super::builder::Builder;
use super::LowerError;

/// Applies `norm` named `name` (a scope under the current one) to `x`, whose
/// last axis has `width` features.
pub fn norm(
    b: &mut Builder,
    name: &str,
    norm: &Norm,
    width: u64,
    x: Value,
) -> Result<Value, LowerError> {
    b.scoped(name, |b| match norm.kind {
        NormKind::LayerNorm => layer_norm(b, norm.eps, width, x),
        NormKind::RmsNorm => rms_norm(b, norm.eps, width, x),
    })
}

fn layer_norm(b: &mut Builder, eps: f64, width: u64, x: Value) -> Result<Value, LowerError> {
    let weight = b.weight("weight", &[width], Init::Ones);
    let bias = b.weight("bias", &[width], Init::Zeros);
    let x = b.widen(x)?;
    let weight = b.widen(weight)?;
    let bias = b.widen(bias)?;
    let eps = eps as f32;
    let y = b.op(Op::LayerNorm { eps }, &[x, weight, bias])?;
    b.narrow(y)
}

fn rms_norm(b: &mut Builder, eps: f64, width: u64, x: Value) -> Result<Value, LowerError> {
    let weight = b.weight("weight", &[width], Init::Ones);
    let x = b.widen(x)?;

    // 1/√(mean(x²) + eps), in f32.
    let square = b.mul(x, x)?;
    let mean = b.op(
        Op::ReduceMean {
            axes: vec![-1],
            keepdims: true,
        },
        &[square],
    )?;
    let eps = b.scalar_f32(eps as f32);
    let shifted = b.add(mean, eps)?;
    let root = b.op(Op::Sqrt, &[shifted])?;
    let inverse = b.op(Op::Reciprocal, &[root])?;

    let normed = b.mul(x, inverse)?;
    let normed = b.narrow(normed)?;
    b.mul(normed, weight)
}
