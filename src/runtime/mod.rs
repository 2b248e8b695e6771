//! Runtime: runs compiled ONNX models through ONNX Runtime.
//!
//! This is the last stage of the pipeline (`.tfm` → IR → ONNX → *run*). ONNX Runtime is not
//! linked at build time: [`init_ort`] finds `libonnxruntime.so` on this machine and loads it
//! once per process; [`load_session`] and [`run_f32`] then load a model file and run it.
//! [`run::run_model`] is the whole of `tfc run`: spec or ONNX file plus token ids or text in,
//! outputs with a readable summary ([`outputs`]) out; [`inputs`] prepares the token arrays.
//! [`bench::run_bench`] is the whole of `tfc bench`: latency, throughput and peak memory over
//! a grid of batch sizes and sequence lengths.

pub mod bench;
mod error;
pub mod generate;
pub mod inputs;
pub mod ort_env;
pub mod outputs;
pub mod run;
pub mod session;

pub use error::RuntimeError;
pub use ort_env::{init_ort, loaded_library};
pub use session::{
    load_session, load_session_with, run_f32, LoadedSession, NamedInput, Provider, Session,
    SessionOptions,
};
