//! One sequence per row, one token per step: greedy search, and sampling with a different
//! chooser.
//!
//! Each step feeds the newest token of every row (the whole prompt at the first step),
//! processes the last position's logits, and appends the chosen token. A row that produced
//! an EOS id keeps receiving the fill id (`pad_token_id`, else the first EOS id) while the
//! others continue; decoding ends when every row has finished or `max_new_tokens` tokens were
//! generated, so the result is as wide as the prompt plus the longest row.

use std::time::Instant;

use super::processors::RowContext;
use super::{
    last_column, GenerateError, Generation, GenerationConfig, GenerationTiming, Start, StepEvent,
    StepModel,
};

/// Picks a token from one row's processed scores (which it may modify).
pub type Chooser<'a> = dyn FnMut(&mut [f32]) -> i64 + 'a;

/// The index of the largest score, the first one among equals; NaN never wins.
pub fn argmax(scores: &mut [f32]) -> i64 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] || scores[best].is_nan() && !s.is_nan() {
            best = i;
        }
    }
    best as i64
}

/// Runs the loop described in the module documentation, choosing tokens with `choose`.
pub(super) fn run(
    model: &mut dyn StepModel,
    start: Start,
    config: &GenerationConfig,
    choose: &mut Chooser,
    on_step: &mut dyn FnMut(&StepEvent),
) -> Result<Generation, GenerateError> {
    let Start {
        ids: mut sequences,
        mut mask,
        prompt_width,
        max_length,
        encoder_ms,
    } = start;
    let rows = sequences.len();
    let fill = config.greedy_fill();
    let eos = &config.eos_token_ids;
    let mut active = vec![true; rows];
    let mut timing = GenerationTiming::default();
    let mut feed = sequences.clone();
    let mut tokens = vec![0; rows];

    while sequences[0].len() < max_length {
        let started = Instant::now();
        let logits = model.step(&feed, &mask)?;
        check_rows(&logits, rows)?;

        // Choose one token per row.
        let was_active = active.clone();
        for (row, sequence) in sequences.iter_mut().enumerate() {
            let mut scores = logits.row(row).to_vec();
            let context = RowContext {
                sequence,
                prompt_width,
                max_length,
                eos_token_ids: eos,
            };
            config.processors.apply(&context, &mut scores);
            let chosen = choose(&mut scores);
            let token = if active[row] { chosen } else { fill };
            tokens[row] = token;
            sequence.push(token);
            mask[row].push(1);
            if eos.contains(&token) {
                active[row] = false;
            }
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
            tokens: &tokens,
            active: &was_active,
            ms,
        });
        if !active.iter().any(|&a| a) {
            break;
        }
        feed = last_column(&sequences);
    }

    Ok(Generation {
        sequences,
        scores: None,
        prompt_width,
        timing,
    })
}

/// Checks that a step returned one row of logits per sequence.
pub(super) fn check_rows(logits: &ndarray::Array2<f32>, rows: usize) -> Result<(), GenerateError> {
    if logits.nrows() == rows && logits.ncols() > 0 {
        return Ok(());
    }
    Err(GenerateError::Model {
        model: "step model".into(),
        reason: format!(
            "a step over {rows} rows returned logits of shape {:?}",
            logits.shape()
        ),
    })
}
