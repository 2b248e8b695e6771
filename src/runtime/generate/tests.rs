//! Decoding against mock models whose logits are a fixed function of each row's tokens, so
//! every expected sequence can be worked out by hand.

use ndarray::Array2;

use super::sample::{softmax, warp};
use super::*;

/// Logits for a row as a function of the tokens it holds so far.
type Table = dyn Fn(&[i64]) -> Vec<f32>;

/// A decoder-only mock: keeps every row's tokens, and checks the mask grows with them.
struct Mock {
    table: Box<Table>,
    rows: Vec<Vec<i64>>,
    steps: usize,
    encoder: bool,
}

impl Mock {
    fn new(table: impl Fn(&[i64]) -> Vec<f32> + 'static) -> Mock {
        Mock {
            table: Box::new(table),
            rows: Vec::new(),
            steps: 0,
            encoder: false,
        }
    }
}

impl StepModel for Mock {
    fn is_encoder_decoder(&self) -> bool {
        self.encoder
    }

    fn encode(&mut self, _: &[Vec<i64>], _: &[Vec<i64>]) -> Result<(), GenerateError> {
        Ok(())
    }

    fn step(
        &mut self,
        tokens: &[Vec<i64>],
        mask: &[Vec<i64>],
    ) -> Result<Array2<f32>, GenerateError> {
        if self.rows.len() != tokens.len() {
            self.rows = vec![Vec::new(); tokens.len()];
        }
        for (row, new) in self.rows.iter_mut().zip(tokens) {
            row.extend_from_slice(new);
        }
        for (row, m) in self.rows.iter().zip(mask) {
            assert_eq!(row.len(), m.len(), "the mask covers every position");
        }
        self.steps += 1;
        let logits: Vec<Vec<f32>> = self
            .rows
            .iter()
            .zip(mask)
            .map(|(row, m)| {
                let real: Vec<i64> = row
                    .iter()
                    .zip(m)
                    .filter(|(_, &m)| m != 0)
                    .map(|(&t, _)| t)
                    .collect();
                (self.table)(&real)
            })
            .collect();
        let vocab = logits[0].len();
        Ok(Array2::from_shape_vec((logits.len(), vocab), logits.concat()).unwrap())
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<(), GenerateError> {
        self.rows = rows.iter().map(|&r| self.rows[r].clone()).collect();
        Ok(())
    }
}

fn greedy(max_new_tokens: usize, eos: &[i64]) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        eos_token_ids: eos.to_vec(),
        pad_token_id: Some(0),
        ..GenerationConfig::default()
    }
}

fn beam(num_beams: usize, returned: usize, eos: &[i64], max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        strategy: Strategy::Beam(BeamConfig {
            num_beams,
            num_return_sequences: returned,
            ..BeamConfig::default()
        }),
        ..greedy(max_new_tokens, eos)
    }
}

fn run(model: &mut dyn StepModel, prompt: &Prompt, config: &GenerationConfig) -> Generation {
    generate(model, prompt, config, &mut |_| {}).unwrap()
}

/// Log-probabilities as logits: log_softmax leaves them unchanged when they sum to 1.
fn logs(p: &[f32]) -> Vec<f32> {
    p.iter().map(|&x| x.ln()).collect()
}

#[test]
fn greedy_follows_the_argmax_and_pads_finished_rows() {
    // Next token = last + 1, except that 4 is followed by EOS (5).
    let mut model = Mock::new(|row| {
        let last = *row.last().unwrap();
        let next = if last == 4 { 5 } else { (last + 1) % 8 };
        (0..8).map(|t| if t == next { 1.0 } else { 0.0 }).collect()
    });
    let prompt = Prompt::left_padded(&[vec![1, 2], vec![3]], 0).unwrap();
    assert_eq!(prompt.ids, [vec![1, 2], vec![0, 3]]);
    let out = run(&mut model, &prompt, &greedy(5, &[5]));
    assert_eq!(out.sequences, [vec![1, 2, 3, 4, 5], vec![0, 3, 4, 5, 0]]);
    assert_eq!(out.prompt_width, 2);
    assert_eq!(out.generated()[1], [4, 5, 0]);
    assert_eq!(
        out.timing.step_ms.len(),
        3,
        "stops once every row has finished"
    );
}

#[test]
fn greedy_stops_at_max_new_tokens_and_streams_each_step() {
    let mut model = Mock::new(|row| {
        (0..4)
            .map(|t| if t == row.len() as i64 % 4 { 1.0 } else { 0.0 })
            .collect()
    });
    let prompt = Prompt::left_padded(&[vec![3]], 0).unwrap();
    let mut streamed = Vec::new();
    let out = generate(&mut model, &prompt, &greedy(3, &[]), &mut |event| {
        streamed.push((event.index, event.tokens.to_vec()));
    })
    .unwrap();
    assert_eq!(out.sequences, [vec![3, 1, 2, 3]]);
    assert_eq!(streamed, [(0, vec![1]), (1, vec![2]), (2, vec![3])]);
    assert_eq!(model.steps, 3);
}

#[test]
fn encoder_decoder_starts_from_the_decoder_start_token() {
    let mut model = Mock::new(|row| {
        (0..4)
            .map(|t| {
                if t == (row.len() as i64 + 1) % 4 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect()
    });
    model.encoder = true;
    let prompt = Prompt::right_padded(&[vec![3, 3, 3], vec![1]], 0).unwrap();
    assert_eq!(prompt.mask, [vec![1, 1, 1], vec![1, 0, 0]]);
    let mut config = greedy(2, &[]);
    let missing = generate(&mut model, &prompt, &config, &mut |_| {}).unwrap_err();
    assert!(
        missing.to_string().contains("decoder_start_token_id"),
        "{missing}"
    );
    config.decoder_start_token_id = Some(0);
    let out = run(&mut model, &prompt, &config);
    assert_eq!(out.sequences, [vec![0, 2, 3], vec![0, 2, 3]]);
    assert_eq!(out.prompt_width, 1);
}

#[test]
fn processors_act_on_greedy_scores() {
    // Token 1 is always the best; a penalty and a bad-words ban move the choice.
    let table = |_: &[i64]| vec![0.0, 3.0, 2.0, 1.0];
    let prompt = Prompt::left_padded(&[vec![0]], 0).unwrap();
    let mut config = greedy(3, &[]);
    config.processors.bad_words_ids = vec![vec![1]];
    let out = run(&mut Mock::new(table), &prompt, &config);
    assert_eq!(out.sequences, [vec![0, 2, 2, 2]]);
    config.processors.no_repeat_ngram_size = Some(1);
    let out = run(&mut Mock::new(table), &prompt, &config);
    // 0 (in the prompt), 2 and 3 each once; then every token is banned and the first wins.
    assert_eq!(out.sequences, [vec![0, 2, 3, 0]]);
}

#[test]
fn beam_search_prefers_the_better_joint_sequence() {
    // Greedy takes 1 (0.6) then a flat step; beam finds 2 (0.4) then a sure step.
    let table = |row: &[i64]| match row {
        [_] => logs(&[0.0001, 0.6, 0.3999, 0.0]),
        [_, 1] => logs(&[0.25, 0.25, 0.25, 0.25]),
        [_, 2] => logs(&[0.0, 0.0, 0.0, 1.0]),
        _ => logs(&[1.0, 0.0, 0.0, 0.0]),
    };
    let prompt = Prompt::left_padded(&[vec![3]], 0).unwrap();
    let out = run(&mut Mock::new(table), &prompt, &greedy(2, &[]));
    assert_eq!(out.sequences, [vec![3, 1, 0]]);
    let out = run(&mut Mock::new(table), &prompt, &beam(2, 2, &[], 2));
    assert_eq!(out.sequences, [vec![3, 2, 3], vec![3, 1, 0]]);
    let scores = out.scores.unwrap();
    let expected = [
        (0.3999f32.ln() + 0.0) / 2.0,
        (0.6f32.ln() + 0.25f32.ln()) / 2.0,
    ];
    for (got, want) in scores.iter().zip(expected) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}

#[test]
fn beam_search_finalises_eos_only_within_the_top_num_beams() {
    // EOS (0) is the third-best first token: it is not finalised with 2 beams, so both
    // returned sequences run to max_length.
    let table = |row: &[i64]| match row {
        [_] => logs(&[0.2, 0.45, 0.35, 0.0]),
        _ => logs(&[0.01, 0.0, 0.0, 0.99]),
    };
    let prompt = Prompt::left_padded(&[vec![3]], 9).unwrap();
    let config = beam(2, 2, &[0], 2);
    let out = run(&mut Mock::new(table), &prompt, &config);
    assert_eq!(out.sequences, [vec![3, 1, 3], vec![3, 2, 3]]);
    // With 3 beams it ranks among the top num_beams and finishes after one token.
    let config = beam(3, 3, &[0], 2);
    let out = run(&mut Mock::new(table), &prompt, &config);
    let scores = out.scores.unwrap();
    assert_eq!(
        out.sequences[2],
        [3, 0, 0],
        "right-filled with EOS because pad is 0"
    );
    assert!((scores[2] - 0.2f32.ln()).abs() < 1e-6);
}

#[test]
fn beam_outputs_fill_with_eos_when_pad_is_zero_and_with_pad_otherwise() {
    let table = |row: &[i64]| match row.len() {
        1 => logs(&[0.0, 0.1, 0.5, 0.4]),
        _ => logs(&[0.0, 0.9, 0.05, 0.05]),
    };
    let prompt = Prompt::left_padded(&[vec![3]], 0).unwrap();
    let mut config = beam(2, 2, &[1], 3);
    let out = run(&mut Mock::new(table), &prompt, &config);
    // Both beams end with EOS after two tokens; the width is the prompt plus the longest.
    assert_eq!(out.sequences, [vec![3, 2, 1], vec![3, 3, 1]]);
    config.pad_token_id = Some(7);
    config.max_new_tokens = 3;
    let table_short = |row: &[i64]| match row {
        [_] => logs(&[0.0, 0.6, 0.4, 0.0]),
        _ => logs(&[0.0, 0.8, 0.1, 0.1]),
    };
    let out = run(&mut Mock::new(table_short), &prompt, &config);
    assert_eq!(out.sequences, [vec![3, 1, 7], vec![3, 2, 1]]);
    config.pad_token_id = Some(0);
    let out = run(&mut Mock::new(table_short), &prompt, &config);
    assert_eq!(out.sequences, [vec![3, 1, 1], vec![3, 2, 1]]);
}

#[test]
fn beam_search_with_one_beam_is_greedy() {
    let table = |row: &[i64]| {
        let seed = row
            .iter()
            .fold(7i64, |h, &t| h.wrapping_mul(31).wrapping_add(t));
        (0..16)
            .map(|t| (((seed + t * 13) % 17) as f32) * 0.37)
            .collect()
    };
    let prompt = Prompt::left_padded(&[vec![1, 2, 3], vec![4]], 0).unwrap();
    let greedy_out = run(&mut Mock::new(table), &prompt, &greedy(6, &[]));
    let beam_out = run(&mut Mock::new(table), &prompt, &beam(1, 1, &[], 6));
    assert_eq!(greedy_out.sequences, beam_out.sequences);
}

#[test]
fn beam_early_stopping_modes() {
    // EOS (0) finishes a hypothesis at steps 1 and 2, filling both slots, so `true` stops
    // there; under a length penalty of 2 longer sequences score better, and `never` (which
    // scores running beams at max_length) searches on and finds them.
    let table = |row: &[i64]| match row.len() {
        1 => logs(&[0.5, 0.3, 0.2, 0.0]),
        _ => logs(&[0.6, 0.39, 0.005, 0.005]),
    };
    let prompt = Prompt::left_padded(&[vec![3]], 0).unwrap();
    let mut config = beam(2, 2, &[0], 6);
    let Strategy::Beam(settings) = &mut config.strategy else {
        unreachable!()
    };
    settings.length_penalty = 2.0;
    let mut model = Mock::new(table);
    let enabled = run(&mut model, &prompt, &config);
    let steps_enabled = enabled.timing.step_ms.len();
    let Strategy::Beam(settings) = &mut config.strategy else {
        unreachable!()
    };
    settings.early_stopping = EarlyStopping::Never;
    let never = run(&mut Mock::new(table), &prompt, &config);
    assert_eq!(steps_enabled, 2);
    assert!(
        never.timing.step_ms.len() > steps_enabled,
        "never searches longer"
    );
    let best_never = never.scores.unwrap()[0];
    let best_enabled = enabled.scores.unwrap()[0];
    assert!(best_never >= best_enabled, "{best_never} < {best_enabled}");
}

#[test]
fn sampling_with_top_k_one_is_greedy() {
    let table = |row: &[i64]| {
        let seed = row
            .iter()
            .fold(3i64, |h, &t| h.wrapping_mul(17).wrapping_add(t));
        (0..16)
            .map(|t| (((seed + t * 7) % 19) as f32) * 0.21)
            .collect()
    };
    let prompt = Prompt::left_padded(&[vec![5, 6], vec![7]], 0).unwrap();
    let greedy_out = run(&mut Mock::new(table), &prompt, &greedy(8, &[]));
    let config = GenerationConfig {
        strategy: Strategy::Sample(SampleConfig {
            top_k: Some(1),
            temperature: 0.7,
            seed: 99,
            ..SampleConfig::default()
        }),
        ..greedy(8, &[])
    };
    let sampled = run(&mut Mock::new(table), &prompt, &config);
    assert_eq!(greedy_out.sequences, sampled.sequences);
}

#[test]
fn sampling_is_reproducible_for_a_seed() {
    let table = |_: &[i64]| vec![0.0; 50];
    let prompt = Prompt::left_padded(&[vec![1], vec![2]], 0).unwrap();
    let config = |seed| GenerationConfig {
        strategy: Strategy::Sample(SampleConfig {
            seed,
            ..SampleConfig::default()
        }),
        ..greedy(20, &[])
    };
    let a = run(&mut Mock::new(table), &prompt, &config(5));
    let b = run(&mut Mock::new(table), &prompt, &config(5));
    let c = run(&mut Mock::new(table), &prompt, &config(6));
    assert_eq!(a.sequences, b.sequences);
    assert_ne!(a.sequences, c.sequences);
}

/// Draws `draws` tokens one step at a time from fixed logits and counts them.
fn frequencies(logits: &[f32], sample: SampleConfig, draws: usize) -> Vec<usize> {
    let fixed = logits.to_vec();
    let mut model = Mock::new(move |_| fixed.clone());
    let prompt = Prompt::left_padded(&vec![vec![0]; draws], 0).unwrap();
    let config = GenerationConfig {
        strategy: Strategy::Sample(sample),
        ..greedy(1, &[])
    };
    let out = run(&mut model, &prompt, &config);
    let mut counts = vec![0; logits.len()];
    for row in out.generated() {
        counts[row[0] as usize] += 1;
    }
    counts
}

/// Pearson's chi-square statistic of `counts` against probabilities `p` (cells with p = 0
/// must be empty).
fn chi_square(counts: &[usize], p: &[f32]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .zip(p)
        .map(|(&c, &p)| {
            if p == 0.0 {
                assert_eq!(c, 0, "a token with probability 0 was drawn");
                return 0.0;
            }
            let expected = n as f64 * f64::from(p);
            (c as f64 - expected).powi(2) / expected
        })
        .sum()
}

// The statistical tests draw N = 40,000 tokens from 5 (or fewer) categories. Under the null
// hypothesis the chi-square statistic follows χ² with at most 4 degrees of freedom, whose
// 99.9th percentile is 18.47; the bound 25 is beyond its 99.99th percentile (23.5). The
// seed is fixed, so the test is deterministic; the bound only says a correct sampler passes
// for all but a negligible fraction of seeds, while a wrong distribution — a temperature
// not applied (probabilities off by ≥ 0.05) gives a statistic in the hundreds at this N.

const DRAWS: usize = 40_000;
const CHI_SQUARE_BOUND: f64 = 25.0;

#[test]
fn sampled_frequencies_follow_the_tempered_softmax() {
    let logits = [1.0f32, 0.5, 0.0, -0.5, 2.0];
    let sample = SampleConfig {
        temperature: 0.7,
        seed: 1234,
        ..SampleConfig::default()
    };
    let counts = frequencies(&logits, sample.clone(), DRAWS);
    let tempered: Vec<f32> = logits.iter().map(|&l| l / 0.7).collect();
    let p = softmax(&tempered);
    let statistic = chi_square(&counts, &p);
    assert!(
        statistic < CHI_SQUARE_BOUND,
        "χ² = {statistic}, counts {counts:?}, p {p:?}"
    );
    // The untempered distribution is clearly rejected.
    let wrong = chi_square(&counts, &softmax(&logits));
    assert!(
        wrong > 100.0,
        "χ² against the wrong distribution is only {wrong}"
    );
}

#[test]
fn sampled_frequencies_follow_top_p_truncation() {
    // Probabilities 0.4, 0.3, 0.15, 0.1, 0.05: top_p = 0.8 keeps the first three (0.85),
    // renormalised to 8/17, 6/17, 3/17.
    let p = [0.4f32, 0.3, 0.15, 0.1, 0.05];
    let logits: Vec<f32> = p.iter().map(|x| x.ln()).collect();
    let sample = SampleConfig {
        top_p: Some(0.8),
        seed: 42,
        ..SampleConfig::default()
    };
    let mut warped = logits.clone();
    warp(&sample, &mut warped);
    let expected = softmax(&warped);
    assert!((expected[0] - 8.0 / 17.0).abs() < 1e-6 && expected[3] == 0.0 && expected[4] == 0.0);
    let counts = frequencies(&logits, sample, DRAWS);
    let statistic = chi_square(&counts, &expected);
    assert!(
        statistic < CHI_SQUARE_BOUND,
        "χ² = {statistic}, counts {counts:?}"
    );
}

#[test]
fn sampled_frequencies_follow_top_k_truncation() {
    let logits = [0.3f32, 1.2, -0.4, 0.9, 0.0];
    let sample = SampleConfig {
        top_k: Some(2),
        seed: 7,
        ..SampleConfig::default()
    };
    let counts = frequencies(&logits, sample, DRAWS);
    let expected = softmax(&[
        f32::NEG_INFINITY,
        1.2,
        f32::NEG_INFINITY,
        0.9,
        f32::NEG_INFINITY,
    ]);
    let statistic = chi_square(&counts, &expected);
    assert!(
        statistic < CHI_SQUARE_BOUND,
        "χ² = {statistic}, counts {counts:?}"
    );
}

#[test]
fn invalid_settings_are_errors_not_panics() {
    let prompt = Prompt::left_padded(&[vec![1]], 0).unwrap();
    let mut model = Mock::new(|_| vec![0.0; 4]);
    let cases: Vec<(GenerationConfig, &str)> = vec![
        (greedy(0, &[]), "max_new_tokens"),
        (beam(0, 1, &[], 3), "num_beams"),
        (beam(2, 3, &[], 3), "num_return_sequences"),
        (
            GenerationConfig {
                strategy: Strategy::Sample(SampleConfig {
                    temperature: 0.0,
                    ..SampleConfig::default()
                }),
                ..greedy(3, &[])
            },
            "temperature",
        ),
        (
            GenerationConfig {
                strategy: Strategy::Sample(SampleConfig {
                    top_p: Some(1.5),
                    ..SampleConfig::default()
                }),
                ..greedy(3, &[])
            },
            "top_p",
        ),
    ];
    for (config, expected) in cases {
        let err = generate(&mut model, &prompt, &config, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert!(Prompt::left_padded(&[], 0).is_err());
    assert!(Prompt::left_padded(&[vec![]], 0).is_err());
    assert!(Prompt::from_padded(vec![vec![1, 2]], vec![vec![0, 0]]).is_err());
}

#[test]
fn positions_follow_the_mask_as_generate_builds_them() {
    let mask = vec![vec![0, 0, 1, 1, 1], vec![1, 1, 1, 1, 1]];
    assert_eq!(
        model::positions_from_mask(&mask, 5),
        [vec![1, 1, 0, 1, 2], vec![0, 1, 2, 3, 4]]
    );
    assert_eq!(model::positions_from_mask(&mask, 1), [vec![2], vec![4]]);
}
