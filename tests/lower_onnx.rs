//! End to end: the tiny models are lowered, emitted, checked by ONNX's own
//! checker and strict shape inference, and run by ONNX Runtime at several
//! (batch, sequence) pairs, including a sequence of 1 and padded rows, with
//! every output finite and of the expected symbolic size.

mod lower_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use lower_common::*;
use tfc::emit::{emit, EmitOptions};
use tfc::lower::lower;
use tfc::model::*;

/// Checks and runs every model given on the command line.
const CHECK: &str = r#"
import sys
import numpy as np
import onnx
import onnxruntime as ort

for path in sys.argv[1:]:
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    vocab = 50
    for batch, seq in [(1, 1), (2, 5), (3, 17)]:
        rng = np.random.default_rng(batch * 100 + seq)
        dec = max(1, seq - 2)
        mask = np.ones((batch, seq), dtype=np.int64)
        for row in range(1, batch):
            mask[row, seq - row * (seq // batch):] = 0
        if batch == 3:
            mask[2, :] = 0  # a fully padded row must not produce NaN
        feeds = {}
        for i in session.get_inputs():
            if i.name == "input_ids":
                feeds[i.name] = rng.integers(0, vocab, (batch, seq), dtype=np.int64)
            elif i.name == "attention_mask":
                feeds[i.name] = mask
            elif i.name == "token_type_ids":
                feeds[i.name] = (np.arange(seq)[None, :] >= seq // 2).astype(np.int64).repeat(batch, 0)
            elif i.name == "position_ids":
                feeds[i.name] = np.arange(seq, dtype=np.int64)[None, :].repeat(batch, 0)
            elif i.name == "decoder_input_ids":
                feeds[i.name] = rng.integers(0, vocab, (batch, dec), dtype=np.int64)
            else:
                raise SystemExit(f"{path}: unexpected input {i.name}")
        names = [o.name for o in session.get_outputs()]
        for name, value in zip(names, session.run(None, feeds)):
            value = value.astype(np.float32)
            # Rows with a real token are finite; a fully padded row carries no
            # meaning but must not be NaN (max pooling in f16 gives -inf there,
            # as sentence-transformers does).
            real = mask.any(axis=1)
            if not np.isfinite(value[real]).all() or np.isnan(value).any():
                raise SystemExit(f"{path}: {name} at ({batch}, {seq}) is not finite")
            if value.shape[0] != batch:
                raise SystemExit(f"{path}: {name} has shape {value.shape} at batch {batch}")
            decoder = "decoder_input_ids" in feeds
            if value.ndim == 3 and value.shape[1] != (dec if decoder else seq):
                raise SystemExit(f"{path}: {name} has shape {value.shape} at seq {seq}")
    print("ok", path)
"#;

/// The Python with onnx and onnxruntime: the repository's .venv, else `python3`.
fn python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let candidates = [venv, PathBuf::from("python3"), PathBuf::from("python")];
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import onnx, onnxruntime"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn models() -> Vec<Model> {
    let heads = vec![
        head("hidden", HeadKind::Hidden),
        head(
            "mean",
            HeadKind::Embedding {
                pooler: false,
                pooling: Pooling::Mean,
                normalize: true,
            },
        ),
        head(
            "max",
            HeadKind::Embedding {
                pooler: false,
                pooling: Pooling::Max,
                normalize: false,
            },
        ),
        head(
            "cls",
            HeadKind::SequenceClassification {
                pooling: Pooling::Cls,
                pooler: true,
                num_labels: 3,
            },
        ),
        head("ner", HeadKind::TokenClassification { num_labels: 4 }),
        head("qa", HeadKind::QuestionAnswering),
    ];
    let mut last = llama();
    last.name = "tiny_llama_classifier".into();
    last.heads = vec![head(
        "score",
        HeadKind::SequenceClassification {
            pooling: Pooling::Last,
            pooler: false,
            num_labels: 2,
        },
    )];
    let mut list = vec![bert(heads), llama(), last, gptj(), t5(), bloom(), marian()];
    list.extend(variants());
    let half: Vec<Model> = list
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.name = format!("{}_f16", m.name);
            m.dtype = FloatType::F16;
            m
        })
        .collect();
    list.extend(half);
    list
}

/// Grouped-query attention with ALiBi and with relative bias, and models
/// without the optional inputs.
fn variants() -> Vec<Model> {
    let mut bloom_gqa = bloom();
    bloom_gqa.name = "tiny_bloom_gqa".into();
    let stack = bloom_gqa.decoder.as_mut().expect("decoder");
    stack.attention.kv_heads = 2;
    bloom_gqa.inputs.attention_mask = false;

    let mut t5_mqa = t5();
    t5_mqa.name = "tiny_t5_mqa".into();
    for stack in [t5_mqa.encoder.as_mut(), t5_mqa.decoder.as_mut()] {
        let stack = stack.expect("both stacks");
        stack.attention.kv_heads = 1;
        if let Some(cross) = stack.cross_attention.as_mut() {
            cross.kv_heads = 1;
        }
    }

    let mut llama_unmasked = llama();
    llama_unmasked.name = "tiny_llama_unmasked".into();
    llama_unmasked.inputs.attention_mask = false;

    let mut bert_plain = bert(vec![head(
        "last",
        HeadKind::Embedding {
            pooler: false,
            pooling: Pooling::Last,
            normalize: false,
        },
    )]);
    bert_plain.name = "tiny_bert_plain".into();
    bert_plain.inputs = InputSet {
        attention_mask: false,
        token_type_ids: false,
        position_ids: true,
    };
    vec![bloom_gqa, t5_mqa, llama_unmasked, bert_plain]
}

#[test]
fn tiny_models_pass_the_onnx_checker_and_run() {
    let python = python().expect("a python with onnx and onnxruntime (run scripts/setup.sh)");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for model in models() {
        let graph = lower(&model).unwrap_or_else(|e| panic!("{}: {e}", model.name));
        let path = dir.path().join(format!("{}.onnx", model.name));
        emit(&graph, &EmitOptions::default(), &path)
            .unwrap_or_else(|e| panic!("{}: {e}", model.name));
        paths.push(path);
    }
    let script = dir.path().join("check.py");
    std::fs::write(&script, CHECK).expect("write script");
    let out = Command::new(python)
        .arg(&script)
        .args(&paths)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
