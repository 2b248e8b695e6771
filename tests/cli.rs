//! The `tfc` binary as a user meets it: exit codes, what goes to stdout and
//! stderr, and that a failed build leaves an earlier output untouched.

mod common;

use std::process::Output;

use common::tfc;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_reports_every_error_with_location_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("broken.tfm");
    std::fs::write(
        &spec,
        "model broken {\n  vocab_size = 1000\n  hidden_size = 64\n  \
         embeddings { position = rotary { dim = 7 } }\n  decoder {\n    layers = 2\n    \
         attention { heads = 6 }\n    feed_forward { intermediate_size = 128, activation = swigl }\n    \
         norm = rms_norm { eps = 1e-5, position = pre }\n  }\n}\n",
    )
    .unwrap();
    let out = tfc(&["check", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "diagnostics go to stderr");
    let text = stderr(&out).replace(&dir.path().display().to_string(), "$DIR");
    insta::assert_snapshot!(text);
}

#[test]
fn inspect_prints_a_table_and_json() {
    let out = tfc(&[
        "inspect",
        "specs/gpt2.tfm",
        "--batch",
        "2",
        "--sequence",
        "64",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));

    let out = tfc(&["inspect", "specs/llama.tfm", "-m", "llama_3_2_1b", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["parameters"], 1_235_814_400u64);
    // 16 layers × 8 key/value heads × 64 dims × (key + value) × 4 bytes.
    assert_eq!(json["kv_cache_bytes_per_token"], 16 * 8 * 64 * 2 * 4);
    assert_eq!(json["kind"], "decoder-only");
}

#[test]
fn build_emits_ir_text_and_dot() {
    let out = tfc(&["build", "examples/01-tiny-encoder.tfm", "--emit", "ir"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ir = stdout(&out);
    assert!(ir.starts_with("graph "), "{ir}");
    assert!(
        ir.contains("input \"input_ids\" : i64[batch, sequence]"),
        "{ir}"
    );

    let out = tfc(&["graph", "examples/01-tiny-encoder.tfm", "--dot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("digraph"));
}

#[test]
fn failed_build_leaves_existing_output_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("model.onnx");
    std::fs::write(&out_path, b"earlier output").unwrap();
    let spec = dir.path().join("bad.tfm");
    std::fs::write(&spec, "model m { vocab_size = -3 }\n").unwrap();

    let out = tfc(&[
        "build",
        spec.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&out_path).unwrap(), b"earlier output");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 2, "no temporary files remain");
}

#[test]
fn build_writes_a_model_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("tiny.onnx");
    let out = tfc(&[
        "build",
        "examples/03-decoder-rope-gqa.tfm",
        "-o",
        out_path.to_str().unwrap(),
        "--dtype",
        "fp16",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrote"), "{}", stderr(&out));
    assert!(out_path.metadata().unwrap().len() > 1000);

    let missing = tfc(&["build", "examples/03-decoder-rope-gqa.tfm"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("-o"), "{}", stderr(&missing));
}
