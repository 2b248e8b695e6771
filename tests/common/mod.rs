//! Shared helpers for the end-to-end tests: locating the project's Python (for
//! the `onnx` checker), compiling specs through the library, and feeding
//! models synthetic inputs through ONNX Runtime.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::ArrayD;
use tfc::driver::{compile, CompileOptions, Compiled};
use tfc::runtime::NamedInput;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter: `TFC_PYTHON`, else the project's `.venv`, else `python3`.
pub fn python_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TFC_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = root().join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Runs a Python script with arguments; panics with its output on failure.
pub fn python(script: &str, args: &[String]) -> String {
    let out = Command::new(python_bin())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs (run scripts/setup.sh or set TFC_PYTHON)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Checks every model with `onnx.checker.check_model(full_check=True)` and
/// strict shape inference, in one Python process.
pub fn onnx_check(paths: &[PathBuf]) {
    let script = r#"
import sys, onnx
for p in sys.argv[1:]:
    m = onnx.load(p, load_external_data=False)
    onnx.checker.check_model(p, full_check=True)
    onnx.shape_inference.infer_shapes(m, strict_mode=True, check_type=True)
    print("ok", p)
"#;
    let args: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let out = python(script, &args);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        paths.len()
    );
}

/// Every (file, model name) pair defined in the `.tfm` files of `dir`.
pub fn models_in(dir: &str) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("folder exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "tfm"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let mut sources = tfc::front::SourceMap::new();
        let models = tfc::front::load(&f, &mut sources)
            .unwrap_or_else(|d| panic!("{}", tfc::front::render(&d, &sources, false)));
        out.extend(models.into_iter().map(|m| (f.clone(), m.name)));
    }
    out
}

/// Compiles one model of a spec file.
pub fn compile_model(path: &Path, model: &str) -> Compiled {
    let opts = CompileOptions {
        model: Some(model.to_string()),
        ..Default::default()
    };
    compile(path, &opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Deterministic pseudo-random token ids in `0..vocab`.
pub fn token_ids(batch: usize, seq: usize, vocab: u64, salt: u64) -> ArrayD<i64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ salt;
    ArrayD::from_shape_fn(vec![batch, seq], |_| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % vocab) as i64
    })
}

/// A right-padded attention mask: row `b` keeps `seq - b` tokens (at least 1).
pub fn padding_mask(batch: usize, seq: usize) -> ArrayD<i64> {
    ArrayD::from_shape_fn(vec![batch, seq], |ix| {
        let keep = seq.saturating_sub(ix[0]).max(1);
        i64::from(ix[1] < keep)
    })
}

/// Synthetic inputs for every graph input of `compiled` at (batch, seq).
pub fn synthetic_inputs(
    compiled: &Compiled,
    batch: usize,
    seq: usize,
) -> Vec<(String, NamedInput)> {
    let vocab = compiled.model.vocab_size;
    let type_vocab = compiled.model.embeddings.type_vocab_size.unwrap_or(1);
    let mut inputs = Vec::new();
    for n in compiled.graph.graph_inputs() {
        let tfc::ir::Op::Input { name, .. } = &compiled.graph.g[n].op else {
            continue;
        };
        let value = match name.as_str() {
            "input_ids" => token_ids(batch, seq, vocab, 1),
            "decoder_input_ids" => token_ids(batch, seq, vocab, 2),
            "attention_mask" | "decoder_attention_mask" => padding_mask(batch, seq),
            "token_type_ids" => token_ids(batch, seq, type_vocab, 3),
            "position_ids" => ArrayD::from_shape_fn(vec![batch, seq], |ix| ix[1] as i64),
            other => panic!("no synthetic value for input `{other}`"),
        };
        inputs.push((name.clone(), NamedInput::I64(value)));
    }
    inputs
}

/// Runs the `tfc` binary from the repository root, without colour.
pub fn tfc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tfc"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("tfc runs")
}

/// Operator counts of an ONNX file: `domain::Op` (or `Op` for the standard
/// domain) → nodes.
pub fn onnx_op_counts(path: &Path) -> std::collections::BTreeMap<String, usize> {
    use prost::Message;
    let bytes = std::fs::read(path).expect("model file");
    let model = tfc::emit::ModelProto::decode(bytes.as_slice()).expect("valid protobuf");
    let mut counts = std::collections::BTreeMap::new();
    for node in model.graph.expect("graph").node {
        let op = node.op_type.unwrap_or_default();
        let key = match node.domain.as_deref() {
            Some(d) if !d.is_empty() => format!("{d}::{op}"),
            _ => op,
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}
