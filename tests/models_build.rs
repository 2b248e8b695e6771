//! Every spec and example compiles to ONNX that the reference `onnx` checker
//! accepts (full check, strict shape inference) and that ONNX Runtime runs at
//! several (batch, sequence) sizes, including sequence 1 and batch > 1, with
//! finite outputs of the declared symbolic shapes. Operator histograms and
//! the examples' IR dumps are snapshots, and parameter counts are checked
//! against Hugging Face Transformers.

mod common;

use std::path::{Path, PathBuf};

use common::{compile_model, models_in, onnx_check, root, synthetic_inputs};
use tfc::driver::Compiled;
use tfc::emit::{emit, EmitOptions, WeightMode};
use tfc::runtime::{load_session, run_f32};

/// The (batch, sequence) pairs every model must run at.
const SIZES: [(usize, usize); 3] = [(1, 1), (2, 7), (3, 16)];

fn build(compiled: &Compiled, out: &Path, weights: WeightMode) {
    let opts = EmitOptions {
        weights,
        ..EmitOptions::default()
    };
    emit(&compiled.graph, &opts, out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

/// Operator histogram of an ONNX file, `domain::op count` per line.
fn onnx_histogram(path: &Path) -> String {
    common::onnx_op_counts(path)
        .iter()
        .map(|(k, v)| format!("{k:<22} {v}\n"))
        .collect()
}

#[test]
fn every_model_passes_the_onnx_checker() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    let mut models = models_in("specs");
    models.extend(models_in("examples"));
    for (file, name) in models {
        let compiled = compile_model(&file, &name);
        let out = dir.path().join(format!("{name}.onnx"));
        // Graph only: the real-size specs would write gigabytes of weights.
        build(&compiled, &out, WeightMode::None);
        insta::assert_snapshot!(format!("ops_{name}"), onnx_histogram(&out));
        paths.push(out);
    }
    onnx_check(&paths);
}

/// Runs `compiled` (written to `out` with random weights) at every size in
/// [`SIZES`], checking output shapes and finiteness.
fn run_at_sizes(compiled: &Compiled, out: &Path) {
    build(compiled, out, WeightMode::Random);
    let mut session = load_session(out).unwrap_or_else(|e| panic!("{e}"));
    let dims = &compiled.model.dims;
    for (batch, seq) in SIZES {
        let inputs = synthetic_inputs(compiled, batch, seq);
        let outputs = run_f32(&mut session, inputs)
            .unwrap_or_else(|e| panic!("{} at ({batch}, {seq}): {e}", compiled.model.name));
        assert_eq!(outputs.len(), compiled.graph.outputs.len());
        for ((name, value), (declared, v)) in outputs.iter().zip(&compiled.graph.outputs) {
            assert_eq!(name, declared);
            let env = |s: &str| {
                if s == dims.batch {
                    Some(batch as i64)
                } else if s == dims.sequence || s == dims.decoder_sequence {
                    Some(seq as i64)
                } else {
                    None
                }
            };
            let want: Vec<usize> = compiled
                .graph
                .shape(*v)
                .iter()
                .map(|d| d.eval(&env).expect("only batch and sequence symbols") as usize)
                .collect();
            assert_eq!(
                value.shape(),
                want.as_slice(),
                "{name} of {}",
                compiled.model.name
            );
            assert!(
                value.iter().all(|x| x.is_finite()),
                "{name} of {} at ({batch}, {seq}) has non-finite values",
                compiled.model.name
            );
        }
    }
}

#[test]
fn examples_run_in_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    for (file, name) in models_in("examples") {
        let compiled = compile_model(&file, &name);
        run_at_sizes(&compiled, &dir.path().join(format!("{name}.onnx")));
    }
}

/// The real-size specs run with every width, head count and block kept, but
/// one layer per stack and a 1024-token vocabulary, so the test stays small.
#[test]
fn specs_run_in_onnx_runtime_at_one_layer() {
    let dir = tempfile::tempdir().unwrap();
    for (file, name) in models_in("specs") {
        let full = compile_model(&file, &name);
        let mut body = String::from("vocab_size = 1024\n");
        if full.model.encoder.is_some() {
            body.push_str("encoder { layers = 1 }\n");
        }
        if full.model.decoder.is_some() {
            body.push_str("decoder { layers = 1 }\n");
        }
        let spec = dir.path().join(format!("{name}-probe.tfm"));
        let text = format!(
            "include \"{}\"\nmodel probe = {name} {{\n{body}}}\n",
            file.display()
        );
        std::fs::write(&spec, text).unwrap();
        let probe = compile_model(&spec, "probe");
        run_at_sizes(&probe, &dir.path().join(format!("{name}.onnx")));
    }
}

#[test]
fn example_ir_dumps() {
    for (file, name) in models_in("examples") {
        let compiled = compile_model(&file, &name);
        let text = tfc::ir::print(&compiled.graph).unwrap();
        insta::assert_snapshot!(format!("ir_{name}"), text);
    }
}

/// Parameter counts of the Hugging Face Transformers 4.57 reference classes,
/// from `model.num_parameters()` on models built from config objects (tied
/// weights counted once): `BertModel` (with pooler) for bert-base-uncased,
/// `GPT2LMHeadModel` for gpt2, `T5ForConditionalGeneration` for t5-small,
/// `LlamaForCausalLM` for Llama-2-7b and Llama-3.2-1B, `BloomForCausalLM`
/// for bloom-560m. These are also the published sizes (110M, 124M, 60M,
/// 6.7B, 1.24B, 560M).
#[test]
fn parameter_counts_match_hugging_face() {
    let cases: [(&str, &str, u64); 6] = [
        ("specs/bert-base.tfm", "bert_base", 109_482_240),
        ("specs/gpt2.tfm", "gpt2", 124_439_808),
        ("specs/t5-small.tfm", "t5_small", 60_506_624),
        ("specs/llama.tfm", "llama_2_7b", 6_738_415_616),
        ("specs/llama.tfm", "llama_3_2_1b", 1_235_814_400),
        ("specs/bloom-560m.tfm", "bloom_560m", 559_214_592),
    ];
    for (file, name, want) in cases {
        let compiled = compile_model(&root().join(file), name);
        let workload = tfc::inspect::Workload {
            batch: 1,
            sequence: 128,
        };
        let report = tfc::inspect::report(&compiled.model, &compiled.graph, workload);
        assert_eq!(report.parameters, want, "{name}");
    }
}

#[test]
fn same_seed_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = root().join("examples/01-tiny-encoder.tfm");
    let (_, name) = models_in("examples")
        .into_iter()
        .find(|(f, _)| *f == file)
        .unwrap();
    let compiled = compile_model(&file, &name);
    let write = |seed: u64, out: &str| {
        let path = dir.path().join(out);
        let opts = EmitOptions {
            seed,
            ..EmitOptions::default()
        };
        emit(&compiled.graph, &opts, &path).unwrap();
        std::fs::read(path).unwrap()
    };
    let (a, b, c) = (write(7, "a.onnx"), write(7, "b.onnx"), write(8, "c.onnx"));
    assert!(a == b, "same seed, different bytes");
    assert!(a != c, "different seeds, same bytes");
}
