//! Multi-head, grouped-query and cross attention.
//!
//! `o_proj(softmax(q·kᵀ · scale + bias) · v)` with the projections
//! `{q,k,v,o}_proj`, rotary applied to q and k when the stack uses it, and
//! scores, bias and softmax in f32. Shapes stay symbolic: heads are split and
//! merged with `Reshape` targets that copy batch and sequence.
//!
//! Score layouts: with as many key/value heads as query heads, scores are
//! `[batch, heads, queries, keys]`. Grouped-query attention avoids repeating
//! keys and values: queries become `[batch, kv_heads, groups, queries, d]`
//! and keys/values `[batch, kv_heads, 1, keys, d]`, so `MatMul` broadcasting
//! pairs query head `h` with key/value head `h / groups`, as Hugging Face's
//! `repeat_kv` does. Biases are built in the same layout (see [`heads_shape`]).
//!
//! With a key/value cache ([`cached_attention`]) keys and values are kept as
//! `[batch, kv_heads, keys, d]`: new keys (after rotary) are appended to the
//! past ones on axis 2 and the concatenation is returned as the layer's
//! present cache, or precomputed keys and values (cross-attention over an
//! encoder output, [`project_kv`]) are read as they are.

use crate::ir::{Op, ReshapeDim, Value};
use crate::model::Attention;

use super::builder::Builder;
use super::linear::Linear;
use super::rotary::{self, RotaryTables};
use super::LowerError;

/// The head axes of the score layout: `[heads]`, or `[kv_heads, groups]` for
/// grouped-query attention.
pub fn heads_shape(cfg: &Attention) -> Vec<u64> {
    if cfg.kv_heads == cfg.heads {
        vec![cfg.heads]
    } else {
        vec![cfg.kv_heads, cfg.heads / cfg.kv_heads]
    }
}

/// What a stack provides to every attention call of one kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttentionContext {
    /// Additive f32 bias broadcastable to the score layout (masks, ALiBi,
    /// relative positions), if any.
    pub bias: Option<Value>,
    /// Rotary tables for queries and keys, if the stack uses rotary positions.
    pub rotary: Option<RotaryTables>,
}

/// Attention named `name` over `x` `[batch, queries, hidden]`. Keys and values
/// come from `memory` `[batch, keys, hidden]` (cross-attention) or from `x`.
pub fn attention(
    b: &mut Builder,
    name: &str,
    cfg: &Attention,
    hidden: u64,
    x: Value,
    memory: Option<Value>,
    ctx: &AttentionContext,
) -> Result<Value, LowerError> {
    let d = cfg.head_dim;
    let q_proj = Linear::new(hidden, cfg.heads * d, cfg.qkv_bias);
    let kv_proj = Linear::new(hidden, cfg.kv_heads * d, cfg.qkv_bias);
    let o_proj = Linear::new(cfg.heads * d, hidden, cfg.out_bias);
    let source = memory.unwrap_or(x);

    b.scoped(name, |b| {
        // Projections, split into heads: [batch, sequence, heads, d].
        let q = q_proj.apply(b, "q_proj", x)?;
        let k = kv_proj.apply(b, "k_proj", source)?;
        let v = kv_proj.apply(b, "v_proj", source)?;
        let mut q = split_heads(b, q, cfg.heads, d)?;
        let mut k = split_heads(b, k, cfg.kv_heads, d)?;
        let v = split_heads(b, v, cfg.kv_heads, d)?;
        if let Some(tables) = &ctx.rotary {
            q = rotary::apply(b, tables, q, d)?;
            k = rotary::apply(b, tables, k, d)?;
        }

        let (q, k_t, v) = to_score_layout(b, cfg, q, k, v)?;
        let probs = probabilities(b, cfg, q, k_t, ctx.bias)?;
        let context = b.matmul(probs, v)?;
        let merged = merge_heads(b, cfg, context)?;
        o_proj.apply(b, "o_proj", merged)
    })
}

/// Keys and values of one cached attention call.
#[derive(Debug, Clone, Copy)]
pub enum CachedKv {
    /// Self-attention: project `x`, append to the past `[batch, kv_heads,
    /// past, d]` keys and values, and return the concatenation as present.
    Append {
        /// Past keys.
        key: Value,
        /// Past values.
        value: Value,
    },
    /// Keys and values computed elsewhere, `[batch, kv_heads, keys, d]`.
    Given {
        /// Keys.
        key: Value,
        /// Values.
        value: Value,
    },
}

/// Attention named `name` over `x` `[batch, queries, hidden]` with keys and
/// values from `kv`. Returns the output and, for [`CachedKv::Append`], the
/// present keys and values `[batch, kv_heads, past + queries, d]` (keys
/// rotated, not repeated for grouped-query attention).
pub fn cached_attention(
    b: &mut Builder,
    name: &str,
    cfg: &Attention,
    hidden: u64,
    x: Value,
    kv: CachedKv,
    ctx: &AttentionContext,
) -> Result<(Value, Option<(Value, Value)>), LowerError> {
    let d = cfg.head_dim;
    let q_proj = Linear::new(hidden, cfg.heads * d, cfg.qkv_bias);
    let kv_proj = Linear::new(hidden, cfg.kv_heads * d, cfg.qkv_bias);
    let o_proj = Linear::new(cfg.heads * d, hidden, cfg.out_bias);

    b.scoped(name, |b| {
        let q = q_proj.apply(b, "q_proj", x)?;
        let mut q = split_heads(b, q, cfg.heads, d)?;
        let (keys, values, present) = match kv {
            CachedKv::Append { key, value } => {
                let k = kv_proj.apply(b, "k_proj", x)?;
                let v = kv_proj.apply(b, "v_proj", x)?;
                let mut k = split_heads(b, k, cfg.kv_heads, d)?;
                let v = split_heads(b, v, cfg.kv_heads, d)?;
                if let Some(tables) = &ctx.rotary {
                    q = rotary::apply(b, tables, q, d)?;
                    k = rotary::apply(b, tables, k, d)?;
                }
                let k = b.transpose(k, &[0, 2, 1, 3])?;
                let v = b.transpose(v, &[0, 2, 1, 3])?;
                let k = b.op(Op::Concat { axis: 2 }, &[key, k])?;
                let v = b.op(Op::Concat { axis: 2 }, &[value, v])?;
                (k, v, Some((k, v)))
            }
            CachedKv::Given { key, value } => {
                if let Some(tables) = &ctx.rotary {
                    q = rotary::apply(b, tables, q, d)?;
                }
                (key, value, None)
            }
        };

        let (q, k_t, v) = to_cached_score_layout(b, cfg, q, keys, values)?;
        let probs = probabilities(b, cfg, q, k_t, ctx.bias)?;
        let context = b.matmul(probs, v)?;
        let merged = merge_heads(b, cfg, context)?;
        Ok((o_proj.apply(b, "o_proj", merged)?, present))
    })
}

/// The keys and values `[batch, kv_heads, keys, d]` that attention named
/// `name` computes from `memory` `[batch, keys, hidden]` with its `k_proj`
/// and `v_proj` (cross-attention keys and values, computed once per input).
pub fn project_kv(
    b: &mut Builder,
    name: &str,
    cfg: &Attention,
    hidden: u64,
    memory: Value,
) -> Result<(Value, Value), LowerError> {
    let d = cfg.head_dim;
    let kv_proj = Linear::new(hidden, cfg.kv_heads * d, cfg.qkv_bias);
    b.scoped(name, |b| {
        let k = kv_proj.apply(b, "k_proj", memory)?;
        let v = kv_proj.apply(b, "v_proj", memory)?;
        let k = split_heads(b, k, cfg.kv_heads, d)?;
        let v = split_heads(b, v, cfg.kv_heads, d)?;
        Ok((
            b.transpose(k, &[0, 2, 1, 3])?,
            b.transpose(v, &[0, 2, 1, 3])?,
        ))
    })
}

/// `[batch, sequence, heads·d]` → `[batch, sequence, heads, d]`.
fn split_heads(b: &mut Builder, x: Value, heads: u64, d: u64) -> Result<Value, LowerError> {
    use ReshapeDim::{Copy, Fixed};
    let shape = vec![Copy, Copy, Fixed(heads as i64), Fixed(d as i64)];
    b.op(Op::Reshape { shape }, &[x])
}

/// Moves heads in front of the sequence: returns q, kᵀ and v in the score layout.
fn to_score_layout(
    b: &mut Builder,
    cfg: &Attention,
    q: Value,
    k: Value,
    v: Value,
) -> Result<(Value, Value, Value), LowerError> {
    let k_t = b.transpose(k, &[0, 2, 3, 1])?;
    let v = b.transpose(v, &[0, 2, 1, 3])?;
    if cfg.kv_heads == cfg.heads {
        let q = b.transpose(q, &[0, 2, 1, 3])?;
        return Ok((q, k_t, v));
    }
    let q = group_queries(b, cfg, q)?;
    let k_t = b.unsqueeze(k_t, &[2])?;
    let v = b.unsqueeze(v, &[2])?;
    Ok((q, k_t, v))
}

/// Like [`to_score_layout`] for keys and values already `[batch, kv_heads, keys, d]`.
fn to_cached_score_layout(
    b: &mut Builder,
    cfg: &Attention,
    q: Value,
    k: Value,
    v: Value,
) -> Result<(Value, Value, Value), LowerError> {
    let k_t = b.transpose(k, &[0, 1, 3, 2])?;
    if cfg.kv_heads == cfg.heads {
        let q = b.transpose(q, &[0, 2, 1, 3])?;
        return Ok((q, k_t, v));
    }
    let q = group_queries(b, cfg, q)?;
    let k_t = b.unsqueeze(k_t, &[2])?;
    let v = b.unsqueeze(v, &[2])?;
    Ok((q, k_t, v))
}

/// Queries `[batch, sequence, heads, d]` → `[batch, kv_heads, groups, sequence, d]`.
fn group_queries(b: &mut Builder, cfg: &Attention, q: Value) -> Result<Value, LowerError> {
    use ReshapeDim::{Copy, Fixed};
    let groups = (cfg.heads / cfg.kv_heads) as i64;
    let shape = vec![
        Copy,
        Copy,
        Fixed(cfg.kv_heads as i64),
        Fixed(groups),
        Fixed(cfg.head_dim as i64),
    ];
    let q = b.op(Op::Reshape { shape }, &[q])?;
    b.transpose(q, &[0, 2, 3, 1, 4])
}

/// `softmax(q·kᵀ · scale + bias)` over keys, in f32, returned in the activation type.
fn probabilities(
    b: &mut Builder,
    cfg: &Attention,
    q: Value,
    k_t: Value,
    bias: Option<Value>,
) -> Result<Value, LowerError> {
    let scores = b.matmul(q, k_t)?;
    let mut scores = b.widen(scores)?;
    let scale = cfg
        .scale
        .unwrap_or_else(|| 1.0 / (cfg.head_dim as f64).sqrt());
    if scale != 1.0 {
        let scale = b.scalar_f32(scale as f32);
        scores = b.mul(scores, scale)?;
    }
    if let Some(bias) = bias {
        scores = b.add(scores, bias)?;
    }
    let probs = b.op(Op::Softmax { axis: -1 }, &[scores])?;
    b.narrow(probs)
}

/// The score-layout context back to `[batch, sequence, heads·d]`.
fn merge_heads(b: &mut Builder, cfg: &Attention, context: Value) -> Result<Value, LowerError> {
    let perm: &[i64] = if cfg.kv_heads == cfg.heads {
        &[0, 2, 1, 3]
    } else {
        &[0, 3, 1, 2, 4]
    };
    let context = b.transpose(context, perm)?;
    use ReshapeDim::{Copy, Fixed};
    let width = (cfg.heads * cfg.head_dim) as i64;
    let shape = vec![Copy, Copy, Fixed(width)];
    b.op(Op::Reshape { shape }, &[context])
}
