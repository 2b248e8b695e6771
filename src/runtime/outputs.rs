//! What a run produced, made readable: a text summary per output that knows the common
//! heads (class probabilities for a classifier, norms and cosine similarities for sentence
//! embeddings, the most likely next tokens for a language model), a JSON form with every
//! value, and `.npy` / `.safetensors` files.
//!
//! The kind of an output comes from the spec's heads when the model was compiled from one,
//! and otherwise from its name and rank (see [`OutputKind::guess`]).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Axis, Ix2, Ix3};
use thiserror::Error;

use super::inputs::TextTokenizer;

/// Why outputs could not be saved.
#[derive(Debug, Error)]
pub enum OutputError {
    /// The file extension names no format tfc writes.
    #[error(
        "cannot save outputs to {}: use a `.safetensors` or `.npy` file name",
        .path.display()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A `.npy` file holds one array, and the model has several outputs.
    #[error(
        "{} would hold one array, but the model has {count} outputs ({names}); \
         save them all with a `.safetensors` file",
        .path.display()
    )]
    NpyNeedsOneOutput {
        /// The file.
        path: PathBuf,
        /// The number of outputs.
        count: usize,
        /// Their names.
        names: String,
    },
    /// The safetensors serializer refused the data.
    #[error("cannot encode {} as safetensors: {message}", .path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// The serializer's explanation.
        message: String,
    },
    /// Writing failed.
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// One output of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// The output's name in the model.
    pub name: String,
    /// The element type the model declares (`f32`, `f16`); values are widened to `f32`.
    pub dtype: String,
    /// The values.
    pub array: ArrayD<f32>,
}

/// What an output means, which decides how it is summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Class scores `[batch, labels]`.
    Classifier,
    /// Per-token class scores `[batch, sequence, labels]`.
    TokenClassifier,
    /// Language-model scores `[batch, sequence, vocab]`.
    LanguageModel,
    /// A pooled sentence vector `[batch, hidden]`.
    Embedding,
    /// Anything else: shape and a few values.
    Other,
}

impl OutputKind {
    /// Guesses the kind from the output's name (its last `/`- or `.`-separated part) and rank,
    /// for models not compiled from a spec. Rank-3 `logits` are a language model's when their
    /// last dimension is the vocabulary size (when known) or more than 64 wide.
    pub fn guess(name: &str, shape: &[usize], vocab: Option<u64>) -> OutputKind {
        let base = name.rsplit(['/', '.']).next().unwrap_or(name);
        match (base, shape.len()) {
            ("sentence_embedding", 2) => OutputKind::Embedding,
            ("logits", 2) => OutputKind::Classifier,
            ("logits", 3) => {
                let last = shape[2] as u64;
                let is_vocab = match vocab {
                    Some(vocab) => last == vocab,
                    None => last > 64,
                };
                if is_vocab {
                    OutputKind::LanguageModel
                } else {
                    OutputKind::TokenClassifier
                }
            }
            _ => OutputKind::Other,
        }
    }
}

/// What the summary needs besides the outputs.
#[derive(Debug, Default)]
pub struct SummaryContext<'a> {
    /// Kind of each output, by name (outputs not listed are guessed).
    pub kinds: Vec<(String, OutputKind)>,
    /// Class names for classifier outputs (default `LABEL_i`).
    pub labels: Vec<String>,
    /// How each batch row is introduced (the text it came from, or empty).
    pub row_names: Vec<String>,
    /// The number of real tokens in each row of the sequence the heads read (the decoder's
    /// for an encoder-decoder model).
    pub lengths: Vec<usize>,
    /// Decodes token ids in language-model summaries.
    pub tokenizer: Option<&'a TextTokenizer>,
    /// The vocabulary size, when known.
    pub vocab: Option<u64>,
}

impl SummaryContext<'_> {
    fn kind(&self, output: &RunOutput) -> OutputKind {
        let declared = self.kinds.iter().find(|(name, _)| *name == output.name);
        let shape = output.array.shape();
        match declared {
            Some(&(_, kind)) if rank_fits(kind, shape.len()) => kind,
            _ => OutputKind::guess(&output.name, shape, self.vocab),
        }
    }

    fn row_name(&self, row: usize) -> String {
        match self.row_names.get(row) {
            Some(text) if !text.is_empty() => format!("row {row} {}", quote(text, 40)),
            _ => format!("row {row}"),
        }
    }

    fn label(&self, class: usize) -> String {
        self.labels
            .get(class)
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{class}"))
    }

    fn token(&self, id: usize) -> String {
        match self.tokenizer.and_then(|t| t.token(id)) {
            Some(text) => format!("{} ({id})", quote(&text, 20)),
            None => id.to_string(),
        }
    }
}

fn rank_fits(kind: OutputKind, rank: usize) -> bool {
    match kind {
        OutputKind::Classifier | OutputKind::Embedding => rank == 2,
        OutputKind::TokenClassifier | OutputKind::LanguageModel => rank == 3,
        OutputKind::Other => true,
    }
}

/// Rows shown in per-row listings; the rest are counted.
const MAX_ROWS: usize = 16;
/// Rows of a cosine-similarity matrix shown in full.
const MAX_MATRIX: usize = 12;

/// The readable summary of every output.
pub fn summarize(outputs: &[RunOutput], ctx: &SummaryContext<'_>) -> String {
    let mut text = String::new();
    for output in outputs {
        let shape = output.array.shape();
        let _ = writeln!(text, "{}  {} {:?}", output.name, output.dtype, shape);
        let body = match ctx.kind(output) {
            OutputKind::Classifier => classifier(output, ctx),
            OutputKind::TokenClassifier => token_classifier(output, ctx),
            OutputKind::LanguageModel => language_model(output, ctx),
            OutputKind::Embedding => embedding(output, ctx),
            OutputKind::Other => generic(output),
        };
        text.push_str(&body);
    }
    text
}

/// Softmax of a slice, computed stably.
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = scores.iter().map(|&s| (s - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|&e| e / sum).collect()
}

/// The `k` largest entries of `values` as `(index, value)`, largest first.
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut indexed: Vec<(usize, f32)> = values.iter().copied().enumerate().collect();
    indexed.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    indexed.truncate(k);
    indexed
}

fn classifier(output: &RunOutput, ctx: &SummaryContext<'_>) -> String {
    let mut text = String::new();
    let Ok(scores) = output.array.view().into_dimensionality::<Ix2>() else {
        return generic(output);
    };
    for (row, logits) in scores.outer_iter().enumerate().take(MAX_ROWS) {
        let probs = softmax(&logits.to_vec());
        let top: Vec<String> = top_k(&probs, 5)
            .into_iter()
            .map(|(class, p)| format!("{} {p:.4}", ctx.label(class)))
            .collect();
        let _ = writeln!(text, "  {}: {}", ctx.row_name(row), top.join(", "));
    }
    text.push_str(&more_rows(scores.nrows()));
    text
}

fn token_classifier(output: &RunOutput, ctx: &SummaryContext<'_>) -> String {
    let mut text = String::new();
    let Ok(scores) = output.array.view().into_dimensionality::<Ix3>() else {
        return generic(output);
    };
    for (row, tokens) in scores.outer_iter().enumerate().take(MAX_ROWS) {
        let len = ctx.lengths.get(row).copied().unwrap_or(tokens.nrows());
        let labels: Vec<String> = tokens
            .outer_iter()
            .take(len.min(16))
            .map(|logits| {
                let best = top_k(&logits.to_vec(), 1);
                best.first().map_or(String::new(), |&(c, _)| ctx.label(c))
            })
            .collect();
        let tail = if len > 16 { " ..." } else { "" };
        let _ = writeln!(
            text,
            "  {}: best label per token: {}{tail}",
            ctx.row_name(row),
            labels.join(" ")
        );
    }
    text.push_str(&more_rows(scores.shape()[0]));
    text
}

fn language_model(output: &RunOutput, ctx: &SummaryContext<'_>) -> String {
    let mut text = String::new();
    let Ok(scores) = output.array.view().into_dimensionality::<Ix3>() else {
        return generic(output);
    };
    for (row, positions) in scores.outer_iter().enumerate().take(MAX_ROWS) {
        let len = ctx.lengths.get(row).copied().unwrap_or(positions.nrows());
        let last = len.clamp(1, positions.nrows().max(1)) - 1;
        let probs = softmax(&positions.index_axis(Axis(0), last).to_vec());
        let top: Vec<String> = top_k(&probs, 5)
            .into_iter()
            .map(|(id, p)| format!("{} {p:.4}", ctx.token(id)))
            .collect();
        let _ = writeln!(
            text,
            "  {}, next token after position {last}: {}",
            ctx.row_name(row),
            top.join(", ")
        );
    }
    text.push_str(&more_rows(scores.shape()[0]));
    text
}

fn embedding(output: &RunOutput, ctx: &SummaryContext<'_>) -> String {
    let mut text = String::new();
    let Ok(vectors) = output.array.view().into_dimensionality::<Ix2>() else {
        return generic(output);
    };
    let norms: Vec<f32> = vectors
        .outer_iter()
        .map(|v| v.iter().map(|x| x * x).sum::<f32>().sqrt())
        .collect();
    for (row, vector) in vectors.outer_iter().enumerate().take(MAX_ROWS) {
        let first: Vec<f32> = vector.iter().take(6).copied().collect();
        let _ = writeln!(
            text,
            "  {}: |x| = {:.4}  {}",
            ctx.row_name(row),
            norms[row],
            format_values(&first, vector.len())
        );
    }
    text.push_str(&more_rows(vectors.nrows()));

    // Pairwise cosine similarities.
    let rows = vectors.nrows();
    if rows >= 2 {
        let shown = rows.min(MAX_MATRIX);
        let cut = if rows > shown {
            format!(" (first {shown} of {rows} rows)")
        } else {
            String::new()
        };
        let _ = writeln!(text, "  cosine similarity{cut}:");
        let header: String = (0..shown).map(|j| format!("{j:>8}")).collect();
        let _ = writeln!(text, "    {:>4}{header}", "");
        for i in 0..shown {
            let cells: String = (0..shown)
                .map(|j| {
                    let dot: f32 = vectors.row(i).dot(&vectors.row(j));
                    let denom = norms[i] * norms[j];
                    let cos = if denom > 0.0 { dot / denom } else { 0.0 };
                    format!("{cos:>8.4}")
                })
                .collect();
            let _ = writeln!(text, "    {i:>4}{cells}");
        }
    }
    text
}

fn generic(output: &RunOutput) -> String {
    let values: Vec<f32> = output.array.iter().take(8).copied().collect();
    let count = output.array.len();
    let mut text = format!("  values: {}\n", format_values(&values, count));
    if count > 0 {
        let min = output.array.iter().copied().fold(f32::INFINITY, f32::min);
        let max = output
            .array
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let mean = output.array.iter().map(|&x| f64::from(x)).sum::<f64>() / count as f64;
        let _ = writeln!(text, "  min {min:.4}  max {max:.4}  mean {mean:.4}");
    }
    text
}

fn format_values(values: &[f32], total: usize) -> String {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
    let tail = if total > values.len() { ", ..." } else { "" };
    format!("[{}{tail}]", shown.join(", "))
}

fn more_rows(rows: usize) -> String {
    if rows > MAX_ROWS {
        format!("  ... {} more rows\n", rows - MAX_ROWS)
    } else {
        String::new()
    }
}

fn quote(text: &str, max_chars: usize) -> String {
    let mut short: String = text.chars().take(max_chars).collect();
    if text.chars().count() > max_chars {
        short.push('…');
    }
    format!("{short:?}")
}

/// Every output as JSON: `{name, dtype, shape, values}` with `values` flattened in row-major
/// order (non-finite values become `null`).
pub fn outputs_json(outputs: &[RunOutput]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = outputs
        .iter()
        .map(|o| {
            let values: Vec<serde_json::Value> = o
                .array
                .iter()
                .map(|&v| {
                    // Through the shortest decimal that reads back as the same f32, so the
                    // JSON shows `0.1`, not the f64 widening `0.10000000149011612`.
                    let shortest = v.to_string().parse::<f64>().unwrap_or(f64::NAN);
                    serde_json::Number::from_f64(shortest)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number)
                })
                .collect();
            serde_json::json!({
                "name": o.name,
                "dtype": o.dtype,
                "shape": o.array.shape(),
                "values": values,
            })
        })
        .collect();
    serde_json::Value::Array(list)
}

/// Saves outputs to `path`: every output to a `.safetensors` file (f32, under its own name), or
/// the single output to a `.npy` file. The file appears atomically.
pub fn save_outputs(path: &Path, outputs: &[RunOutput]) -> Result<(), OutputError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let bytes = match extension.as_deref() {
        Some("safetensors") => safetensors_bytes(path, outputs)?,
        Some("npy") => match outputs {
            [single] => npy_bytes(&single.array),
            _ => {
                return Err(OutputError::NpyNeedsOneOutput {
                    path: path.to_path_buf(),
                    count: outputs.len(),
                    names: outputs
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        },
        _ => {
            return Err(OutputError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    };
    write_atomically(path, &bytes)
}

/// An f32 array seen through the safetensors serializer.
struct F32View<'a> {
    shape: &'a [usize],
    bytes: Vec<u8>,
}

impl safetensors::View for F32View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn le_bytes(array: &ArrayD<f32>) -> Vec<u8> {
    array.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn safetensors_bytes(path: &Path, outputs: &[RunOutput]) -> Result<Vec<u8>, OutputError> {
    let views = outputs.iter().map(|o| {
        let view = F32View {
            shape: o.array.shape(),
            bytes: le_bytes(&o.array),
        };
        (o.name.as_str(), view)
    });
    safetensors::serialize(views, None).map_err(|err| OutputError::Encode {
        path: path.to_path_buf(),
        message: err.to_string(),
    })
}

/// A version 1.0 `.npy` file: little-endian f32, C order.
pub fn npy_bytes(array: &ArrayD<f32>) -> Vec<u8> {
    let dims: Vec<String> = array.shape().iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + newline is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');

    let mut bytes = Vec::with_capacity(10 + header.len() + array.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(le_bytes(array));
    bytes
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let io = |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|err| io(err.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(name: &str, shape: &[usize], values: Vec<f32>) -> RunOutput {
        RunOutput {
            name: name.to_string(),
            dtype: "f32".to_string(),
            array: ArrayD::from_shape_vec(shape, values).unwrap(),
        }
    }

    #[test]
    fn kinds_are_guessed_from_name_and_rank() {
        use OutputKind::*;
        assert_eq!(OutputKind::guess("logits", &[2, 3], None), Classifier);
        assert_eq!(
            OutputKind::guess("sentiment/logits", &[2, 3], None),
            Classifier
        );
        assert_eq!(
            OutputKind::guess("logits", &[2, 5, 9], None),
            TokenClassifier
        );
        assert_eq!(
            OutputKind::guess("logits", &[2, 5, 500], None),
            LanguageModel
        );
        assert_eq!(
            OutputKind::guess("logits", &[2, 5, 9], Some(9)),
            LanguageModel
        );
        assert_eq!(
            OutputKind::guess("sentence_embedding", &[2, 8], None),
            Embedding
        );
        assert_eq!(OutputKind::guess("start_logits", &[2, 5], None), Other);
    }

    #[test]
    fn classifier_lists_labels_by_probability() {
        let ctx = SummaryContext {
            labels: vec!["neg".into(), "pos".into()],
            ..SummaryContext::default()
        };
        let text = summarize(&[output("logits", &[1, 2], vec![0.0, 2.0])], &ctx);
        assert!(text.contains("logits  f32 [1, 2]"), "{text}");
        assert!(text.contains("row 0: pos 0.8808, neg 0.1192"), "{text}");
    }

    #[test]
    fn embeddings_show_norms_and_cosines() {
        let out = output("sentence_embedding", &[2, 2], vec![1.0, 0.0, 1.0, 1.0]);
        let text = summarize(&[out], &SummaryContext::default());
        assert!(text.contains("|x| = 1.4142"), "{text}");
        assert!(text.contains("0.7071"), "{text}");
    }

    #[test]
    fn npy_header_is_padded_to_64_bytes() {
        let array = ArrayD::from_shape_vec(vec![2, 3], vec![0.0; 6]).unwrap();
        let bytes = npy_bytes(&array);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)"), "{header}");
        assert_eq!(bytes.len(), 10 + header_len + 24);
    }

    #[test]
    fn npy_refuses_several_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let a = output("a", &[1], vec![1.0]);
        let b = output("b", &[1], vec![2.0]);
        let err = save_outputs(&dir.path().join("x.npy"), &[a, b]).unwrap_err();
        assert!(err.to_string().contains(".safetensors"), "{err}");
    }
}
