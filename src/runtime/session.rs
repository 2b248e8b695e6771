//! Loading a compiled ONNX model into an ONNX Runtime session and running it on `ndarray`
//! inputs. Inputs are checked against the model's declared names, element types and shapes
//! before the run, so a mistake is reported in the model's own terms.

use std::path::{Path, PathBuf};

use half::f16;
use ndarray::ArrayD;
use ort::session::SessionInputValue;
use ort::value::{DynTensor, Tensor, TensorElementType, ValueType};

use super::{ort_env, RuntimeError};

/// An ONNX Runtime session together with the model file it was loaded from.
pub struct Session {
    inner: ort::session::Session,
    path: PathBuf,
}

impl Session {
    /// The model file this session was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's input names, in declaration order.
    pub fn input_names(&self) -> Vec<&str> {
        self.inner
            .inputs()
            .iter()
            .map(|input| input.name())
            .collect()
    }

    /// The model's output names, in declaration order.
    pub fn output_names(&self) -> Vec<&str> {
        self.inner
            .outputs()
            .iter()
            .map(|output| output.name())
            .collect()
    }

    /// The underlying `ort` session, for uses [`run_f32`] does not cover.
    pub fn ort_session(&mut self) -> &mut ort::session::Session {
        &mut self.inner
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("path", &self.path)
            .field("inputs", &self.input_names())
            .field("outputs", &self.output_names())
            .finish()
    }
}

/// One input array, in one of the element types tfc models take.
#[derive(Debug, Clone, PartialEq)]
pub enum NamedInput {
    /// Token ids, positions, masks.
    I64(ArrayD<i64>),
    /// Single-precision activations.
    F32(ArrayD<f32>),
    /// Half-precision activations.
    F16(ArrayD<f16>),
}

impl NamedInput {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            NamedInput::I64(a) => a.shape(),
            NamedInput::F32(a) => a.shape(),
            NamedInput::F16(a) => a.shape(),
        }
    }

    /// The element type, spelled as ONNX Runtime spells it (`i64`, `f32`, `f16`).
    pub fn type_name(&self) -> &'static str {
        match self {
            NamedInput::I64(_) => "i64",
            NamedInput::F32(_) => "f32",
            NamedInput::F16(_) => "f16",
        }
    }

    fn element_type(&self) -> TensorElementType {
        match self {
            NamedInput::I64(_) => TensorElementType::Int64,
            NamedInput::F32(_) => TensorElementType::Float32,
            NamedInput::F16(_) => TensorElementType::Float16,
        }
    }

    fn into_tensor(self) -> ort::Result<DynTensor> {
        Ok(match self {
            NamedInput::I64(a) => Tensor::from_array(a)?.upcast(),
            NamedInput::F32(a) => Tensor::from_array(a)?.upcast(),
            NamedInput::F16(a) => Tensor::from_array(a)?.upcast(),
        })
    }
}

impl From<ArrayD<i64>> for NamedInput {
    fn from(array: ArrayD<i64>) -> Self {
        NamedInput::I64(array)
    }
}

impl From<ArrayD<f32>> for NamedInput {
    fn from(array: ArrayD<f32>) -> Self {
        NamedInput::F32(array)
    }
}

impl From<ArrayD<f16>> for NamedInput {
    fn from(array: ArrayD<f16>) -> Self {
        NamedInput::F16(array)
    }
}

/// Loads the ONNX model at `path`, initialising ONNX Runtime first if needed (see
/// [`init_ort`](super::init_ort); call that first to choose the library explicitly).
pub fn load_session(path: &Path) -> Result<Session, RuntimeError> {
    let env = ort_env::environment(None)?;
    let load_error = |source| RuntimeError::LoadModel {
        path: path.to_path_buf(),
        source,
    };
    let inner = ort::session::Session::builder(env)
        .and_then(|mut builder| builder.commit_from_file(path))
        .map_err(load_error)?;
    Ok(Session {
        inner,
        path: path.to_path_buf(),
    })
}

/// Runs `session` on named inputs and returns every output, in the model's output order, as
/// `f32` arrays (`f16` outputs are widened).
///
/// Every declared input must be given exactly once, with the declared element type and a
/// shape that matches the declared one in each fixed dimension.
pub fn run_f32(
    session: &mut Session,
    inputs: Vec<(String, NamedInput)>,
) -> Result<Vec<(String, ArrayD<f32>)>, RuntimeError> {
    check_inputs(session, &inputs)?;

    // Wrap each array as an ONNX Runtime tensor.
    let summary = describe_inputs(&inputs);
    let mut values: Vec<(String, SessionInputValue<'static>)> = Vec::with_capacity(inputs.len());
    for (name, input) in inputs {
        let shape = input.shape().to_vec();
        let tensor = input
            .into_tensor()
            .map_err(|source| RuntimeError::InputTensor {
                model: session.path.clone(),
                name: name.clone(),
                shape,
                source,
            })?;
        values.push((name, tensor.into()));
    }

    // Run, then read every output back as f32.
    let outputs = session
        .inner
        .run(values)
        .map_err(|source| RuntimeError::Run {
            model: session.path.clone(),
            inputs: summary,
            source,
        })?;
    let model = &session.path;
    let mut result = Vec::with_capacity(outputs.len());
    for (name, value) in outputs.into_iter() {
        let extract_error = |source| RuntimeError::Extract {
            model: model.clone(),
            name: name.to_string(),
            source,
        };
        let array = match value.dtype() {
            ValueType::Tensor {
                ty: TensorElementType::Float32,
                ..
            } => value
                .try_extract_array::<f32>()
                .map_err(extract_error)?
                .to_owned(),
            ValueType::Tensor {
                ty: TensorElementType::Float16,
                ..
            } => value
                .try_extract_array::<f16>()
                .map_err(extract_error)?
                .mapv(f16::to_f32),
            other => {
                return Err(RuntimeError::UnsupportedOutput {
                    model: model.clone(),
                    name: name.to_string(),
                    found: other.to_string(),
                })
            }
        };
        result.push((name.to_string(), array));
    }
    Ok(result)
}

/// Checks names, element types and fixed dimensions against the model's declared inputs.
fn check_inputs(session: &Session, inputs: &[(String, NamedInput)]) -> Result<(), RuntimeError> {
    let declared = session.inner.inputs();
    let model = || session.path.clone();

    for (name, input) in inputs {
        let Some(outlet) = declared.iter().find(|outlet| outlet.name() == name) else {
            return Err(RuntimeError::UnknownInput {
                model: model(),
                name: name.clone(),
                expected: session.input_names().join(", "),
            });
        };
        let fits = match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => {
                *ty == input.element_type()
                    && shape.len() == input.shape().len()
                    && shape
                        .iter()
                        .zip(input.shape())
                        .all(|(&want, &got)| want < 0 || want as usize == got)
            }
            _ => false,
        };
        if !fits {
            return Err(RuntimeError::InputMismatch {
                model: model(),
                name: name.clone(),
                expected: outlet.dtype().to_string(),
                given_type: input.type_name(),
                given_shape: input.shape().to_vec(),
            });
        }
    }

    for outlet in declared {
        if !inputs.iter().any(|(name, _)| name == outlet.name()) {
            return Err(RuntimeError::MissingInput {
                model: model(),
                name: outlet.name().to_string(),
                expected: outlet.dtype().to_string(),
            });
        }
    }
    Ok(())
}

/// `name: type shape` for each input, for error messages.
fn describe_inputs(inputs: &[(String, NamedInput)]) -> String {
    let parts: Vec<String> = inputs
        .iter()
        .map(|(name, input)| format!("{name}: {} {:?}", input.type_name(), input.shape()))
        .collect();
    parts.join(", ")
}
