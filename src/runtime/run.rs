//! One run of a model, start to end: compile a spec (or take an ONNX file), prepare token
//! inputs, load the model into ONNX Runtime, run it and collect the outputs together with
//! what is needed to explain them. `tfc run` is a thin layer over [`run_model`].
//!
//! A spec is compiled in memory and emitted to a temporary folder that lives only until the
//! session is loaded, so running a spec leaves no files behind.

use std::path::{Path, PathBuf};
use std::time::Instant;

use thiserror::Error;

use super::inputs::{self, InputError, TextTokenizer, TokenBatch};
use super::outputs::{OutputKind, RunOutput, SummaryContext};
use super::session::{load_session_with, Provider, SessionOptions};
use super::{run_f32, RuntimeError};
use crate::driver::{self, CompileError, CompileOptions, WeightsError};
use crate::emit::{self, EmitError, EmitOptions};
use crate::model::{HeadKind, Model, Position};

/// Why a run failed.
#[derive(Debug, Error)]
pub enum RunError {
    /// The spec did not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The checkpoint could not be loaded into the compiled model.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The compiled model could not be written.
    #[error("could not emit the compiled model: {0}")]
    Emit(#[from] EmitError),
    /// The inputs could not be prepared.
    #[error(transparent)]
    Input(#[from] InputError),
    /// ONNX Runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The temporary folder for the compiled model could not be made.
    #[error("cannot create a temporary folder for the compiled model: {0}")]
    TempDir(std::io::Error),
}

/// Where the model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A `.tfm` spec, compiled for this run.
    Spec {
        /// The spec file.
        path: PathBuf,
        /// Compile options (model name, dtype).
        compile: CompileOptions,
        /// Seed of the random weights.
        seed: u64,
        /// A checkpoint to load instead of random weights.
        weights: Option<PathBuf>,
        /// The weight map: a built-in name or a YAML file; detected when `None`.
        weight_map: Option<String>,
    },
    /// An existing ONNX model file.
    Onnx(PathBuf),
}

impl ModelSource {
    /// Picks the source from a path: `.onnx` files are run as they are, anything else is
    /// compiled as a spec with `compile` options, `seed` and no checkpoint.
    pub fn from_path(path: &Path, compile: CompileOptions, seed: u64) -> ModelSource {
        let is_onnx = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
        if is_onnx {
            ModelSource::Onnx(path.to_path_buf())
        } else {
            ModelSource::Spec {
                path: path.to_path_buf(),
                compile,
                seed,
                weights: None,
                weight_map: None,
            }
        }
    }
}

/// The token inputs of a run.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// Token id sequences (ragged rows are right-padded).
    Ids(Vec<Vec<i64>>),
    /// Texts for the tokenizer.
    Text(Vec<String>),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The model.
    pub source: ModelSource,
    /// The encoder (or decoder-only) inputs.
    pub tokens: TokenSource,
    /// A Hugging Face `tokenizer.json`: needed for text, and decodes predicted tokens.
    pub tokenizer: Option<PathBuf>,
    /// Truncation length for text; by default a `sentence_bert_config.json` next to the
    /// tokenizer decides, else the tokenizer's own setting.
    pub max_length: Option<usize>,
    /// Decoder inputs of an encoder-decoder model (default: one pad token per row).
    pub decoder_ids: Vec<Vec<i64>>,
    /// Padding id (default: the spec's `pad_token_id`, the tokenizer's, or 0).
    pub pad_id: Option<i64>,
    /// Session configuration.
    pub session: SessionOptions,
}

/// Wall-clock time of each step, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// Compiling and emitting the spec (`None` for an ONNX file).
    pub compile_ms: Option<f64>,
    /// Loading the model into ONNX Runtime.
    pub load_ms: f64,
    /// The run itself.
    pub run_ms: f64,
}

/// The result of a run and what is needed to explain it.
#[derive(Debug)]
pub struct RunReport {
    /// The model that ran: the spec or ONNX file given.
    pub model_path: PathBuf,
    /// The model's name, for a spec.
    pub model_name: Option<String>,
    /// The provider the session used.
    pub provider: Provider,
    /// Why the provider differs from the one asked for, if it does.
    pub fallback: Option<String>,
    /// What loading the checkpoint did, if one was loaded.
    pub weights: Option<String>,
    /// The inputs given: name and shape.
    pub inputs: Vec<(String, Vec<usize>)>,
    /// The outputs, in the model's order.
    pub outputs: Vec<RunOutput>,
    /// The token batch fed to the model.
    pub tokens: TokenBatch,
    /// Timings.
    pub timing: Timing,
    /// The tokenizer, when one was given.
    pub tokenizer: Option<TextTokenizer>,
    /// The texts, when the input was text.
    pub texts: Vec<String>,
    kinds: Vec<(String, OutputKind)>,
    head_lengths: Vec<usize>,
    vocab: Option<u64>,
}

impl RunReport {
    /// The context [`summarize`](super::outputs::summarize) needs, with `labels` as the
    /// classifier's class names.
    pub fn summary_context(&self, labels: Vec<String>) -> SummaryContext<'_> {
        SummaryContext {
            kinds: self.kinds.clone(),
            labels,
            row_names: self.texts.clone(),
            lengths: self.head_lengths.clone(),
            tokenizer: self.tokenizer.as_ref(),
            vocab: self.vocab,
        }
    }
}

/// A spec compiled and written to a temporary folder, which is deleted on drop.
pub(crate) struct Emitted {
    _dir: tempfile::TempDir,
    /// The written model.
    pub path: PathBuf,
    /// The resolved model.
    pub model: Model,
    /// What loading the checkpoint reported, when one was given.
    pub weights: Option<String>,
}

/// Compiles `path`, runs `check` on the resolved model, loads the checkpoint
/// if one is given and writes the model to a temporary folder; `temp_dir`
/// wraps a failure to make that folder in the caller's error type.
pub(crate) fn compile_to_temp<E>(
    path: &Path,
    compile: &CompileOptions,
    options: &EmitOptions,
    (weights, weight_map): (Option<&Path>, Option<&str>),
    check: impl FnOnce(&Model) -> Result<(), E>,
    temp_dir: fn(std::io::Error) -> E,
) -> Result<Emitted, E>
where
    E: From<CompileError> + From<WeightsError> + From<EmitError>,
{
    let mut compiled = driver::compile(path, compile)?;
    check(&compiled.model)?;
    let report = match weights {
        Some(checkpoint) => Some(driver::load_weights(&mut compiled, checkpoint, weight_map)?),
        None => None,
    };
    let dir = tempfile::tempdir().map_err(temp_dir)?;
    let onnx = dir.path().join(format!("{}.onnx", compiled.model.name));
    emit::emit(&compiled.graph, options, &onnx)?;
    Ok(Emitted {
        _dir: dir,
        path: onnx,
        model: compiled.model,
        weights: report.map(|r| r.to_string()),
    })
}

fn compile_and_emit(source: &ModelSource) -> Result<Option<Emitted>, RunError> {
    let ModelSource::Spec {
        path,
        compile,
        seed,
        weights,
        weight_map,
    } = source
    else {
        return Ok(None);
    };
    let options = EmitOptions {
        seed: *seed,
        ..EmitOptions::default()
    };
    let checkpoint = (weights.as_deref(), weight_map.as_deref());
    let emitted = compile_to_temp(
        path,
        compile,
        &options,
        checkpoint,
        |_| Ok(()),
        RunError::TempDir,
    )?;
    Ok(Some(emitted))
}

/// Kind of each output of a model compiled from a spec, by the output names lowering gives
/// each head.
fn output_kinds(model: &Model) -> Vec<(String, OutputKind)> {
    let mut kinds = Vec::new();
    for head in &model.heads {
        let kind = match head.kind {
            HeadKind::Embedding { .. } => OutputKind::Embedding,
            HeadKind::SequenceClassification { .. } => OutputKind::Classifier,
            HeadKind::TokenClassification { .. } => OutputKind::TokenClassifier,
            HeadKind::LanguageModel { .. } => OutputKind::LanguageModel,
            HeadKind::Hidden | HeadKind::QuestionAnswering => OutputKind::Other,
        };
        for output in head.output_names(model.heads.len()) {
            kinds.push((output, kind));
        }
    }
    kinds
}

/// The position tables that bound a model's sequence lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionLimits {
    /// Positions of the stack reading `input_ids` (the encoder, or the
    /// decoder of a decoder-only model), with the stack's name.
    pub input: Option<(&'static str, u64)>,
    /// Positions of an encoder–decoder's decoder (reading `decoder_input_ids`).
    pub decoder: Option<u64>,
}

/// The learned or sinusoidal position tables of `model` (`None` where a
/// stack's positions are unbounded: rotary, ALiBi, relative, none).
pub fn position_limits(model: &Model) -> PositionLimits {
    let main = match (&model.encoder, &model.decoder) {
        (Some(encoder), _) => Some(("encoder", encoder)),
        (None, Some(decoder)) => Some(("decoder", decoder)),
        (None, None) => None,
    };
    let decoder = model
        .decoder
        .as_ref()
        .filter(|_| model.is_encoder_decoder());
    PositionLimits {
        input: main.and_then(|(name, s)| max_positions(&s.position).map(|max| (name, max))),
        decoder: decoder.and_then(|s| max_positions(&s.position)),
    }
}

/// The number of positions a stack's learned or sinusoidal table covers, which bounds the
/// length of its input.
fn max_positions(position: &Position) -> Option<u64> {
    match position {
        Position::Learned {
            max_position_embeddings,
            offset,
        } => Some(max_position_embeddings.saturating_sub(*offset)),
        Position::Sinusoidal {
            max_position_embeddings,
            ..
        } => Some(*max_position_embeddings),
        _ => None,
    }
}

/// Compiles (if needed), prepares inputs, loads and runs the model.
pub fn run_model(request: &RunRequest) -> Result<RunReport, RunError> {
    // The model file.
    let start = Instant::now();
    let emitted = compile_and_emit(&request.source)?;
    let compile_ms = emitted
        .is_some()
        .then(|| start.elapsed().as_secs_f64() * 1e3);
    let (model_file, model) = match (&emitted, &request.source) {
        (Some(e), _) => (e.path.clone(), Some(&e.model)),
        (None, ModelSource::Onnx(path)) => (path.clone(), None),
        (None, ModelSource::Spec { path, .. }) => (path.clone(), None),
    };

    // The tokenizer and the token batches.
    let tokenizer = match &request.tokenizer {
        Some(path) => {
            let max_length = request
                .max_length
                .or_else(|| inputs::sentence_transformers_max_length(path));
            Some(TextTokenizer::from_file(path, max_length)?)
        }
        None => None,
    };
    let pad_id = request
        .pad_id
        .or_else(|| model.and_then(|m| m.pad_token_id).map(|p| p as i64))
        .or_else(|| tokenizer.as_ref().map(TextTokenizer::pad_id))
        .unwrap_or(0);
    let (tokens, texts) = match &request.tokens {
        TokenSource::Ids(rows) => (
            TokenBatch::from_rows(rows.clone(), pad_id, "input ids")?,
            Vec::new(),
        ),
        TokenSource::Text(texts) => {
            let Some(tokenizer) = &tokenizer else {
                return Err(InputError::Tokenizer {
                    path: PathBuf::from("(none)"),
                    message: "--text needs a tokenizer: add --tokenizer tokenizer.json".into(),
                }
                .into());
            };
            (tokenizer.encode(texts)?, texts.clone())
        }
    };
    let decoder_rows = if request.decoder_ids.is_empty() {
        vec![vec![pad_id]; tokens.batch()]
    } else {
        request.decoder_ids.clone()
    };
    let decoder = TokenBatch::from_rows(decoder_rows, pad_id, "decoder ids")?;

    // Checks against what the model can take.
    let vocab = model
        .map(|m| m.vocab_size)
        .or_else(|| tokenizer.as_ref().map(|t| t.vocab_size() as u64));
    // Without a vocabulary size (an ONNX file, no tokenizer) negative ids
    // are still refused: ONNX's Gather would read them from the table's end.
    let limit = vocab.unwrap_or(i64::MAX as u64);
    tokens.check_vocab(limit, "input ids")?;
    if !request.decoder_ids.is_empty() || model.is_some_and(Model::is_encoder_decoder) {
        decoder.check_vocab(limit, "decoder ids")?;
    }
    if let Some(model) = model {
        let limits = position_limits(model);
        if let Some((_, max)) = limits.input {
            tokens.check_length(max, "input ids")?;
        }
        if let Some(max) = limits.decoder {
            decoder.check_length(max, "decoder ids")?;
        }
    }

    // Load the session.
    let start = Instant::now();
    let loaded = load_session_with(&model_file, &request.session)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut session = loaded.session;
    let declared: Vec<String> = session
        .input_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let uses_decoder = declared.iter().any(|n| n == "decoder_input_ids");
    if uses_decoder && decoder.batch() != tokens.batch() {
        return Err(InputError::BatchMismatch {
            batch: tokens.batch(),
            given: decoder.batch(),
        }
        .into());
    }
    let feeds = inputs::model_inputs(&declared, &tokens, &decoder)?;
    let input_shapes = feeds
        .iter()
        .map(|(name, input)| (name.clone(), input.shape().to_vec()))
        .collect();

    // Run.
    let types = session.output_types();
    let start = Instant::now();
    let results = run_f32(&mut session, feeds)?;
    let run_ms = start.elapsed().as_secs_f64() * 1e3;
    let outputs = results
        .into_iter()
        .zip(types.into_iter().chain(std::iter::repeat(String::new())))
        .map(|((name, array), dtype)| RunOutput { name, dtype, array })
        .collect();

    let head_lengths = if uses_decoder {
        decoder.lengths.clone()
    } else {
        tokens.lengths.clone()
    };
    Ok(RunReport {
        model_path: match &request.source {
            ModelSource::Spec { path, .. } | ModelSource::Onnx(path) => path.clone(),
        },
        model_name: model.map(|m| m.name.clone()),
        provider: loaded.provider,
        fallback: loaded.fallback,
        weights: emitted.as_ref().and_then(|e| e.weights.clone()),
        inputs: input_shapes,
        outputs,
        tokens,
        timing: Timing {
            compile_ms,
            load_ms,
            run_ms,
        },
        tokenizer,
        texts,
        kinds: model.map(output_kinds).unwrap_or_default(),
        head_lengths,
        vocab,
    })
}
