//! Logits processors: the score edits Hugging Face `generate` applies before a token is
//! chosen, in Transformers' order (repetition penalty, no-repeat n-grams, bad words, minimum
//! length, minimum new tokens, forced EOS).
//!
//! Greedy search and sampling apply them to the raw logits of a row, beam search to its
//! log-softmax. Each works on one row at a time: `sequence` is everything the row holds so
//! far (prompt or decoder start token included), so `sequence.len()` is Transformers'
//! `cur_len`.

use super::GenerateError;

/// The processors to apply; the default turns all of them off.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Processors {
    /// Above 1 discourages every token already in the sequence (prompt included): a positive
    /// score is divided by it, a negative one multiplied.
    pub repetition_penalty: Option<f32>,
    /// No n-gram of this size may occur twice in a sequence (prompt included).
    pub no_repeat_ngram_size: Option<usize>,
    /// Token sequences that must never be generated: a single token is always banned, a
    /// longer one has its last token banned wherever the row ends with the rest. Sequences
    /// equal to a lone EOS id are ignored, as Transformers does.
    pub bad_words_ids: Vec<Vec<i64>>,
    /// EOS is banned while the sequence (prompt included) is shorter than this.
    pub min_length: Option<usize>,
    /// EOS is banned until this many tokens have been generated.
    pub min_new_tokens: Option<usize>,
    /// At the last step every score but these ids' becomes -∞ and theirs 0.
    pub forced_eos_token_ids: Vec<i64>,
}

/// Where a row stands when its scores are processed.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'a> {
    /// The tokens of the row so far.
    pub sequence: &'a [i64],
    /// Tokens before the first generated one.
    pub prompt_width: usize,
    /// Length at which decoding stops (`prompt_width + max_new_tokens`).
    pub max_length: usize,
    /// The ids that end a sequence.
    pub eos_token_ids: &'a [i64],
}

impl Processors {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), GenerateError> {
        if let Some(p) = self.repetition_penalty {
            if !(p > 0.0 && p.is_finite()) {
                return Err(GenerateError::Config(format!(
                    "repetition_penalty must be above 0, not {p}"
                )));
            }
        }
        if self.no_repeat_ngram_size == Some(0) {
            return Err(GenerateError::Config(
                "no_repeat_ngram_size must be at least 1".into(),
            ));
        }
        if self.bad_words_ids.iter().any(Vec::is_empty) {
            return Err(GenerateError::Config(
                "bad_words_ids holds an empty sequence".into(),
            ));
        }
        Ok(())
    }

    /// Whether no processor is on.
    pub fn is_empty(&self) -> bool {
        *self == Processors::default()
    }

    /// Applies every processor that is on to the scores of one row.
    pub fn apply(&self, row: &RowContext, scores: &mut [f32]) {
        if let Some(penalty) = self.repetition_penalty.filter(|&p| p != 1.0) {
            repetition_penalty(row.sequence, penalty, scores);
        }
        if let Some(n) = self.no_repeat_ngram_size {
            no_repeat_ngram(row.sequence, n, scores);
        }
        if !self.bad_words_ids.is_empty() {
            bad_words(row.sequence, &self.bad_words_ids, row.eos_token_ids, scores);
        }
        let len = row.sequence.len();
        if self.min_length.is_some_and(|min| len < min) {
            ban(row.eos_token_ids, scores);
        }
        let generated = len.saturating_sub(row.prompt_width);
        if self.min_new_tokens.is_some_and(|min| generated < min) {
            ban(row.eos_token_ids, scores);
        }
        if !self.forced_eos_token_ids.is_empty() && len + 1 == row.max_length {
            scores.fill(f32::NEG_INFINITY);
            for &id in &self.forced_eos_token_ids {
                if let Some(score) = usize::try_from(id).ok().and_then(|i| scores.get_mut(i)) {
                    *score = 0.0;
                }
            }
        }
    }
}

/// Sets the scores of `ids` (those inside the vocabulary) to -∞.
fn ban(ids: &[i64], scores: &mut [f32]) {
    for &id in ids {
        if let Some(score) = usize::try_from(id).ok().and_then(|i| scores.get_mut(i)) {
            *score = f32::NEG_INFINITY;
        }
    }
}

fn repetition_penalty(sequence: &[i64], penalty: f32, scores: &mut [f32]) {
    let mut seen = vec![false; scores.len()];
    for &id in sequence {
        let Some(i) = usize::try_from(id).ok().filter(|&i| i < scores.len()) else {
            continue;
        };
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let s = scores[i];
        scores[i] = if s < 0.0 { s * penalty } else { s / penalty };
    }
}

/// Bans every token that would complete an n-gram already present in `sequence`.
fn no_repeat_ngram(sequence: &[i64], n: usize, scores: &mut [f32]) {
    let len = sequence.len();
    if len + 1 < n {
        return;
    }
    let prefix = &sequence[len + 1 - n..];
    let mut banned = Vec::new();
    for window in sequence.windows(n) {
        if &window[..n - 1] == prefix {
            banned.push(window[n - 1]);
        }
    }
    ban(&banned, scores);
}

fn bad_words(sequence: &[i64], bad: &[Vec<i64>], eos: &[i64], scores: &mut [f32]) {
    for words in bad {
        if let [only] = words.as_slice() {
            if eos.contains(only) {
                continue;
            }
        }
        let Some((&last, prefix)) = words.split_last() else {
            continue;
        };
        if sequence.ends_with(prefix) {
            ban(&[last], scores);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context<'a>(sequence: &'a [i64], eos: &'a [i64]) -> RowContext<'a> {
        RowContext {
            sequence,
            prompt_width: 2,
            max_length: 6,
            eos_token_ids: eos,
        }
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_scores_once() {
        let processors = Processors {
            repetition_penalty: Some(2.0),
            ..Processors::default()
        };
        let mut scores = [4.0, -1.0, 3.0, 1.0];
        processors.apply(&context(&[0, 1, 1, 0], &[]), &mut scores);
        assert_eq!(scores, [2.0, -2.0, 3.0, 1.0]);
    }

    #[test]
    fn no_repeat_ngram_bans_completions_of_seen_ngrams() {
        let processors = Processors {
            no_repeat_ngram_size: Some(2),
            ..Processors::default()
        };
        // The row ends in 1; the bigrams starting with 1 are (1, 2) and (1, 3).
        let mut scores = [0.0; 5];
        processors.apply(&context(&[1, 2, 0, 1, 3, 1], &[]), &mut scores);
        assert_eq!(
            scores,
            [0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0]
        );
        // Too short for a full n-gram: nothing is banned.
        let processors = Processors {
            no_repeat_ngram_size: Some(3),
            ..Processors::default()
        };
        let mut scores = [0.0; 3];
        processors.apply(&context(&[1], &[]), &mut scores);
        assert_eq!(scores, [0.0; 3]);
    }

    #[test]
    fn bad_words_ban_single_tokens_and_completions_but_not_a_lone_eos() {
        let processors = Processors {
            bad_words_ids: vec![vec![4], vec![2, 3], vec![1, 0], vec![0]],
            ..Processors::default()
        };
        let mut scores = [0.0; 5];
        processors.apply(&context(&[3, 2], &[0]), &mut scores);
        assert_eq!(
            scores,
            [0.0, 0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]
        );
    }

    #[test]
    fn min_length_and_min_new_tokens_ban_eos() {
        let min_length = Processors {
            min_length: Some(4),
            ..Processors::default()
        };
        let mut scores = [0.0; 3];
        min_length.apply(&context(&[1, 1, 1], &[2]), &mut scores);
        assert_eq!(scores[2], f32::NEG_INFINITY);
        let mut scores = [0.0; 3];
        min_length.apply(&context(&[1, 1, 1, 1], &[2]), &mut scores);
        assert_eq!(scores[2], 0.0);

        let min_new = Processors {
            min_new_tokens: Some(2),
            ..Processors::default()
        };
        let mut scores = [0.0; 3];
        min_new.apply(&context(&[1, 1, 1], &[2]), &mut scores);
        assert_eq!(scores[2], f32::NEG_INFINITY);
        let mut scores = [0.0; 3];
        min_new.apply(&context(&[1, 1, 1, 1], &[2]), &mut scores);
        assert_eq!(scores[2], 0.0);
    }

    #[test]
    fn forced_eos_only_at_the_last_step() {
        let processors = Processors {
            forced_eos_token_ids: vec![1],
            ..Processors::default()
        };
        let mut scores = [3.0, -2.0, 5.0];
        processors.apply(&context(&[7, 7, 7, 7], &[1]), &mut scores);
        assert_eq!(scores, [3.0, -2.0, 5.0]);
        processors.apply(&context(&[7, 7, 7, 7, 7], &[1]), &mut scores);
        assert_eq!(scores, [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]);
    }

    #[test]
    fn out_of_vocabulary_ids_are_ignored() {
        let processors = Processors {
            repetition_penalty: Some(2.0),
            bad_words_ids: vec![vec![99]],
            min_length: Some(10),
            ..Processors::default()
        };
        let mut scores = [1.0, 1.0];
        processors.apply(&context(&[-1, 50], &[-3, 70]), &mut scores);
        assert_eq!(scores, [1.0, 1.0]);
    }
}
