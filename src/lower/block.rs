//! A stack of transformer layers and the layer itself.
//!
//! A stack embeds its ids, builds what every layer shares once (the
//! attention bias from padding, causality, ALiBi or relative positions; the
//! rotary tables; the cross-attention mask), runs its layers and applies its
//! final norm. A layer chains residual sub-blocks — self-attention,
//! cross-attention (decoder of an encoder–decoder), feed-forward — each
//! `x + f(norm(x))` (pre-norm) or `norm(x + f(x))` (post-norm); a parallel
//! residual layer computes `x + attn(norm₁(x)) + ffn(norm₂(x))`.

use crate::ir::Value;
use crate::model::{Model, NormPosition, Position, Stack};

use super::alibi;
use super::attention::{attention, heads_shape, AttentionContext};
use super::builder::Builder;
use super::embeddings::{embed, EmbeddingTables};
use super::feed_forward::feed_forward;
use super::inputs::StackInputs;
use super::mask;
use super::norm::norm;
use super::relative_bias::{self, Buckets};
use super::rotary;
use super::LowerError;

/// The encoder output a decoder attends to.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Encoder hidden states `[batch, sequence, hidden]`.
    pub hidden: Value,
    /// The encoder's i64 attention mask `[batch, sequence]`, if given.
    pub mask: Option<Value>,
}

/// What every layer of a stack shares.
#[derive(Debug, Clone, Copy)]
struct Shared {
    self_attention: AttentionContext,
    cross_attention: AttentionContext,
    memory: Option<Value>,
}

/// Lowers `stack` in scope `tables.stack_name`; `causal` masks future keys.
/// Returns the stack output `[batch, sequence, hidden]`.
pub fn stack(
    b: &mut Builder,
    model: &Model,
    stack: &Stack,
    causal: bool,
    inputs: &StackInputs,
    tables: EmbeddingTables,
    memory: Option<Memory>,
) -> Result<Value, LowerError> {
    check(stack, memory.is_some())?;
    b.graph.set_span(Some(stack.span));
    b.scoped(tables.stack_name, |b| {
        let mut x = embed(b, model, stack, inputs, tables)?;
        let shared = shared(b, stack, causal, inputs, memory)?;
        for i in 0..stack.layers {
            x = b.scoped(format!("layers.{i}"), |b| {
                layer(b, model, stack, &shared, x)
            })?;
        }
        match &stack.final_norm {
            Some(n) => norm(b, "final_norm", n, model.hidden_size, x),
            None => Ok(x),
        }
    })
}

/// Rejects combinations lowering has no meaning for.
fn check(stack: &Stack, has_memory: bool) -> Result<(), LowerError> {
    let unsupported = |what: &str| {
        Err(LowerError::Unsupported {
            what: what.to_string(),
            span: stack.span,
        })
    };
    if stack.cross_attention.is_some() && !has_memory {
        return unsupported("cross-attention in a stack with no encoder to attend to");
    }
    if stack.parallel_residual && stack.cross_attention.is_some() {
        return unsupported("parallel residual together with cross-attention");
    }
    if stack.parallel_residual && stack.norm_position == NormPosition::Post {
        return unsupported("parallel residual with post-norm");
    }
    if let Position::RelativeBias {
        num_buckets,
        max_distance,
    } = stack.position
    {
        // Bidirectional stacks give num_buckets / 4 buckets to exact distances
        // and need a positive log range beyond causal stacks' num_buckets / 2.
        if num_buckets < 4 || max_distance <= num_buckets / 2 {
            return unsupported(
                "relative position bias with fewer than 4 buckets or a max_distance \
                 of at most half the buckets",
            );
        }
    }
    Ok(())
}

/// Builds the biases and tables shared by the stack's layers.
fn shared(
    b: &mut Builder,
    stack: &Stack,
    causal: bool,
    inputs: &StackInputs,
    memory: Option<Memory>,
) -> Result<Shared, LowerError> {
    let heads = heads_shape(&stack.attention);

    // Padding and causal masks, [batch | 1, 1, queries | 1, keys].
    let padding = inputs.mask.map(|m| mask::padding(b, m)).transpose()?;
    let future = if causal {
        Some(mask::causal(b, inputs.range, inputs.range)?)
    } else {
        None
    };
    let mut bias = mask::combine(b, padding, future)?;
    if heads.len() > 1 {
        bias = bias.map(|m| b.unsqueeze(m, &[1])).transpose()?;
    }

    // Position biases in the score layout.
    let position = match stack.position {
        Position::Alibi => Some(alibi::bias(b, &heads, inputs.mask, inputs.range)?),
        Position::RelativeBias {
            num_buckets,
            max_distance,
        } => {
            let buckets = Buckets {
                num_buckets,
                max_distance,
                bidirectional: !causal,
            };
            let (q, k) = (inputs.range, inputs.range);
            Some(relative_bias::bias(b, buckets, &heads, q, k)?)
        }
        _ => None,
    };
    let bias = match (bias, position) {
        (Some(m), Some(p)) => Some(b.add(p, m)?),
        (m, p) => m.or(p),
    };

    let rotary = match &stack.position {
        Position::Rotary(r) => Some(rotary::tables(b, r, inputs.positions)?),
        _ => None,
    };

    // Cross-attention sees every non-padding encoder position.
    let mut cross_bias = None;
    if let (Some(cross), Some(memory)) = (&stack.cross_attention, memory) {
        let mut m = memory.mask.map(|m| mask::padding(b, m)).transpose()?;
        if heads_shape(cross).len() > 1 {
            m = m.map(|m| b.unsqueeze(m, &[1])).transpose()?;
        }
        cross_bias = m;
    }

    Ok(Shared {
        self_attention: AttentionContext { bias, rotary },
        cross_attention: AttentionContext {
            bias: cross_bias,
            rotary: None,
        },
        memory: memory.map(|m| m.hidden),
    })
}

/// One layer.
fn layer(
    b: &mut Builder,
    model: &Model,
    stack: &Stack,
    shared: &Shared,
    x: Value,
) -> Result<Value, LowerError> {
    let hidden = model.hidden_size;
    let self_cfg = &stack.attention;
    let self_ctx = &shared.self_attention;

    if stack.parallel_residual {
        let a = norm(b, "attention_norm", &stack.norm, hidden, x)?;
        let a = attention(b, "attention", self_cfg, hidden, a, None, self_ctx)?;
        let f = norm(b, "feed_forward_norm", &stack.norm, hidden, x)?;
        let f = feed_forward(b, &stack.feed_forward, hidden, f)?;
        let branches = b.add(a, f)?;
        return b.add(x, branches);
    }

    let mut h = residual(b, stack, hidden, "attention_norm", x, |b, y| {
        attention(b, "attention", self_cfg, hidden, y, None, self_ctx)
    })?;
    if let (Some(cross), Some(memory)) = (&stack.cross_attention, shared.memory) {
        let ctx = &shared.cross_attention;
        h = residual(b, stack, hidden, "cross_attention_norm", h, |b, y| {
            attention(b, "cross_attention", cross, hidden, y, Some(memory), ctx)
        })?;
    }
    residual(b, stack, hidden, "feed_forward_norm", h, |b, y| {
        feed_forward(b, &stack.feed_forward, hidden, y)
    })
}

/// One residual sub-block with its norm `norm_name` before or after.
fn residual(
    b: &mut Builder,
    stack: &Stack,
    hidden: u64,
    norm_name: &str,
    x: Value,
    f: impl FnOnce(&mut Builder, Value) -> Result<Value, LowerError>,
) -> Result<Value, LowerError> {
    match stack.norm_position {
        NormPosition::Pre => {
            let y = norm(b, norm_name, &stack.norm, hidden, x)?;
            let y = f(b, y)?;
            b.add(x, y)
        }
        NormPosition::Post => {
            let y = f(b, x)?;
            let sum = b.add(x, y)?;
            norm(b, norm_name, &stack.norm, hidden, sum)
        }
    }
}
