//! Comparing tfc's ONNX output with reference outputs from Hugging Face
//! Transformers: reading a fixture's `io.safetensors`, building a spec with a
//! real checkpoint, running it in ONNX Runtime, and measuring the difference
//! at the positions that carry meaning.
//!
//! Shared by `hf_reference.rs` (the random-weight fixtures) and
//! `hf_minilm.rs` (the real all-MiniLM-L6-v2).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Dimension, IxDyn};
use safetensors::{Dtype, SafeTensors};
use tfc::driver::{compile, load_weights, CompileOptions, Compiled};
use tfc::emit::{emit, EmitOptions, Target, TargetProvider};
use tfc::model::FloatType;
use tfc::runtime::{load_session, run_f32, NamedInput};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture folder under `tests/fixtures`.
pub fn fixture_dir(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// The tensors of a fixture's `io.safetensors`: integer inputs and float
/// outputs, by name.
#[derive(Debug, Default)]
pub struct FixtureIo {
    /// `input_ids`, `attention_mask`, `position_ids`, ... (int64).
    pub ints: BTreeMap<String, ArrayD<i64>>,
    /// The reference outputs (float32).
    pub floats: BTreeMap<String, ArrayD<f32>>,
}

impl FixtureIo {
    /// Reads `tests/fixtures/{name}/io.safetensors`.
    pub fn read(name: &str) -> FixtureIo {
        let path = fixture_dir(name).join("io.safetensors");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let st =
            SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut io = FixtureIo::default();
        for (name, view) in st.tensors() {
            let shape = IxDyn(view.shape());
            match view.dtype() {
                Dtype::I64 => {
                    let values = view
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect();
                    let array = ArrayD::from_shape_vec(shape, values).expect("shape");
                    io.ints.insert(name, array);
                }
                Dtype::F32 => {
                    let values = view
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .collect();
                    let array = ArrayD::from_shape_vec(shape, values).expect("shape");
                    io.floats.insert(name, array);
                }
                other => panic!(
                    "{}: `{name}` has unexpected dtype {other:?}",
                    path.display()
                ),
            }
        }
        io
    }

    /// An integer input; panics naming the fixture's tensors when absent.
    pub fn int(&self, name: &str) -> &ArrayD<i64> {
        self.ints.get(name).unwrap_or_else(|| {
            panic!(
                "no input `{name}`; have {:?}",
                self.ints.keys().collect::<Vec<_>>()
            )
        })
    }

    /// A reference output; panics naming the fixture's tensors when absent.
    pub fn float(&self, name: &str) -> &ArrayD<f32> {
        self.floats.get(name).unwrap_or_else(|| {
            panic!(
                "no output `{name}`; have {:?}",
                self.floats.keys().collect::<Vec<_>>()
            )
        })
    }
}

/// Compiles `model` of the spec at `spec` in `dtype` and fills its weights
/// from `checkpoint` as `tfc build --weights` does, letting the weight map be
/// detected from the checkpoint's tensor names; the detected map must be
/// `map`, and every graph weight must come from the checkpoint.
pub fn compile_with_checkpoint(
    spec: &Path,
    model: &str,
    dtype: FloatType,
    checkpoint: &Path,
    map: &str,
) -> Compiled {
    let opts = CompileOptions {
        model: Some(model.to_string()),
        dtype: Some(dtype),
        ..CompileOptions::default()
    };
    let mut compiled = compile(spec, &opts).unwrap_or_else(|e| panic!("{}: {e}", spec.display()));
    let report = load_weights(&mut compiled, checkpoint, None)
        .unwrap_or_else(|e| panic!("{}: {e}", checkpoint.display()));
    assert_eq!(
        report.map,
        map,
        "{}: detected weight map",
        checkpoint.display()
    );
    assert_eq!(
        report.loaded,
        compiled.graph.weights().len(),
        "{}: weights left random",
        checkpoint.display()
    );
    compiled
}

/// Emits `compiled` into `dir` and runs it in ONNX Runtime on `inputs`
/// (only those the model declares are fed). Returns the outputs by name.
///
/// A missing ONNX Runtime is a failure, never a skip.
pub fn run_onnx(
    compiled: &Compiled,
    dir: &Path,
    inputs: &BTreeMap<String, ArrayD<i64>>,
) -> BTreeMap<String, ArrayD<f32>> {
    run_onnx_for(compiled, dir, inputs, Target::Portable)
}

/// [`run_onnx`] with the model emitted for `target`.
pub fn run_onnx_for(
    compiled: &Compiled,
    dir: &Path,
    inputs: &BTreeMap<String, ArrayD<i64>>,
    target: Target,
) -> BTreeMap<String, ArrayD<f32>> {
    let path = dir.join(format!("{}.{target}.onnx", compiled.model.name));
    let opts = EmitOptions::for_target(target, TargetProvider::Cpu);
    emit(&compiled.graph, &opts, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut session = load_session(&path)
        .unwrap_or_else(|e| panic!("ONNX Runtime must be available (scripts/setup.sh): {e}"));
    let feeds: Vec<(String, NamedInput)> = session
        .input_names()
        .into_iter()
        .map(|name| {
            let value = inputs.get(name).unwrap_or_else(|| {
                panic!("the model wants input `{name}`, which the fixture does not have")
            });
            (name.to_string(), NamedInput::I64(value.clone()))
        })
        .collect();
    run_f32(&mut session, feeds)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .collect()
}

/// Which elements of an output carry meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// Every element (pooled outputs, classification logits, the decoder
    /// logits of an encoder–decoder, whose decoder tokens are all real).
    All,
    /// Elements `[b, s, ...]` where the attention mask `[b, s]` is 1.
    /// Hugging Face still computes values at padded positions, but they are
    /// arbitrary (padded queries of a left-padded causal model see only
    /// masked keys), so they are left out.
    RealTokens,
}

/// The outcome of comparing one output with its reference.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The reference output's name.
    pub name: String,
    /// Largest |got - want| over the compared elements.
    pub max_abs_diff: f32,
    /// Where it occurs: (batch, position, index...) in the output's layout.
    pub at: Vec<usize>,
    /// tfc's value there.
    pub got: f32,
    /// The reference value there.
    pub want: f32,
    /// Largest |want| over the compared elements (the output's scale).
    pub scale: f32,
    /// How many elements were compared.
    pub compared: usize,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<32} max |diff| {:.3e} at {:?} (tfc {:.6}, HF {:.6}); scale {:.3}, {} values",
            self.name, self.max_abs_diff, self.at, self.got, self.want, self.scale, self.compared
        )
    }
}

/// Compares `got` with `want` at the elements `positions` selects, `mask`
/// being the `[batch, sequence]` attention mask for [`Positions::RealTokens`].
pub fn compare(
    name: &str,
    got: &ArrayD<f32>,
    want: &ArrayD<f32>,
    positions: Positions,
    mask: &ArrayD<i64>,
) -> Comparison {
    assert_eq!(
        got.shape(),
        want.shape(),
        "`{name}`: tfc's shape differs from Hugging Face's"
    );
    let mut c = Comparison {
        name: name.to_string(),
        max_abs_diff: 0.0,
        at: Vec::new(),
        got: 0.0,
        want: 0.0,
        scale: 0.0,
        compared: 0,
    };
    for ((ix, &g), &w) in got.indexed_iter().zip(want.iter()) {
        let ix = ix.slice();
        if positions == Positions::RealTokens && mask[[ix[0], ix[1]]] != 1 {
            continue;
        }
        assert!(g.is_finite(), "`{name}` at {ix:?}: tfc computed {g}");
        let diff = (g - w).abs();
        c.compared += 1;
        c.scale = c.scale.max(w.abs());
        if diff > c.max_abs_diff || c.at.is_empty() {
            c.max_abs_diff = diff;
            c.at = ix.to_vec();
            c.got = g;
            c.want = w;
        }
    }
    assert!(c.compared > 0, "`{name}`: nothing to compare");
    c
}
