//! Decoding with a key/value cache computes what a full forward pass computes.
//!
//! For each decoder-only family (GPT-2 with learned positions, LLaMA with grouped-query
//! attention and RoPE, BLOOM with ALiBi) the fixture's spec is compiled to its cached
//! `decoder` graph, the fixture checkpoint is loaded, and the left-padded batch of
//! `io.safetensors` (lengths 8, 6 and 3) is fed as a prefill of the first `N` columns
//! followed by one column per step, each step reusing the previous step's presents. The
//! logits of the last position after every step must equal the logits Hugging Face
//! Transformers computed for that position in one full forward pass over all 8 columns,
//! within [`TOLERANCE`], wherever the position is a real token. Every prefill length from 1
//! to 7 is tried, so the cache is exercised from almost empty to almost full.
//!
//! The same graphs are also checked for the cache contract: `present.{i}.key/value` of
//! shape `[batch, kv_heads, past + new, head_dim]`.

mod reference;

use std::path::{Path, PathBuf};

use ndarray::{s, Array2, ArrayD, Ix3};
use reference::{fixture_dir, root, FixtureIo};
use tfc::driver::{compile_graphs, load_weights_graphs, CompileOptions};
use tfc::emit::{emit, EmitOptions};
use tfc::lower::LowerOptions;
use tfc::runtime::generate::load::step_model;
use tfc::runtime::generate::StepModel;
use tfc::runtime::SessionOptions;

/// Largest absolute logit difference allowed against Transformers (fp32 on both sides;
/// measured differences are around 1e-6).
const TOLERANCE: f32 = 1e-4;

/// The resolved model and its emitted `(role, file)` graphs.
type Built = (tfc::model::Model, Vec<(String, PathBuf)>);

/// Builds the cached graphs of `model` in `spec` with the fixture's checkpoint into `dir`.
fn build_cached(fixture: &str, spec: &str, model: &str, dir: &Path) -> Built {
    let opts = CompileOptions {
        model: Some(model.to_string()),
        ..CompileOptions::default()
    };
    let lower = LowerOptions { kv_cache: true };
    let mut compiled = compile_graphs(&root().join("tests/specs").join(spec), &opts, &lower)
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let roles: Vec<&str> = compiled.graphs.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["decoder"], "{fixture}: one cached decoder graph");
    let reports = load_weights_graphs(&mut compiled, &fixture_dir(fixture), None)
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let (_, graph) = &compiled.graphs[0];
    assert_eq!(
        reports[0].loaded,
        graph.weights().len(),
        "{fixture}: weights"
    );

    // The cache contract, read off the graph's declared outputs.
    let layers = compiled.model.decoder.as_ref().expect("a decoder").layers;
    for i in 0..layers {
        for part in ["key", "value"] {
            let name = format!("present.{i}.{part}");
            let (_, value) = graph
                .outputs
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{fixture}: no output {name}"));
            let shape = tfc::ir::shape_string(graph.shape(*value));
            assert!(
                shape.contains("past_sequence + sequence"),
                "{fixture}: {name} has shape {shape}"
            );
        }
    }

    let path = dir.join("decoder.onnx");
    emit(graph, &EmitOptions::default(), &path).unwrap_or_else(|e| panic!("{fixture}: {e}"));
    (compiled.model, vec![("decoder".to_string(), path)])
}

/// A fresh step model (an empty cache) over the built graphs.
fn open(fixture: &str, (model, files): &Built) -> Box<dyn StepModel> {
    let (step, cached, _, _) = step_model(model, files, &SessionOptions::default())
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    assert!(cached, "{fixture}: the step model uses the cache");
    step
}

/// Columns `from..to` of an `[rows, columns]` array, as rows.
fn columns(a: &ArrayD<i64>, from: usize, to: usize) -> Vec<Vec<i64>> {
    a.outer_iter()
        .map(|row| row.iter().skip(from).take(to - from).copied().collect())
        .collect()
}

/// Largest difference between `got` `[rows, vocab]` and the reference at `column`, over
/// rows whose token there is real.
fn worst_at(got: &Array2<f32>, want: &ndarray::Array3<f32>, mask: &ArrayD<i64>, col: usize) -> f32 {
    let mut worst = 0.0f32;
    for row in 0..got.nrows() {
        if mask[[row, col]] == 0 {
            continue;
        }
        let reference = want.slice(s![row, col, ..]);
        for (g, w) in got.row(row).iter().zip(reference) {
            assert!(g.is_finite(), "non-finite logit at row {row}, column {col}");
            worst = worst.max((g - w).abs());
        }
    }
    worst
}

/// Prefill of every length, then single-token steps to the end, against HF's full pass.
fn check(fixture: &str, spec: &str, model: &str, logits: &str) {
    let io = FixtureIo::read(fixture);
    let ids = io.int("input_ids");
    let mask = io.int("attention_mask");
    let want = io
        .float(logits)
        .clone()
        .into_dimensionality::<Ix3>()
        .expect("logits [rows, columns, vocab]");
    let width = ids.shape()[1];
    let dir = tempfile::tempdir().expect("temporary folder");
    let built = build_cached(fixture, spec, model, dir.path());

    let mut overall = 0.0f32;
    for prefill in 1..width {
        let mut step = open(fixture, &built);
        // Every row needs a real token in the prefill for its logits to mean anything;
        // rows that are still all padding are skipped by `worst_at`.
        let got = step
            .step(&columns(ids, 0, prefill), &columns(mask, 0, prefill))
            .unwrap_or_else(|e| panic!("{fixture} prefill {prefill}: {e}"));
        let mut worst = worst_at(&got, &want, mask, prefill - 1);
        for col in prefill..width {
            let got = step
                .step(&columns(ids, col, col + 1), &columns(mask, 0, col + 1))
                .unwrap_or_else(|e| panic!("{fixture} step at column {col}: {e}"));
            worst = worst.max(worst_at(&got, &want, mask, col));
        }
        eprintln!(
            "{fixture}: prefill {prefill} + {} steps: max |diff| {worst:.2e}",
            width - prefill
        );
        assert!(
            worst <= TOLERANCE,
            "{fixture}: prefill {prefill} then one token per step differs from the full pass by {worst:.2e}"
        );
        overall = overall.max(worst);
    }
    eprintln!("{fixture}: max |diff| over every prefill length {overall:.2e}");
}

#[test]
fn gpt2_prefill_then_decode_equals_the_full_pass() {
    check("gpt2", "gpt2.tfm", "gpt2_fixture", "logits");
}

#[test]
fn llama_prefill_then_decode_equals_the_full_pass() {
    check("llama", "llama.tfm", "llama_fixture", "logits");
}

#[test]
fn bloom_prefill_then_decode_equals_the_full_pass() {
    check("bloom", "bloom.tfm", "bloom_fixture", "logits");
}
