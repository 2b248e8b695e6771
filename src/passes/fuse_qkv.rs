//! Sibling projection packing: the query, key and value projections of an
//! attention block (and, alike, the gate and up projections of a gated
//! feed-forward) become one wider matrix product.
//!
//! Before: `yᵢ = MatMulAddBias(x, wᵢ, bᵢ)` for i = 1..n (or `yᵢ = MatMul(x,
//! wᵢ)` for all i), n ≥ 2, reading the same `x`, in the same block.
//!
//! After: `y = MatMulAddBias(x, Concat(w₁..wₙ, axis 1), Concat(b₁..bₙ))`
//! (or `MatMul`), and `yᵢ = Slice(y, last axis, offsetᵢ..offsetᵢ + widthᵢ)`.
//!
//! The weights stay separate parameters (each keeps its name, checkpoint
//! tensor and seeded initialisation); the `Concat` of parameters is constant
//! and runtimes fold it when they load the model, so one GEMM replaces n.
//!
//! Preconditions: every wᵢ is a 2-D parameter with the same input width and
//! every bᵢ a 1-D parameter; the projections are siblings (their nodes share
//! the block's naming scope, `/…/attention/q_proj/…` and
//! `/…/attention/k_proj/…`), so projections of different blocks that happen
//! to read the same value (two heads on one trunk) are left alone. Runs
//! after `fuse_matmul_bias`, which forms the `MatMulAddBias` nodes.

use std::collections::BTreeMap;

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, op, out, replace};
use super::{Pass, PassError};
use crate::ir::{Graph, Op, Value};

/// Packs sibling projections reading one input into one matrix product.
pub struct FuseQkv;

/// A projection: its node, weight, bias and output width.
struct Projection {
    node: NodeIndex,
    weight: Value,
    bias: Option<Value>,
    width: i64,
}

impl Pass for FuseQkv {
    fn name(&self) -> &'static str {
        "fuse_qkv"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        // Group candidate projections by (input, block scope, biased).
        let mut groups: BTreeMap<(Value, String, bool), Vec<Projection>> = BTreeMap::new();
        for n in g.g.node_indices() {
            let biased = match g.g[n].op {
                Op::MatMulAddBias => true,
                Op::MatMul => false,
                _ => continue,
            };
            let inputs = g.inputs(n);
            let (x, weight) = (inputs[0], inputs[1]);
            let is_param = |v: Value| matches!(op(g, v), Op::Weight { .. });
            if !is_param(weight) || g.ty(weight).rank() != 2 {
                continue;
            }
            let bias = inputs.get(2).copied();
            if bias.is_some_and(|b| !is_param(b) || g.ty(b).rank() != 1) {
                continue;
            }
            let Some(width) = g.ty(weight).shape[1].as_const() else {
                continue;
            };
            let Some(scope) = block_scope(&g.g[n].name) else {
                continue;
            };
            let projection = Projection {
                node: n,
                weight,
                bias,
                width,
            };
            groups
                .entry((x, scope, biased))
                .or_default()
                .push(projection);
        }

        let mut packed = 0;
        for ((x, block, _), mut group) in groups {
            if group.len() < 2 {
                continue;
            }
            // Graph order, so the packed layout follows the spec (q, k, v).
            group.sort_by_key(|p| p.node.index());
            pack(g, self.name(), x, &block, &group)?;
            packed += 1;
        }
        Ok(packed)
    }
}

/// The naming scope of the block a projection belongs to: its node name
/// without the last two parts (`/encoder/layers.0/attention/q_proj/MatMul`
/// → `/encoder/layers.0/attention`).
fn block_scope(name: &str) -> Option<String> {
    let (projection, _) = name.rsplit_once('/')?;
    let (block, _) = projection.rsplit_once('/')?;
    (!block.is_empty()).then(|| block.to_string())
}

/// Adds `op` as `{block}/packed_proj/{Op}`, with the span of `near`.
fn add_packed(
    g: &mut Graph,
    pass: &'static str,
    (block, near): (&str, NodeIndex),
    op: Op,
    inputs: &[Value],
) -> Result<Value, PassError> {
    let label = format!(
        "{}/packed_proj/{}",
        block.trim_start_matches('/'),
        op.name()
    );
    g.set_span(g.g[near].span);
    let added = g.add(&label, op, inputs);
    g.set_span(None);
    added.map_err(|source| PassError::Ir { pass, source })
}

/// Replaces `group` (all reading `x`, in `block`) with one product and a
/// slice each.
fn pack(
    g: &mut Graph,
    pass: &'static str,
    x: Value,
    block: &str,
    group: &[Projection],
) -> Result<(), PassError> {
    let at = (block, group[0].node);
    let weights: Vec<Value> = group.iter().map(|p| p.weight).collect();
    let weight = add_packed(g, pass, at, Op::Concat { axis: 1 }, &weights)?;
    let product = match group.iter().map(|p| p.bias).collect::<Option<Vec<_>>>() {
        Some(biases) => {
            let bias = add_packed(g, pass, at, Op::Concat { axis: 0 }, &biases)?;
            add_packed(g, pass, at, Op::MatMulAddBias, &[x, weight, bias])?
        }
        None => add_packed(g, pass, at, Op::MatMul, &[x, weight])?,
    };

    let mut offset = 0;
    for p in group {
        let slice = Op::Slice {
            axes: vec![-1],
            starts: vec![offset],
            ends: vec![offset + p.width],
        };
        let y = add_near(g, pass, p.node, slice, &[product])?[0];
        tracing::debug!(pass, projection = %g.g[p.node].name, "packed into one product");
        replace(g, out(p.node), y);
        offset += p.width;
    }
    Ok(())
}
