//! Embedding sum + LayerNorm fusion.
//!
//! Before (`lower::embeddings` with learned or sinusoidal positions and an
//! embedding norm; casts only when the activation type is not f32):
//!
//! ```text
//! e = Gather{0}(word, ids)
//! e = Add(e, Gather{0}(segment, segment_ids))      (when segments exist)
//! e = Add(e, Gather{0}(position, position_ids))
//! y = [Cast](LayerNorm{eps}([Cast](e), [Cast](gamma), [Cast](beta)))
//! ```
//!
//! After: `y = EmbedLayerNorm{eps}(ids, position_ids, word, position, gamma,
//! beta [, segment_ids, segment])`.
//!
//! Preconditions: every table is a parameter or constant gathered on axis
//! 0; the intermediate sums have no other user. An embedding scale (a `Mul`
//! after the word lookup) does not match: the model keeps the unfused form.

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, layer_norm, op, out, producer_of, replace, use_count};
use super::{Pass, PassError};
use crate::ir::{Graph, Op, Value};

/// Fuses the embedding lookups and their norm into [`Op::EmbedLayerNorm`].
pub struct FuseEmbedLayerNorm;

impl Pass for FuseEmbedLayerNorm {
    fn name(&self) -> &'static str {
        "fuse_embed_layer_norm"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut fused = 0;
        let candidates: Vec<NodeIndex> = g.g.node_indices().collect();
        for n in candidates {
            if !g.g.contains_node(n) {
                continue;
            }
            let Some(m) = layer_norm(g, n) else { continue };
            if use_count(g, out(m.root)) == 0 {
                continue;
            }
            let Some(lookups) = embedding_sum(g, m.x) else {
                continue;
            };
            let mut inputs = vec![
                lookups.ids,
                lookups.position_ids,
                lookups.word,
                lookups.position,
                m.gamma,
                m.beta,
            ];
            if let Some((ids, table)) = lookups.segment {
                inputs.extend([ids, table]);
            }
            let op = Op::EmbedLayerNorm { eps: m.eps };
            let y = add_near(g, self.name(), n, op, &inputs)?[0];
            tracing::debug!(
                pass = self.name(),
                norm = %g.g[n].name,
                segments = inputs.len() == 8,
                "fused EmbedLayerNorm"
            );
            replace(g, out(m.root), y);
            fused += 1;
        }
        Ok(fused)
    }
}

/// The lookups of a recognised embedding sum.
struct Lookups {
    ids: Value,
    word: Value,
    position_ids: Value,
    position: Value,
    segment: Option<(Value, Value)>,
}

/// `(table, ids)` of `Gather{axis=0}(table, ids)` with a source table.
fn lookup(g: &Graph, v: Value) -> Option<(Value, Value)> {
    if !matches!(op(g, v), Op::Gather { axis: 0 }) {
        return None;
    }
    let [table, ids] = g.inputs(v.node)[..] else {
        return None;
    };
    matches!(op(g, table), Op::Weight { .. } | Op::Constant(_)).then_some((table, ids))
}

fn embedding_sum(g: &Graph, e: Value) -> Option<Lookups> {
    let [tokens, positions] = producer_of(g, e, "Add")?[..] else {
        return None;
    };
    let (position, position_ids) = lookup(g, positions)?;
    if use_count(g, positions) != 1 {
        return None;
    }
    let (word, ids, segment) = match lookup(g, tokens) {
        Some((word, ids)) => (word, ids, None),
        None => {
            let [w, s] = producer_of(g, tokens, "Add")?[..] else {
                return None;
            };
            if use_count(g, tokens) != 1 || use_count(g, s) != 1 {
                return None;
            }
            let (word, ids) = lookup(g, w)?;
            let (seg_table, seg_ids) = lookup(g, s)?;
            (word, ids, Some((seg_ids, seg_table)))
        }
    };
    if !matches!(op(g, word), Op::Weight { .. }) {
        return None;
    }
    Some(Lookups {
        ids,
        word,
        position_ids,
        position,
        segment,
    })
}
