//! tfc's decoding produces what Hugging Face `generate` produces.
//!
//! For every case of `tests/fixtures/{gpt2,llama,t5,marian}/generate.json` (greedy and beam
//! search on a padded batch of two prompts, EOS ids that end beams early, Marian's
//! `bad_words_ids` and `forced_eos_token_id`), the fixture's spec is compiled, its
//! checkpoint loaded into every graph through `driver::load_weights_graphs`, the graphs
//! emitted and opened in ONNX Runtime, and `runtime::generate` is run with the case's
//! settings. The token sequences must be identical to Transformers' and beam
//! `sequences_scores` within 1e-4.
//!
//! Every case runs twice: on the graphs with a key/value cache (a decoder graph, plus an
//! encoder graph for T5 and Marian) and on the plain graph that reruns the whole sequence at
//! every step; the test also asserts the step model is the one the roles call for.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tfc::driver::{compile_graphs, load_weights_graphs, CompileOptions};
use tfc::emit::{emit, EmitOptions};
use tfc::lower::LowerOptions;
use tfc::runtime::generate::load::step_model;
use tfc::runtime::generate::{
    generate, BeamConfig, EarlyStopping, GenerationConfig, Processors, Prompt, Strategy,
};
use tfc::runtime::SessionOptions;

/// Largest difference allowed between tfc's and Transformers' beam scores. Both sides
/// compute in f32 (a few ulps per op through two layers gives ~1e-6 in the logits); a score
/// is a sum of up to 8 log-probabilities divided by a length, so ~1e-5 at most.
const SCORE_TOLERANCE: f32 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One fixture: its folder, spec file and model name.
struct Fixture {
    name: &'static str,
    spec: &'static str,
    model: &'static str,
}

const FIXTURES: [Fixture; 4] = [
    Fixture {
        name: "gpt2",
        spec: "gpt2.tfm",
        model: "gpt2_fixture",
    },
    Fixture {
        name: "llama",
        spec: "llama.tfm",
        model: "llama_fixture",
    },
    Fixture {
        name: "t5",
        spec: "t5.tfm",
        model: "t5_fixture",
    },
    Fixture {
        name: "marian",
        spec: "marian.tfm",
        model: "marian_fixture",
    },
];

fn ids(value: &Value) -> Vec<i64> {
    match value {
        Value::Array(items) => items.iter().filter_map(Value::as_i64).collect(),
        Value::Number(n) => n.as_i64().into_iter().collect(),
        _ => Vec::new(),
    }
}

fn rows(value: &Value) -> Vec<Vec<i64>> {
    value
        .as_array()
        .map(|rows| rows.iter().map(ids).collect())
        .unwrap_or_default()
}

/// The generation settings of one case, read from its recorded `kwargs`.
fn config(kwargs: &Value) -> GenerationConfig {
    let int = |key: &str| kwargs.get(key).and_then(Value::as_i64);
    let num_beams = int("num_beams").unwrap_or(1) as usize;
    let strategy = if num_beams > 1 {
        let early_stopping = match kwargs.get("early_stopping") {
            Some(Value::Bool(true)) => EarlyStopping::Enabled,
            Some(Value::Bool(false)) => EarlyStopping::Heuristic,
            Some(Value::String(s)) if s == "never" => EarlyStopping::Never,
            other => panic!("early_stopping {other:?}"),
        };
        Strategy::Beam(BeamConfig {
            num_beams,
            length_penalty: kwargs["length_penalty"].as_f64().expect("length_penalty") as f32,
            early_stopping,
            num_return_sequences: int("num_return_sequences").unwrap_or(1) as usize,
        })
    } else {
        Strategy::Greedy
    };
    GenerationConfig {
        strategy,
        max_new_tokens: int("max_new_tokens").expect("max_new_tokens") as usize,
        eos_token_ids: kwargs.get("eos_token_id").map(ids).unwrap_or_default(),
        pad_token_id: int("pad_token_id"),
        decoder_start_token_id: int("decoder_start_token_id"),
        processors: Processors {
            bad_words_ids: kwargs.get("bad_words_ids").map(rows).unwrap_or_default(),
            forced_eos_token_ids: kwargs
                .get("forced_eos_token_id")
                .map(ids)
                .unwrap_or_default(),
            ..Processors::default()
        },
    }
}

/// Compiles the fixture's spec (with a key/value cache when `cache`), loads its checkpoint
/// into every graph and emits them into `dir`, returning the resolved model and
/// `(role, file)` pairs.
fn build(
    fixture: &Fixture,
    dir: &Path,
    cache: bool,
) -> (tfc::model::Model, Vec<(String, PathBuf)>) {
    let spec = root().join("tests/specs").join(fixture.spec);
    let checkpoint = root().join("tests/fixtures").join(fixture.name);
    let opts = CompileOptions {
        model: Some(fixture.model.to_string()),
        ..CompileOptions::default()
    };
    let lower = LowerOptions { kv_cache: cache };
    let mut compiled =
        compile_graphs(&spec, &opts, &lower).unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
    let reports = load_weights_graphs(&mut compiled, &checkpoint, None)
        .unwrap_or_else(|e| panic!("{}: {e}", checkpoint.display()));
    let mut files = Vec::new();
    for ((role, graph), report) in compiled.graphs.iter().zip(&reports) {
        assert_eq!(
            report.loaded,
            graph.weights().len(),
            "{} {role}: weights left random",
            fixture.name
        );
        let path = dir.join(format!("{role}.onnx"));
        emit(graph, &EmitOptions::default(), &path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files.push((role.clone(), path));
    }
    (compiled.model, files)
}

/// Runs every case of one fixture and returns a line per mismatch.
fn check_fixture(fixture: &Fixture) -> Vec<String> {
    let text = std::fs::read_to_string(
        root()
            .join("tests/fixtures")
            .join(fixture.name)
            .join("generate.json"),
    )
    .expect("generate.json");
    let doc: Value = serde_json::from_str(&text).expect("generate.json is JSON");
    let prompt = Prompt::from_padded(
        rows(&doc["prompt"]["input_ids"]),
        rows(&doc["prompt"]["attention_mask"]),
    )
    .expect("fixture prompt");
    let mut failures = Vec::new();
    for cache in [true, false] {
        failures.extend(check_cases(fixture, &doc, &prompt, cache));
    }
    failures
}

/// Runs every case with graphs compiled with or without a cache.
fn check_cases(fixture: &Fixture, doc: &Value, prompt: &Prompt, cache: bool) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let (model, files) = build(fixture, dir.path(), cache);

    let mut failures = Vec::new();
    let cases = doc["cases"].as_array().expect("cases");
    assert!(!cases.is_empty(), "{}: no cases", fixture.name);
    let mode = if cache { "cached" } else { "full recompute" };
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let label = format!("{}/{name} ({mode})", fixture.name);
        let config = config(&case["kwargs"]);
        let (mut step, cached, _, _) = step_model(&model, &files, &SessionOptions::default())
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(cached, cache, "{label}: cache");
        assert_eq!(step.is_encoder_decoder(), model.is_encoder_decoder());
        let generation = generate(step.as_mut(), prompt, &config, &mut |_| {})
            .unwrap_or_else(|e| panic!("{label}: {e}"));

        let expected = rows(&case["sequences"]);
        if generation.sequences != expected {
            failures.push(format!(
                "{label}: sequences differ\n  tfc: {:?}\n  HF:  {expected:?}",
                generation.sequences
            ));
        }
        match (case.get("sequences_scores"), &generation.scores) {
            (Some(want), Some(got)) => {
                let want: Vec<f64> = want
                    .as_array()
                    .expect("scores")
                    .iter()
                    .filter_map(Value::as_f64)
                    .collect();
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(&g, &w)| (f64::from(g) - w).abs())
                    .fold(0.0, f64::max);
                eprintln!("{label}: max |score diff| {worst:.2e}");
                if got.len() != want.len() || worst > f64::from(SCORE_TOLERANCE) {
                    failures.push(format!(
                        "{label}: scores differ by {worst:.2e}\n  tfc: {got:?}\n  HF:  {want:?}"
                    ));
                }
            }
            (None, None) => {}
            (want, got) => failures.push(format!("{label}: scores expected {want:?}, got {got:?}")),
        }
        eprintln!("{label}: {} steps", generation.timing.step_ms.len());
    }
    failures
}

fn assert_fixture(name: &str) {
    let fixture = FIXTURES
        .iter()
        .find(|f| f.name == name)
        .expect("known fixture");
    let failures = check_fixture(fixture);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gpt2_greedy_and_beam_match_transformers() {
    assert_fixture("gpt2");
}

#[test]
fn llama_greedy_and_beam_match_transformers() {
    assert_fixture("llama");
}

#[test]
fn t5_greedy_and_beam_match_transformers() {
    assert_fixture("t5");
}

#[test]
fn marian_greedy_beam_and_processors_match_transformers() {
    assert_fixture("marian");
}
