//! Rotary position embedding fusion.
//!
//! Before (`lower::rotary`, on `x` `[batch, sequence, heads, head_dim]`,
//! with `r = x`, or `r = Slice{-1: 0..dim}(x)` for partial rotary):
//!
//! ```text
//! rotate-half:  out = Add(Mul(r, C), Mul(Concat{-1}(Neg(r[half..dim]), r[0..half]), S))
//!               C = Unsqueeze{[2]}([Cast](Cos(Concat{-1}(a, a))))      (S with Sin)
//! interleaved:  p = Reshape{[0,0,0,dim/2,2]}(r)
//!               out = Reshape{[0,0,0,dim]}(Add(Mul(p, C), Mul(Concat{-1}(Neg(p[1..2]), p[0..1]), S)))
//!               C = Unsqueeze{[2,4]}(c)                                  (S likewise)
//! partial:      y = Concat{-1}(out, Slice{-1: dim..}(x))
//! ```
//!
//! After: `y = RotaryEmbedding{interleaved, rotary_dim=dim}(x, cos, sin)`
//! with `cos`, `sin` `[batch | 1, sequence, dim/2]`: `c` itself
//! (interleaved), or a new `[Cast](Cos(a))` (rotate-half; exact, because
//! the table's two halves are the same angles). New tables are shared by
//! every layer that reads the same original table.
//!
//! Preconditions: the slices split exactly at `dim/2` (or the pair axis);
//! every occurrence of `r` is the same value.

use std::collections::HashMap;

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, op, out, producer_of, replace, use_count, users};
use super::{Pass, PassError};
use crate::ir::{Graph, Op, ReshapeDim, Value};

/// Fuses the elementary rotation into [`Op::RotaryEmbedding`].
pub struct FuseRotary;

/// A recognised rotation.
struct Match {
    /// The replaced value's node.
    root: NodeIndex,
    x: Value,
    dim: u64,
    interleaved: bool,
    cos: Table,
    sin: Table,
}

/// Where a fused table comes from.
#[derive(Clone, Copy)]
enum Table {
    /// Already `[batch | 1, sequence, dim/2]`.
    Ready(Value),
    /// `[Cast](f(Concat(a, a)))`: the half table is `[Cast](f(a))`, built from
    /// the original's nodes `f` and the optional cast.
    Halve {
        original: Value,
        angles: Value,
        func: NodeIndex,
        cast: Option<NodeIndex>,
    },
}

impl Pass for FuseRotary {
    fn name(&self) -> &'static str {
        "fuse_rotary"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut fused = 0;
        let mut halves: HashMap<Value, Value> = HashMap::new();
        let candidates: Vec<NodeIndex> = g.g.node_indices().collect();
        for n in candidates {
            if !g.g.contains_node(n) || !matches!(g.g[n].op, Op::Add) {
                continue;
            }
            let Some(m) = matches(g, n) else { continue };
            if use_count(g, out(m.root)) == 0 {
                continue;
            }
            let cos = table(g, m.cos, &mut halves)?;
            let sin = table(g, m.sin, &mut halves)?;
            let op = Op::RotaryEmbedding {
                interleaved: m.interleaved,
                rotary_dim: m.dim,
            };
            let y = add_near(g, "fuse_rotary", m.root, op, &[m.x, cos, sin])?[0];
            tracing::debug!(
                pass = "fuse_rotary",
                root = %g.g[m.root].name,
                interleaved = m.interleaved,
                rotary_dim = m.dim,
                "fused RotaryEmbedding"
            );
            replace(g, out(m.root), y);
            fused += 1;
        }
        Ok(fused)
    }
}

/// The fused-layout table, building (once per original) the half table.
fn table(g: &mut Graph, t: Table, halves: &mut HashMap<Value, Value>) -> Result<Value, PassError> {
    let (original, angles, func, cast) = match t {
        Table::Ready(v) => return Ok(v),
        Table::Halve {
            original,
            angles,
            func,
            cast,
        } => (original, angles, func, cast),
    };
    if let Some(v) = halves.get(&original) {
        return Ok(*v);
    }
    let f = g.g[func].op.clone();
    let mut v = add_near(g, "fuse_rotary", func, f, &[angles])?[0];
    if let Some(c) = cast {
        let cast_op = g.g[c].op.clone();
        v = add_near(g, "fuse_rotary", c, cast_op, &[v])?[0];
    }
    halves.insert(original, v);
    Ok(v)
}

fn slice_last(g: &Graph, v: Value) -> Option<(Value, i64, i64)> {
    let Op::Slice { axes, starts, ends } = op(g, v) else {
        return None;
    };
    let rank = g.ty(v).rank() as i64;
    if axes.len() != 1 || !(axes[0] == -1 || axes[0] == rank - 1) {
        return None;
    }
    Some((g.inputs(v.node)[0], starts[0], ends[0]))
}

fn is_concat_last(g: &Graph, v: Value) -> Option<Vec<Value>> {
    let Op::Concat { axis } = op(g, v) else {
        return None;
    };
    let rank = g.ty(v).rank() as i64;
    (*axis == -1 || *axis == rank - 1).then(|| g.inputs(v.node))
}

fn matches(g: &Graph, n: NodeIndex) -> Option<Match> {
    // Add(Mul(r, C), Mul(turned, S)).
    let [m1, m2] = g.inputs(n)[..] else {
        return None;
    };
    let [r, cos_t] = producer_of(g, m1, "Mul")?[..] else {
        return None;
    };
    let [turned, sin_t] = producer_of(g, m2, "Mul")?[..] else {
        return None;
    };
    // turned = Concat(Neg(second), first).
    let [neg, first] = is_concat_last(g, turned)?[..] else {
        return None;
    };
    let [second] = producer_of(g, neg, "Neg")?[..] else {
        return None;
    };
    let (src1, s1, e1) = slice_last(g, first)?;
    let (src2, s2, e2) = slice_last(g, second)?;
    if src1 != r || src2 != r {
        return None;
    }

    // The layout: a [.., dim/2, 2] pair view (interleaved) or half splits.
    let pairs = match op(g, r) {
        Op::Reshape { shape } if g.ty(r).rank() == 5 => Some(shape.clone()),
        _ => None,
    };
    let (interleaved, base, dim, mut root) = match pairs {
        Some(shape) => {
            use ReshapeDim::{Copy, Fixed};
            let half = match shape[..] {
                [Copy, Copy, Copy, Fixed(h), Fixed(2)] => h,
                _ => return None,
            };
            if (s1, e1, s2, e2) != (0, 1, 1, 2) {
                return None;
            }
            let base = g.inputs(r.node)[0];
            let flat = users(g, out(n));
            let [flat] = flat[..] else { return None };
            let want = vec![Copy, Copy, Copy, Fixed(2 * half)];
            if !matches!(&g.g[flat].op, Op::Reshape { shape } if *shape == want) {
                return None;
            }
            (true, base, 2 * half, flat)
        }
        None => {
            let dim = g.ty(r).shape.last()?.as_const()?;
            let half = dim / 2;
            if (s1, e1, s2, e2) != (0, half, half, dim) || dim % 2 != 0 {
                return None;
            }
            (false, r, dim, n)
        }
    };

    // Partial rotary: base = x[.., 0..dim], result concatenated with the rest.
    let mut x = base;
    if let Some((src, 0, end)) = slice_last(g, base) {
        if end != dim {
            return None;
        }
        let next = users(g, out(root));
        let [concat] = next[..] else { return None };
        let [rotated, pass] = is_concat_last(g, out(concat))?[..] else {
            return None;
        };
        if rotated != out(root) || slice_last(g, pass)? != (src, dim, i64::MAX) {
            return None;
        }
        x = src;
        root = concat;
    }
    if g.ty(x).rank() != 4 || g.ty(x).shape[3].as_const()? < dim {
        return None;
    }

    let axes: &[i64] = if interleaved { &[2, 4] } else { &[2] };
    let cos = rotary_table(g, cos_t, axes, "Cos", interleaved)?;
    let sin = rotary_table(g, sin_t, axes, "Sin", interleaved)?;
    Some(Match {
        root,
        x,
        dim: dim as u64,
        interleaved,
        cos,
        sin,
    })
}

/// The table behind `Unsqueeze{axes}(c)`.
fn rotary_table(g: &Graph, t: Value, axes: &[i64], func: &str, interleaved: bool) -> Option<Table> {
    if !matches!(op(g, t), Op::Unsqueeze { axes: a } if a == axes) {
        return None;
    }
    let c = g.inputs(t.node)[0];
    if g.ty(c).rank() != 3 {
        return None;
    }
    if interleaved {
        return Some(Table::Ready(c));
    }
    let (cast, f) = match op(g, c) {
        Op::Cast { .. } => (Some(c.node), g.inputs(c.node)[0]),
        _ => (None, c),
    };
    let [both] = producer_of(g, f, func)?[..] else {
        return None;
    };
    let [a1, a2] = is_concat_last(g, both)?[..] else {
        return None;
    };
    (a1 == a2).then_some(Table::Halve {
        original: t,
        angles: a1,
        func: f.node,
        cast,
    })
}
