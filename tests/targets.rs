//! The three emitter targets: every fused form computes what the unfused
//! model computes, each target writes the operators it promises (operator
//! histograms per spec and target are snapshots, so a fusion that stops
//! happening fails here), and `portable` output never leaves the standard
//! domain. Agreement with Hugging Face on every target is in
//! `hf_reference.rs`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{models_in, onnx_check, synthetic_inputs};
use tfc::driver::{compile, CompileOptions, Compiled};
use tfc::emit::{emit, EmitOptions, Target, TargetProvider, WeightMode};
use tfc::model::FloatType;
use tfc::passes::OptLevel;
use tfc::runtime::{load_session, run_f32};

/// Largest absolute difference allowed between an optimised model on any
/// target and the unoptimised portable model, in fp32. The fused kernels
/// sum in another order (a few ulps per op); the tiny examples' outputs are
/// of magnitude ≲ 10, so differences stay near 1e-6.
const F32_TOLERANCE: f32 = 1e-4;

/// The same bound in fp16, relative to the output's largest magnitude: every
/// op rounds to 11 significant bits, and kernels round in different places.
const F16_RELATIVE_TOLERANCE: f32 = 1e-2;

fn compile_at(file: &Path, model: &str, level: OptLevel, dtype: Option<FloatType>) -> Compiled {
    let opts = CompileOptions {
        model: Some(model.to_string()),
        opt_level: level,
        dtype,
        ..CompileOptions::default()
    };
    compile(file, &opts).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn emit_for(compiled: &Compiled, target: Target, weights: WeightMode, out: &Path) {
    emit_with(compiled, target, TargetProvider::Cpu, weights, out);
}

fn emit_with(
    compiled: &Compiled,
    target: Target,
    provider: TargetProvider,
    weights: WeightMode,
    out: &Path,
) {
    let opts = EmitOptions {
        weights,
        seed: 7,
        ..EmitOptions::for_target(target, provider)
    };
    emit(&compiled.graph, &opts, out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

fn render(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k:<45} {v}\n"))
        .collect()
}

/// Runs `path` on the synthetic inputs of `compiled` at (batch, seq).
fn outputs(
    compiled: &Compiled,
    path: &Path,
    batch: usize,
    seq: usize,
) -> Vec<ndarray::ArrayD<f32>> {
    let mut session = load_session(path).unwrap_or_else(|e| panic!("{e}"));
    let inputs = synthetic_inputs(compiled, batch, seq);
    run_f32(&mut session, inputs)
        .unwrap_or_else(|e| panic!("{} at ({batch}, {seq}): {e}", path.display()))
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// Largest |a - b| and largest |a|.
fn max_diff(a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>) -> (f32, f32) {
    assert_eq!(a.shape(), b.shape());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let scale = a.iter().map(|x| x.abs()).fold(0.0, f32::max);
    (diff, scale)
}

/// For every example, each target's optimised model gives the outputs of
/// the unoptimised portable model (same seeded weights), in fp32 and fp16,
/// at sizes with batch > 1, padding and sequence 1. The forms chosen for
/// CUDA (fp16 attention, embeddings, GELU) run here on ONNX Runtime's CPU
/// kernels, which share their definitions.
#[test]
fn every_target_computes_what_the_unoptimised_model_computes() {
    let dir = tempfile::tempdir().unwrap();
    for (file, name) in models_in("examples") {
        for dtype in [FloatType::F32, FloatType::F16] {
            let reference = compile_at(&file, &name, OptLevel::O0, Some(dtype));
            let base = dir.path().join(format!("{name}.{dtype:?}.O0.onnx"));
            emit_for(&reference, Target::Portable, WeightMode::Random, &base);
            let optimised = compile_at(&file, &name, OptLevel::O2, Some(dtype));
            let forms = Target::ALL
                .into_iter()
                .flat_map(|t| [(t, TargetProvider::Cpu), (t, TargetProvider::Cuda)])
                .filter(|(t, p)| *t != Target::Portable || *p == TargetProvider::Cpu);
            for (target, provider) in forms {
                let path = dir
                    .path()
                    .join(format!("{name}.{dtype:?}.{target}.{provider:?}.onnx"));
                emit_with(&optimised, target, provider, WeightMode::Random, &path);
                for (batch, seq) in [(1, 1), (3, 9)] {
                    let want = outputs(&reference, &base, batch, seq);
                    let got = outputs(&optimised, &path, batch, seq);
                    for (w, g) in want.iter().zip(&got) {
                        let (diff, scale) = max_diff(w, g);
                        let limit = match dtype {
                            FloatType::F32 => F32_TOLERANCE,
                            FloatType::F16 => F16_RELATIVE_TOLERANCE * scale.max(1.0),
                        };
                        assert!(
                            diff <= limit,
                            "{name} ({dtype:?}, {target} for {provider:?}) at ({batch}, {seq}) \
                             differs from -O0 \
                             by {diff:.3e} > {limit:.3e}"
                        );
                    }
                }
            }
        }
    }
}

/// Operator histograms of every spec and example on the fused targets, and
/// the ONNX checker on each file (opset 23 and the com.microsoft domain
/// included).
#[test]
fn fused_targets_write_their_operators() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    let mut models = models_in("specs");
    models.extend(models_in("examples"));
    for (file, name) in models {
        let compiled = compile_at(&file, &name, OptLevel::O2, None);
        for target in [Target::Onnx23, Target::Ort] {
            let out = dir.path().join(format!("{name}.{target}.onnx"));
            emit_for(&compiled, target, WeightMode::None, &out);
            insta::assert_snapshot!(
                format!("ops_{target}_{name}"),
                render(&common::onnx_op_counts(&out))
            );
            paths.push(out);
        }
    }
    onnx_check(&paths);
}

/// BERT-base on `ort` is fully fused: one attention and two skip
/// layer-norms per layer, the embeddings in one node, GELU with its bias.
#[test]
fn bert_base_on_ort_has_one_fused_attention_and_two_skip_norms_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::root().join("specs/bert-base.tfm");
    let compiled = compile_at(&file, "bert_base", OptLevel::O2, None);
    let out = dir.path().join("bert.onnx");
    emit_for(&compiled, Target::Ort, WeightMode::None, &out);
    let counts = common::onnx_op_counts(&out);
    let count = |op: &str| counts.get(op).copied().unwrap_or(0);
    assert_eq!(count("com.microsoft::MultiHeadAttention"), 12);
    assert_eq!(count("com.microsoft::SkipLayerNormalization"), 24);
    assert_eq!(count("com.microsoft::EmbedLayerNormalization"), 1);
    assert_eq!(count("com.microsoft::BiasGelu"), 12);
    assert_eq!(
        count("Softmax") + count("LayerNormalization") + count("Erf"),
        0
    );
}

/// `portable` and `onnx23` output uses the standard domain only.
#[test]
fn standard_targets_never_write_another_domain() {
    let dir = tempfile::tempdir().unwrap();
    let mut models = models_in("specs");
    models.extend(models_in("examples"));
    for (file, name) in models {
        let compiled = compile_at(&file, &name, OptLevel::O3, None);
        for target in [Target::Portable, Target::Onnx23] {
            let out = dir.path().join(format!("{name}.{target}.onnx"));
            emit_for(&compiled, target, WeightMode::None, &out);
            let foreign: Vec<String> = common::onnx_op_counts(&out)
                .into_keys()
                .filter(|op| op.contains("::"))
                .collect();
            assert!(foreign.is_empty(), "{name} on {target}: {foreign:?}");
        }
    }
}

/// A second runtime: ONNX's own reference evaluator (`onnx.reference`, a
/// plain implementation of the operator specs) runs every example built for
/// `portable` and `onnx23` and gives ONNX Runtime's numbers.
#[test]
fn standard_targets_run_in_the_onnx_reference_evaluator() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (file, name) in models_in("examples") {
        let compiled = compile_at(&file, &name, OptLevel::O2, None);
        for target in [Target::Portable, Target::Onnx23] {
            let out = dir.path().join(format!("{name}.{target}.onnx"));
            emit_for(&compiled, target, WeightMode::Random, &out);
            paths.push(out.display().to_string());
        }
    }
    let report = common::python(REFERENCE_EVALUATOR, &paths);
    eprintln!("{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        paths.len()
    );
}

/// Runs each model given on the command line in ONNX Runtime and in
/// `onnx.reference` on the same inputs (ids below 8, a padded second row,
/// positions `0..seq`) and prints `ok PATH max|diff|`, failing above 1e-4.
const REFERENCE_EVALUATOR: &str = r#"
import sys
import numpy as np
import onnx
import onnxruntime as ort
from onnx.reference import ReferenceEvaluator

for path in sys.argv[1:]:
    model = onnx.load(path)
    batch, seq = 2, 5
    feeds = {}
    for value in model.graph.input:
        name = value.name
        if "mask" in name:
            x = np.ones((batch, seq), np.int64)
            x[1, 3:] = 0
        elif "position" in name:
            x = np.tile(np.arange(seq, dtype=np.int64), (batch, 1))
        elif "token_type" in name:
            x = np.zeros((batch, seq), np.int64)
        else:
            x = (np.arange(batch * seq, dtype=np.int64).reshape(batch, seq) * 3) % 8
        feeds[name] = x
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = session.run(None, feeds)
    got = ReferenceEvaluator(model).run(None, feeds)
    diff = max(float(np.max(np.abs(w.astype(np.float64) - g.astype(np.float64)))) for w, g in zip(want, got))
    assert diff <= 1e-4, f"{path}: onnx.reference differs from ONNX Runtime by {diff}"
    print(f"ok {path} {diff:.2e}")
"#;
