//! Mistakes a user makes on the command line: each is refused up front with
//! a message that says what to change, a non-zero exit and no panic, and
//! nothing is written.

mod common;

use std::path::Path;
use std::process::Output;

use common::{root, tfc};

/// Asserts a plain failure (exit 1, no panic) whose stderr contains `needle`.
fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn check_without_a_model_name_checks_every_model_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("two.tfm");
    let text = "model bad { vocab_size = 10, hidden_size = 64\n  \
                embeddings { position = none }\n  \
                encoder { layers = 1, attention { heads = 6 }\n    \
                feed_forward { intermediate_size = 8, activation = relu }\n    \
                norm = layer_norm { eps = 1e-5, position = post } } }\n\
                model good = bad { encoder { attention { heads = 4 } } }\n";
    std::fs::write(&spec, text).unwrap();
    fails_with(&tfc(&["check", s(&spec)]), "error[E0403]");
    // The valid one alone passes.
    let out = tfc(&["check", s(&spec), "-m", "good"]);
    assert!(out.status.success());

    let out = tfc(&["check", "specs/bert-base.tfm"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(text.matches("is valid").count(), 5, "{text}");
}

#[test]
fn inspect_refuses_workloads_beyond_its_limits() {
    for flag in ["--sequence", "--batch"] {
        let out = tfc(&["inspect", "specs/gpt2.tfm", flag, "100000000000"]);
        fails_with(&out, "at most");
    }
}

#[test]
fn build_refuses_to_overwrite_its_spec_or_write_to_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("tiny.tfm");
    let original = std::fs::read(root().join("examples/01-tiny-encoder.tfm")).unwrap();
    std::fs::write(&spec, &original).unwrap();

    fails_with(
        &tfc(&["build", s(&spec), "-o", s(&spec)]),
        "is the spec being compiled",
    );
    assert_eq!(std::fs::read(&spec).unwrap(), original);
    fails_with(
        &tfc(&["build", s(&spec), "-o", s(dir.path())]),
        "is a folder",
    );
}

#[test]
fn run_refuses_negative_ids_and_a_too_short_max_length() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.onnx");
    let out = tfc(&["build", "examples/01-tiny-encoder.tfm", "-o", s(&model)]);
    assert!(out.status.success());
    // An ONNX file carries no vocabulary size, but a negative id is never valid.
    fails_with(&tfc(&["run", s(&model), "--ids=-1 2"]), "is negative");

    let minilm = root().join("models/all-minilm-l6-v2");
    let tokenizer = minilm.join("tokenizer.json");
    let out = tfc(&[
        "run",
        "specs/all-minilm-l6-v2.tfm",
        "--tokenizer",
        s(&tokenizer),
        "--text",
        "hi",
        "--max-length",
        "1",
    ]);
    fails_with(&out, "the length must be at least 3");
}

#[test]
fn generate_checks_positions_and_special_ids_before_decoding() {
    let gpt2 = [
        "generate",
        "tests/specs/gpt2.tfm",
        "--weights",
        "tests/fixtures/gpt2",
    ];
    let generate = |extra: &[&str]| {
        let args: Vec<&str> = gpt2.iter().chain(extra).copied().collect();
        tfc(&args)
    };

    // The fixture has 64 learned positions: 3 prompt tokens leave room for 62 new ones.
    let out = generate(&["--ids", "1 2 3", "--max-new-tokens", "63"]);
    fails_with(&out, "pass --max-new-tokens 62 or less");
    let out = generate(&["--ids", "1 2 3", "--max-new-tokens", "62"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (flag, value) in [("--pad-id", "99999"), ("--eos", "128"), ("--stop", "-3")] {
        let flag_value = format!("{flag}={value}");
        let out = generate(&["--ids", "1 2", "--ids", "3", &flag_value]);
        fails_with(&out, &format!("{flag} {value} is outside the vocabulary"));
    }
}

#[test]
fn an_unknown_weight_map_lists_the_built_in_ones() {
    let out = tfc(&[
        "build",
        "tests/specs/gpt2.tfm",
        "-o",
        "/nonexistent/never-written.onnx",
        "--weights",
        "tests/fixtures/gpt2",
        "--weight-map",
        "gtp2",
    ]);
    fails_with(&out, "no built-in weight map named `gtp2`");
    fails_with(&out, "mistral (= llama)");
}

#[test]
fn lint_refuses_an_empty_model_file_and_bench_absurd_run_counts() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.ONNX");
    std::fs::write(&empty, b"").unwrap();
    fails_with(&tfc(&["lint", s(&empty)]), "has no graph nodes");

    let spec = "examples/01-tiny-encoder.tfm";
    for (flag, value) in [
        ("--runs", "18446744073709551615"),
        ("--warmup", "4294967296"),
    ] {
        let out = tfc(&["bench", spec, flag, value]);
        fails_with(&out, &format!("{flag} {value} is more than"));
    }
    fails_with(
        &tfc(&["bench", spec, "--runs", "0"]),
        "--runs must be at least 1",
    );
}

#[cfg(unix)]
#[test]
fn text_outputs_are_ordinary_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let dot = dir.path().join("graph.dot");
    let out = tfc(&["graph", "examples/01-tiny-encoder.tfm", "-o", s(&dot)]);
    assert!(out.status.success());
    let mode = std::fs::metadata(&dot).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}
