//! Beam search with Hugging Face Transformers' scoring and stopping rules (4.57).
//!
//! Each prompt row (an *item*) keeps `num_beams` running hypotheses and up to `num_beams`
//! finished ones. One step:
//!
//! 1. every running hypothesis' next-token scores are the `log_softmax` of its logits over
//!    the whole vocabulary, edited by the processors (no renormalisation), plus the
//!    hypothesis' running score; at the first step only beam 0 is live (the others start at
//!    -1e9);
//! 2. the best `max(2, 1 + n_eos) × num_beams` (beam, token) candidates of the item are
//!    taken, best first; a candidate *stops* if its token is an EOS id or the sequence
//!    reaches `max_length`;
//! 3. the next running hypotheses are the best `num_beams` candidates, stopped ones pushed
//!    down by -1e9;
//! 4. a stopped candidate among the first `num_beams` is a finished hypothesis scored
//!    `score / generated_len ** length_penalty` (`generated_len` counts the new tokens, EOS
//!    included); it replaces a worse finished one, unless the item is already full under
//!    `early_stopping = true` or its early-stop heuristic was satisfied;
//! 5. the cache rows follow the running hypotheses to their parents.
//!
//! Decoding stops when no item can improve (the heuristic of [`EarlyStopping`] says so for
//! every item), when every item is full under `early_stopping = true`, or when every
//! candidate stopped (`max_length`). The best `num_return_sequences` finished hypotheses of
//! each item are returned, cut to the prompt plus the longest of them and right-filled with
//! [`GenerationConfig::beam_fill`]. Scores are kept in f32 as in Transformers, so the
//! -1e9 offsets round the same way.

use std::cmp::Ordering;
use std::time::Instant;

use ndarray::{Array2, ArrayView1, Axis};

use super::greedy::check_rows;
use super::processors::RowContext;
use super::{
    last_column, BeamConfig, EarlyStopping, GenerateError, Generation, GenerationConfig,
    GenerationTiming, Start, StepEvent, StepModel,
};

/// The offset Transformers adds to rule a score out without making it -∞.
const RULED_OUT: f32 = -1.0e9;

/// A finished hypothesis of one item (or an empty slot that was never filled).
#[derive(Debug, Clone)]
struct Finished {
    tokens: Vec<i64>,
    score: f32,
    finished: bool,
}

/// One of the best candidates of a step.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Summed log-probability with the new token.
    score: f32,
    /// The running row it continues.
    parent: usize,
    token: i64,
    stops: bool,
}

/// Runs beam search as described in the module documentation.
pub(super) fn run(
    model: &mut dyn StepModel,
    start: Start,
    config: &GenerationConfig,
    beam: &BeamConfig,
    on_step: &mut dyn FnMut(&StepEvent),
) -> Result<Generation, GenerateError> {
    let Start {
        ids,
        mask: prompt_mask,
        prompt_width,
        max_length,
        encoder_ms,
    } = start;
    let items = ids.len();
    let num_beams = beam.num_beams;
    let rows = items * num_beams;
    let eos = &config.eos_token_ids;
    let keep = (1 + eos.len()).max(2) * num_beams;
    let length_penalty = beam.length_penalty;

    // Every item's rows repeat its prompt; the prefill runs once per item and the cache is
    // then duplicated.
    let expand: Vec<usize> = (0..rows).map(|row| row / num_beams).collect();
    let mut running: Vec<Vec<i64>> = expand.iter().map(|&i| ids[i].clone()).collect();
    let mut mask: Vec<Vec<i64>> = expand.iter().map(|&i| prompt_mask[i].clone()).collect();
    let mut running_scores: Vec<f32> = (0..rows)
        .map(|row| if row % num_beams == 0 { 0.0 } else { RULED_OUT })
        .collect();
    let empty = Finished {
        tokens: Vec::new(),
        score: RULED_OUT,
        finished: false,
    };
    let mut finished = vec![vec![empty; num_beams]; items];
    let mut improvable = vec![true; items];
    let mut timing = GenerationTiming::default();
    let mut cur_len = prompt_width;
    let mut feed = ids;

    while cur_len < max_length {
        let started = Instant::now();

        // Scores of every (row, token).
        let logits = if timing.step_ms.is_empty() {
            let logits = model.step(&feed, &prompt_mask)?;
            check_rows(&logits, items)?;
            model.select_rows(&expand)?;
            logits.select(Axis(0), &expand)
        } else {
            let logits = model.step(&feed, &mask)?;
            check_rows(&logits, rows)?;
            logits
        };
        let vocab = logits.ncols();
        let scores = beam_scores(
            &logits,
            &running,
            &running_scores,
            config,
            prompt_width,
            max_length,
        );

        // Per item: the best candidates, the next running beams, the finished ones.
        let mut parents = Vec::with_capacity(rows);
        let mut next_running = Vec::with_capacity(rows);
        let mut next_scores = Vec::with_capacity(rows);
        let mut all_stop = true;
        let generated = (cur_len + 1 - prompt_width) as f32;
        let divisor = generated.powf(length_penalty);
        for item in 0..items {
            let base = item * num_beams;
            let item_scores = &scores[base * vocab..(base + num_beams) * vocab];
            let candidates: Vec<Candidate> = top_indices(item_scores, keep)
                .into_iter()
                .map(|index| {
                    let token = (index % vocab) as i64;
                    Candidate {
                        score: item_scores[index],
                        parent: base + index / vocab,
                        token,
                        stops: eos.contains(&token) || cur_len + 1 >= max_length,
                    }
                })
                .collect();
            all_stop &= candidates.iter().all(|c| c.stops);

            // The next running hypotheses.
            let adjusted: Vec<f32> = candidates
                .iter()
                .map(|c| {
                    if c.stops {
                        c.score + RULED_OUT
                    } else {
                        c.score
                    }
                })
                .collect();
            for index in top_indices(&adjusted, num_beams) {
                let c = candidates[index];
                parents.push(c.parent);
                next_running.push(extend(&running[c.parent], c.token));
                next_scores.push(adjusted[index]);
            }

            // The finished hypotheses.
            let full = beam.early_stopping == EarlyStopping::Enabled
                && finished[item].iter().all(|f| f.finished);
            let slots = &finished[item];
            let mut merged: Vec<f32> = slots.iter().map(|f| f.score).collect();
            for (rank, c) in candidates.iter().enumerate() {
                let just_finished = c.stops && rank < num_beams;
                let mut score = c.score / divisor;
                if full {
                    score += RULED_OUT;
                }
                if !improvable[item] {
                    score += RULED_OUT;
                }
                if !just_finished {
                    score += RULED_OUT;
                }
                merged.push(score);
            }
            let kept: Vec<Finished> = top_indices(&merged, num_beams)
                .into_iter()
                .map(|index| match index.checked_sub(num_beams) {
                    None => slots[index].clone(),
                    Some(rank) => {
                        let c = candidates[rank];
                        Finished {
                            tokens: extend(&running[c.parent], c.token),
                            score: merged[index],
                            finished: c.stops && rank < num_beams,
                        }
                    }
                })
                .collect();
            finished[item] = kept;
        }

        // Move on: the cache follows the parents.
        model.select_rows(&parents)?;
        for row in &mut mask {
            row.push(1);
        }
        running = next_running;
        running_scores = next_scores;
        cur_len += 1;
        for item in 0..items {
            improvable[item] &= can_improve(
                running_scores[item * num_beams],
                &finished[item],
                beam,
                cur_len - prompt_width,
                max_length - prompt_width,
            );
        }
        let extra = if timing.step_ms.is_empty() {
            encoder_ms
        } else {
            0.0
        };
        let ms = started.elapsed().as_secs_f64() * 1e3 + extra;
        timing.step_ms.push(ms);
        on_step(&StepEvent {
            index: timing.step_ms.len() - 1,
            tokens: &[],
            active: &[],
            ms,
        });

        let all_full = beam.early_stopping == EarlyStopping::Enabled
            && finished.iter().flatten().all(|f| f.finished);
        if !improvable.iter().any(|&i| i) || all_full || all_stop {
            break;
        }
        feed = last_column(&running);
    }

    Ok(output(finished, beam, config, prompt_width, timing))
}

/// Each row's `log_softmax`, processed, plus the row's running score, flattened
/// `[row, token]`.
fn beam_scores(
    logits: &Array2<f32>,
    running: &[Vec<i64>],
    running_scores: &[f32],
    config: &GenerationConfig,
    prompt_width: usize,
    max_length: usize,
) -> Vec<f32> {
    let vocab = logits.ncols();
    let mut scores = Vec::with_capacity(logits.nrows() * vocab);
    for (row, sequence) in running.iter().enumerate() {
        let mut row_scores = log_softmax(logits.row(row));
        let context = RowContext {
            sequence,
            prompt_width,
            max_length,
            eos_token_ids: &config.eos_token_ids,
        };
        config.processors.apply(&context, &mut row_scores);
        let offset = running_scores[row];
        scores.extend(row_scores.iter().map(|&s| s + offset));
    }
    scores
}

/// `x - max - ln Σ exp(x - max)`, in f32 with the sum accumulated in f64.
pub fn log_softmax(logits: ArrayView1<f32>) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return logits.iter().map(|_| f32::NEG_INFINITY).collect();
    }
    let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    let log_sum = sum.ln() as f32;
    logits.iter().map(|&x| x - max - log_sum).collect()
}

/// Indices of the `k` largest values, largest first; among equal values the lower index
/// comes first, and NaN ranks last.
fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let order = |&a: &usize, &b: &usize| -> Ordering {
        let (x, y) = (values[a], values[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => y.partial_cmp(&x).unwrap_or(Ordering::Equal).then(a.cmp(&b)),
        }
    };
    let mut indices: Vec<usize> = (0..values.len()).collect();
    let k = k.min(indices.len());
    if k == 0 {
        return Vec::new();
    }
    if k < indices.len() {
        indices.select_nth_unstable_by(k - 1, order);
        indices.truncate(k);
    }
    indices.sort_unstable_by(order);
    indices
}

fn extend(sequence: &[i64], token: i64) -> Vec<i64> {
    let mut extended = Vec::with_capacity(sequence.len() + 1);
    extended.extend_from_slice(sequence);
    extended.push(token);
    extended
}

/// Whether the best running hypothesis, scored at the most favourable length
/// [`EarlyStopping`] allows, beats some finished slot (an unfilled slot always counts as
/// beatable).
fn can_improve(
    best_running: f32,
    slots: &[Finished],
    beam: &BeamConfig,
    generated: usize,
    max_generated: usize,
) -> bool {
    let length = if beam.early_stopping == EarlyStopping::Never && beam.length_penalty > 0.0 {
        max_generated
    } else {
        generated
    };
    let best = best_running / (length as f32).powf(beam.length_penalty);
    let worst = slots.iter().map(|f| f.score).fold(f32::INFINITY, f32::min);
    slots
        .iter()
        .any(|f| best > if f.finished { worst } else { RULED_OUT })
}

/// The returned sequences and scores: the best `num_return_sequences` slots of each item,
/// cut to the prompt plus the longest of them and right-filled.
fn output(
    finished: Vec<Vec<Finished>>,
    beam: &BeamConfig,
    config: &GenerationConfig,
    prompt_width: usize,
    timing: GenerationTiming,
) -> Generation {
    let returned: Vec<Finished> = finished
        .into_iter()
        .flat_map(|slots| slots.into_iter().take(beam.num_return_sequences))
        .collect();
    let width = returned
        .iter()
        .map(|f| f.tokens.len().max(prompt_width))
        .max()
        .unwrap_or(prompt_width);
    let fill = config.beam_fill();
    let scores = returned.iter().map(|f| f.score).collect();
    let sequences = returned
        .into_iter()
        .map(|f| {
            let mut tokens = f.tokens;
            tokens.resize(width, fill);
            tokens
        })
        .collect();
    Generation {
        sequences,
        scores: Some(scores),
        prompt_width,
        timing,
    }
}
