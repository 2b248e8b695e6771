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

    /// The element type each output declares (`f32`, `f16`, ...), in output order.
    pub fn output_types(&self) -> Vec<String> {
        self.inner
            .outputs()
            .iter()
            .map(|output| match output.dtype() {
                ValueType::Tensor { ty, .. } => ty.to_string(),
                other => other.to_string(),
            })
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

/// Where a session's operators run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    /// ONNX Runtime's default CPU kernels.
    #[default]
    Cpu,
    /// NVIDIA GPUs through the CUDA execution provider (needs the `onnxruntime-gpu` build).
    Cuda,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
        })
    }
}

/// How [`load_session_with`] configures a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// The execution provider asked for.
    pub provider: Provider,
    /// Intra-op threads; ONNX Runtime's default (one per core) when `None`.
    pub intra_threads: Option<usize>,
}

/// A loaded session, the provider it really runs on, and why that differs from the one asked
/// for, if it does.
#[derive(Debug)]
pub struct LoadedSession {
    /// The session.
    pub session: Session,
    /// The provider in use.
    pub provider: Provider,
    /// Set when the provider asked for was unavailable and the session fell back to the CPU.
    pub fallback: Option<String>,
}

/// The command that installs the CUDA build of ONNX Runtime tfc is built against.
pub const CUDA_PACKAGE_HINT: &str = "pip install \"onnxruntime-gpu[cuda,cudnn]==1.31.1\"";

/// Loads the ONNX model at `path` with explicit options. Asking for CUDA from an ONNX Runtime
/// built without it (the CPU `onnxruntime` wheel) falls back to the CPU and says so in
/// [`LoadedSession::fallback`]; a CUDA runtime that fails to register (no driver, no cuDNN)
/// is an error rather than a silent fallback.
pub fn load_session_with(
    path: &Path,
    options: &SessionOptions,
) -> Result<LoadedSession, RuntimeError> {
    if !path.is_file() {
        return Err(RuntimeError::ModelMissing {
            path: path.to_path_buf(),
        });
    }
    let env = ort_env::environment(None)?;
    let option_error = |what: String| {
        move |source: ort::Error<ort::session::builder::SessionBuilder>| {
            RuntimeError::SessionOptions {
                path: path.to_path_buf(),
                what,
                source: source.into(),
            }
        }
    };
    let mut builder =
        ort::session::Session::builder(env).map_err(|source| RuntimeError::LoadModel {
            path: path.to_path_buf(),
            source,
        })?;
    if let Some(threads) = options.intra_threads {
        builder = builder
            .with_intra_threads(threads)
            .map_err(option_error(format!("{threads} intra-op threads")))?;
    }

    // The execution provider.
    let mut provider = Provider::Cpu;
    let mut fallback = None;
    if options.provider == Provider::Cuda {
        use ort::ep::ExecutionProvider;
        let available = ort::ep::CUDA::is_available().unwrap_or(false);
        if available {
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(option_error("the CUDA execution provider".to_string()))?;
            provider = Provider::Cuda;
        } else {
            let library = ort_env::loaded_library()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            fallback = Some(format!(
                "the ONNX Runtime at {library} has no CUDA support; running on the CPU \
                 (for the GPU: {CUDA_PACKAGE_HINT}, in place of `onnxruntime`)"
            ));
        }
    }

    let inner = builder
        .commit_from_file(path)
        .map_err(|source| RuntimeError::LoadModel {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(LoadedSession {
        session: Session {
            inner,
            path: path.to_path_buf(),
        },
        provider,
        fallback,
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
