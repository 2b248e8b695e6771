//! `tfc inspect`: sizes and costs of a model, read off its lowered graph.
//!
//! Parameter counts and weight bytes are summed over the graph's parameters,
//! so they describe exactly what `tfc build` writes. FLOPs count the
//! multiply-adds of every `MatMul` (2 per multiply-add) with the symbolic batch
//! and sequence sizes substituted; element-wise work is not counted, as is
//! usual for transformer FLOP estimates.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ir::{Graph, Op};
use crate::model::{FloatType, Model};

/// Sizes that FLOPs are evaluated at.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Batch size.
    pub batch: i64,
    /// Sequence length (encoder and decoder alike).
    pub sequence: i64,
}

/// One row of the per-layer table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerRow {
    /// Group name: `embeddings`, `encoder.layers.3`, `heads.logits`, …
    pub name: String,
    /// Parameters in the group.
    pub parameters: u64,
    /// MatMul FLOPs of the group's nodes for one forward pass.
    pub flops: u64,
}

/// Everything `tfc inspect` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Model name.
    pub model: String,
    /// `encoder-only`, `decoder-only` or `encoder-decoder`.
    pub kind: &'static str,
    /// Total parameters.
    pub parameters: u64,
    /// Bytes of all weights in the model's dtype.
    pub weight_bytes: u64,
    /// Batch size the FLOPs are given for.
    pub batch: i64,
    /// Sequence length the FLOPs are given for.
    pub sequence: i64,
    /// MatMul FLOPs of one forward pass at (batch, sequence).
    pub flops: u64,
    /// Key/value cache bytes per generated token (per sequence in the batch), decoders only.
    pub kv_cache_bytes_per_token: Option<u64>,
    /// Per-layer breakdown in graph order.
    pub layers: Vec<LayerRow>,
}

/// The group a dotted parameter name or a `/`-separated node name belongs to.
fn group_of(parts: &[&str]) -> String {
    match parts {
        [stack, layers, index, ..] if *layers == "layers" => format!("{stack}.layers.{index}"),
        [stack, layer, ..] if layer.starts_with("layers.") => format!("{stack}.{layer}"),
        [first, ..] if *first == "embeddings" => first.to_string(),
        [first, second, ..] if *first == "heads" => format!("heads.{second}"),
        // `encoder.final_norm.weight` and `/decoder/final_norm/...` alike.
        [first, second, _, ..] => format!("{first}.{second}"),
        [first, ..] => first.to_string(),
        [] => String::new(),
    }
}

/// MatMul FLOPs of one node, with symbols evaluated by `env`.
fn matmul_flops(graph: &Graph, n: petgraph::stable_graph::NodeIndex, w: Workload) -> u64 {
    let env = |s: &str| -> Option<i64> {
        if s.contains("batch") {
            Some(w.batch)
        } else {
            Some(w.sequence)
        }
    };
    let inputs = graph.inputs(n);
    let Some(a) = inputs.first() else { return 0 };
    let k = graph
        .shape(*a)
        .last()
        .and_then(|d| d.eval(&env))
        .unwrap_or(0);
    // Saturating: absurd workloads give u64::MAX, never an overflow.
    let out = graph.g[n].outputs[0]
        .shape
        .iter()
        .map(|d| i128::from(d.eval(&env).unwrap_or(0).max(0)))
        .fold(1i128, i128::saturating_mul);
    let flops = out.saturating_mul(2).saturating_mul(i128::from(k.max(0)));
    u64::try_from(flops).unwrap_or(u64::MAX)
}

/// Builds the report for `model`, lowered as `graph`.
pub fn report(model: &Model, graph: &Graph, w: Workload) -> Report {
    let mut groups: BTreeMap<String, (usize, LayerRow)> = BTreeMap::new();
    fn touch(
        groups: &mut BTreeMap<String, (usize, LayerRow)>,
        name: String,
        order: usize,
    ) -> &mut LayerRow {
        let row = LayerRow {
            name: name.clone(),
            parameters: 0,
            flops: 0,
        };
        &mut groups.entry(name).or_insert((order, row)).1
    }

    let mut weight_bytes = 0u64;
    let mut flops = 0u64;
    let order = graph.topo_order().unwrap_or_default();
    for (i, n) in order.into_iter().enumerate() {
        let node = &graph.g[n];
        match &node.op {
            Op::Weight {
                name, shape, dtype, ..
            } => {
                let count = shape.iter().fold(1u64, |a, &d| a.saturating_mul(d));
                weight_bytes = weight_bytes.saturating_add(count.saturating_mul(dtype.bits()) / 8);
                let parts: Vec<&str> = name.split('.').collect();
                let row = touch(&mut groups, group_of(&parts), i);
                row.parameters = row.parameters.saturating_add(count);
            }
            Op::MatMul => {
                let f = matmul_flops(graph, n, w);
                flops = flops.saturating_add(f);
                let parts: Vec<&str> = node.name.split('/').filter(|p| !p.is_empty()).collect();
                let row = touch(&mut groups, group_of(&parts), i);
                row.flops = row.flops.saturating_add(f);
            }
            _ => {}
        }
    }
    let mut layers: Vec<(usize, LayerRow)> = groups.into_values().collect();
    layers.sort_by_key(|(order, _)| *order);

    let kind = match (&model.encoder, &model.decoder) {
        (Some(_), Some(_)) => "encoder-decoder",
        (None, Some(_)) => "decoder-only",
        _ => "encoder-only",
    };
    let elem_bytes = match model.dtype {
        FloatType::F32 => 4,
        FloatType::F16 => 2,
    };
    let kv_cache_bytes_per_token = model
        .decoder
        .as_ref()
        .map(|d| 2 * d.layers * d.attention.kv_heads * d.attention.head_dim * elem_bytes);

    Report {
        model: model.name.clone(),
        kind,
        parameters: graph.parameter_count(),
        weight_bytes,
        batch: w.batch,
        sequence: w.sequence,
        flops,
        kv_cache_bytes_per_token,
        layers: layers.into_iter().map(|(_, row)| row).collect(),
    }
}

/// `110.1M`, `6.74B`: a count with an SI suffix.
pub fn human_count(n: u64) -> String {
    let f = n as f64;
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}K", f / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", f / 1e6),
        1_000_000_000..=999_999_999_999 => format!("{:.2}B", f / 1e9),
        _ => format!("{:.2}T", f / 1e12),
    }
}

/// `417.6 MiB`: a byte count with a binary suffix.
pub fn human_bytes(n: u64) -> String {
    let f = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", f / 1024.0)
    } else if n < 1 << 30 {
        format!("{:.1} MiB", f / (1u64 << 20) as f64)
    } else {
        format!("{:.2} GiB", f / (1u64 << 30) as f64)
    }
}

/// Renders the report as a readable table.
pub fn render(r: &Report) -> String {
    use comfy_table::{presets::UTF8_BORDERS_ONLY, CellAlignment, Table};
    let mut out = String::new();
    out.push_str(&format!("model       {} ({})\n", r.model, r.kind));
    out.push_str(&format!(
        "parameters  {} ({})\n",
        r.parameters,
        human_count(r.parameters)
    ));
    out.push_str(&format!("weights     {}\n", human_bytes(r.weight_bytes)));
    out.push_str(&format!(
        "FLOPs       {} per forward at batch {}, sequence {}\n",
        human_count(r.flops),
        r.batch,
        r.sequence
    ));
    if let Some(kv) = r.kv_cache_bytes_per_token {
        out.push_str(&format!("KV cache    {} per token\n", human_bytes(kv)));
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec!["group", "parameters", "FLOPs"]);
    for row in &r.layers {
        table.add_row(vec![
            row.name.clone(),
            human_count(row.parameters),
            human_count(row.flops),
        ]);
    }
    for i in 1..3 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    out.push_str(&table.to_string());
    out.push('\n');
    out
}
