//! Autoregressive decoding: greedy search, beam search and sampling over a [`StepModel`].
//!
//! This sits on top of the runtime stage. A [`StepModel`] runs one forward step of a compiled
//! model (with or without a KV cache) and hands back the logits of the last position of every
//! row; everything else — choosing tokens, end-of-sequence bookkeeping, beams, the logits
//! processors — lives here and follows what Hugging Face Transformers' `generate` does, so a
//! model compiled by tfc decodes the same tokens as its PyTorch original:
//!
//! - [`greedy`] keeps one sequence per row and takes the argmax (or, through [`sample`], a
//!   seeded draw) of the processed logits; rows that finished are filled with the pad id;
//! - [`beam`] keeps `num_beams` hypotheses per row with Transformers' scoring, finalisation and
//!   stopping rules;
//! - [`processors`] holds the logits processors real generation configs turn on;
//! - [`model`] defines [`StepModel`] and its ONNX Runtime implementations.
//!
//! [`generate`] is the entry point: it validates a [`GenerationConfig`], runs the strategy,
//! calls a callback after every step (for streaming) and times the steps.

pub mod beam;
pub mod greedy;
pub mod load;
pub mod model;
pub mod processors;
pub mod sample;

use std::path::PathBuf;
use std::time::Instant;

use thiserror::Error;

pub use model::{OnnxDecoderOnly, OnnxEncoderDecoder, StepModel};
pub use processors::Processors;

use super::run::RunError;
use super::RuntimeError;

/// Why decoding failed.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// The generation settings are inconsistent or out of range.
    #[error("invalid generation settings: {0}")]
    Config(String),
    /// The prompt cannot be decoded from (no rows, an empty row, ragged rows).
    #[error("invalid prompt: {0}")]
    Prompt(String),
    /// The spec could not be compiled, filled with weights or emitted.
    #[error(transparent)]
    Prepare(Box<RunError>),
    /// A session could not be loaded or prepared.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// ONNX Runtime failed while building an input, running a step or reading an output.
    #[error("model `{}`: {what}: {source}", .model.display())]
    Ort {
        /// The model file.
        model: PathBuf,
        /// What was being done, naming the tensor and its shape where one is involved.
        what: String,
        /// The error ONNX Runtime reported.
        #[source]
        source: ort::Error,
    },
    /// A model does not have the inputs or outputs decoding needs, or an output has an
    /// unexpected type or shape.
    #[error("model `{}`: {reason}", .model.display())]
    Model {
        /// The model file (or a description of the model).
        model: PathBuf,
        /// What is wrong, naming the tensor and both shapes where shapes disagree.
        reason: String,
    },
}

/// Hugging Face's `early_stopping` for beam search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// `True`: an item stops as soon as it holds `num_beams` finished hypotheses.
    #[default]
    Enabled,
    /// `False`: an item stops when the best running beam, scored at the current length,
    /// cannot beat the worst finished hypothesis.
    Heuristic,
    /// `"never"`: as `False`, but with a positive length penalty the running beam is scored at
    /// `max_length`, the most optimistic length, so the search rarely stops before it.
    Never,
}

impl std::str::FromStr for EarlyStopping {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "true" => Ok(EarlyStopping::Enabled),
            "false" => Ok(EarlyStopping::Heuristic),
            "never" => Ok(EarlyStopping::Never),
            _ => Err(format!(
                "`{text}` is not an early-stopping mode (true, false or never)"
            )),
        }
    }
}

/// Settings of beam search.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamConfig {
    /// Hypotheses kept per row (at least 1).
    pub num_beams: usize,
    /// Exponent of the generated length that divides a finished hypothesis' summed
    /// log-probabilities; above 0 favours longer sequences.
    pub length_penalty: f32,
    /// When an item stops.
    pub early_stopping: EarlyStopping,
    /// Sequences returned per row, best first (at most `num_beams`).
    pub num_return_sequences: usize,
}

impl Default for BeamConfig {
    fn default() -> Self {
        BeamConfig {
            num_beams: 4,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Enabled,
            num_return_sequences: 1,
        }
    }
}

/// Settings of sampling.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleConfig {
    /// Logits are divided by this before the softmax (above 0).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (ties with the k-th included).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (0 < p ≤ 1).
    pub top_p: Option<f32>,
    /// Seed of the random generator: the same seed, model and prompt give the same tokens.
    pub seed: u64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// The most likely token.
    Greedy,
    /// Beam search.
    Beam(BeamConfig),
    /// A seeded draw from the processed distribution.
    Sample(SampleConfig),
}

/// Everything that decides what [`generate`] produces.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// The search strategy.
    pub strategy: Strategy,
    /// Tokens generated at most per sequence (at least 1).
    pub max_new_tokens: usize,
    /// Tokens that end a sequence: the model's EOS ids and any stop ids.
    pub eos_token_ids: Vec<i64>,
    /// Filler for rows that finished; the first EOS id when `None`.
    pub pad_token_id: Option<i64>,
    /// First decoder token of an encoder–decoder (column 0 of every returned sequence).
    pub decoder_start_token_id: Option<i64>,
    /// Logits processors.
    pub processors: Processors,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            strategy: Strategy::Greedy,
            max_new_tokens: 20,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            decoder_start_token_id: None,
            processors: Processors::default(),
        }
    }
}

impl GenerationConfig {
    /// The id finished greedy or sampled rows are filled with: the pad id, else the first
    /// EOS id, else 0.
    pub fn greedy_fill(&self) -> i64 {
        self.pad_token_id
            .or_else(|| self.eos_token_ids.first().copied())
            .unwrap_or(0)
    }

    /// The id beam-search outputs are right-filled with. Transformers 4.57 takes
    /// `pad_token_id or eos_token_id[0]`, and Python treats a pad id of 0 as false, so with
    /// pad id 0 (or none) the filler is the first EOS id; with no EOS either it is -1.
    pub fn beam_fill(&self) -> i64 {
        match self.pad_token_id {
            Some(pad) if pad != 0 => pad,
            _ => self.eos_token_ids.first().copied().unwrap_or(-1),
        }
    }

    fn validate(&self) -> Result<(), GenerateError> {
        let bad = |reason: String| Err(GenerateError::Config(reason));
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        match &self.strategy {
            Strategy::Greedy => {}
            Strategy::Beam(beam) => {
                if beam.num_beams == 0 {
                    return bad("num_beams must be at least 1".into());
                }
                if beam.num_return_sequences == 0 || beam.num_return_sequences > beam.num_beams {
                    return bad(format!(
                        "num_return_sequences ({}) must be between 1 and num_beams ({})",
                        beam.num_return_sequences, beam.num_beams
                    ));
                }
                if !beam.length_penalty.is_finite() {
                    return bad("length_penalty must be finite".into());
                }
            }
            Strategy::Sample(sample) => {
                if !(sample.temperature > 0.0 && sample.temperature.is_finite()) {
                    return bad(format!(
                        "temperature must be above 0, not {}",
                        sample.temperature
                    ));
                }
                if sample.top_k == Some(0) {
                    return bad("top_k must be at least 1".into());
                }
                if let Some(p) = sample.top_p {
                    if !(p > 0.0 && p <= 1.0) {
                        return bad(format!("top_p must be in (0, 1], not {p}"));
                    }
                }
            }
        }
        self.processors.validate()
    }
}

/// The token rows decoding starts from, padded to one width.
///
/// Invariant: `ids` and `mask` have the same number of rows (at least one), every row has
/// the same width (at least one), and every row has at least one position with mask 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Token ids, padding included.
    pub ids: Vec<Vec<i64>>,
    /// 1 on real tokens, 0 on padding.
    pub mask: Vec<Vec<i64>>,
}

impl Prompt {
    /// A decoder-only prompt: ragged rows left-padded with `pad_id`, as Transformers expects
    /// for generation (new tokens follow the last real token of every row).
    pub fn left_padded(rows: &[Vec<i64>], pad_id: i64) -> Result<Prompt, GenerateError> {
        Prompt::padded(rows, pad_id, true)
    }

    /// An encoder prompt: ragged rows right-padded with `pad_id`.
    pub fn right_padded(rows: &[Vec<i64>], pad_id: i64) -> Result<Prompt, GenerateError> {
        Prompt::padded(rows, pad_id, false)
    }

    fn padded(rows: &[Vec<i64>], pad_id: i64, left: bool) -> Result<Prompt, GenerateError> {
        if rows.is_empty() {
            return Err(GenerateError::Prompt("no sequences were given".into()));
        }
        if let Some(row) = rows.iter().position(Vec::is_empty) {
            return Err(GenerateError::Prompt(format!("row {row} has no tokens")));
        }
        let width = rows.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(rows.len());
        let mut mask = Vec::with_capacity(rows.len());
        for row in rows {
            let pad = width - row.len();
            let (mut id_row, mut mask_row) = (Vec::with_capacity(width), Vec::with_capacity(width));
            if left {
                id_row.extend(std::iter::repeat_n(pad_id, pad));
                mask_row.extend(std::iter::repeat_n(0, pad));
            }
            id_row.extend_from_slice(row);
            mask_row.extend(std::iter::repeat_n(1, row.len()));
            if !left {
                id_row.extend(std::iter::repeat_n(pad_id, pad));
                mask_row.extend(std::iter::repeat_n(0, pad));
            }
            ids.push(id_row);
            mask.push(mask_row);
        }
        Ok(Prompt { ids, mask })
    }

    /// Takes already padded rows and their mask, checking the invariant.
    pub fn from_padded(ids: Vec<Vec<i64>>, mask: Vec<Vec<i64>>) -> Result<Prompt, GenerateError> {
        let prompt = Prompt { ids, mask };
        prompt.check()?;
        Ok(prompt)
    }

    /// The number of rows.
    pub fn batch(&self) -> usize {
        self.ids.len()
    }

    /// The padded width.
    pub fn width(&self) -> usize {
        self.ids.first().map_or(0, Vec::len)
    }

    fn check(&self) -> Result<(), GenerateError> {
        let bad = |reason: String| Err(GenerateError::Prompt(reason));
        if self.ids.is_empty() {
            return bad("no sequences were given".into());
        }
        if self.mask.len() != self.ids.len() {
            return bad(format!(
                "{} rows of ids but {} rows of mask",
                self.ids.len(),
                self.mask.len()
            ));
        }
        let width = self.width();
        if width == 0 {
            return bad("the rows have no tokens".into());
        }
        for (row, (ids, mask)) in self.ids.iter().zip(&self.mask).enumerate() {
            if ids.len() != width || mask.len() != width {
                return bad(format!("row {row} is not {width} tokens wide"));
            }
            if !mask.iter().any(|&m| m != 0) {
                return bad(format!("row {row} has no real token (its mask is all 0)"));
            }
        }
        Ok(())
    }
}

/// What one decoding step produced, passed to the streaming callback.
#[derive(Debug, Clone, Copy)]
pub struct StepEvent<'a> {
    /// The step, counted from 0 (step 0 includes the prefill).
    pub index: usize,
    /// The token chosen for every row (greedy and sampling); empty for beam search, whose
    /// sequences are known only at the end.
    pub tokens: &'a [i64],
    /// Whether each row was still generating when its token was chosen; a row that had
    /// finished receives the pad id.
    pub active: &'a [bool],
    /// Milliseconds the step took.
    pub ms: f64,
}

/// How long decoding took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationTiming {
    /// Milliseconds of each step; the first includes the encoder (if any) and the prefill,
    /// so it is the time to the first token.
    pub step_ms: Vec<f64>,
    /// Milliseconds from the call to the end, bookkeeping included.
    pub total_ms: f64,
}

impl GenerationTiming {
    /// Time to the first token, in milliseconds.
    pub fn first_token_ms(&self) -> f64 {
        self.step_ms.first().copied().unwrap_or(0.0)
    }

    /// Milliseconds of the steps after the first (decoding without the prefill).
    pub fn decode_ms(&self) -> f64 {
        self.step_ms.iter().skip(1).sum()
    }

    /// Steps after the first, per second (one token per sequence each); `None` with fewer
    /// than two steps.
    pub fn steps_per_second(&self) -> Option<f64> {
        let steps = self.step_ms.len().checked_sub(1).filter(|&n| n > 0)?;
        let ms = self.decode_ms();
        (ms > 0.0).then(|| steps as f64 * 1e3 / ms)
    }
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Full sequences as Transformers returns them: for a decoder-only model the (padded)
    /// prompt followed by the generated tokens; for an encoder–decoder the decoder start
    /// token followed by the generated tokens. Beam search returns `num_return_sequences`
    /// rows per prompt row, best first. All rows have one width, right-filled.
    pub sequences: Vec<Vec<i64>>,
    /// Beam search only: the score of each returned sequence (summed log-probabilities
    /// divided by `generated_length ** length_penalty`).
    pub scores: Option<Vec<f32>>,
    /// Columns of `sequences` before the first generated token.
    pub prompt_width: usize,
    /// Timing of the steps.
    pub timing: GenerationTiming,
}

impl Generation {
    /// The generated part of each returned sequence.
    pub fn generated(&self) -> Vec<&[i64]> {
        self.sequences
            .iter()
            .map(|row| row.get(self.prompt_width..).unwrap_or(&[]))
            .collect()
    }
}

/// Decodes from `prompt` with `model` as `config` says, calling `on_step` after every step.
///
/// For an encoder–decoder the prompt is the encoder input (right-padded) and decoding starts
/// from `decoder_start_token_id`; for a decoder-only model the prompt is left-padded and is
/// continued.
pub fn generate(
    model: &mut dyn StepModel,
    prompt: &Prompt,
    config: &GenerationConfig,
    on_step: &mut dyn FnMut(&StepEvent),
) -> Result<Generation, GenerateError> {
    config.validate()?;
    prompt.check()?;
    let start = Instant::now();
    let state = start_decoding(model, prompt, config)?;
    let mut generation = match &config.strategy {
        Strategy::Greedy => greedy::run(model, state, config, &mut greedy::argmax, on_step)?,
        Strategy::Sample(sample) => {
            let mut sampler = sample::Sampler::new(sample);
            let mut choose = |scores: &mut [f32]| sampler.choose(scores);
            greedy::run(model, state, config, &mut choose, on_step)?
        }
        Strategy::Beam(beam) => beam::run(model, state, config, beam, on_step)?,
    };
    generation.timing.total_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(generation)
}

/// The sequences a strategy starts from, once the encoder (if any) has run.
#[derive(Debug, Clone)]
pub struct Start {
    /// The rows decoding continues: the prompt, or the decoder start token.
    pub ids: Vec<Vec<i64>>,
    /// Their mask (for an encoder–decoder: ones; the encoder mask stays in the model).
    pub mask: Vec<Vec<i64>>,
    /// `ids`' width: tokens before the first generated one.
    pub prompt_width: usize,
    /// `prompt_width + max_new_tokens`.
    pub max_length: usize,
    /// Milliseconds the encoder took, counted into the first step.
    pub encoder_ms: f64,
}

fn start_decoding(
    model: &mut dyn StepModel,
    prompt: &Prompt,
    config: &GenerationConfig,
) -> Result<Start, GenerateError> {
    let (ids, mask, encoder_ms) = if model.is_encoder_decoder() {
        let Some(start_id) = config.decoder_start_token_id else {
            return Err(GenerateError::Config(
                "an encoder–decoder needs decoder_start_token_id".into(),
            ));
        };
        let started = Instant::now();
        model.encode(&prompt.ids, &prompt.mask)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let batch = prompt.batch();
        (vec![vec![start_id]; batch], vec![vec![1]; batch], ms)
    } else {
        (prompt.ids.clone(), prompt.mask.clone(), 0.0)
    };
    let prompt_width = ids.first().map_or(0, Vec::len);
    Ok(Start {
        ids,
        mask,
        prompt_width,
        max_length: prompt_width + config.max_new_tokens,
        encoder_ms,
    })
}

/// The last column of each row, as a one-token batch.
fn last_column(rows: &[Vec<i64>]) -> Vec<Vec<i64>> {
    rows.iter()
        .map(|row| row.last().map(|&t| vec![t]).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests;
