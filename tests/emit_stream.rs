//! The streaming writer: the file decodes to exactly the in-memory model,
//! output is byte-for-byte deterministic, external data loads in ONNX
//! Runtime, failures leave existing files untouched, and `WeightMode::None`
//! yields a model that runs when fed the weights.

mod emit_common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use emit_common::*;
use prost::Message;
use tfc::emit::onnx_proto::tensor_proto::DataLocation;
use tfc::emit::{
    content_hash, emit, to_model_proto, EmitError, EmitOptions, ExternalData, ModelProto,
    WeightMode,
};
use tfc::ir::{DType, Dim, Graph, Init, Op, TensorData};

fn decode(path: &Path) -> ModelProto {
    ModelProto::decode(fs::read(path).unwrap().as_slice()).unwrap()
}

fn opts(seed: u64) -> EmitOptions {
    EmitOptions {
        seed,
        ..EmitOptions::default()
    }
}

#[test]
fn streamed_file_decodes_to_the_in_memory_model() {
    let dir = tmpdir();
    for (name, g) in [
        ("all_ops", all_ops_graph()),
        ("small_f16", small_graph(DType::F16)),
    ] {
        let path = dir.path().join(format!("{name}.onnx"));
        let report = emit(&g, &opts(11), &path).unwrap();
        let model = to_model_proto(&g, &opts(11)).unwrap();
        assert_eq!(decode(&path), model, "{name}");
        assert_eq!(report.model_bytes, fs::metadata(&path).unwrap().len());
        assert_eq!(report.data_path, None);
        assert_eq!(report.content_hash, content_hash(&g, &opts(11)).unwrap());
        assert_eq!(report.parameters, g.parameter_count());
    }
}

/// Weights of several generator blocks each.
fn wide_graph() -> Graph {
    let mut g = Graph::new("wide");
    let x = g.input("x", DType::F32, vec![Dim::sym("batch"), Dim::c(1000)]);
    let w = g.weight("w", DType::F32, &[1000, 300], Init::Normal { std: 0.1 });
    let v = g.weight("v", DType::F16, &[300, 700], Init::Normal { std: 0.1 });
    let v = g.add("Cast", Op::Cast { to: DType::F32 }, &[v]).unwrap();
    let h = g.add("MatMul", Op::MatMul, &[x, w]).unwrap();
    let h = g.add("MatMul", Op::MatMul, &[h, v]).unwrap();
    g.set_output("y", h);
    g
}

#[test]
fn bytes_do_not_depend_on_the_thread_count() {
    let dir = tmpdir();
    let mut files = Vec::new();
    for (threads, external_data) in [
        (1, ExternalData::Never),
        (3, ExternalData::Never),
        (1, ExternalData::Always),
        (2, ExternalData::Always),
    ] {
        let path = dir.path().join(format!("{threads}_{external_data:?}.onnx"));
        let o = EmitOptions {
            threads,
            external_data,
            ..opts(9)
        };
        emit(&wide_graph(), &o, &path).unwrap();
        let data = fs::read(
            dir.path()
                .join(format!("{threads}_{external_data:?}.onnx.data")),
        );
        files.push((fs::read(&path).unwrap(), data.ok()));
    }
    assert!(files[0] == files[1]);
    assert!(files[2].1.is_some() && files[2].1 == files[3].1);
    let model = to_model_proto(&wide_graph(), &opts(9)).unwrap();
    assert!(decode(&dir.path().join("3_Never.onnx")) == model);
}

#[test]
fn output_is_deterministic_and_seeded() {
    let dir = tmpdir();
    let p = |n: &str| dir.path().join(n);
    let a = emit(&all_ops_graph(), &opts(5), &p("a.onnx")).unwrap();
    let b = emit(&all_ops_graph(), &opts(5), &p("b.onnx")).unwrap();
    let c = emit(&all_ops_graph(), &opts(6), &p("c.onnx")).unwrap();
    let bytes = |n: &str| fs::read(p(n)).unwrap();
    assert_eq!(bytes("a.onnx"), bytes("b.onnx"));
    assert_eq!(a.content_hash, b.content_hash);
    assert_ne!(bytes("a.onnx"), bytes("c.onnx"));
    assert_ne!(a.content_hash, c.content_hash);
}

const EXTERNAL_CHECK: &str = r#"
import sys
import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort

ext, inline = sys.argv[1], sys.argv[2]
onnx.checker.check_model(ext, full_check=True)
m = onnx.load(ext)
onnx.shape_inference.infer_shapes(m, strict_mode=True)
r = onnx.load(inline)
a = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
b = {t.name: numpy_helper.to_array(t) for t in r.graph.initializer}
assert a.keys() == b.keys()
for k in a:
    assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
x = np.random.default_rng(2).standard_normal((2, 3, 8)).astype(np.float32)
run = lambda p: ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"x": x})
for u, v in zip(run(ext), run(inline)):
    assert np.array_equal(u, v)
print("ok")
"#;

#[test]
fn external_data_loads_and_matches_inline() {
    let dir = tmpdir();
    let g = small_graph(DType::F32);
    let inline = dir.path().join("inline.onnx");
    let ext = dir.path().join("ext.onnx");
    emit(&g, &opts(1), &inline).unwrap();
    let always = EmitOptions {
        external_data: ExternalData::Always,
        ..opts(1)
    };
    let report = emit(&g, &always, &ext).unwrap();

    let data = dir.path().join("ext.onnx.data");
    assert_eq!(report.data_path.as_deref(), Some(data.as_path()));
    assert_eq!(report.data_bytes, fs::metadata(&data).unwrap().len());
    let model = decode(&ext);
    let graph = model.graph.unwrap();
    for t in &graph.initializer {
        assert_eq!(t.data_location, Some(DataLocation::External as i32));
        assert_eq!(t.raw_data, None);
        let entry = |k: &str| {
            let e = t.external_data.iter().find(|e| e.key.as_deref() == Some(k));
            e.and_then(|e| e.value.clone()).unwrap()
        };
        assert_eq!(entry("location"), "ext.onnx.data");
        assert_eq!(entry("offset").parse::<u64>().unwrap() % 64, 0);
    }
    // The content hash describes the contents, not where they are stored.
    assert_eq!(report.content_hash, content_hash(&g, &opts(1)).unwrap());
    python(EXTERNAL_CHECK, &[&ext, &inline]);
}

/// `small_graph` with its bias replaced by data of the wrong length.
fn broken_graph() -> Graph {
    let mut g = Graph::new("broken");
    let x = g.input("x", DType::F32, vec![Dim::sym("batch"), Dim::c(4)]);
    let w = g.weight("w", DType::F32, &[4, 4], Init::Normal { std: 1.0 });
    let data = Arc::new(TensorData::f32(vec![3], &[1.0, 2.0, 3.0]));
    let b = g.weight("b", DType::F32, &[4], Init::Data(data));
    let h = g.add("MatMul", Op::MatMul, &[x, w]).unwrap();
    let h = g.add("Add", Op::Add, &[h, b]).unwrap();
    g.set_output("y", h);
    g
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn failure_leaves_existing_files_untouched() {
    let dir = tmpdir();
    let out = dir.path().join("model.onnx");
    let data = dir.path().join("model.onnx.data");
    fs::write(&out, b"previous model").unwrap();
    fs::write(&data, b"previous data").unwrap();
    for mode in [ExternalData::Never, ExternalData::Always] {
        let o = EmitOptions {
            external_data: mode,
            ..opts(0)
        };
        let err = emit(&broken_graph(), &o, &out).unwrap_err();
        assert!(matches!(err, EmitError::Weight(_)), "{err}");
        assert!(err.to_string().contains("`b`"), "{err}");
        assert_eq!(fs::read(&out).unwrap(), b"previous model");
        assert_eq!(fs::read(&data).unwrap(), b"previous data");
        assert_eq!(listing(dir.path()), ["model.onnx", "model.onnx.data"]);
    }
    // A directory in place of the output: nothing is renamed, no temp left.
    let blocked = dir.path().join("blocked.onnx");
    fs::create_dir(&blocked).unwrap();
    let err = emit(&small_graph(DType::F32), &opts(0), &blocked).unwrap_err();
    assert!(matches!(err, EmitError::Io { .. }), "{err}");
    assert_eq!(
        listing(dir.path()),
        ["blocked.onnx", "model.onnx", "model.onnx.data"]
    );
}

const NONE_CHECK: &str = r#"
import sys
import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort

bare, full = sys.argv[1], sys.argv[2]
m = onnx.load(bare)
onnx.checker.check_model(m, full_check=True)
onnx.shape_inference.infer_shapes(m, strict_mode=True)
assert len(m.graph.initializer) == 0
weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(full).graph.initializer}
assert sorted(i.name for i in m.graph.input) == sorted(["x"] + list(weights))
x = np.random.default_rng(3).standard_normal((2, 3, 8)).astype(np.float32)
sess = lambda p: ort.InferenceSession(p, providers=["CPUExecutionProvider"])
got = sess(bare).run(None, {"x": x, **weights})
want = sess(full).run(None, {"x": x})
for u, v in zip(got, want):
    assert np.array_equal(u, v)
print("ok")
"#;

#[test]
fn weight_mode_none_makes_weights_inputs() {
    let dir = tmpdir();
    let g = small_graph(DType::F32);
    let bare = dir.path().join("bare.onnx");
    let full = dir.path().join("full.onnx");
    let none = EmitOptions {
        weights: WeightMode::None,
        ..opts(4)
    };
    let report = emit(&g, &none, &bare).unwrap();
    assert_eq!(report.initializers, 0);
    emit(&g, &opts(4), &full).unwrap();
    python(NONE_CHECK, &[&bare, &full]);
}

#[test]
fn names_follow_the_rules() {
    let model = to_model_proto(&all_ops_graph(), &opts(0)).unwrap();
    let graph = model.graph.unwrap();
    let node = |n: &str| {
        graph
            .node
            .iter()
            .find(|x| x.name.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no node {n}"))
    };
    let reshape = node("/reduce/Reshape");
    assert_eq!(reshape.input[1], "/reduce/Reshape_shape");
    assert_eq!(reshape.output, ["/reduce/Reshape_output_0"]);
    let head = node("/head/Softmax");
    assert_eq!(head.output, ["head"]);
    assert_eq!(node("/head_again/Identity").input, ["head"]);
    assert_eq!(node("/table_out/Identity").input, ["binary.table"]);
    assert_eq!(node("/ids_out/Identity").input, ["ids"]);
    let gather = node("/binary/Gather");
    assert_eq!(gather.input, ["binary.table", "ids"]);
    assert_eq!(node("/binary/Sub").input[1], "/binary/half");
    let inits: Vec<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    assert!(inits.contains(&"/reduce/CumSum_axis"));
    assert!(inits.contains(&"/rotate/Slice_starts"));
    let outputs: Vec<&str> = graph
        .output
        .iter()
        .filter_map(|o| o.name.as_deref())
        .collect();
    assert_eq!(
        outputs,
        [
            "unary",
            "binary",
            "where",
            "head",
            "head_again",
            "cumsum",
            "rotated",
            "positions",
            "table_out",
            "ids_out"
        ]
    );
}

#[test]
fn bad_options_and_names_are_errors() {
    let g = small_graph(DType::F32);
    let o = EmitOptions {
        opset: 12,
        ..opts(0)
    };
    assert!(matches!(to_model_proto(&g, &o), Err(EmitError::Opset(12))));

    let mut dup = small_graph(DType::F32);
    let x = dup.graph_inputs()[0];
    dup.set_output("x", tfc::ir::Value { node: x, output: 0 });
    let err = to_model_proto(&dup, &opts(0)).unwrap_err();
    assert!(matches!(err, EmitError::DuplicateName { .. }), "{err}");

    let mut meta = small_graph(DType::F32);
    meta.metadata.push(("tfc.version".into(), "0".into()));
    let err = to_model_proto(&meta, &opts(0)).unwrap_err();
    assert!(matches!(err, EmitError::DuplicateName { .. }), "{err}");
}
