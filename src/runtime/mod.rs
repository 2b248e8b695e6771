//! Runtime: runs compiled ONNX models through ONNX Runtime.
//!
//! This is the last stage of the pipeline (`.tfm` → IR → ONNX → *run*). ONNX Runtime is not
//! linked at build time: [`init_ort`] finds `libonnxruntime.so` on this machine and loads it
//! once per process; [`load_session`] and [`run_f32`] then load a model file and run it.

mod error;
pub mod ort_env;
pub mod session;

pub use error::RuntimeError;
pub use ort_env::{init_ort, loaded_library};
pub use session::{load_session, run_f32, NamedInput, Session};
