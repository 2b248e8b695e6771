//! A linear projection `x · W (+ b)`, the building block of attention,
//! feed-forward networks and heads.
//!
//! Weights are stored `[in, out]` so the product needs no transpose; the
//! parameters are `{scope}.{name}.weight` and `{scope}.{name}.bias`.

use crate::ir::{Init, Value};

use super::builder::Builder;
use super::LowerError;

/// Shape and bias of one projection.
#[derive(Debug, Clone, Copy)]
pub struct Linear {
    /// Input width.
    pub input: u64,
    /// Output width.
    pub output: u64,
    /// Whether a bias is added.
    pub bias: bool,
}

impl Linear {
    /// A projection from `input` to `output` features.
    pub fn new(input: u64, output: u64, bias: bool) -> Linear {
        Linear {
            input,
            output,
            bias,
        }
    }

    /// Applies the projection named `name` (a scope under the current one) to
    /// the last axis of `x`.
    pub fn apply(self, b: &mut Builder, name: &str, x: Value) -> Result<Value, LowerError> {
        b.scoped(name, |b| {
            let w = b.matrix("weight", self.input, self.output);
            let y = b.matmul(x, w)?;
            if !self.bias {
                return Ok(y);
            }
            let bias = b.weight("bias", &[self.output], Init::Zeros);
            b.add(y, bias)
        })
    }
}
