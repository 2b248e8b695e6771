//! The model side of decoding: [`StepModel`], one forward step over a batch of rows, and its
//! ONNX Runtime implementations.
//!
//! A step feeds the new tokens of every row together with the row's full attention mask
//! (past and new positions) and returns the logits of each row's last position. Between
//! steps the implementation keeps whatever the model needs to continue — a KV cache, or the
//! tokens so far — and [`StepModel::select_rows`] reorders or duplicates it for beam search.
//!
//! Both ONNX implementations take the graphs `tfc build --kv-cache` writes (see
//! `docs/KV_CACHE.md`): `past_key_values.{i}.*` inputs matched by `present.{i}.*` outputs of
//! shape `[batch, kv_heads, past + new, head_dim]`. The first step (the prefill) feeds
//! zero-length pasts; each later step feeds the presents of the previous one back, as ONNX
//! Runtime values, copied only when beam search reorders rows. A graph without cache inputs
//! (a plain `tfc build`) also works: every step then reruns the whole sequence.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use half::f16;
use ndarray::{Array2, ArrayD, Axis, Ix2, IxDyn};
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::GenerateError;
use crate::runtime::Session;

/// One forward step of a model over a batch of rows, keeping its state between steps.
pub trait StepModel {
    /// Whether the model has an encoder, run once by [`encode`](StepModel::encode) before the
    /// first step.
    fn is_encoder_decoder(&self) -> bool;

    /// Runs the encoder over `input_ids` (right-padded) with `attention_mask` and keeps what
    /// the decoder needs. Decoder-only models refuse.
    fn encode(
        &mut self,
        input_ids: &[Vec<i64>],
        attention_mask: &[Vec<i64>],
    ) -> Result<(), GenerateError> {
        let _ = (input_ids, attention_mask);
        Err(GenerateError::Config(
            "a decoder-only model has no encoder to run".into(),
        ))
    }

    /// Feeds `tokens` (the same number of new tokens for every row) and returns the logits
    /// of each row's last position, `[rows, vocab]`. `attention_mask` covers every position
    /// so far, past and new (for an encoder–decoder, the decoder's positions).
    fn step(
        &mut self,
        tokens: &[Vec<i64>],
        attention_mask: &[Vec<i64>],
    ) -> Result<Array2<f32>, GenerateError>;

    /// Rebuilds the state so that new row `i` continues old row `rows[i]`; rows may repeat
    /// (to widen a batch into beams) or be dropped.
    fn select_rows(&mut self, rows: &[usize]) -> Result<(), GenerateError>;
}

/// One cache input of a graph and the output that continues it.
#[derive(Debug, Clone)]
struct CacheSlot {
    past: String,
    present: String,
    /// `[kv_heads, head_dim]`, from the declared input shape.
    dims: [usize; 2],
    element: TensorElementType,
}

/// The declared inputs of a session, with the cache inputs whose names start with `prefix`
/// paired with the outputs the same name with `present` yields. The present may also be
/// an output of another graph, among `elsewhere` (the encoder's cross-attention keys and
/// values, computed once per input).
fn cache_slots(
    session: &mut Session,
    prefix: &str,
    present_prefix: &str,
    elsewhere: &[String],
) -> Result<Vec<CacheSlot>, GenerateError> {
    let path = session.path().to_path_buf();
    let mut outputs: Vec<String> = session
        .output_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    outputs.extend(elsewhere.iter().cloned());
    let mut slots = Vec::new();
    for input in session.ort_session().inputs() {
        let Some(rest) = input.name().strip_prefix(prefix) else {
            continue;
        };
        let present = format!("{present_prefix}{rest}");
        let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
            return Err(model_error(
                &path,
                format!("`{}` is not a tensor", input.name()),
            ));
        };
        let fixed = |d: i64| usize::try_from(d).ok();
        let dims = match shape.as_ref() {
            [_, heads, _, dim] => fixed(*heads).zip(fixed(*dim)),
            _ => None,
        };
        let Some((heads, dim)) = dims else {
            return Err(model_error(
                &path,
                format!(
                    "cache input `{}` has shape {:?}; expected [batch, kv_heads, \
                     past_sequence, head_dim] with fixed kv_heads and head_dim",
                    input.name(),
                    shape.as_ref()
                ),
            ));
        };
        if !outputs.contains(&present) {
            return Err(model_error(
                &path,
                format!(
                    "cache input `{}` has no matching output `{present}`",
                    input.name()
                ),
            ));
        }
        slots.push(CacheSlot {
            past: input.name().to_string(),
            present,
            dims: [heads, dim],
            element: *ty,
        });
    }
    Ok(slots)
}

fn model_error(path: &Path, reason: String) -> GenerateError {
    GenerateError::Model {
        model: path.to_path_buf(),
        reason,
    }
}

fn ort_error(path: &Path, what: impl Into<String>) -> impl FnOnce(ort::Error) -> GenerateError {
    let model = path.to_path_buf();
    let what = what.into();
    move |source| GenerateError::Ort {
        model,
        what,
        source,
    }
}

fn declared_inputs(session: &Session) -> Vec<String> {
    session
        .input_names()
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Rows of equal width as an `i64` tensor.
fn int_tensor(path: &Path, name: &str, rows: &[Vec<i64>]) -> Result<DynValue, GenerateError> {
    let width = rows.first().map_or(0, Vec::len);
    if let Some(row) = rows.iter().position(|r| r.len() != width) {
        return Err(model_error(
            path,
            format!("`{name}`: row {row} is not {width} wide like row 0"),
        ));
    }
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    let shape = vec![rows.len(), width];
    Tensor::from_array((shape.clone(), flat))
        .map(Tensor::into_dyn)
        .map_err(ort_error(
            path,
            format!("building `{name}` of shape {shape:?}"),
        ))
}

/// A zero-length cache tensor `[rows, heads, 0, dim]`.
fn empty_cache(path: &Path, slot: &CacheSlot, rows: usize) -> Result<DynValue, GenerateError> {
    let shape = IxDyn(&[rows, slot.dims[0], 0, slot.dims[1]]);
    let what = format!("building an empty `{}`", slot.past);
    match slot.element {
        TensorElementType::Float32 => Tensor::from_array(ArrayD::<f32>::zeros(shape))
            .map(Tensor::into_dyn)
            .map_err(ort_error(path, what)),
        TensorElementType::Float16 => Tensor::from_array(ArrayD::from_elem(shape, f16::ZERO))
            .map(Tensor::into_dyn)
            .map_err(ort_error(path, what)),
        other => Err(model_error(
            path,
            format!(
                "cache input `{}` is {other}; only f32 and f16 caches are supported",
                slot.past
            ),
        )),
    }
}

/// `value` with its first axis gathered at `rows`.
fn select_value(
    path: &Path,
    name: &str,
    value: &DynValue,
    rows: &[usize],
) -> Result<DynValue, GenerateError> {
    let what = || format!("reordering the rows of `{name}`");
    let element = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => {
            return Err(model_error(
                path,
                format!("`{name}` is {other}, not a tensor"),
            ))
        }
    };
    let batch = match value.dtype() {
        ValueType::Tensor { shape, .. } => shape.first().copied().unwrap_or(0),
        _ => 0,
    };
    if let Some(&bad) = rows.iter().find(|&&r| r as i64 >= batch) {
        return Err(model_error(
            path,
            format!("row {bad} of `{name}` was selected, but it has {batch} rows"),
        ));
    }
    match element {
        TensorElementType::Float32 => {
            let array = value
                .try_extract_array::<f32>()
                .map_err(ort_error(path, what()))?;
            Tensor::from_array(array.select(Axis(0), rows))
                .map(Tensor::into_dyn)
                .map_err(ort_error(path, what()))
        }
        TensorElementType::Float16 => {
            let array = value
                .try_extract_array::<f16>()
                .map_err(ort_error(path, what()))?;
            Tensor::from_array(array.select(Axis(0), rows))
                .map(Tensor::into_dyn)
                .map_err(ort_error(path, what()))
        }
        other => Err(model_error(
            path,
            format!("`{name}` is {other}; only f32 and f16 tensors can be reordered"),
        )),
    }
}

/// The logits of each row's last position, from a `[rows, sequence, vocab]` output.
fn last_logits(path: &Path, value: &DynValue) -> Result<Array2<f32>, GenerateError> {
    let what = || "reading `logits`".to_string();
    let element = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => {
            return Err(model_error(
                path,
                format!("`logits` is {other}, not a tensor"),
            ))
        }
    };
    let array: ArrayD<f32> = match element {
        TensorElementType::Float32 => {
            let view = value
                .try_extract_array::<f32>()
                .map_err(ort_error(path, what()))?;
            last_position(path, view.view())?
        }
        TensorElementType::Float16 => {
            let view = value
                .try_extract_array::<f16>()
                .map_err(ort_error(path, what()))?;
            last_position(path, view.mapv(f16::to_f32).view())?
        }
        other => {
            return Err(model_error(
                path,
                format!("`logits` is {other}; expected f32 or f16"),
            ))
        }
    };
    array
        .into_dimensionality::<Ix2>()
        .map_err(|e| model_error(path, format!("`logits`: {e}")))
}

fn last_position(
    path: &Path,
    view: ndarray::ArrayViewD<f32>,
) -> Result<ArrayD<f32>, GenerateError> {
    match view.shape() {
        [_, sequence, _] if *sequence > 0 => Ok(view.index_axis(Axis(1), sequence - 1).to_owned()),
        shape => Err(model_error(
            path,
            format!("`logits` has shape {shape:?}; expected [batch, sequence, vocab]"),
        )),
    }
}

/// Position ids as Transformers' `generate` builds them: `cumsum(mask) - 1`, 1 at masked
/// places; the last `new` columns of each row.
pub fn positions_from_mask(mask: &[Vec<i64>], new: usize) -> Vec<Vec<i64>> {
    mask.iter()
        .map(|row| {
            let mut seen = 0;
            let all: Vec<i64> = row
                .iter()
                .map(|&m| {
                    seen += m;
                    if m == 0 {
                        1
                    } else {
                        seen - 1
                    }
                })
                .collect();
            all[all.len().saturating_sub(new)..].to_vec()
        })
        .collect()
}

fn gather_rows(rows: &[Vec<i64>], selected: &[usize]) -> Vec<Vec<i64>> {
    selected
        .iter()
        .filter_map(|&r| rows.get(r).cloned())
        .collect()
}

/// Named inputs of one run, with a `name: type shape` summary for error messages.
#[derive(Default)]
struct Feeds<'v> {
    values: Vec<(String, SessionInputValue<'v>)>,
    summary: Vec<String>,
}

impl<'v> Feeds<'v> {
    fn describe(&mut self, name: &str, value: &DynValue) {
        self.summary.push(match value.dtype() {
            ValueType::Tensor { ty, shape, .. } => format!("{name}: {ty} {:?}", shape.as_ref()),
            other => format!("{name}: {other}"),
        });
    }

    /// Adds a value the run consumes.
    fn owned(&mut self, name: &str, value: DynValue) {
        self.describe(name, &value);
        self.values.push((name.to_string(), value.into()));
    }

    /// Adds a value the run only reads (kept for later steps).
    fn shared(&mut self, name: &str, value: &'v DynValue) {
        self.describe(name, value);
        self.values.push((name.to_string(), value.into()));
    }
}

/// Runs `session` and returns every output by name.
fn run(session: &mut Session, feeds: Feeds) -> Result<Vec<(String, DynValue)>, GenerateError> {
    let path = session.path().to_path_buf();
    let names: Vec<String> = session
        .output_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let values: Vec<(Cow<str>, SessionInputValue)> = feeds
        .values
        .into_iter()
        .map(|(name, value)| (Cow::Owned(name), value))
        .collect();
    let what = format!("step failed with inputs {}", feeds.summary.join(", "));
    let mut outputs = session
        .ort_session()
        .run(values)
        .map_err(ort_error(&path, what))?;
    Ok(names
        .into_iter()
        .filter_map(|name| outputs.remove(&name).map(|value| (name, value)))
        .collect())
}

fn take_output(
    path: &Path,
    outputs: &mut Vec<(String, DynValue)>,
    name: &str,
) -> Result<DynValue, GenerateError> {
    match outputs.iter().position(|(n, _)| n == name) {
        Some(i) => Ok(outputs.swap_remove(i).1),
        None => Err(model_error(
            path,
            format!("the model has no output `{name}`"),
        )),
    }
}

/// A decoder-only model: one graph taking `input_ids`, `attention_mask`, `position_ids`
/// (those it declares) and, with a cache, `past_key_values.{i}.key/value`.
pub struct OnnxDecoderOnly {
    session: Session,
    inputs: Vec<String>,
    cache: Vec<CacheSlot>,
    /// The presents of the last step, in `cache` order; `None` before the prefill.
    past: Option<Vec<DynValue>>,
    /// Tokens fed so far, for a graph without a cache.
    history: Vec<Vec<i64>>,
}

impl std::fmt::Debug for OnnxDecoderOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxDecoderOnly")
            .field("model", &self.session.path())
            .field("cache_inputs", &self.cache.len())
            .finish()
    }
}

impl OnnxDecoderOnly {
    /// Wraps a loaded decoder graph; its cache inputs are found by name.
    pub fn new(mut session: Session) -> Result<OnnxDecoderOnly, GenerateError> {
        let cache = cache_slots(&mut session, "past_key_values.", "present.", &[])?;
        let inputs = declared_inputs(&session);
        Ok(OnnxDecoderOnly {
            session,
            inputs,
            cache,
            past: None,
            history: Vec::new(),
        })
    }

    /// Whether the graph has a KV cache (otherwise each step reruns the whole sequence).
    pub fn has_cache(&self) -> bool {
        !self.cache.is_empty()
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        self.session.path()
    }
}

impl StepModel for OnnxDecoderOnly {
    fn is_encoder_decoder(&self) -> bool {
        false
    }

    fn step(
        &mut self,
        tokens: &[Vec<i64>],
        attention_mask: &[Vec<i64>],
    ) -> Result<Array2<f32>, GenerateError> {
        let path = self.session.path().to_path_buf();
        let rows = tokens.len();
        let new = tokens.first().map_or(0, Vec::len);
        let ids = if self.has_cache() {
            tokens.to_vec()
        } else {
            if self.history.len() != rows {
                self.history = vec![Vec::new(); rows];
            }
            for (history, new_tokens) in self.history.iter_mut().zip(tokens) {
                history.extend_from_slice(new_tokens);
            }
            self.history.clone()
        };
        let width = ids.first().map_or(0, Vec::len);
        let past = match self.past.take() {
            Some(past) => past,
            None if self.has_cache() => self
                .cache
                .iter()
                .map(|slot| empty_cache(&path, slot, rows))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let mask_width = attention_mask.first().map_or(0, Vec::len);
        let past_len = past.first().map_or(0, |value| match value.dtype() {
            ValueType::Tensor { shape, .. } => shape.get(2).copied().unwrap_or(0) as usize,
            _ => 0,
        });
        if mask_width != past_len + width || attention_mask.len() != rows {
            return Err(model_error(
                &path,
                format!(
                    "attention_mask is [{}, {mask_width}] but the step has {rows} rows of \
                     {past_len} past and {width} new positions",
                    attention_mask.len()
                ),
            ));
        }

        // The inputs the graph declares.
        let mut feeds = Feeds::default();
        let mut past = past.into_iter();
        for name in &self.inputs {
            let value = match name.as_str() {
                "input_ids" => int_tensor(&path, name, &ids)?,
                "attention_mask" => int_tensor(&path, name, attention_mask)?,
                "position_ids" => {
                    let positions = positions_from_mask(
                        attention_mask,
                        if self.has_cache() { new } else { width },
                    );
                    int_tensor(&path, name, &positions)?
                }
                "token_type_ids" => int_tensor(&path, name, &vec![vec![0; width]; rows])?,
                _ if self.cache.iter().any(|slot| &slot.past == name) => past
                    .next()
                    .ok_or_else(|| model_error(&path, format!("no value for `{name}`")))?,
                _ => {
                    return Err(model_error(
                        &path,
                        format!("input `{name}` cannot be filled while decoding"),
                    ))
                }
            };
            feeds.owned(name, value);
        }

        let mut outputs = run(&mut self.session, feeds)?;
        let logits = last_logits(&path, &take_output(&path, &mut outputs, "logits")?)?;
        if self.has_cache() {
            let presents = self
                .cache
                .iter()
                .map(|slot| take_output(&path, &mut outputs, &slot.present))
                .collect::<Result<_, _>>()?;
            self.past = Some(presents);
        }
        Ok(logits)
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<(), GenerateError> {
        let path = self.session.path().to_path_buf();
        if !self.history.is_empty() {
            self.history = gather_rows(&self.history, rows);
        }
        if let Some(past) = &self.past {
            let selected = past
                .iter()
                .zip(&self.cache)
                .map(|(value, slot)| select_value(&path, &slot.past, value, rows))
                .collect::<Result<_, _>>()?;
            self.past = Some(selected);
        }
        Ok(())
    }
}

/// The graphs of an encoder–decoder.
enum Seq2SeqGraphs {
    /// `encoder` (→ `last_hidden_state`, `present.{i}.encoder.*`) and a cached `decoder`.
    Cached {
        encoder: Session,
        decoder: Session,
        cross: Vec<CacheSlot>,
        own: Vec<CacheSlot>,
    },
    /// One graph from token ids to logits, rerun over the whole sequence at every step.
    Full(Session),
}

/// An encoder–decoder: either the two cache graphs of `tfc build --kv-cache`, or one plain
/// graph taking `input_ids`, `attention_mask` and `decoder_input_ids`.
pub struct OnnxEncoderDecoder {
    graphs: Seq2SeqGraphs,
    /// Encoder inputs, kept per row (rows follow `select_rows`).
    encoder_ids: Vec<Vec<i64>>,
    encoder_mask: Vec<Vec<i64>>,
    /// The encoder's outputs the decoder reads: `last_hidden_state` and the cross-attention
    /// keys and values, by the decoder input name they feed.
    encoded: Vec<(String, DynValue)>,
    /// The decoder's own cache after the last step.
    past: Option<Vec<DynValue>>,
    /// Decoder tokens so far, for the plain graph.
    history: Vec<Vec<i64>>,
}

impl std::fmt::Debug for OnnxEncoderDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let model = match &self.graphs {
            Seq2SeqGraphs::Cached { decoder, .. } => decoder.path(),
            Seq2SeqGraphs::Full(session) => session.path(),
        };
        f.debug_struct("OnnxEncoderDecoder")
            .field("model", &model)
            .finish()
    }
}

impl OnnxEncoderDecoder {
    /// Wraps the encoder and decoder graphs of `tfc build --kv-cache`.
    pub fn new(
        encoder: Session,
        mut decoder: Session,
    ) -> Result<OnnxEncoderDecoder, GenerateError> {
        let encoder_names: Vec<String> = encoder
            .output_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let cross = cache_slots(&mut decoder, "past_key_values.", "present.", &encoder_names)?
            .into_iter()
            .filter(|slot| {
                slot.past.ends_with(".encoder.key") || slot.past.ends_with(".encoder.value")
            })
            .collect::<Vec<_>>();
        let own = cache_slots(&mut decoder, "past_key_values.", "present.", &encoder_names)?
            .into_iter()
            .filter(|slot| {
                slot.past.ends_with(".decoder.key") || slot.past.ends_with(".decoder.value")
            })
            .collect();
        let encoder_outputs = encoder.output_names().join(", ");
        for slot in &cross {
            let wanted = slot.present.clone();
            if !encoder.output_names().contains(&wanted.as_str()) {
                return Err(model_error(
                    encoder.path(),
                    format!(
                        "the decoder reads `{}`, but the encoder has no output `{wanted}` \
                         (its outputs: {encoder_outputs})",
                        slot.past
                    ),
                ));
            }
        }
        Ok(OnnxEncoderDecoder {
            graphs: Seq2SeqGraphs::Cached {
                encoder,
                decoder,
                cross,
                own,
            },
            encoder_ids: Vec::new(),
            encoder_mask: Vec::new(),
            encoded: Vec::new(),
            past: None,
            history: Vec::new(),
        })
    }

    /// Wraps one plain encoder–decoder graph (no cache).
    pub fn without_cache(session: Session) -> OnnxEncoderDecoder {
        OnnxEncoderDecoder {
            graphs: Seq2SeqGraphs::Full(session),
            encoder_ids: Vec::new(),
            encoder_mask: Vec::new(),
            encoded: Vec::new(),
            past: None,
            history: Vec::new(),
        }
    }
}

impl StepModel for OnnxEncoderDecoder {
    fn is_encoder_decoder(&self) -> bool {
        true
    }

    fn encode(
        &mut self,
        input_ids: &[Vec<i64>],
        attention_mask: &[Vec<i64>],
    ) -> Result<(), GenerateError> {
        self.encoder_ids = input_ids.to_vec();
        self.encoder_mask = attention_mask.to_vec();
        self.past = None;
        self.history.clear();
        self.encoded.clear();
        let Seq2SeqGraphs::Cached { encoder, cross, .. } = &mut self.graphs else {
            return Ok(());
        };
        let path = encoder.path().to_path_buf();
        let width = input_ids.first().map_or(0, Vec::len);
        let mut feeds = Feeds::default();
        for name in declared_inputs(encoder) {
            let value = match name.as_str() {
                "input_ids" => int_tensor(&path, &name, input_ids)?,
                "attention_mask" => int_tensor(&path, &name, attention_mask)?,
                "token_type_ids" => {
                    int_tensor(&path, &name, &vec![vec![0; width]; input_ids.len()])?
                }
                _ => {
                    return Err(model_error(
                        &path,
                        format!("encoder input `{name}` cannot be filled while decoding"),
                    ))
                }
            };
            feeds.owned(&name, value);
        }
        let mut outputs = run(encoder, feeds)?;
        for slot in cross.iter() {
            let value = take_output(&path, &mut outputs, &slot.present)?;
            self.encoded.push((slot.past.clone(), value));
        }
        if let Ok(hidden) = take_output(&path, &mut outputs, "last_hidden_state") {
            self.encoded
                .push(("encoder_hidden_states".to_string(), hidden));
        }
        Ok(())
    }

    fn step(
        &mut self,
        tokens: &[Vec<i64>],
        _attention_mask: &[Vec<i64>],
    ) -> Result<Array2<f32>, GenerateError> {
        let rows = tokens.len();
        if self.encoder_ids.len() != rows {
            return Err(GenerateError::Config(format!(
                "the encoder ran over {} rows, but the decoder step has {rows}",
                self.encoder_ids.len()
            )));
        }
        match &mut self.graphs {
            Seq2SeqGraphs::Full(session) => {
                let path = session.path().to_path_buf();
                if self.history.len() != rows {
                    self.history = vec![Vec::new(); rows];
                }
                for (history, new_tokens) in self.history.iter_mut().zip(tokens) {
                    history.extend_from_slice(new_tokens);
                }
                let width = self.history.first().map_or(0, Vec::len);
                let encoder_width = self.encoder_ids.first().map_or(0, Vec::len);
                let mut feeds = Feeds::default();
                for name in declared_inputs(session) {
                    let value = match name.as_str() {
                        "input_ids" => int_tensor(&path, &name, &self.encoder_ids)?,
                        "attention_mask" => int_tensor(&path, &name, &self.encoder_mask)?,
                        "token_type_ids" => {
                            int_tensor(&path, &name, &vec![vec![0; encoder_width]; rows])?
                        }
                        "decoder_input_ids" => int_tensor(&path, &name, &self.history)?,
                        "decoder_attention_mask" => {
                            int_tensor(&path, &name, &vec![vec![1; width]; rows])?
                        }
                        _ => {
                            return Err(model_error(
                                &path,
                                format!("input `{name}` cannot be filled while decoding"),
                            ))
                        }
                    };
                    feeds.owned(&name, value);
                }
                let mut outputs = run(session, feeds)?;
                last_logits(&path, &take_output(&path, &mut outputs, "logits")?)
            }
            Seq2SeqGraphs::Cached { decoder, own, .. } => {
                let path = decoder.path().to_path_buf();
                let past = match self.past.take() {
                    Some(past) => past,
                    None => own
                        .iter()
                        .map(|slot| empty_cache(&path, slot, rows))
                        .collect::<Result<_, _>>()?,
                };
                let mut past = past.into_iter();
                let mut feeds = Feeds::default();
                for name in declared_inputs(decoder) {
                    let value = match name.as_str() {
                        "decoder_input_ids" | "input_ids" => int_tensor(&path, &name, tokens)?,
                        "encoder_attention_mask" => int_tensor(&path, &name, &self.encoder_mask)?,
                        _ if own.iter().any(|slot| slot.past == name) => past
                            .next()
                            .ok_or_else(|| model_error(&path, format!("no value for `{name}`")))?,
                        _ => {
                            // Encoder outputs are read at every step, never consumed.
                            let Some((_, value)) = self.encoded.iter().find(|(n, _)| *n == name)
                            else {
                                return Err(model_error(
                                    &path,
                                    format!(
                                        "decoder input `{name}` cannot be filled while decoding"
                                    ),
                                ));
                            };
                            feeds.shared(&name, value);
                            continue;
                        }
                    };
                    feeds.owned(&name, value);
                }
                let mut outputs = run(decoder, feeds)?;
                let logits = last_logits(&path, &take_output(&path, &mut outputs, "logits")?)?;
                let presents = own
                    .iter()
                    .map(|slot| take_output(&path, &mut outputs, &slot.present))
                    .collect::<Result<_, _>>()?;
                self.past = Some(presents);
                Ok(logits)
            }
        }
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<(), GenerateError> {
        self.encoder_ids = gather_rows(&self.encoder_ids, rows);
        self.encoder_mask = gather_rows(&self.encoder_mask, rows);
        if !self.history.is_empty() {
            self.history = gather_rows(&self.history, rows);
        }
        let (path, own): (PathBuf, Vec<CacheSlot>) = match &self.graphs {
            Seq2SeqGraphs::Cached { decoder, own, .. } => {
                (decoder.path().to_path_buf(), own.clone())
            }
            Seq2SeqGraphs::Full(_) => return Ok(()),
        };
        for (name, value) in &mut self.encoded {
            *value = select_value(&path, name, value, rows)?;
        }
        if let Some(past) = &self.past {
            let selected = past
                .iter()
                .zip(&own)
                .map(|(value, slot)| select_value(&path, &slot.past, value, rows))
                .collect::<Result<_, _>>()?;
            self.past = Some(selected);
        }
        Ok(())
    }
}
