//! The pipeline as one call: spec file → resolved model → verified IR graph.
//!
//! The CLI verbs and the tests go through here so that every entry point runs
//! the same stages in the same order, with the graph verified after each.

use std::path::Path;

use crate::front::{self, SourceMap};
use crate::ir::{self, Graph, IrError};
use crate::lower::{self, LowerError};
use crate::model::{FloatType, Model};

/// Choices that change what is compiled.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Which model of the spec file to compile; the last one when `None`.
    pub model: Option<String>,
    /// Overrides the spec's dtype.
    pub dtype: Option<FloatType>,
    /// Render diagnostics with colour.
    pub color: bool,
}

/// A failed compilation.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The spec has errors; `rendered` holds every diagnostic, ready to print.
    #[error("{rendered}")]
    Diagnostics {
        /// The diagnostics rendered as text.
        rendered: String,
        /// How many errors there were.
        count: usize,
    },
    /// Lowering rejected a construct.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// The graph failed verification (a compiler bug).
    #[error("internal compiler error: {0}")]
    Ir(#[from] IrError),
}

/// A compiled model: its resolved description and its verified graph.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The resolved model.
    pub model: Model,
    /// The lowered graph.
    pub graph: Graph,
}

/// Parses and checks the spec at `path`, returning the selected model.
pub fn resolve(path: &Path, opts: &CompileOptions) -> Result<Model, CompileError> {
    let mut sources = SourceMap::default();
    let mut model =
        front::load_model(path, opts.model.as_deref(), &mut sources).map_err(|diags| {
            CompileError::Diagnostics {
                rendered: front::render(&diags, &sources, opts.color),
                count: diags.len(),
            }
        })?;
    if let Some(dtype) = opts.dtype {
        model.dtype = dtype;
    }
    Ok(model)
}

/// Runs the front end and lowering, and verifies the graph.
pub fn compile(path: &Path, opts: &CompileOptions) -> Result<Compiled, CompileError> {
    let model = resolve(path, opts)?;
    let graph = lower::lower(&model)?;
    ir::verify(&graph)?;
    Ok(Compiled { model, graph })
}

/// Why a checkpoint could not be loaded into a compiled model.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The weight map could not be found or read.
    #[error(transparent)]
    Map(#[from] crate::weights::MapError),
    /// The checkpoint could not be read or does not fit the graph.
    #[error(transparent)]
    Load(#[from] crate::weights::LoadError),
    /// No weight map was named and none of the built-in ones fits the checkpoint.
    #[error(
        "no built-in weight map recognises the tensor names of `{}`; \
         name one with --weight-map ({})",
        .checkpoint.display(),
        crate::weights::WeightMap::BUILTIN_NAMES.join(", ")
    )]
    NoMap {
        /// The checkpoint.
        checkpoint: std::path::PathBuf,
    },
}

/// Replaces the random weights of `compiled` with the checkpoint at `checkpoint` (a
/// `.safetensors` file or a Hugging Face model folder). `map` is a built-in map name or a
/// YAML file; when `None`, the map is detected from the checkpoint's tensor names.
pub fn load_weights(
    compiled: &mut Compiled,
    checkpoint: &Path,
    map: Option<&str>,
) -> Result<crate::weights::LoadReport, WeightsError> {
    use crate::weights::{load, WeightMap};
    let map = match map {
        Some(name) if WeightMap::BUILTIN_NAMES.contains(&name) => WeightMap::builtin(name)?,
        Some(file) => WeightMap::from_file(Path::new(file))?,
        None => {
            let names = load::checkpoint_names(checkpoint)?;
            WeightMap::detect(&names).ok_or_else(|| WeightsError::NoMap {
                checkpoint: checkpoint.to_path_buf(),
            })?
        }
    };
    let map = map.with_model(&compiled.model);
    Ok(load::load_checkpoint(
        &mut compiled.graph,
        checkpoint,
        &map,
    )?)
}
