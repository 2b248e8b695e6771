//! Token inputs for running a model: id lists typed by hand, read from a file or produced by
//! a Hugging Face `tokenizer.json`, gathered into a right-padded [`TokenBatch`] and turned into
//! the named arrays a model declares (`input_ids`, `attention_mask`, `token_type_ids`,
//! `position_ids`, `decoder_input_ids`, `decoder_attention_mask`).
//!
//! This sits between the user and [`run_f32`](super::run_f32): everything here is checked
//! before ONNX Runtime sees it, so a bad id or an input the model cannot be given is reported
//! in the user's terms rather than as a kernel failure.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD};
use thiserror::Error;

use super::NamedInput;

/// Why the inputs of a run could not be prepared.
#[derive(Debug, Error)]
pub enum InputError {
    /// No sequence was given.
    #[error("no input: give token ids with --ids or --ids-file, or text with --text")]
    Empty,
    /// A sequence has no tokens.
    #[error("{what} row {row} is empty; every sequence needs at least one token")]
    EmptyRow {
        /// Which batch (`input ids`, `decoder ids`).
        what: &'static str,
        /// The row, counted from 0.
        row: usize,
    },
    /// A token id could not be parsed.
    #[error("`{token}` is not a token id (expected integers separated by spaces or commas)")]
    BadId {
        /// The offending text.
        token: String,
    },
    /// A token id is outside the vocabulary.
    #[error(
        "token id {id} ({what} row {row}, position {position}) is out of range: \
         the vocabulary has {vocab} entries (ids 0..={max})",
        max = .vocab.saturating_sub(1)
    )]
    IdOutOfRange {
        /// The id.
        id: i64,
        /// Which batch (`input ids`, `decoder ids`).
        what: &'static str,
        /// The row, counted from 0.
        row: usize,
        /// The position in the row, counted from 0.
        position: usize,
        /// The vocabulary size.
        vocab: u64,
    },
    /// A token id is negative.
    #[error("token id {id} ({what} row {row}, position {position}) is negative")]
    NegativeId {
        /// The id.
        id: i64,
        /// Which batch (`input ids`, `decoder ids`).
        what: &'static str,
        /// The row, counted from 0.
        row: usize,
        /// The position in the row, counted from 0.
        position: usize,
    },
    /// A sequence is longer than the model's position table.
    #[error(
        "{what} row {row} has {len} tokens, but the model has only {max} positions \
         (truncate the input, or with a tokenizer pass --max-length {max})"
    )]
    TooLong {
        /// Which batch.
        what: &'static str,
        /// The row, counted from 0.
        row: usize,
        /// Its length.
        len: usize,
        /// The number of positions.
        max: u64,
    },
    /// Two batches that must have one row each per example differ in size.
    #[error("{given} decoder sequences were given for a batch of {batch}")]
    BatchMismatch {
        /// Rows of the encoder batch.
        batch: usize,
        /// Rows of the decoder batch.
        given: usize,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An ids file is neither JSON nor one sequence per line.
    #[error("{}: {reason}", .path.display())]
    IdsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The tokenizer could not be loaded or failed to encode.
    #[error("tokenizer {}: {message}", .path.display())]
    Tokenizer {
        /// The `tokenizer.json` file.
        path: PathBuf,
        /// The tokenizer's explanation.
        message: String,
    },
    /// The model declares an input that tfc cannot fill from token ids.
    #[error(
        "the model needs input `{name}`, which `tfc run` cannot fill; \
         it fills {known} (the model's inputs are: {declared})"
    )]
    UnknownModelInput {
        /// The input's name.
        name: String,
        /// The names tfc fills.
        known: String,
        /// Every input the model declares.
        declared: String,
    },
}

/// Input names this module knows how to fill.
pub const KNOWN_INPUTS: [&str; 6] = [
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "decoder_input_ids",
    "decoder_attention_mask",
];

/// A batch of token sequences, right-padded to the longest one.
///
/// Invariant: every row of `ids`, `mask` and `type_ids` has the same length, at least 1, and
/// `mask[r]` is 1 exactly on the first `lengths[r]` positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Token ids, one row per sequence.
    pub ids: Vec<Vec<i64>>,
    /// 1 on real tokens, 0 on padding.
    pub mask: Vec<Vec<i64>>,
    /// Segment ids: zeros unless a tokenizer produced them.
    pub type_ids: Vec<Vec<i64>>,
    /// The number of real tokens in each row.
    pub lengths: Vec<usize>,
}

impl TokenBatch {
    /// Builds a batch from ragged rows, right-padding each with `pad_id`.
    pub fn from_rows(
        rows: Vec<Vec<i64>>,
        pad_id: i64,
        what: &'static str,
    ) -> Result<TokenBatch, InputError> {
        if rows.is_empty() {
            return Err(InputError::Empty);
        }
        if let Some(row) = rows.iter().position(Vec::is_empty) {
            return Err(InputError::EmptyRow { what, row });
        }
        let width = rows.iter().map(Vec::len).max().unwrap_or(1);
        let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
        let ids = rows
            .into_iter()
            .map(|mut row| {
                row.resize(width, pad_id);
                row
            })
            .collect();
        let mask = lengths
            .iter()
            .map(|&len| (0..width).map(|i| i64::from(i < len)).collect())
            .collect();
        let type_ids = vec![vec![0; width]; lengths.len()];
        Ok(TokenBatch {
            ids,
            mask,
            type_ids,
            lengths,
        })
    }

    /// The number of sequences.
    pub fn batch(&self) -> usize {
        self.ids.len()
    }

    /// The padded length.
    pub fn width(&self) -> usize {
        self.ids.first().map_or(0, Vec::len)
    }

    /// Checks that every real token is a valid index into a vocabulary of `vocab` entries.
    pub fn check_vocab(&self, vocab: u64, what: &'static str) -> Result<(), InputError> {
        for (row, (ids, &len)) in self.ids.iter().zip(&self.lengths).enumerate() {
            for (position, &id) in ids.iter().take(len).enumerate() {
                if id < 0 {
                    return Err(InputError::NegativeId {
                        id,
                        what,
                        row,
                        position,
                    });
                }
                if id as u64 >= vocab {
                    return Err(InputError::IdOutOfRange {
                        id,
                        what,
                        row,
                        position,
                        vocab,
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks that no row is longer than `max` positions.
    pub fn check_length(&self, max: u64, what: &'static str) -> Result<(), InputError> {
        match self.lengths.iter().position(|&len| len as u64 > max) {
            Some(row) => Err(InputError::TooLong {
                what,
                row,
                len: self.lengths[row],
                max,
            }),
            None => Ok(()),
        }
    }

    fn array(rows: &[Vec<i64>]) -> ArrayD<i64> {
        let width = rows.first().map_or(0, Vec::len);
        let flat: Vec<i64> = rows.iter().flatten().copied().collect();
        Array2::from_shape_vec((rows.len(), width), flat)
            .map(|a| a.into_dyn())
            .unwrap_or_else(|_| ArrayD::zeros(ndarray::IxDyn(&[0, 0])))
    }

    fn positions(&self) -> Vec<Vec<i64>> {
        let width = self.width() as i64;
        vec![(0..width).collect(); self.batch()]
    }
}

/// Parses one sequence: integers separated by whitespace or commas, optionally in brackets.
pub fn parse_ids(text: &str) -> Result<Vec<i64>, InputError> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<i64>().map_err(|_| InputError::BadId {
                token: t.to_string(),
            })
        })
        .collect()
}

/// Reads an ids file: a JSON array of arrays (or one array), or one sequence per line
/// (blank lines and lines starting with `#` are skipped).
pub fn read_ids_file(path: &Path) -> Result<Vec<Vec<i64>>, InputError> {
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if let Ok(rows) = serde_json::from_str::<Vec<Vec<i64>>>(&text) {
        return Ok(rows);
    }
    if let Ok(row) = serde_json::from_str::<Vec<i64>>(&text) {
        return Ok(vec![row]);
    }
    let mut rows = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let row = parse_ids(line).map_err(|err| InputError::IdsFile {
            path: path.to_path_buf(),
            reason: format!("line {}: {err}", number + 1),
        })?;
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(InputError::IdsFile {
            path: path.to_path_buf(),
            reason: "no sequences in the file".to_string(),
        });
    }
    Ok(rows)
}

/// A Hugging Face tokenizer, set to pad each batch to its longest sequence.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`. Padding becomes "longest in the batch" (keeping the file's pad
    /// token); `max_length`, when given, replaces the file's truncation length.
    pub fn from_file(path: &Path, max_length: Option<usize>) -> Result<TextTokenizer, InputError> {
        let error = |err: tokenizers::Error| InputError::Tokenizer {
            path: path.to_path_buf(),
            message: err.to_string(),
        };
        if !path.is_file() {
            return Err(InputError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let mut inner = tokenizers::Tokenizer::from_file(path).map_err(error)?;
        let mut padding = inner.get_padding().cloned().unwrap_or_default();
        padding.strategy = tokenizers::PaddingStrategy::BatchLongest;
        inner.with_padding(Some(padding));
        if let Some(max_length) = max_length {
            // The tokenizer subtracts its special tokens from the length and
            // must keep at least one real token.
            use tokenizers::PostProcessor;
            let special = inner
                .get_post_processor()
                .map_or(0, |p| p.added_tokens(false));
            if max_length <= special {
                return Err(InputError::Tokenizer {
                    path: path.to_path_buf(),
                    message: format!(
                        "--max-length {max_length} leaves no room for text: the tokenizer adds \
                         {special} special tokens, so the length must be at least {}",
                        special + 1
                    ),
                });
            }
            let mut truncation = inner.get_truncation().cloned().unwrap_or_default();
            truncation.max_length = max_length;
            inner.with_truncation(Some(truncation)).map_err(error)?;
        }
        Ok(TextTokenizer {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The truncation length in effect, if any.
    pub fn max_length(&self) -> Option<usize> {
        self.inner.get_truncation().map(|t| t.max_length)
    }

    /// Encodes texts (with the tokenizer's special tokens) into one padded batch.
    pub fn encode(&self, texts: &[String]) -> Result<TokenBatch, InputError> {
        if texts.is_empty() {
            return Err(InputError::Empty);
        }
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings =
            self.inner
                .encode_batch(inputs, true)
                .map_err(|err| InputError::Tokenizer {
                    path: self.path.clone(),
                    message: err.to_string(),
                })?;
        let widen = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>();
        let ids: Vec<Vec<i64>> = encodings.iter().map(|e| widen(e.get_ids())).collect();
        let mask: Vec<Vec<i64>> = encodings
            .iter()
            .map(|e| widen(e.get_attention_mask()))
            .collect();
        let type_ids = encodings.iter().map(|e| widen(e.get_type_ids())).collect();
        if let Some(row) = ids.iter().position(Vec::is_empty) {
            return Err(InputError::EmptyRow {
                what: "tokenized text",
                row,
            });
        }
        let lengths = mask
            .iter()
            .map(|m| m.iter().filter(|&&x| x != 0).count())
            .collect();
        Ok(TokenBatch {
            ids,
            mask,
            type_ids,
            lengths,
        })
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The padding id.
    pub fn pad_id(&self) -> i64 {
        self.inner.get_padding().map_or(0, |p| i64::from(p.pad_id))
    }

    /// The text of one token, if the id is in the vocabulary.
    pub fn token(&self, id: usize) -> Option<String> {
        u32::try_from(id)
            .ok()
            .and_then(|id| self.inner.id_to_token(id))
    }
}

/// The `max_seq_length` of a `sentence_bert_config.json` next to `tokenizer` (as
/// sentence-transformers packages ship it), which overrides the tokenizer's own truncation.
pub fn sentence_transformers_max_length(tokenizer: &Path) -> Option<usize> {
    let config = tokenizer.parent()?.join("sentence_bert_config.json");
    let text = std::fs::read_to_string(config).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("max_seq_length")?.as_u64().map(|n| n as usize)
}

/// Builds the named arrays for every input in `declared`, from the encoder (or decoder-only)
/// batch and, for encoder-decoder models, the decoder batch.
pub fn model_inputs(
    declared: &[String],
    tokens: &TokenBatch,
    decoder: &TokenBatch,
) -> Result<Vec<(String, NamedInput)>, InputError> {
    let mut inputs = Vec::with_capacity(declared.len());
    for name in declared {
        let rows = match name.as_str() {
            "input_ids" => tokens.ids.clone(),
            "attention_mask" => tokens.mask.clone(),
            "token_type_ids" => tokens.type_ids.clone(),
            "position_ids" => tokens.positions(),
            "decoder_input_ids" => decoder.ids.clone(),
            "decoder_attention_mask" => decoder.mask.clone(),
            _ => {
                return Err(InputError::UnknownModelInput {
                    name: name.clone(),
                    known: KNOWN_INPUTS.join(", "),
                    declared: declared.join(", "),
                })
            }
        };
        inputs.push((name.clone(), NamedInput::I64(TokenBatch::array(&rows))));
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_spaces_commas_and_brackets() {
        assert_eq!(
            parse_ids("101 7592, 2088 [102]").unwrap(),
            [101, 7592, 2088, 102]
        );
        assert!(matches!(parse_ids("1 x 2"), Err(InputError::BadId { token }) if token == "x"));
    }

    #[test]
    fn ragged_rows_are_right_padded_with_a_mask() {
        let batch = TokenBatch::from_rows(vec![vec![5, 6, 7], vec![8]], 0, "input ids").unwrap();
        assert_eq!(batch.ids, [vec![5, 6, 7], vec![8, 0, 0]]);
        assert_eq!(batch.mask, [vec![1, 1, 1], vec![1, 0, 0]]);
        assert_eq!(batch.lengths, [3, 1]);
        assert_eq!(batch.positions(), [vec![0, 1, 2], vec![0, 1, 2]]);
    }

    #[test]
    fn out_of_range_ids_name_row_and_position() {
        let batch = TokenBatch::from_rows(vec![vec![1, 2], vec![3, 99]], 0, "input ids").unwrap();
        let message = batch.check_vocab(50, "input ids").unwrap_err().to_string();
        assert!(message.contains("token id 99 (input ids row 1, position 1)"));
        assert!(message.contains("ids 0..=49"));
        let negative = TokenBatch::from_rows(vec![vec![-1]], 0, "input ids").unwrap();
        assert!(negative.check_vocab(50, "input ids").is_err());
    }

    #[test]
    fn empty_rows_and_batches_are_errors() {
        assert!(matches!(
            TokenBatch::from_rows(vec![], 0, "input ids"),
            Err(InputError::Empty)
        ));
        assert!(matches!(
            TokenBatch::from_rows(vec![vec![1], vec![]], 0, "input ids"),
            Err(InputError::EmptyRow { row: 1, .. })
        ));
    }

    #[test]
    fn ids_files_are_json_or_lines() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("a.json");
        std::fs::write(&json, "[[1, 2], [3]]").unwrap();
        assert_eq!(read_ids_file(&json).unwrap(), [vec![1, 2], vec![3]]);
        let lines = dir.path().join("a.txt");
        std::fs::write(&lines, "# comment\n1 2 3\n\n4,5\n").unwrap();
        assert_eq!(read_ids_file(&lines).unwrap(), [vec![1, 2, 3], vec![4, 5]]);
        let bad = dir.path().join("b.txt");
        std::fs::write(&bad, "1 2\n3 y\n").unwrap();
        let message = read_ids_file(&bad).unwrap_err().to_string();
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn unknown_model_inputs_are_named() {
        let batch = TokenBatch::from_rows(vec![vec![1]], 0, "input ids").unwrap();
        let declared = vec!["input_ids".to_string(), "past_key_values.0.key".to_string()];
        let message = model_inputs(&declared, &batch, &batch)
            .unwrap_err()
            .to_string();
        assert!(message.contains("`past_key_values.0.key`"), "{message}");
    }
}
