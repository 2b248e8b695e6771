//! Every IR op through the emitter: the ONNX checker and strict shape
//! inference accept the model, and ONNX Runtime's outputs match numpy
//! computing the same function from the model's own initializers.

mod emit_common;

use std::collections::BTreeSet;

use emit_common::*;
use tfc::emit::{emit, EmitOptions};
use tfc::ir::DType;

#[test]
fn all_ops_graph_uses_every_op() {
    let g = all_ops_graph();
    let used: BTreeSet<&str> = g.g.node_weights().map(|n| n.op.name()).collect();
    let all: BTreeSet<&str> = ALL_OPS.iter().copied().collect();
    assert_eq!(used, all);
}

const ALL_OPS_CHECK: &str = r#"
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 5, 8)).astype(np.float32)
ids = rng.integers(0, 16, (2, 5)).astype(np.int64)
ids[0, :3] = 3
got = run({"x": x, "ids": ids})
want = all_ops_ref(x, ids, inits)
assert set(got) == set(want), (sorted(got), sorted(want))
for k in want:
    close(k, got[k], want[k])
assert np.any(got["where"] == x), "the Where mask selected nothing"
print("ok", sorted(got))
"#;

fn check_all_ops(opset: i64) {
    let dir = tmpdir();
    let path = dir.path().join("all_ops.onnx");
    let opts = EmitOptions {
        opset,
        seed: 3,
        ..EmitOptions::default()
    };
    emit(&all_ops_graph(), &opts, &path).unwrap();
    let script = format!("{PRELUDE}{ALL_OPS_REFERENCE}{ALL_OPS_CHECK}");
    python(&script, &[&path]);
}

#[test]
fn all_ops_match_numpy_at_opset_17() {
    check_all_ops(17);
}

#[test]
fn all_ops_match_numpy_at_opset_18() {
    check_all_ops(18);
}

const SMALL_CHECK: &str = r#"
dtype = np.float16 if sys.argv[2] == "f16" else np.float32
x = np.random.default_rng(1).standard_normal((3, 4, 8)).astype(dtype)
i = {k: v.astype(np.float32) for k, v in inits.items()}
assert all(v.dtype == dtype for v in inits.values())
got = run({"x": x})["probs"]
want = small_ref(x.astype(np.float32), i).astype(dtype)
tol = 2e-2 if dtype == np.float16 else 1e-5
close("probs", got, want, rtol=tol, atol=tol)
assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:2]] == ["batch", "sequence"]
meta = {p.key: p.value for p in model.metadata_props}
assert meta["tfc.spec"] == "small" and len(meta["tfc.content_hash"]) == 64, meta
assert model.ir_version == 8 and model.opset_import[0].version == 17
print("ok")
"#;

#[test]
fn small_graph_f32_and_f16() {
    for (dtype, tag) in [(DType::F32, "f32"), (DType::F16, "f16")] {
        let dir = tmpdir();
        let path = dir.path().join("small.onnx");
        emit(&small_graph(dtype), &EmitOptions::default(), &path).unwrap();
        let script = format!("{PRELUDE}{SMALL_REFERENCE}{SMALL_CHECK}");
        python(&script, &[&path, std::path::Path::new(tag)]);
    }
}
