//! Turning a spec into a [`StepModel`]: compile, load a checkpoint (or draw random weights),
//! emit every graph to a temporary folder and open ONNX Runtime sessions on them.
//!
//! Graphs come with a role, as lowering names them: `model` (one graph without a cache,
//! rerun over the whole sequence at every step), or `decoder` (decoder-only with a cache),
//! or `encoder` + `decoder` (encoder–decoder with a cache). [`step_model`] picks the
//! [`StepModel`] implementation from the roles and the model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::model::{OnnxDecoderOnly, OnnxEncoderDecoder, StepModel};
use super::GenerateError;
use crate::driver::{self, CompileOptions, CompiledGraphs};
use crate::emit::{self, EmitOptions};
use crate::lower::LowerOptions;
use crate::model::Model;
use crate::runtime::run::RunError;
use crate::runtime::{load_session_with, Provider, SessionOptions};
use crate::weights::LoadReport;

/// What to compile and how to run it.
#[derive(Debug, Clone, Default)]
pub struct LoadRequest {
    /// The `.tfm` spec.
    pub spec: PathBuf,
    /// Compile options (which model of the file, dtype).
    pub compile: CompileOptions,
    /// Seed of the random weights, when no checkpoint is given.
    pub seed: u64,
    /// A Hugging Face checkpoint (a `.safetensors` file or a model folder).
    pub weights: Option<PathBuf>,
    /// The weight map: a built-in name or a YAML file; detected when `None`.
    pub weight_map: Option<String>,
    /// Session configuration.
    pub session: SessionOptions,
    /// Rerun the whole sequence at every step instead of compiling graphs
    /// with a key/value cache (for comparisons and debugging).
    pub no_cache: bool,
}

/// A spec ready to decode with.
pub struct LoadedModel {
    /// The step model over the loaded sessions.
    pub step: Box<dyn StepModel>,
    /// The resolved spec model (special token ids, vocabulary).
    pub model: Model,
    /// Whether the graphs carry a key/value cache.
    pub cached: bool,
    /// What loading the checkpoint did, if one was loaded.
    pub weights: Option<String>,
    /// The provider the sessions run on.
    pub provider: Provider,
    /// Why the provider differs from the one asked for, if it does.
    pub fallback: Option<String>,
    /// Milliseconds spent compiling (with weights) and emitting.
    pub compile_ms: f64,
    /// Milliseconds spent loading the sessions.
    pub load_ms: f64,
    /// The folder holding the emitted graphs, deleted when this is dropped.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("model", &self.model.name)
            .field("cached", &self.cached)
            .field("provider", &self.provider)
            .finish()
    }
}

/// Compiles `request.spec`, fills its weights, emits and loads it.
pub fn load(request: &LoadRequest) -> Result<LoadedModel, GenerateError> {
    let prepare = |e: RunError| GenerateError::Prepare(Box::new(e));
    let started = Instant::now();
    let lower_opts = LowerOptions {
        kv_cache: !request.no_cache,
    };
    let mut compiled = driver::compile_graphs(&request.spec, &request.compile, &lower_opts)
        .map_err(|e| prepare(e.into()))?;
    let weights = match &request.weights {
        Some(checkpoint) => {
            let reports = driver::load_weights_graphs(
                &mut compiled,
                checkpoint,
                request.weight_map.as_deref(),
            )
            .map_err(|e| prepare(e.into()))?;
            Some(weights_summary(&compiled.graphs, &reports))
        }
        None => None,
    };
    let CompiledGraphs { model, graphs } = compiled;

    // Emit every graph.
    let dir = tempfile::tempdir().map_err(|e| prepare(RunError::TempDir(e)))?;
    let options = EmitOptions {
        seed: request.seed,
        ..EmitOptions::default()
    };
    let mut files = Vec::with_capacity(graphs.len());
    for (role, graph) in &graphs {
        let path = dir.path().join(format!("{role}.onnx"));
        emit::emit(graph, &options, &path).map_err(|e| prepare(e.into()))?;
        files.push((role.clone(), path));
    }
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;

    let started = Instant::now();
    let (step, cached, provider, fallback) = step_model(&model, &files, &request.session)?;
    Ok(LoadedModel {
        step,
        model,
        cached,
        weights,
        provider,
        fallback,
        compile_ms,
        load_ms: started.elapsed().as_secs_f64() * 1e3,
        _dir: dir,
    })
}

/// One line per graph when there are several, else the single report.
fn weights_summary(graphs: &[(String, crate::ir::Graph)], reports: &[LoadReport]) -> String {
    match reports {
        [one] => one.to_string(),
        _ => graphs
            .iter()
            .zip(reports)
            .map(|((role, _), report)| format!("{role} graph: {report}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// A step model, whether it is cached, the provider and any fallback.
type Opened = (Box<dyn StepModel>, bool, Provider, Option<String>);

/// Opens the emitted graphs, given as `(role, file)`, as a [`StepModel`] for `model`.
pub fn step_model(
    model: &Model,
    files: &[(String, PathBuf)],
    options: &SessionOptions,
) -> Result<Opened, GenerateError> {
    let find = |role: &str| {
        files
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, path)| path.as_path())
    };
    let open = |path: &Path| load_session_with(path, options).map_err(GenerateError::Runtime);
    let no_graph = |what: &str| GenerateError::Model {
        model: PathBuf::from(&model.name),
        reason: format!(
            "no {what} graph among the compiled graphs ({})",
            files
                .iter()
                .map(|(role, _)| role.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if model.decoder.is_none() {
        return Err(GenerateError::Config(format!(
            "model `{}` has no decoder, so it cannot generate",
            model.name
        )));
    }

    match (find("encoder"), find("decoder"), find("model")) {
        (Some(encoder), Some(decoder), _) if model.is_encoder_decoder() => {
            let encoder = open(encoder)?;
            let decoder = open(decoder)?;
            let (provider, fallback) = (decoder.provider, decoder.fallback);
            let step = OnnxEncoderDecoder::new(encoder.session, decoder.session)?;
            Ok((Box::new(step), true, provider, fallback))
        }
        (None, Some(decoder), _) if !model.is_encoder_decoder() => {
            let loaded = open(decoder)?;
            let step = OnnxDecoderOnly::new(loaded.session)?;
            let cached = step.has_cache();
            Ok((Box::new(step), cached, loaded.provider, loaded.fallback))
        }
        (_, _, Some(plain)) => {
            let loaded = open(plain)?;
            let (provider, fallback) = (loaded.provider, loaded.fallback);
            if model.is_encoder_decoder() {
                let step = OnnxEncoderDecoder::without_cache(loaded.session);
                Ok((Box::new(step), false, provider, fallback))
            } else {
                let step = OnnxDecoderOnly::new(loaded.session)?;
                let cached = step.has_cache();
                Ok((Box::new(step), cached, provider, fallback))
            }
        }
        _ => Err(no_graph(if model.is_encoder_decoder() {
            "encoder and decoder"
        } else {
            "decoder"
        })),
    }
}
