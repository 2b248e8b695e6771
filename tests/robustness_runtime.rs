//! Runtime faults: a model file deleted, truncated or corrupted between
//! build and run, a missing ONNX Runtime library, and inputs of the wrong
//! name or type each give a clear error and a non-zero exit, never a panic.
//!
//! ONNX Runtime is initialised once per process, so the missing-library
//! case runs the binary in a subprocess.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{compile_model, root, synthetic_inputs};
use ndarray::ArrayD;
use tfc::emit::{emit, EmitOptions};
use tfc::runtime::{load_session, run_f32, NamedInput, RuntimeError};

fn tfc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tfc"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("tfc runs")
}

/// Asserts a clean failure: exit status 1, an `error:` line, no panic.
fn assert_clean_failure(o: &Output, expected: &str) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected `{expected}` in:\n{stderr}"
    );
    stderr
}

/// Builds the first example into `dir` and returns the model's path.
fn built_model(dir: &Path) -> PathBuf {
    let out = dir.join("tiny.onnx");
    let o = tfc(&[
        "build",
        "examples/01-tiny-encoder.tfm",
        "-o",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn run_ids(model: &Path) -> Output {
    tfc(&["run", &model.to_string_lossy(), "--ids", "1 2 3"])
}

#[test]
fn a_model_that_runs_runs() {
    let dir = tempfile::tempdir().expect("folder");
    let model = built_model(dir.path());
    let o = run_ids(&model);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_deleted_model_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("folder");
    let model = built_model(dir.path());
    std::fs::remove_file(&model).expect("delete");
    assert_clean_failure(&run_ids(&model), "tiny.onnx");
}

#[test]
fn a_truncated_model_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("folder");
    let model = built_model(dir.path());
    let bytes = std::fs::read(&model).expect("read");
    for keep in [0, 7, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&model, &bytes[..keep]).expect("truncate");
        assert_clean_failure(&run_ids(&model), "tiny.onnx");
    }
}

#[test]
fn a_model_whose_data_file_is_gone_or_short_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("folder");
    let out = dir.path().join("ext.onnx");
    let o = tfc(&[
        "build",
        "examples/01-tiny-encoder.tfm",
        "--external-data",
        "always",
        "-o",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = dir.path().join("ext.onnx.data");
    let bytes = std::fs::read(&data).expect("data");
    std::fs::write(&data, &bytes[..bytes.len() / 3]).expect("truncate");
    assert_clean_failure(&run_ids(&out), "ext.onnx");
    std::fs::remove_file(&data).expect("delete");
    assert_clean_failure(&run_ids(&out), "ext.onnx");
}

#[test]
fn a_missing_onnx_runtime_library_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("folder");
    let model = built_model(dir.path());
    let o = Command::new(env!("CARGO_BIN_EXE_tfc"))
        .args(["run", &model.to_string_lossy(), "--ids", "1 2 3"])
        .current_dir(root())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .env("NO_COLOR", "1")
        .output()
        .expect("tfc runs");
    assert_clean_failure(&o, "/nonexistent/libonnxruntime.so");
}

#[test]
fn wrong_input_names_and_types_are_errors_from_the_library() {
    let dir = tempfile::tempdir().expect("folder");
    let compiled = compile_model(&root().join("examples/01-tiny-encoder.tfm"), "tiny_encoder");
    let path = dir.path().join("lib.onnx");
    emit(&compiled.graph, &EmitOptions::default(), &path).expect("emit");
    let mut session = load_session(&path).expect("session");
    let good = synthetic_inputs(&compiled, 1, 4);
    assert!(run_f32(&mut session, good.clone()).is_ok());

    let mut misnamed = good.clone();
    misnamed[0].0 = "input_idz".to_string();
    let err = run_f32(&mut session, misnamed).expect_err("unknown input");
    assert!(matches!(err, RuntimeError::UnknownInput { .. }), "{err}");
    assert!(err.to_string().contains("input_idz"), "{err}");

    let mut mistyped = good.clone();
    mistyped[0].1 = NamedInput::F32(ArrayD::zeros(vec![1, 4]));
    let err = run_f32(&mut session, mistyped).expect_err("wrong type");
    assert!(matches!(err, RuntimeError::InputMismatch { .. }), "{err}");

    let mut ranked = good.clone();
    ranked[0].1 = NamedInput::I64(ArrayD::zeros(vec![4]));
    let err = run_f32(&mut session, ranked).expect_err("wrong rank");
    assert!(matches!(err, RuntimeError::InputMismatch { .. }), "{err}");

    let missing = good[..1].to_vec();
    let err = run_f32(&mut session, missing).expect_err("missing input");
    assert!(matches!(err, RuntimeError::MissingInput { .. }), "{err}");
}
