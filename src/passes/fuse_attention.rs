//! Attention fusion.
//!
//! Before (`lower::attention`, uncached; `[Cast]` only when the activation
//! type is not f32; `qh`, `kh`, `vh` are `[batch, sequence, heads, d]`):
//!
//! ```text
//! same heads:   q = Transpose{0,2,1,3}(qh)  kᵀ = Transpose{0,2,3,1}(kh)  v = Transpose{0,2,1,3}(vh)
//! grouped:      q = Transpose{0,2,3,1,4}(Reshape{[0,0,kv,g,d]}(qh))
//!               kᵀ = Unsqueeze{2}(Transpose{0,2,3,1}(kh))  v = Unsqueeze{2}(Transpose{0,2,1,3}(vh))
//! s = [Mul]([Cast{f32}](MatMul(q, kᵀ)), scale) [+ bias]
//! c = MatMul([Cast](Softmax{-1}(s)), v)
//! y = Reshape{[0,0,heads·d]}(Transpose{0,2,1,3 | 0,3,1,2,4}(c))
//! ```
//!
//! After: `y = Attention{heads, kv_heads, head_dim, scale, mask}(q3, k3, v3
//! [, bias4])`, where `q3` is the `[batch, sequence, heads·d]` value that
//! `qh` was split from (or a new `Reshape{[0,0,heads·d]}(qh)` when `qh` is
//! not a plain split, e.g. after rotary), and likewise `k3`, `v3`. A
//! grouped-query bias `[b, 1, 1, q, k]` made by `Unsqueeze{1}` is read
//! before the unsqueeze; `[b, kv, g, q, k]` is reshaped to `[b, heads, q, k]`
//! when at most one of `q`, `k` is symbolic (otherwise no fusion).
//! `mask` records what the bias is built from (padding, causal, both,
//! other), read off the mask subgraph.
//!
//! Preconditions: the scale is a scalar constant; softmax is over the last
//! axis; each probability value feeds only the context `MatMul`. Cached
//! attention (keys concatenated with a past cache) does not match.

use petgraph::stable_graph::NodeIndex;

use super::pattern::{
    add_near, after_cast, binary, op, out, producer_of, replace, scalar, through_cast,
};
use super::pattern::{use_count, users};
use super::{Pass, PassError};
use crate::ir::{AttentionMask, DType, Dim, Graph, Op, ReshapeDim, Value};

/// Fuses scaled dot-product attention into [`Op::Attention`].
pub struct FuseAttention;

/// How the bias input is obtained from the matched graph.
enum Bias {
    None,
    Use(Value),
    Squeeze(Value),
    Reshape(Value, Vec<ReshapeDim>),
}

/// A recognised attention.
struct Match {
    root: NodeIndex,
    q: Value,
    k: Value,
    v: Value,
    bias: Bias,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    scale: f32,
}

impl Pass for FuseAttention {
    fn name(&self) -> &'static str {
        "fuse_attention"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut fused = 0;
        let candidates: Vec<NodeIndex> = g.g.node_indices().collect();
        for n in candidates {
            if !g.g.contains_node(n) || !matches!(g.g[n].op, Op::Softmax { .. }) {
                continue;
            }
            let Some(m) = matches(g, n) else {
                tracing::debug!(pass = "fuse_attention", softmax = %g.g[n].name, "no match");
                continue;
            };
            let root = m.root;
            let q = unsplit(g, m.q, m.heads * m.head_dim)?;
            let k = unsplit(g, m.k, m.kv_heads * m.head_dim)?;
            let v = unsplit(g, m.v, m.kv_heads * m.head_dim)?;
            let mut inputs = vec![q, k, v];
            let bias = match m.bias {
                Bias::None => None,
                Bias::Use(b) => Some(b),
                Bias::Squeeze(b) => {
                    let op = Op::Squeeze { axes: vec![2] };
                    Some(add_near(g, "fuse_attention", n, op, &[b])?[0])
                }
                Bias::Reshape(b, shape) => {
                    let op = Op::Reshape { shape };
                    Some(add_near(g, "fuse_attention", n, op, &[b])?[0])
                }
            };
            let mask = match bias {
                Some(b) => classify(g, b),
                None => AttentionMask::None,
            };
            inputs.extend(bias);
            let op = Op::Attention {
                heads: m.heads,
                kv_heads: m.kv_heads,
                head_dim: m.head_dim,
                scale: m.scale,
                mask,
            };
            let y = add_near(g, "fuse_attention", root, op, &inputs)?[0];
            tracing::debug!(
                pass = "fuse_attention",
                softmax = %g.g[n].name,
                output = %g.g[root].name,
                heads = m.heads,
                kv_heads = m.kv_heads,
                mask = mask.as_str(),
                "fused Attention"
            );
            replace(g, out(root), y);
            fused += 1;
        }
        Ok(fused)
    }
}

/// The `[batch, sequence, width]` form of `[batch, sequence, heads, d]` `x`.
fn unsplit(g: &mut Graph, x: Value, width: u64) -> Result<Value, PassError> {
    use ReshapeDim::{Copy, Fixed};
    if let Op::Reshape { shape } = op(g, x) {
        let source = g.inputs(x.node)[0];
        if matches!(shape[..], [Copy, Copy, Fixed(_), Fixed(_)]) && g.ty(source).rank() == 3 {
            return Ok(source);
        }
    }
    let shape = vec![Copy, Copy, Fixed(width as i64)];
    Ok(add_near(g, "fuse_attention", x.node, Op::Reshape { shape }, &[x])?[0])
}

/// The single node reading `v` (and reading it once).
fn only_user(g: &Graph, v: Value) -> Option<NodeIndex> {
    let u = users(g, v);
    (u.len() == 1 && use_count(g, v) == 1).then(|| u[0])
}

fn is_transpose(g: &Graph, v: Value, perm: &[i64]) -> Option<Value> {
    match op(g, v) {
        Op::Transpose { perm: p } if p == perm => Some(g.inputs(v.node)[0]),
        _ => None,
    }
}

fn is_unsqueeze(g: &Graph, v: Value, axes: &[i64]) -> Option<Value> {
    match op(g, v) {
        Op::Unsqueeze { axes: a } if a == axes => Some(g.inputs(v.node)[0]),
        _ => None,
    }
}

fn matches(g: &Graph, softmax: NodeIndex) -> Option<Match> {
    // Softmax over the last axis of the scores.
    let Op::Softmax { axis } = g.g[softmax].op else {
        return None;
    };
    let rank = g.g[softmax].outputs[0].rank();
    if !(axis == -1 || axis == rank as i64 - 1) || !(rank == 4 || rank == 5) {
        return None;
    }
    let mut s = g.inputs(softmax)[0];
    if g.ty(s).dtype != DType::F32 {
        return None;
    }

    // s = [Mul]([Cast](MatMul(q, kᵀ)), scale) [+ bias].
    let mut bias = None;
    if let Some((a, b)) = binary(g, s, "Add") {
        bias = Some(b);
        s = a;
    }
    let mut scale = 1.0f32;
    if let Some((a, c)) = binary(g, s, "Mul") {
        scale = scalar(g, c)? as f32;
        s = a;
    }
    let raw = through_cast(g, s, DType::F32);
    let [q_l, k_l] = producer_of(g, raw, "MatMul")?[..] else {
        return None;
    };
    let dtype = g.ty(raw).dtype;

    // c = MatMul([Cast](probs), v); y = Reshape(Transpose(c)).
    let probs = after_cast(g, out(softmax), dtype)?;
    let context = only_user(g, probs)?;
    if !matches!(g.g[context].op, Op::MatMul) || g.inputs(context)[0] != probs {
        return None;
    }
    let v_l = g.inputs(context)[1];
    let merge = only_user(g, out(context))?;
    let root = only_user(g, out(merge))?;

    // Head layout.
    let (qh, kh, vh, perm): (Value, Value, Value, &[i64]) = if rank == 4 {
        let qh = is_transpose(g, q_l, &[0, 2, 1, 3])?;
        let kh = is_transpose(g, k_l, &[0, 2, 3, 1])?;
        let vh = is_transpose(g, v_l, &[0, 2, 1, 3])?;
        (qh, kh, vh, &[0, 2, 1, 3])
    } else {
        let grouped = is_transpose(g, q_l, &[0, 2, 3, 1, 4])?;
        let Op::Reshape { .. } = op(g, grouped) else {
            return None;
        };
        let qh = g.inputs(grouped.node)[0];
        let kh = is_transpose(g, is_unsqueeze(g, k_l, &[2])?, &[0, 2, 3, 1])?;
        let vh = is_transpose(g, is_unsqueeze(g, v_l, &[2])?, &[0, 2, 1, 3])?;
        (qh, kh, vh, &[0, 3, 1, 2, 4])
    };
    if !matches!(&g.g[merge].op, Op::Transpose { perm: p } if p == perm) {
        return None;
    }
    let dims = |v: Value| -> Option<(u64, u64)> {
        let t = g.ty(v);
        if t.rank() != 4 {
            return None;
        }
        Some((t.shape[2].as_const()? as u64, t.shape[3].as_const()? as u64))
    };
    let (heads, head_dim) = dims(qh)?;
    let (kv_heads, kd) = dims(kh)?;
    if dims(vh)? != (kv_heads, head_dim) || kd != head_dim || heads % kv_heads != 0 {
        return None;
    }
    if (rank == 4) != (heads == kv_heads) {
        return None;
    }
    let width = Dim::c((heads * head_dim) as i64);
    let root_ty = &g.g[root].outputs[0];
    if !matches!(g.g[root].op, Op::Reshape { .. }) || root_ty.rank() != 3 {
        return None;
    }
    if root_ty.shape[2] != width {
        return None;
    }

    let bias = match bias {
        None => Bias::None,
        Some(b) if rank == 4 => Bias::Use(b),
        Some(b) => grouped_bias(g, b, heads, kv_heads)?,
    };
    Some(Match {
        root,
        q: qh,
        k: kh,
        v: vh,
        bias,
        heads,
        kv_heads,
        head_dim,
        scale,
    })
}

/// A `[b, kv, g, q, k]`-layout bias in the `[b, heads, q, k]` layout.
fn grouped_bias(g: &Graph, b: Value, heads: u64, kv_heads: u64) -> Option<Bias> {
    let t = g.ty(b);
    if t.rank() != 5 {
        return None;
    }
    if let Some(u) = is_unsqueeze(g, b, &[1]) {
        if g.ty(u).shape[1] == Dim::c(1) {
            return Some(Bias::Use(u));
        }
    }
    let one = Dim::c(1);
    if t.shape[1] == one && t.shape[2] == one {
        return Some(Bias::Squeeze(b));
    }
    let groups = heads / kv_heads;
    if t.shape[1] != Dim::c(kv_heads as i64) || t.shape[2] != Dim::c(groups as i64) {
        return None;
    }
    use ReshapeDim::{Copy, Fixed, Infer};
    let fixed = |d: &Dim| d.as_const().map_or(Infer, Fixed);
    let shape = vec![
        Copy,
        Fixed(heads as i64),
        fixed(&t.shape[3]),
        fixed(&t.shape[4]),
    ];
    (shape.iter().filter(|d| **d == Infer).count() <= 1).then_some(Bias::Reshape(b, shape))
}

/// What an additive bias is built from, read off its producers.
fn classify(g: &Graph, b: Value) -> AttentionMask {
    match op(g, b) {
        Op::Min => {
            let [x, y] = g.inputs(b.node)[..] else {
                return AttentionMask::Other;
            };
            match (classify(g, x), classify(g, y)) {
                (AttentionMask::Padding, AttentionMask::Causal)
                | (AttentionMask::Causal, AttentionMask::Padding) => AttentionMask::PaddingCausal,
                _ => AttentionMask::Other,
            }
        }
        Op::Unsqueeze { axes } => {
            let inner = g.inputs(b.node)[0];
            let is_min = |v: Value| scalar(g, v).is_some_and(|x| x == f32::MIN as f64);
            match (&axes[..], op(g, inner)) {
                ([1], _) => classify(g, inner),
                ([1, 2], Op::Mul) if g.inputs(inner.node).iter().any(|v| is_min(*v)) => {
                    AttentionMask::Padding
                }
                ([0, 1], Op::Where) if g.inputs(inner.node).get(1).is_some_and(|v| is_min(*v)) => {
                    AttentionMask::Causal
                }
                _ => AttentionMask::Other,
            }
        }
        _ => AttentionMask::Other,
    }
}
