//! Errors of the runtime stage: finding and loading ONNX Runtime, loading a model, and
//! running it. Each message names the model file and, where one is involved, the tensor
//! together with its element type and shape.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while loading ONNX Runtime or running a model with it.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// No `libonnxruntime.so*` was found in any searched location.
    #[error(
        "ONNX Runtime (libonnxruntime.so) was not found. Searched, in order:\n{}\n\
         help: install it with `pip install onnxruntime==1.31.1` \
         (in a tfc checkout: `bash scripts/setup.sh`), \
         or set ORT_DYLIB_PATH to the library file",
        .searched.iter().map(|s| format!("  - {s}")).collect::<Vec<_>>().join("\n")
    )]
    OrtNotFound {
        /// One line per location tried, with why it did not yield a library.
        searched: Vec<String>,
    },

    /// A location the user named explicitly holds no ONNX Runtime library.
    #[error(
        "{origin} points to `{}`, which is not an ONNX Runtime library \
         (expected a libonnxruntime.so* file or a folder holding one)",
        .path.display()
    )]
    OrtPathInvalid {
        /// Where the path came from, such as `ORT_DYLIB_PATH` or `the explicit path`.
        origin: String,
        /// The path as given.
        path: PathBuf,
    },

    /// The library was found but could not be loaded, or has an incompatible version.
    #[error("could not load ONNX Runtime from `{}`: {message}", .path.display())]
    OrtLoad {
        /// The library file.
        path: PathBuf,
        /// The loader's explanation.
        message: String,
    },

    /// The ONNX Runtime environment could not be created.
    #[error("could not create the ONNX Runtime environment (library `{}`): {source}", .path.display())]
    OrtEnvironment {
        /// The library file that was loaded.
        path: PathBuf,
        /// The error ONNX Runtime reported.
        #[source]
        source: ort::Error,
    },

    /// The model file does not exist.
    #[error("model file `{}` does not exist", .path.display())]
    ModelMissing {
        /// The path given.
        path: PathBuf,
    },

    /// A session option (thread count, execution provider) was refused.
    #[error("could not configure the session for `{}` ({what}): {source}", .path.display())]
    SessionOptions {
        /// The model file.
        path: PathBuf,
        /// The option, such as `4 intra-op threads` or `the CUDA execution provider`.
        what: String,
        /// The error ONNX Runtime reported.
        #[source]
        source: ort::Error,
    },

    /// ONNX Runtime rejected the model file.
    #[error("could not load model `{}`: {source}", .path.display())]
    LoadModel {
        /// The model file.
        path: PathBuf,
        /// The error ONNX Runtime reported.
        #[source]
        source: ort::Error,
    },

    /// An input was given that the model does not declare.
    #[error(
        "model `{}` has no input named `{name}`; its inputs are: {expected}",
        .model.display()
    )]
    UnknownInput {
        /// The model file.
        model: PathBuf,
        /// The name that was given.
        name: String,
        /// The model's input names, comma separated.
        expected: String,
    },

    /// An input the model declares was not given.
    #[error("model `{}` needs input `{name}` ({expected}), which was not given", .model.display())]
    MissingInput {
        /// The model file.
        model: PathBuf,
        /// The input's name.
        name: String,
        /// The declared type and shape, such as `Tensor<f32>(-1, 8)`.
        expected: String,
    },

    /// An input's element type or shape does not fit the model's declaration.
    #[error(
        "model `{}`: input `{name}` is declared as {expected}, \
         but a {given_type} tensor of shape {given_shape:?} was given",
        .model.display()
    )]
    InputMismatch {
        /// The model file.
        model: PathBuf,
        /// The input's name.
        name: String,
        /// The declared type and shape (`-1` marks a dynamic dimension).
        expected: String,
        /// The element type that was given.
        given_type: &'static str,
        /// The shape that was given.
        given_shape: Vec<usize>,
    },

    /// ONNX Runtime could not wrap an input array as a tensor.
    #[error(
        "model `{}`: could not create input tensor `{name}` of shape {shape:?}: {source}",
        .model.display()
    )]
    InputTensor {
        /// The model file.
        model: PathBuf,
        /// The input's name.
        name: String,
        /// The array's shape.
        shape: Vec<usize>,
        /// The error ONNX Runtime reported.
        #[source]
        source: ort::Error,
    },

    /// ONNX Runtime failed while running the model.
    #[error("model `{}`: run failed with inputs {inputs}: {source}", .model.display())]
    Run {
        /// The model file.
        model: PathBuf,
        /// The inputs given, as `name: type shape` entries.
        inputs: String,
        /// The error ONNX Runtime reported.
        #[source]
        source: ort::Error,
    },

    /// An output is not a float32 or float16 tensor, so it cannot be returned as `f32`.
    #[error(
        "model `{}`: output `{name}` is {found}; only float32 and float16 tensors \
         can be returned as f32",
        .model.display()
    )]
    UnsupportedOutput {
        /// The model file.
        model: PathBuf,
        /// The output's name.
        name: String,
        /// The output's type and shape as ONNX Runtime reports it.
        found: String,
    },

    /// An output tensor could not be read back.
    #[error("model `{}`: could not read output `{name}`: {source}", .model.display())]
    Extract {
        /// The model file.
        model: PathBuf,
        /// The output's name.
        name: String,
        /// The error ONNX Runtime reported.
        #[source]
        source: ort::Error,
    },
}
