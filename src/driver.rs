//! The pipeline as one call: spec file → resolved model → verified IR graph.
//!
//! The CLI verbs and the tests go through here so that every entry point runs
//! the same stages in the same order, with the graph verified after each.

use std::path::Path;

use crate::front::{self, SourceMap};
use crate::ir::{self, Graph, IrError};
use crate::lower::{self, LowerError};
use crate::model::{FloatType, Model};
use crate::passes::{self, OptLevel, PassError, PassOptions, PassReport};
use crate::weights::WeightMap;

/// Choices that change what is compiled.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Which model of the spec file to compile; the last one when `None`.
    pub model: Option<String>,
    /// Overrides the spec's dtype.
    pub dtype: Option<FloatType>,
    /// Render diagnostics with colour.
    pub color: bool,
    /// Optimisation level of the pass pipeline (default `-O2`).
    pub opt_level: OptLevel,
    /// Passes to skip, by name.
    pub disabled_passes: Vec<String>,
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
    /// The optimiser was misconfigured or a pass failed.
    #[error(transparent)]
    Pass(#[from] PassError),
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

/// Checks every model defined in `path` (not those only included): the
/// front end reports the errors of all of them at once, then each model is
/// lowered and verified. Returns each model's name and parameter count.
pub fn check_all(path: &Path, opts: &CompileOptions) -> Result<Vec<(String, u64)>, CompileError> {
    let mut sources = SourceMap::default();
    let models = front::load(path, &mut sources).map_err(|diags| CompileError::Diagnostics {
        rendered: front::render(&diags, &sources, opts.color),
        count: diags.len(),
    })?;
    let mut checked = Vec::with_capacity(models.len());
    for mut model in models {
        if let Some(dtype) = opts.dtype {
            model.dtype = dtype;
        }
        let graph = lower::lower(&model)?;
        ir::verify(&graph)?;
        checked.push((model.name.clone(), graph.parameter_count()));
    }
    Ok(checked)
}

/// Runs the front end, lowering and the optimiser, verifying the graph
/// after each.
pub fn compile(path: &Path, opts: &CompileOptions) -> Result<Compiled, CompileError> {
    Ok(compile_with_report(path, opts, None)?.0)
}

/// Like [`compile`], also returning what the optimiser did and, when
/// `snapshot_after` names a pass, the graph right after its first run.
pub fn compile_with_report(
    path: &Path,
    opts: &CompileOptions,
    snapshot_after: Option<&str>,
) -> Result<(Compiled, PassReport), CompileError> {
    let model = resolve(path, opts)?;
    let mut graph = lower::lower(&model)?;
    ir::verify(&graph)?;
    let pass_opts = PassOptions {
        level: opts.opt_level,
        disabled: opts.disabled_passes.clone(),
        snapshot_after: snapshot_after.map(str::to_string),
    };
    let report = passes::optimize(&mut graph, &pass_opts)?;
    Ok((Compiled { model, graph }, report))
}

/// A model compiled to several graphs, each with its role (see
/// [`lower::lower_with`]): one `model` graph, or with a key/value cache a
/// `decoder` graph and, for an encoder–decoder, an `encoder` graph first.
#[derive(Debug, Clone)]
pub struct CompiledGraphs {
    /// The resolved model.
    pub model: Model,
    /// `(role, graph)` in the order lowering produced them, each optimised.
    pub graphs: Vec<(String, Graph)>,
}

/// Compiles `path` to the graphs `lower_opts` asks for, running the
/// optimiser on each.
pub fn compile_graphs(
    path: &Path,
    opts: &CompileOptions,
    lower_opts: &lower::LowerOptions,
) -> Result<CompiledGraphs, CompileError> {
    let model = resolve(path, opts)?;
    let mut graphs = lower::lower_with(&model, lower_opts)?;
    let pass_opts = PassOptions {
        level: opts.opt_level,
        disabled: opts.disabled_passes.clone(),
        snapshot_after: None,
    };
    for (_, graph) in &mut graphs {
        ir::verify(graph)?;
        passes::optimize(graph, &pass_opts)?;
    }
    Ok(CompiledGraphs { model, graphs })
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

/// The map `--weight-map` names (a built-in family or a YAML file), or when
/// `None` the built-in map that the checkpoint's tensor names fit.
fn choose_map(checkpoint: &Path, map: Option<&str>) -> Result<WeightMap, WeightsError> {
    match map {
        Some(name) => Ok(WeightMap::named_or_file(name)?),
        None => {
            let names = crate::weights::load::checkpoint_names(checkpoint)?;
            WeightMap::detect(&names).ok_or_else(|| WeightsError::NoMap {
                checkpoint: checkpoint.to_path_buf(),
            })
        }
    }
}

/// Replaces the random weights of `compiled` with the checkpoint at `checkpoint` (a
/// `.safetensors` file or a Hugging Face model folder). `map` is a built-in map name or a
/// YAML file; when `None`, the map is detected from the checkpoint's tensor names.
pub fn load_weights(
    compiled: &mut Compiled,
    checkpoint: &Path,
    map: Option<&str>,
) -> Result<crate::weights::LoadReport, WeightsError> {
    use crate::weights::load;
    let map = choose_map(checkpoint, map)?;
    let map = map.with_model(&compiled.model);
    Ok(load::load_checkpoint(
        &mut compiled.graph,
        checkpoint,
        &map,
    )?)
}

/// [`load_weights`] for a model compiled to several graphs: each graph takes
/// the checkpoint tensors of its own parameters, and a tensor that feeds
/// only another graph is accounted for there, so loading stays strict over
/// the whole model. Returns one report per graph, in graph order.
pub fn load_weights_graphs(
    compiled: &mut CompiledGraphs,
    checkpoint: &Path,
    map: Option<&str>,
) -> Result<Vec<crate::weights::LoadReport>, WeightsError> {
    use std::collections::BTreeSet;

    use crate::weights::{load, LoadOptions};
    let map = choose_map(checkpoint, map)?;
    let map = map.with_model(&compiled.model);
    let names: Vec<BTreeSet<String>> = compiled
        .graphs
        .iter()
        .map(|(_, g)| parameter_names(g))
        .collect();
    let mut reports = Vec::with_capacity(compiled.graphs.len());
    for (i, (_, graph)) in compiled.graphs.iter_mut().enumerate() {
        let elsewhere = names
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, set)| set.difference(&names[i]).cloned())
            .collect();
        let opts = LoadOptions { elsewhere };
        reports.push(load::load_checkpoint_with(graph, checkpoint, &map, &opts)?);
    }
    Ok(reports)
}

/// The canonical names of a graph's parameters.
fn parameter_names(graph: &Graph) -> std::collections::BTreeSet<String> {
    graph
        .weights()
        .into_iter()
        .filter_map(|n| match &graph.g[n].op {
            ir::Op::Weight { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}
