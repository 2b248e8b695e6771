//! Shared helpers for the emitter tests: hand-built IR graphs and a Python
//! runner for the independent checks (the `onnx` checker, ONNX Runtime and
//! numpy references).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tfc::ir::{DType, Dim, Graph, Init, Op, ReshapeDim, TensorData, Value};

/// The Python interpreter: `TFC_PYTHON`, else the project's `.venv`, else
/// `python3`.
pub fn python_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TFC_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Runs `script` with `args`, panicking with its output when it fails.
/// Returns stdout.
pub fn python(script: &str, args: &[&Path]) -> String {
    let out = Command::new(python_bin())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs (set TFC_PYTHON or run scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Python prelude: loads argv[1], runs the full checker and strict shape
/// inference, and defines `inits` (initializers as numpy arrays) and `run`.
pub const PRELUDE: &str = r#"
import sys, math
import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort

path = sys.argv[1]
model = onnx.load(path)
onnx.checker.check_model(model, full_check=True)
onnx.shape_inference.infer_shapes(model, strict_mode=True)
inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

def run(feeds):
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))

def close(name, got, want, rtol=1e-4, atol=1e-5):
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    if got.dtype == np.bool_ or got.dtype.kind in "iu":
        assert (got == want).all(), (name, got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)
"#;

/// `x: f32[batch, sequence, 8]` → MatMul(w) + b → LayerNorm → Softmax.
pub fn small_graph(dtype: DType) -> Graph {
    let mut g = Graph::new("small");
    let x = g.input(
        "x",
        dtype,
        vec![Dim::sym("batch"), Dim::sym("sequence"), Dim::c(8)],
    );
    g.push_scope("proj");
    let w = g.weight("weight", dtype, &[8, 8], Init::Normal { std: 0.5 });
    let b = g.weight("bias", dtype, &[8], Init::Normal { std: 0.1 });
    let h = g.add("MatMul", Op::MatMul, &[x, w]).unwrap();
    let h = g.add("Add", Op::Add, &[h, b]).unwrap();
    g.pop_scope();
    g.push_scope("norm");
    let gamma = g.weight("weight", dtype, &[8], Init::Ones);
    let beta = g.weight("bias", dtype, &[8], Init::Zeros);
    let h = g
        .add("LayerNorm", Op::LayerNorm { eps: 1e-5 }, &[h, gamma, beta])
        .unwrap();
    g.pop_scope();
    let p = g.add("Softmax", Op::Softmax { axis: -1 }, &[h]).unwrap();
    g.set_output("probs", p);
    g.metadata.push(("tfc.spec".into(), "small".into()));
    g
}

/// Numpy reference for [`small_graph`], as Python.
pub const SMALL_REFERENCE: &str = r#"
def small_ref(x, i):
    h = x @ i["proj.weight"] + i["proj.bias"]
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    h = (h - mu) / np.sqrt(var + 1e-5) * i["norm.weight"] + i["norm.bias"]
    e = np.exp(h - h.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
"#;

fn c_f32(g: &mut Graph, label: &str, v: f32) -> Value {
    g.constant(label, TensorData::scalar_f32(v))
}

fn c_i64(g: &mut Graph, label: &str, v: i64) -> Value {
    g.constant(label, TensorData::scalar_i64(v))
}

/// Every IR op at least once, in independent chains with their own outputs
/// (see [`ALL_OPS_REFERENCE`]).
pub fn all_ops_graph() -> Graph {
    let mut g = Graph::new("all_ops");
    let (b, s) = (Dim::sym("batch"), Dim::sym("sequence"));
    let x = g.input("x", DType::F32, vec![b.clone(), s.clone(), Dim::c(8)]);
    let ids = g.input("ids", DType::I64, vec![b, s]);
    fn add(g: &mut Graph, label: &str, op: Op, ins: &[Value]) -> Value {
        g.add(label, op, ins).unwrap()
    }

    // Unary chain.
    g.push_scope("unary");
    let mut u = x;
    for op in [
        Op::Tanh,
        Op::Erf,
        Op::Sin,
        Op::Cos,
        Op::Log,
        Op::Abs,
        Op::Neg,
        Op::Exp,
    ] {
        u = add(&mut g, op.name(), op, &[u]);
    }
    let u = add(&mut g, "Relu", Op::Relu, &[u]);
    let u = add(&mut g, "Sigmoid", Op::Sigmoid, &[u]);
    let u = add(&mut g, "Sqrt", Op::Sqrt, &[u]);
    let u = add(&mut g, "Reciprocal", Op::Reciprocal, &[u]);
    g.pop_scope();
    g.set_output("unary", u);

    // Binary chain with an embedding lookup.
    g.push_scope("binary");
    let table = g.weight("table", DType::F32, &[16, 8], Init::Normal { std: 1.0 });
    let e = add(&mut g, "Gather", Op::Gather { axis: 0 }, &[table, ids]);
    let half = c_f32(&mut g, "half", 0.5);
    let two = c_f32(&mut g, "two", 2.0);
    let one = c_f32(&mut g, "one", 1.0);
    let h = add(&mut g, "Add", Op::Add, &[x, e]);
    let h = add(&mut g, "Sub", Op::Sub, &[h, half]);
    let h = add(&mut g, "Mul", Op::Mul, &[h, x]);
    let ax = add(&mut g, "Abs", Op::Abs, &[x]);
    let den = add(&mut g, "Add", Op::Add, &[ax, one]);
    let h = add(&mut g, "Div", Op::Div, &[h, den]);
    let ah = add(&mut g, "Abs", Op::Abs, &[h]);
    let h = add(&mut g, "Pow", Op::Pow, &[ah, two]);
    let h = add(&mut g, "Max", Op::Max, &[h, e]);
    let h = add(&mut g, "Min", Op::Min, &[h, x]);
    g.pop_scope();
    g.set_output("binary", h);

    // Comparisons and Where.
    g.push_scope("logic");
    let zero = c_f32(&mut g, "zero", 0.0);
    let gt = add(&mut g, "Greater", Op::Greater, &[x, zero]);
    let lt = add(&mut g, "Less", Op::Less, &[x, one]);
    let m = add(&mut g, "And", Op::And, &[gt, lt]);
    let le = add(&mut g, "LessOrEqual", Op::LessOrEqual, &[e, x]);
    let nle = add(&mut g, "Not", Op::Not, &[le]);
    let m = add(&mut g, "And", Op::And, &[m, nle]);
    let three = c_i64(&mut g, "three", 3);
    let eq = add(&mut g, "Equal", Op::Equal, &[ids, three]);
    let eq = add(&mut g, "Unsqueeze", Op::Unsqueeze { axes: vec![-1] }, &[eq]);
    let m = add(&mut g, "And", Op::And, &[m, eq]);
    let w = add(&mut g, "Where", Op::Where, &[m, x, e]);
    g.pop_scope();
    g.set_output("where", w);

    // Projection, both LayerNorm forms, Softmax.
    g.push_scope("head");
    let wt = g.weight("weight", DType::F32, &[8, 8], Init::Normal { std: 0.3 });
    let gamma = g.weight("norm.weight", DType::F32, &[8], Init::Normal { std: 1.0 });
    let beta = g.weight("norm.bias", DType::F32, &[8], Init::Normal { std: 1.0 });
    let y = add(&mut g, "MatMul", Op::MatMul, &[w, wt]);
    let y = add(
        &mut g,
        "LayerNorm",
        Op::LayerNorm { eps: 1e-5 },
        &[y, gamma, beta],
    );
    let y = add(
        &mut g,
        "LayerNorm",
        Op::LayerNorm { eps: 1e-3 },
        &[y, gamma],
    );
    let y = add(&mut g, "Softmax", Op::Softmax { axis: -1 }, &[y]);
    g.pop_scope();
    g.set_output("head", y);
    g.set_output("head_again", y);

    // Reshape, transpose and reductions.
    g.push_scope("reduce");
    let shape = vec![
        ReshapeDim::Copy,
        ReshapeDim::Copy,
        ReshapeDim::Fixed(2),
        ReshapeDim::Infer,
    ];
    let r = add(&mut g, "Reshape", Op::Reshape { shape }, &[y]);
    let t = add(
        &mut g,
        "Transpose",
        Op::Transpose {
            perm: vec![0, 2, 1, 3],
        },
        &[r],
    );
    let keep = |axes: Vec<i64>| (axes, true);
    let (axes, keepdims) = keep(vec![-1]);
    let rm = add(
        &mut g,
        "ReduceMean",
        Op::ReduceMean { axes, keepdims },
        &[t],
    );
    let sq = add(&mut g, "Squeeze", Op::Squeeze { axes: vec![3] }, &[rm]);
    let us = add(&mut g, "Unsqueeze", Op::Unsqueeze { axes: vec![1] }, &[sq]);
    let rs = Op::ReduceSum {
        axes: vec![1],
        keepdims: false,
    };
    let rs = add(&mut g, "ReduceSum", rs, &[us]);
    let rx = Op::ReduceMax {
        axes: vec![1],
        keepdims: false,
    };
    let rx = add(&mut g, "ReduceMax", rx, &[rs]);
    let cs = add(&mut g, "CumSum", Op::CumSum { axis: 1 }, &[rx]);
    let none = Op::ReduceSum {
        axes: vec![],
        keepdims: true,
    };
    let cs = add(&mut g, "ReduceSum", none, &[cs]);
    g.pop_scope();
    g.set_output("cumsum", cs);

    // Slices and Concat: rotate the last axis by one.
    g.push_scope("rotate");
    let tail = Op::Slice {
        axes: vec![2],
        starts: vec![1],
        ends: vec![i64::MAX],
    };
    let tail = add(&mut g, "Slice", tail, &[x]);
    let head = Op::Slice {
        axes: vec![-1],
        starts: vec![0],
        ends: vec![1],
    };
    let head = add(&mut g, "Slice", head, &[x]);
    let rot = add(&mut g, "Concat", Op::Concat { axis: 2 }, &[tail, head]);
    g.pop_scope();
    g.set_output("rotated", rot);

    // Shape, Range, Cast, Expand: positions broadcast to [batch, sequence].
    g.push_scope("positions");
    let full = add(
        &mut g,
        "Shape",
        Op::Shape {
            start: 0,
            end: None,
        },
        &[x],
    );
    let idx = c_i64(&mut g, "index", 1);
    let len = add(&mut g, "Gather", Op::Gather { axis: 0 }, &[full, idx]);
    let start = c_i64(&mut g, "start", 0);
    let step = c_i64(&mut g, "step", 1);
    let pos = add(&mut g, "Range", Op::Range, &[start, len, step]);
    let pos = add(&mut g, "Cast", Op::Cast { to: DType::F32 }, &[pos]);
    let bdim = add(
        &mut g,
        "Shape",
        Op::Shape {
            start: 0,
            end: Some(1),
        },
        &[x],
    );
    let sdim = add(
        &mut g,
        "Shape",
        Op::Shape {
            start: 1,
            end: Some(-1),
        },
        &[x],
    );
    let target = add(&mut g, "Concat", Op::Concat { axis: 0 }, &[bdim, sdim]);
    let ex = add(&mut g, "Expand", Op::Expand, &[pos, target]);
    g.pop_scope();
    g.set_output("positions", ex);

    // Outputs that are sources need Identities.
    g.set_output("table_out", table);
    g.set_output("ids_out", ids);
    g
}

/// Every `Op` variant name; [`all_ops_graph`] must use each.
pub const ALL_OPS: &[&str] = &[
    "Input",
    "Weight",
    "Constant",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "And",
    "Where",
    "Neg",
    "Sqrt",
    "Reciprocal",
    "Tanh",
    "Erf",
    "Sin",
    "Cos",
    "Relu",
    "Sigmoid",
    "Exp",
    "Log",
    "Abs",
    "Not",
    "Cast",
    "MatMul",
    "Softmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "CumSum",
    "LayerNormalization",
    "Gather",
    "Reshape",
    "Transpose",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Slice",
    "Shape",
    "Range",
    "Expand",
];

/// Numpy reference for [`all_ops_graph`] given feeds `x`, `ids` and the
/// initializers `i`, as Python.
pub const ALL_OPS_REFERENCE: &str = r#"
def ln(h, g, b, eps):
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    out = (h - mu) / np.sqrt(var + eps) * g
    return out if b is None else out + b

def all_ops_ref(x, ids, i):
    erf = np.vectorize(math.erf)
    u = np.exp(-np.abs(np.log(np.cos(np.sin(erf(np.tanh(x)))))))
    u = 1.0 / np.sqrt(1.0 / (1.0 + np.exp(-np.maximum(u, 0))))
    e = i["binary.table"][ids]
    h = (x + e - 0.5) * x / (np.abs(x) + 1.0)
    h = np.minimum(np.maximum(np.abs(h) ** 2.0, e), x)
    m = (x > 0) & (x < 1) & ~(e <= x) & (ids == 3)[..., None]
    w = np.where(m, x, e)
    y = w @ i["head.weight"]
    y = ln(y, i["head.norm.weight"], i["head.norm.bias"], 1e-5)
    y = ln(y, i["head.norm.weight"], None, 1e-3)
    y = np.exp(y - y.max(-1, keepdims=True))
    y = y / y.sum(-1, keepdims=True)
    b, s, _ = x.shape
    t = y.reshape(b, s, 2, 4).transpose(0, 2, 1, 3).mean(-1)
    cs = np.cumsum(t[:, None].sum(1).max(1), axis=1)
    rot = np.concatenate([x[:, :, 1:], x[:, :, :1]], axis=2)
    pos = np.broadcast_to(np.arange(s, dtype=np.float32), (b, s))
    f = lambda a: a.astype(np.float32)
    return {"unary": f(u), "binary": f(h), "where": f(w), "head": f(y),
            "head_again": f(y), "cumsum": f(cs), "rotated": rot,
            "positions": pos, "table_out": i["binary.table"], "ids_out": ids}
"#;

/// A fresh temporary directory.
pub fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}
