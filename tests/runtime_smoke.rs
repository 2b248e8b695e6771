//! Smoke test of the runtime stage: a model written by hand with the prost ONNX types
//! (`Y = Add(X, X)`) is checked by the Python `onnx` checker, then run through ONNX Runtime
//! with f32 and f16 inputs; input mistakes must come back as errors naming the model,
//! the tensor and its shape.

use std::path::{Path, PathBuf};
use std::process::Command;

use half::f16;
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use tfc::emit::onnx_proto::{
    tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use tfc::runtime::{init_ort, load_session, run_f32, NamedInput, RuntimeError};

/// A tensor value declaration of shape `[batch, 3]`, `batch` being symbolic.
fn value_info(name: &str, elem_type: DataType) -> ValueInfoProto {
    let dims = [
        tensor_shape_proto::dimension::Value::DimParam("batch".into()),
        tensor_shape_proto::dimension::Value::DimValue(3),
    ];
    let shape = TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|value| tensor_shape_proto::Dimension {
                value: Some(value),
                denotation: None,
            })
            .collect(),
    };
    let tensor = type_proto::Tensor {
        elem_type: Some(elem_type as i32),
        shape: Some(shape),
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            denotation: None,
        }),
        ..Default::default()
    }
}

/// Writes the model `Y = Add(X, X)` (IR version 8, opset 17) to `dir` and returns its path.
fn write_add_model(dir: &Path, elem_type: DataType) -> PathBuf {
    let node = NodeProto {
        op_type: Some("Add".into()),
        name: Some("double".into()),
        input: vec!["X".into(), "X".into()],
        output: vec!["Y".into()],
        ..Default::default()
    };
    let graph = GraphProto {
        name: Some("add_smoke".into()),
        node: vec![node],
        input: vec![value_info("X", elem_type)],
        output: vec![value_info("Y", elem_type)],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(8),
        producer_name: Some("tfc-tests".into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(graph),
        ..Default::default()
    };
    let path = dir.join(format!(
        "add_{}.onnx",
        elem_type.as_str_name().to_lowercase()
    ));
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

/// The repository's Python when `scripts/setup.sh` has run, else `python3` from `PATH`.
fn python() -> PathBuf {
    let venv_python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv_python.exists() {
        venv_python
    } else {
        PathBuf::from("python3")
    }
}

fn input_f32(values: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(&[values.len() / 3, 3]), values.to_vec()).unwrap()
}

#[test]
fn hand_written_model_passes_the_onnx_checker() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_add_model(dir.path(), DataType::Float);
    let script = "import onnx, sys; m = onnx.load(sys.argv[1]); \
                  onnx.checker.check_model(m, full_check=True); \
                  onnx.shape_inference.infer_shapes(m, strict_mode=True)";
    let output = Command::new(python())
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("run python (install it with `bash scripts/setup.sh`)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "onnx checker rejected the model:\n{stderr}"
    );
}

#[test]
fn add_runs_in_f32_and_f16() -> Result<(), RuntimeError> {
    init_ort(None)?;
    init_ort(None)?; // idempotent
    let dir = tempfile::tempdir().unwrap();

    let mut session = load_session(&write_add_model(dir.path(), DataType::Float))?;
    let x = input_f32(&[1.0, 2.0, 3.0, -4.0, 0.5, 0.0]);
    let outputs = run_f32(&mut session, vec![("X".into(), NamedInput::F32(x.clone()))])?;
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].0, "Y");
    assert_eq!(outputs[0].1, x.mapv(|v| v + v));

    let mut session = load_session(&write_add_model(dir.path(), DataType::Float16))?;
    let x16 = input_f32(&[1.5, -2.0, 1024.0]).mapv(f16::from_f32);
    let outputs = run_f32(&mut session, vec![("X".into(), x16.into())])?;
    assert_eq!(outputs[0].1, input_f32(&[3.0, -4.0, 2048.0]));
    Ok(())
}

#[test]
fn input_mistakes_name_the_model_tensor_and_shape() -> Result<(), RuntimeError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_add_model(dir.path(), DataType::Float);
    let mut session = load_session(&path)?;
    let model = path.display().to_string();

    let wrong_name = vec![("x".to_string(), NamedInput::F32(input_f32(&[0.0; 3])))];
    let message = run_f32(&mut session, wrong_name).unwrap_err().to_string();
    assert!(message.contains(&model), "{message}");
    assert!(
        message.contains("no input named `x`; its inputs are: X"),
        "{message}"
    );

    let wrong_type = ArrayD::<i64>::zeros(IxDyn(&[2, 3]));
    let message = run_f32(&mut session, vec![("X".into(), wrong_type.into())])
        .unwrap_err()
        .to_string();
    assert!(message.contains("Tensor<f32>(batch, 3)"), "{message}");
    assert!(
        message.contains("a i64 tensor of shape [2, 3]"),
        "{message}"
    );

    let wrong_shape = ArrayD::<f32>::zeros(IxDyn(&[2, 4]));
    let message = run_f32(&mut session, vec![("X".into(), wrong_shape.into())])
        .unwrap_err()
        .to_string();
    assert!(message.contains("shape [2, 4]"), "{message}");

    let message = run_f32(&mut session, vec![]).unwrap_err().to_string();
    assert!(message.contains("needs input `X`"), "{message}");

    let missing = dir.path().join("missing.onnx");
    let message = load_session(&missing).unwrap_err().to_string();
    assert!(message.contains("missing.onnx"), "{message}");
    Ok(())
}

#[test]
fn init_ort_is_safe_from_many_threads() {
    let handles: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(|| init_ort(None)))
        .collect();
    for handle in handles {
        handle
            .join()
            .expect("no panic")
            .expect("ONNX Runtime loads");
    }
    assert!(tfc::runtime::loaded_library().is_some());
}
