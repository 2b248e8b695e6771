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
use super::attention::{attention, cached_attention, heads_shape, AttentionContext, CachedKv};
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

/// The key/value cache of a stack in a cached graph.
#[derive(Debug, Clone, Default)]
pub struct StackCache {
    /// Past self-attention keys and values per layer, `[batch, kv_heads, past, d]`.
    pub past: Vec<(Value, Value)>,
    /// Cross-attention keys and values per layer, computed from the encoder
    /// output by the encoder graph; empty without cross-attention.
    pub cross: Vec<(Value, Value)>,
    /// The encoder's i64 attention mask `[batch, sequence]` for cross-attention.
    pub cross_mask: Option<Value>,
}

/// A cached stack's output and its layers' present keys and values.
#[derive(Debug, Clone)]
pub struct CachedStack {
    /// Stack output `[batch, sequence, hidden]`.
    pub hidden: Value,
    /// Present `(key, value)` per layer, `[batch, kv_heads, past + sequence, d]`.
    pub present: Vec<(Value, Value)>,
}

/// Where the cross-attention of a decoder reads the encoder.
#[derive(Debug, Clone, Copy)]
enum Encoder {
    /// Encoder hidden states, projected in every layer.
    Hidden(Value),
    /// Keys and values per layer, given by the cache.
    Cached,
}

/// What every layer of a stack shares.
#[derive(Debug, Clone, Copy)]
struct Shared {
    self_attention: AttentionContext,
    cross_attention: AttentionContext,
    encoder: Option<Encoder>,
}

/// One layer's cache entries.
#[derive(Debug, Clone, Copy)]
struct LayerCache {
    past: (Value, Value),
    cross: Option<(Value, Value)>,
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
    let encoder = memory.map(|m| Encoder::Hidden(m.hidden));
    let cross_mask = memory.and_then(|m| m.mask);
    let ends = EncoderEnds {
        encoder,
        cross_mask,
    };
    let (hidden, _) = run(b, model, stack, causal, inputs, tables, ends, None)?;
    Ok(hidden)
}

/// Lowers `stack` like [`stack`] with a key/value cache: each layer's
/// self-attention appends to `cache.past`, cross-attention reads
/// `cache.cross`. Queries and keys are placed by `inputs.queries` and
/// `inputs.keys`; `inputs.mask`, when given, covers every key.
pub fn cached_stack(
    b: &mut Builder,
    model: &Model,
    stack: &Stack,
    causal: bool,
    inputs: &StackInputs,
    tables: EmbeddingTables,
    cache: &StackCache,
) -> Result<CachedStack, LowerError> {
    let layers = stack.layers as usize;
    let has_cross = !cache.cross.is_empty();
    check(stack, has_cross)?;
    if cache.past.len() != layers || (has_cross && cache.cross.len() != layers) {
        return Err(LowerError::Ir(crate::ir::IrError::Invalid {
            node: tables.stack_name.to_string(),
            reason: format!(
                "a cache of {} past and {} cross-attention entries for {layers} layers",
                cache.past.len(),
                cache.cross.len()
            ),
        }));
    }
    let ends = EncoderEnds {
        encoder: has_cross.then_some(Encoder::Cached),
        cross_mask: cache.cross_mask,
    };
    let (hidden, present) = run(b, model, stack, causal, inputs, tables, ends, Some(cache))?;
    Ok(CachedStack { hidden, present })
}

/// The encoder side of a decoder's cross-attention.
#[derive(Debug, Clone, Copy)]
struct EncoderEnds {
    encoder: Option<Encoder>,
    cross_mask: Option<Value>,
}

/// The stack, with or without a cache; returns the output and the present
/// keys and values (empty without a cache).
#[allow(clippy::too_many_arguments)]
fn run(
    b: &mut Builder,
    model: &Model,
    stack: &Stack,
    causal: bool,
    inputs: &StackInputs,
    tables: EmbeddingTables,
    ends: EncoderEnds,
    cache: Option<&StackCache>,
) -> Result<(Value, Vec<(Value, Value)>), LowerError> {
    b.graph.set_span(Some(stack.span));
    b.scoped(tables.stack_name, |b| {
        let mut x = embed(b, model, stack, inputs, tables)?;
        let shared = shared(b, stack, causal, inputs, ends)?;
        let mut present = Vec::new();
        for i in 0..stack.layers as usize {
            let layer_cache = cache.map(|c| LayerCache {
                past: c.past[i],
                cross: c.cross.get(i).copied(),
            });
            let (y, p) = b.scoped(format!("layers.{i}"), |b| {
                layer(b, model, stack, &shared, x, layer_cache)
            })?;
            x = y;
            present.extend(p);
        }
        let x = match &stack.final_norm {
            Some(n) => norm(b, "final_norm", n, model.hidden_size, x)?,
            None => x,
        };
        Ok((x, present))
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
    ends: EncoderEnds,
) -> Result<Shared, LowerError> {
    let heads = heads_shape(&stack.attention);

    // Padding and causal masks, [batch | 1, 1, queries | 1, keys].
    let padding = inputs.mask.map(|m| mask::padding(b, m)).transpose()?;
    let future = if causal {
        Some(mask::causal(b, inputs.queries, inputs.keys)?)
    } else {
        None
    };
    let mut bias = mask::combine(b, padding, future)?;
    if heads.len() > 1 {
        bias = bias.map(|m| b.unsqueeze(m, &[1])).transpose()?;
    }

    // Position biases in the score layout.
    let position = match stack.position {
        Position::Alibi => Some(alibi::bias(b, &heads, inputs.mask, inputs.keys)?),
        Position::RelativeBias {
            num_buckets,
            max_distance,
        } => {
            let buckets = Buckets {
                num_buckets,
                max_distance,
                bidirectional: !causal,
            };
            let (q, k) = (inputs.queries, inputs.keys);
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
    if let (Some(cross), Some(_)) = (&stack.cross_attention, ends.encoder) {
        let mut m = ends.cross_mask.map(|m| mask::padding(b, m)).transpose()?;
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
        encoder: ends.encoder,
    })
}

/// Self-attention named `attention`, appending to the past keys and values
/// when the layer has a cache; returns the output and the present cache.
fn self_attention(
    b: &mut Builder,
    stack: &Stack,
    hidden: u64,
    ctx: &AttentionContext,
    y: Value,
    cache: Option<LayerCache>,
) -> Result<(Value, Option<(Value, Value)>), LowerError> {
    let cfg = &stack.attention;
    match cache {
        None => Ok((attention(b, "attention", cfg, hidden, y, None, ctx)?, None)),
        Some(c) => {
            let (key, value) = c.past;
            let kv = CachedKv::Append { key, value };
            cached_attention(b, "attention", cfg, hidden, y, kv, ctx)
        }
    }
}

/// One layer; returns its output and, with a cache, its present keys and values.
fn layer(
    b: &mut Builder,
    model: &Model,
    stack: &Stack,
    shared: &Shared,
    x: Value,
    cache: Option<LayerCache>,
) -> Result<(Value, Option<(Value, Value)>), LowerError> {
    let hidden = model.hidden_size;
    let self_ctx = &shared.self_attention;

    if stack.parallel_residual {
        let a = norm(b, "attention_norm", &stack.norm, hidden, x)?;
        let (a, present) = self_attention(b, stack, hidden, self_ctx, a, cache)?;
        let f = norm(b, "feed_forward_norm", &stack.norm, hidden, x)?;
        let f = feed_forward(b, &stack.feed_forward, hidden, f)?;
        let branches = b.add(a, f)?;
        return Ok((b.add(x, branches)?, present));
    }

    let mut present = None;
    let mut h = residual(b, stack, hidden, "attention_norm", x, |b, y| {
        let (out, p) = self_attention(b, stack, hidden, self_ctx, y, cache)?;
        present = p;
        Ok(out)
    })?;
    if let (Some(cross), Some(encoder)) = (&stack.cross_attention, shared.encoder) {
        let ctx = &shared.cross_attention;
        let given = cache.and_then(|c| c.cross);
        h = residual(b, stack, hidden, "cross_attention_norm", h, |b, y| {
            match (encoder, given) {
                (Encoder::Hidden(memory), _) => {
                    attention(b, "cross_attention", cross, hidden, y, Some(memory), ctx)
                }
                (Encoder::Cached, Some((key, value))) => {
                    let kv = CachedKv::Given { key, value };
                    Ok(cached_attention(b, "cross_attention", cross, hidden, y, kv, ctx)?.0)
                }
                (Encoder::Cached, None) => Err(LowerError::Ir(crate::ir::IrError::Invalid {
                    node: "cross_attention".to_string(),
                    reason: "no cached cross-attention keys for this layer".to_string(),
                })),
            }
        })?;
    }
    let out = residual(b, stack, hidden, "feed_forward_norm", h, |b, y| {
        feed_forward(b, &stack.feed_forward, hidden, y)
    })?;
    Ok((out, present))
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
