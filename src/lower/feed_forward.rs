//! The position-wise feed-forward network and its activations.
//!
//! Plain: `down(act(up(x)))`. Gated (SwiGLU, GeGLU): `down(act(gate(x)) · up(x))`.
//! Parameters: `feed_forward.{up_proj,gate_proj,down_proj}.{weight,bias}`.
//! Activations are written out with elementary ops, exactly as Hugging Face
//! defines them: GELU with erf, the tanh approximation, SiLU as `x·σ(x)`.

use crate::ir::{Op, Value};
use crate::model::{Activation, FeedForward};

use super::builder::Builder;
use super::linear::Linear;
use super::LowerError;

/// Applies the feed-forward network `ffn` to `x` `[.., hidden]`.
pub fn feed_forward(
    b: &mut Builder,
    ffn: &FeedForward,
    hidden: u64,
    x: Value,
) -> Result<Value, LowerError> {
    let inner = ffn.intermediate_size;
    let up = Linear::new(hidden, inner, ffn.bias);
    let down = Linear::new(inner, hidden, ffn.bias);
    b.scoped("feed_forward", |b| {
        let activated = if ffn.activation.is_gated() {
            let gate = up.apply(b, "gate_proj", x)?;
            let gate = activation(b, ffn.activation, gate)?;
            let up = up.apply(b, "up_proj", x)?;
            b.mul(gate, up)?
        } else {
            let up = up.apply(b, "up_proj", x)?;
            activation(b, ffn.activation, up)?
        };
        down.apply(b, "down_proj", activated)
    })
}

/// Applies an activation; a gated one applies its gate function.
pub fn activation(b: &mut Builder, act: Activation, x: Value) -> Result<Value, LowerError> {
    match act {
        Activation::Relu => b.op(Op::Relu, &[x]),
        Activation::Gelu | Activation::GeGlu => gelu(b, x),
        Activation::GeluTanh => gelu_tanh(b, x),
        Activation::Silu | Activation::SwiGlu => {
            let sigmoid = b.op(Op::Sigmoid, &[x])?;
            b.mul(x, sigmoid)
        }
    }
}

/// `x · 0.5 · (1 + erf(x / √2))`.
fn gelu(b: &mut Builder, x: Value) -> Result<Value, LowerError> {
    let sqrt2 = b.scalar(std::f64::consts::SQRT_2);
    let scaled = b.div(x, sqrt2)?;
    let erf = b.op(Op::Erf, &[scaled])?;
    let one = b.scalar(1.0);
    let shifted = b.add(erf, one)?;
    let half = b.scalar(0.5);
    let half_x = b.mul(x, half)?;
    b.mul(half_x, shifted)
}

/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
fn gelu_tanh(b: &mut Builder, x: Value) -> Result<Value, LowerError> {
    let square = b.mul(x, x)?;
    let cube = b.mul(square, x)?;
    let coefficient = b.scalar(0.044715);
    let cubic = b.mul(cube, coefficient)?;
    let inner = b.add(x, cubic)?;
    let factor = b.scalar((2.0 / std::f64::consts::PI).sqrt());
    let inner = b.mul(inner, factor)?;
    let tanh = b.op(Op::Tanh, &[inner])?;
    let one = b.scalar(1.0);
    let shifted = b.add(tanh, one)?;
    let half = b.scalar(0.5);
    let half_x = b.mul(x, half)?;
    b.mul(half_x, shifted)
}
