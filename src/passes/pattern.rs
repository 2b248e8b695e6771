//! Shared tools of the passes: reading a node's producers and users,
//! recognising constants, adding nodes next to the ones they replace, and
//! re-typing the graph after a rewrite.
//!
//! Matchers are written as guarded steps: each step reads one producer and
//! returns `None` when the graph does not have the expected shape, so a
//! fusion reads like the pattern it recognises.

use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::ir::{infer, DType, Graph, IrError, Op, Value};

use super::PassError;

/// The op that produces `v`.
pub fn op(g: &Graph, v: Value) -> &Op {
    &g.g[v.node].op
}

/// The inputs of the producer of `v` when it is `want` (by op name), else `None`.
pub fn producer_of(g: &Graph, v: Value, want: &str) -> Option<Vec<Value>> {
    (op(g, v).name() == want && v.output == 0).then(|| g.inputs(v.node))
}

/// Single-output value of node `n`.
pub fn out(n: NodeIndex) -> Value {
    Value { node: n, output: 0 }
}

/// How many times `v` is read: by node inputs and as a graph output.
pub fn use_count(g: &Graph, v: Value) -> usize {
    let edges =
        g.g.edges_directed(v.node, Direction::Outgoing)
            .filter(|e| e.weight().output == v.output)
            .count();
    edges + g.outputs.iter().filter(|(_, o)| *o == v).count()
}

/// The nodes reading `v`, each once, in index order.
pub fn users(g: &Graph, v: Value) -> Vec<NodeIndex> {
    let mut users: Vec<NodeIndex> =
        g.g.edges_directed(v.node, Direction::Outgoing)
            .filter(|e| e.weight().output == v.output)
            .map(|e| e.target())
            .collect();
    users.sort();
    users.dedup();
    users
}

/// The value of a one-element float constant, as f64.
pub fn scalar(g: &Graph, v: Value) -> Option<f64> {
    let Op::Constant(data) = op(g, v) else {
        return None;
    };
    if data.numel() != 1 {
        return None;
    }
    match data.dtype {
        DType::F32 => {
            let b: [u8; 4] = data.bytes.get(..4)?.try_into().ok()?;
            Some(f32::from_le_bytes(b) as f64)
        }
        DType::F16 => {
            let b: [u8; 2] = data.bytes.get(..2)?.try_into().ok()?;
            Some(half::f16::from_le_bytes(b).to_f64())
        }
        _ => None,
    }
}

/// Whether `v` is a one-element float constant close to `want` (relative
/// tolerance wide enough for f16 storage).
pub fn is_scalar(g: &Graph, v: Value, want: f64) -> bool {
    scalar(g, v).is_some_and(|x| (x - want).abs() <= 1e-3 * want.abs().max(1e-30))
}

/// `x` when `v` is `Cast{to}(x)`, else `v`: looks through a widening to f32
/// (or narrowing back) that lowering inserts around f32 computations.
pub fn through_cast(g: &Graph, v: Value, to: DType) -> Value {
    match op(g, v) {
        Op::Cast { to: t } if *t == to => g.inputs(v.node)[0],
        _ => v,
    }
}

/// The value `v` after an optional `Cast` to `dtype`: follows the single
/// user of `v` when it is that cast, otherwise `v` when no cast is needed.
pub fn after_cast(g: &Graph, v: Value, dtype: DType) -> Option<Value> {
    if g.ty(v).dtype == dtype {
        return Some(v);
    }
    let users = users(g, v);
    if users.len() != 1 || use_count(g, v) != 1 {
        return None;
    }
    matches!(g.g[users[0]].op, Op::Cast { to } if to == dtype).then(|| out(users[0]))
}

/// Whether `v` is a 1-D parameter or constant of `len` elements.
pub fn is_vector(g: &Graph, v: Value, len: &crate::ir::Dim) -> bool {
    let t = g.ty(v);
    op(g, v).is_source() && t.shape.len() == 1 && &t.shape[0] == len
}

/// Adds `op` with `inputs` in the naming scope of node `near` (the name is
/// `near`'s path with the op name as the last part).
pub fn add_near(
    g: &mut Graph,
    pass: &'static str,
    near: NodeIndex,
    op: Op,
    inputs: &[Value],
) -> Result<Vec<Value>, PassError> {
    let name = &g.g[near].name;
    let scope = name.rsplit_once('/').map_or("", |(s, _)| s);
    let label = format!("{}/{}", scope.trim_start_matches('/'), op.name());
    let label = label.trim_start_matches('/').to_string();
    let span = g.g[near].span;
    g.set_span(span);
    let added = g
        .add_multi(&label, op, inputs)
        .map_err(|source| PassError::Ir { pass, source });
    g.set_span(None);
    added
}

/// Re-infers every node's outputs in topological order. A dtype or shape
/// that changes is an error (a rewrite must preserve them); the tracked
/// contents of small integer tensors are updated.
pub fn retype(g: &mut Graph) -> Result<(), IrError> {
    for n in g.topo_order()? {
        if g.g[n].op.is_source() {
            continue;
        }
        let inputs = g.inputs(n);
        let types: Vec<_> = inputs.iter().map(|v| g.ty(*v)).collect();
        let node = &g.g[n];
        let fresh = infer(&node.op, &types).map_err(|reason| IrError::Invalid {
            node: node.name.clone(),
            reason,
        })?;
        let same_shape = fresh.len() == node.outputs.len()
            && fresh
                .iter()
                .zip(&node.outputs)
                .all(|(a, b)| a.dtype == b.dtype && a.shape == b.shape);
        if !same_shape {
            return Err(IrError::Invalid {
                node: node.name.clone(),
                reason: "a rewrite changed the type of this node's output".into(),
            });
        }
        g.g[n].outputs = fresh;
    }
    Ok(())
}

/// A recognised `LayerNorm` as lowering writes it: in f32, with the input,
/// gamma and beta widened and the result narrowed when the activation type
/// is not f32.
pub struct LayerNormMatch {
    /// The node whose output is the normalised activation (the narrowing
    /// `Cast`, or the `LayerNorm` itself in f32 models).
    pub root: NodeIndex,
    /// The activation before widening.
    pub x: Value,
    /// Gamma, before widening.
    pub gamma: Value,
    /// Beta, before widening.
    pub beta: Value,
    /// Epsilon.
    pub eps: f32,
}

/// Matches `[Cast{dtype}](LayerNorm{eps}([Cast{f32}](x), [Cast](gamma), [Cast](beta)))`
/// at the `LayerNorm` node `n`.
pub fn layer_norm(g: &Graph, n: NodeIndex) -> Option<LayerNormMatch> {
    let Op::LayerNorm { eps } = g.g[n].op else {
        return None;
    };
    let [x, gamma, beta] = g.inputs(n)[..] else {
        return None;
    };
    let [x, gamma, beta] = [x, gamma, beta].map(|v| through_cast(g, v, DType::F32));
    let dtype = g.ty(x).dtype;
    if g.ty(gamma).dtype != dtype || g.ty(beta).dtype != dtype {
        return None;
    }
    let root = after_cast(g, out(n), dtype)?.node;
    Some(LayerNormMatch {
        root,
        x,
        gamma,
        beta,
        eps,
    })
}

/// The operands of `Add(a, b)` producing `v`, with `a` of `v`'s full shape
/// (the residual stream) and `b` the branch. `None` when neither operand has
/// the full shape.
pub fn residual_add(g: &Graph, v: Value) -> Option<(Value, Value)> {
    let [a, b] = producer_of(g, v, "Add")?[..] else {
        return None;
    };
    let full = &g.ty(v).shape;
    if &g.ty(a).shape == full {
        Some((a, b))
    } else if &g.ty(b).shape == full {
        Some((b, a))
    } else {
        None
    }
}

/// When `v` is `Add(MatMul(..), bias)` with a 1-D parameter `bias` and `v`
/// read once, the product and the bias.
pub fn split_bias(g: &Graph, v: Value) -> Option<(Value, Value)> {
    if use_count(g, v) != 1 {
        return None;
    }
    let [p, bias] = producer_of(g, v, "Add")?[..] else {
        return None;
    };
    let last = g.ty(v).shape.last()?.clone();
    let is_product = matches!(op(g, p), Op::MatMul | Op::MatMulAddBias);
    (is_product && matches!(op(g, bias), Op::Weight { .. }) && is_vector(g, bias, &last))
        .then_some((p, bias))
}

/// The two inputs of the producer of `v` when it is the binary op `want`.
pub fn binary(g: &Graph, v: Value, want: &str) -> Option<(Value, Value)> {
    match producer_of(g, v, want)?[..] {
        [a, b] => Some((a, b)),
        _ => None,
    }
}

/// Redirects every use of `old` to `new`, then removes the nodes that fed
/// only `old` and are now unused (never sources: inputs, parameters and
/// constants are left for `dce`). Later matches in the same pass then see
/// true use counts.
pub fn replace(g: &mut Graph, old: Value, new: Value) {
    g.replace_uses(old, new);
    let mut stack = vec![old.node];
    while let Some(n) = stack.pop() {
        if !g.g.contains_node(n) || g.g[n].op.is_source() {
            continue;
        }
        let used =
            (0..g.g[n].outputs.len()).any(|i| use_count(g, Value { node: n, output: i }) > 0);
        if used {
            continue;
        }
        stack.extend(g.inputs(n).iter().map(|v| v.node));
        g.g.remove_node(n);
    }
}
