//! tfc's ONNX computes what Hugging Face Transformers computes.
//!
//! For every fixture in `tests/fixtures/` (random-initialised HF models and
//! the outputs HF computed for them, made by `tests/fixtures/generate.py`),
//! the spec in `tests/specs/` that restates its `config.json` is compiled,
//! the fixture's `model.safetensors` is loaded through the family's weight
//! map, the model is emitted and run in ONNX Runtime on the fixture's inputs,
//! and every reference output is compared.
//!
//! Per-token outputs are compared only where `attention_mask == 1`: at padded
//! positions HF's values are arbitrary. Encoder–decoder logits are compared
//! at every decoder position (the decoder batch has no padding).
//! `encoder_last_hidden_state` of the encoder–decoders and nothing else is
//! left out: no head of the spec language exposes the encoder's output of an
//! encoder–decoder.

mod reference;

use ndarray::ArrayD;
use reference::{
    compare, compile_with_checkpoint, fixture_dir, root, run_onnx_for, Comparison, FixtureIo,
    Positions,
};
use tfc::emit::Target;
use tfc::model::FloatType;
use Positions::{All, RealTokens};

/// Largest absolute difference allowed in fp32. The fixtures are small
/// (outputs of magnitude ≲ 10) and both sides compute in fp32; what differs
/// is summation order and the kernels (erf, tanh, exp), each a few ulps,
/// i.e. ~1e-6 per op, growing through a few layers to ~1e-5 at most.
const F32_TOLERANCE: f32 = 1e-4;

/// Largest absolute difference allowed in fp16, as a fraction of the output's
/// scale (the largest |reference value| compared). fp16 keeps 11 significant
/// bits (rounding 2^-11 ≈ 4.9e-4 relative), and weights and activations are
/// rounded at every op, so a couple of layers of 32–128-term sums end a few
/// times 2^-11 away. Measured with ONNX Runtime on CPU: 6.7e-4 of the scale
/// for BERT's hidden states, 7.0e-4 for its pooler, 1.8e-3 for Llama's
/// logits. 1e-2 leaves room for other kernels (GPU, other ORT versions);
/// a real bug gives errors of the order of the scale itself.
const F16_RELATIVE_TOLERANCE: f32 = 1e-2;

/// One comparison of a fixture: the reference output's name, the tfc output
/// that should equal it, and which of its elements count.
struct Check {
    expected: &'static str,
    output: &'static str,
    positions: Positions,
}

const fn check(expected: &'static str, output: &'static str, positions: Positions) -> Check {
    Check {
        expected,
        output,
        positions,
    }
}

/// One fixture, the spec model that restates it and the weight map that
/// reads its checkpoint.
struct Case<'a> {
    fixture: &'static str,
    spec: &'static str,
    model: &'static str,
    map: &'static str,
    checks: &'a [Check],
}

/// Builds the case in `dtype` for `target`, runs it on the fixture's inputs
/// (with `position_ids` replaced when `positions` is given) and compares.
fn measure(
    case: &Case,
    dtype: FloatType,
    target: Target,
    positions: Option<ArrayD<i64>>,
) -> Vec<Comparison> {
    let io = FixtureIo::read(case.fixture);
    let spec = root().join("tests/specs").join(case.spec);
    let compiled = compile_with_checkpoint(
        &spec,
        case.model,
        dtype,
        &fixture_dir(case.fixture),
        case.map,
    );
    let mut inputs = io.ints.clone();
    if let Some(p) = positions {
        inputs.insert("position_ids".to_string(), p);
    }
    let dir = tempfile::tempdir().expect("temporary folder");
    let outputs = run_onnx_for(&compiled, dir.path(), &inputs, target);

    let mask = io.int("attention_mask");
    case.checks
        .iter()
        .map(|c| {
            let got = outputs.get(c.output).unwrap_or_else(|| {
                panic!(
                    "{}: no output `{}`; have {:?}",
                    case.fixture,
                    c.output,
                    outputs.keys().collect::<Vec<_>>()
                )
            });
            compare(c.expected, got, io.float(c.expected), c.positions, mask)
        })
        .collect()
}

/// Asserts every comparison within `bound(comparison)`, printing them all
/// first so a failure shows the whole fixture.
fn assert_within(label: &str, comparisons: &[Comparison], bound: impl Fn(&Comparison) -> f32) {
    for c in comparisons {
        eprintln!("{label}: {c}");
    }
    for c in comparisons {
        let limit = bound(c);
        assert!(
            c.max_abs_diff <= limit,
            "{label}: `{}` differs from Hugging Face by {:.3e} > {limit:.3e} at \
             {:?}: tfc {}, HF {}",
            c.name,
            c.max_abs_diff,
            c.at,
            c.got,
            c.want
        );
    }
}

/// Every emitter target: the fused operators of `onnx23` and `ort` must
/// compute what Hugging Face computes as exactly as the portable form.
fn assert_f32(case: &Case) {
    for target in Target::ALL {
        let comparisons = measure(case, FloatType::F32, target, None);
        let label = format!("{} ({target})", case.fixture);
        assert_within(&label, &comparisons, |_| F32_TOLERANCE);
    }
}

fn assert_f16(case: &Case) {
    for target in Target::ALL {
        let comparisons = measure(case, FloatType::F16, target, None);
        let label = format!("{} (fp16, {target})", case.fixture);
        assert_within(&label, &comparisons, |c| F16_RELATIVE_TOLERANCE * c.scale);
    }
}

const BERT: Case<'static> = Case {
    fixture: "bert",
    spec: "bert.tfm",
    model: "bert_model_fixture",
    map: "bert",
    checks: &[
        check("last_hidden_state", "last_hidden_state", RealTokens),
        check("pooler_output", "pooler_output", All),
    ],
};

const LLAMA: Case<'static> = Case {
    fixture: "llama",
    spec: "llama.tfm",
    model: "llama_fixture",
    map: "llama",
    checks: &[check("logits", "logits", RealTokens)],
};

const GPT2: Case<'static> = Case {
    fixture: "gpt2",
    spec: "gpt2.tfm",
    model: "gpt2_fixture",
    map: "gpt2",
    checks: &[check("logits", "logits", RealTokens)],
};

#[test]
fn bert_model() {
    assert_f32(&BERT);
}

#[test]
fn bert_sequence_classification() {
    assert_f32(&Case {
        fixture: "bert_seqcls",
        spec: "bert.tfm",
        model: "bert_seqcls_fixture",
        map: "bert",
        checks: &[check("logits", "logits", All)],
    });
}

#[test]
fn bert_token_classification() {
    assert_f32(&Case {
        fixture: "bert_tokcls",
        spec: "bert.tfm",
        model: "bert_tokcls_fixture",
        map: "bert",
        checks: &[check("logits", "logits", RealTokens)],
    });
}

#[test]
fn bert_question_answering() {
    assert_f32(&Case {
        fixture: "bert_qa",
        spec: "bert.tfm",
        model: "bert_qa_fixture",
        map: "bert",
        checks: &[
            check("start_logits", "start_logits", RealTokens),
            check("end_logits", "end_logits", RealTokens),
        ],
    });
}

/// GPT-2 with the left-padded batch and `generate`-style `position_ids`.
#[test]
fn gpt2_lm_head() {
    assert_f32(&GPT2);
}

/// The plain forward without `position_ids`, where HF uses `0..sequence` in
/// every row: feeding that range must give `logits_arange_positions`.
#[test]
fn gpt2_lm_head_with_arange_positions() {
    let case = Case {
        checks: &[check("logits_arange_positions", "logits", RealTokens)],
        ..GPT2
    };
    let comparisons = measure(
        &case,
        FloatType::F32,
        Target::Portable,
        Some(arange_positions(&case)),
    );
    assert_within("gpt2 (arange positions)", &comparisons, |_| F32_TOLERANCE);
}

#[test]
fn llama_causal_lm() {
    assert_f32(&LLAMA);
}

#[test]
fn llama_causal_lm_with_arange_positions() {
    let case = Case {
        checks: &[check("logits_arange_positions", "logits", RealTokens)],
        ..LLAMA
    };
    let comparisons = measure(
        &case,
        FloatType::F32,
        Target::Portable,
        Some(arange_positions(&case)),
    );
    assert_within("llama (arange positions)", &comparisons, |_| F32_TOLERANCE);
}

/// BLOOM takes its ALiBi distances from the attention mask; no positions.
#[test]
fn bloom_causal_lm() {
    assert_f32(&Case {
        fixture: "bloom",
        spec: "bloom.tfm",
        model: "bloom_fixture",
        map: "bloom",
        checks: &[check("logits", "logits", RealTokens)],
    });
}

#[test]
fn t5_conditional_generation() {
    assert_f32(&Case {
        fixture: "t5",
        spec: "t5.tfm",
        model: "t5_fixture",
        map: "t5",
        checks: &[check("logits", "logits", All)],
    });
}

#[test]
fn marian_mt() {
    assert_f32(&Case {
        fixture: "marian",
        spec: "marian.tfm",
        model: "marian_fixture",
        map: "bart",
        checks: &[check("logits", "logits", All)],
    });
}

#[test]
fn bart_conditional_generation() {
    assert_f32(&Case {
        fixture: "bart",
        spec: "bart.tfm",
        model: "bart_fixture",
        map: "bart",
        checks: &[check("logits", "logits", All)],
    });
}

#[test]
fn bert_model_fp16() {
    assert_f16(&BERT);
}

#[test]
fn llama_causal_lm_fp16() {
    assert_f16(&LLAMA);
}

/// The comparison is sensitive: GPT-2 run with `0..sequence` positions
/// differs from the `generate`-position reference in the left-padded rows
/// by far more than the tolerance (HF's own difference is ~3.7 in logits),
/// so masking and feeding cannot hide a wrong position scheme.
#[test]
fn gpt2_wrong_positions_are_detected() {
    let case = Case {
        checks: &[check("logits", "logits", RealTokens)],
        ..GPT2
    };
    let comparisons = measure(
        &case,
        FloatType::F32,
        Target::Portable,
        Some(arange_positions(&case)),
    );
    let c = &comparisons[0];
    eprintln!("gpt2 (arange positions vs generate reference): {c}");
    assert!(
        c.max_abs_diff > 100.0 * F32_TOLERANCE,
        "GPT-2 with the wrong positions still matches: {c}"
    );
}

/// `0..sequence` in every row, shaped like the fixture's `input_ids`.
fn arange_positions(case: &Case) -> ArrayD<i64> {
    let io = FixtureIo::read(case.fixture);
    let ids = io.int("input_ids");
    ArrayD::from_shape_fn(ids.raw_dim(), |ix| ix[1] as i64)
}

/// The table of fixtures is complete: every fixture folder with a
/// `config.json` has a test above (minilm has its own file).
#[test]
fn every_fixture_is_compared() {
    let covered = [
        "bert",
        "bert_seqcls",
        "bert_tokcls",
        "bert_qa",
        "gpt2",
        "llama",
        "bloom",
        "t5",
        "marian",
        "bart",
    ];
    let dir = root().join("tests/fixtures");
    for entry in std::fs::read_dir(&dir).expect("fixtures folder") {
        let path = entry.expect("entry").path();
        if !path.join("config.json").exists() {
            continue;
        }
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            covered.contains(&name.as_str()),
            "fixture `{name}` has no reference test"
        );
    }
}
